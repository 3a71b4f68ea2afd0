"""Hypothesis profiles: the same examples on every CI run, fresh ones on a developer's machine.

``ci``  -- loaded when the ``CI`` environment variable is set (and by ``make test``):
           ``derandomize=True`` fixes each test's seed (derived from the test itself), and no
           example database is read or written, so every run on every machine draws the same
           examples and a failure reproduces exactly.
``dev`` -- the default otherwise: Hypothesis's usual random exploration with its example
           database in ``.hypothesis/``, which is how new counter-examples are found.

``HYPOTHESIS_PROFILE=ci|dev`` chooses one explicitly; ``pytest --hypothesis-seed=N`` still
overrides the seed for one run.

``ROOT`` is the repository root, for the tests that read its files (docs, notebooks,
examples, setup.cfg) from whatever folder of ``tests/`` they live in.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

# Both start from Hypothesis's own defaults, not from whatever profile is loaded now
# (Hypothesis loads a built-in "ci" profile by itself when it sees $CI).
# No deadline and no too-slow health check in either: a test's speed on a busy machine is
# not what these tests check, and a timing failure would not reproduce.
_DEFAULTS = settings(settings.get_profile("default"), deadline=None, print_blob=True,
                     suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", _DEFAULTS, derandomize=True, database=None)
settings.register_profile("dev", _DEFAULTS)


def hypothesis_profile(environ: dict[str, str] = os.environ) -> str:
    """The profile to load: ``$HYPOTHESIS_PROFILE``, else ``ci`` if ``$CI`` is set, else ``dev``."""
    chosen = environ.get("HYPOTHESIS_PROFILE", "").strip()
    if chosen:
        return chosen
    return "ci" if environ.get("CI", "").strip().lower() not in ("", "0", "false") else "dev"


settings.load_profile(hypothesis_profile())

#: The repository root (this file is ``ROOT / "tests" / "conftest.py"``).
ROOT = Path(__file__).resolve().parents[1]
