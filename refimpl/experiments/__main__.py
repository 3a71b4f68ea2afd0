"""``python -m refimpl.experiments NAME [--quick]``: the same as ``refimpl reproduce``."""

import sys

from refimpl.experiments import main

sys.exit(main())
