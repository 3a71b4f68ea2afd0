"""``python -m refimpl.sweep`` is ``refimpl sweep``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
