"""Collection rules for the doctests of the package.

setup.cfg runs pytest with ``--doctest-modules`` over ``tests`` and ``refimpl``, so every
module of refimpl/ is imported to find its ``>>>`` examples. Left out of that collection:

* ``__main__.py`` files, which run a command (and exit) when imported;
* modules that import an optional dependency at module level, when it is not installed
  (``make test`` installs every extra; ``pip install -e .[test]`` alone does not).

It also fixes the numba backend's convolution path to im2col for the whole session (unless
``REFIMPL_CONV_PATH`` is set already): the path is otherwise chosen by timing it on the
machine (refimpl.kernels.numba.tuning), and the paths round differently, so a test that
trains a model could see other numbers on another machine. Tests of the other paths and of
the measured choice force or unset the variable themselves.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: A module or folder of refimpl/ -> the module it imports at module level.
OPTIONAL_IMPORTS = {
    "refimpl/sweep/_worker.py": "distributed",  # the dask extra
    "refimpl/kernels/cuda": "numba.cuda",  # the cuda extra
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """True for the files above; None (no opinion) for everything else."""
    if collection_path.name == "__main__.py":
        return True
    try:
        relative = collection_path.resolve().relative_to(_HERE).as_posix()
    except ValueError:
        return None
    for path, module in OPTIONAL_IMPORTS.items():
        if (relative == path or relative.startswith(path + "/")) and not _installed(module):
            return True
    return None


def pytest_configure(config) -> None:
    """Fix the convolution path for the session, subprocesses included (see above)."""
    os.environ.setdefault("REFIMPL_CONV_PATH", "im2col")
