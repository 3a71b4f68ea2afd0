"""What the CUDA test modules need before they import the backend: numba-cuda, and a GPU
or Numba's CUDA simulator. Call :func:`require_cuda` at the top of a module; it skips the
whole module, with the reason and the way to run it, when either is missing."""

from __future__ import annotations

import pytest


def require_cuda():
    """``numba.cuda``, or skip the calling module (no numba-cuda, or no GPU and no simulator)."""
    cuda = pytest.importorskip("numba.cuda", reason="the CUDA backend needs numba-cuda")
    import refimpl.kernels.cuda as kc

    if not kc.is_available():
        pytest.skip(
            "no CUDA GPU is usable and NUMBA_ENABLE_CUDASIM is not 1 "
            "(run `NUMBA_ENABLE_CUDASIM=1 pytest tests/backends` to use the simulator)",
            allow_module_level=True,
        )
    return cuda
