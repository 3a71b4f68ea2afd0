"""``python -m refimpl.bench`` is ``refimpl bench``."""

import sys

from refimpl.bench.epochs import main

sys.exit(main())
