"""``python -m refimpl ...``: the same as the ``refimpl`` command."""

import sys

from refimpl.cli import console_main

sys.exit(console_main())
