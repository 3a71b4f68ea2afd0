"""Fast implementations of the ``refimpl.ops`` contract, selected through one registry.

Backends:
  ``numpy`` -- the oracle itself (``refimpl.ops``), always available;
  ``numba`` -- ``kernels.cpu``, Numba-compiled CPU kernels;
  ``cuda``  -- ``kernels.cuda``, ``numba.cuda`` kernels, listed only when a GPU is usable
               (or when ``NUMBA_ENABLE_CUDASIM=1`` runs them on the CUDA simulator).

Note: an unrelated package named ``kernels`` exists on PyPI. This ``kernels`` is the
sub-package shipped inside the ``refimpl`` distribution; never install the PyPI one beside it.
"""

from __future__ import annotations

import importlib
import types

#: Every op a backend must expose; a test enumerates this list.
CONTRACT = (
    "dense_forward", "dense_backward",
    "conv2d_forward", "conv2d_backward",
    "maxpool2d_forward", "maxpool2d_backward",
    "relu_forward", "relu_backward",
    "tanh_forward", "tanh_backward",
    "sigmoid_forward", "sigmoid_backward",
    "sin_forward", "sin_backward",
    "cos_forward", "cos_backward",
    "softmax_cross_entropy", "mse",
)

_MODULES = {"numpy": "refimpl.ops", "numba": "kernels.cpu", "cuda": "kernels.cuda"}
#: Preference order for ``auto`` (fastest first).
_AUTO_ORDER = ("cuda", "numba", "numpy")
_cache: dict[str, types.ModuleType] = {}


def _load(name: str) -> types.ModuleType | None:
    if name in _cache:
        return _cache[name]
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError:
        return None
    if not getattr(module, "is_available", lambda: True)():
        return None
    _cache[name] = module
    return module


def available() -> list[str]:
    """Names of the backends usable on this machine, fastest first."""
    return [name for name in _AUTO_ORDER if _load(name) is not None]


def get_backend(name: str = "auto") -> types.ModuleType:
    """Return the module implementing every op of ``CONTRACT`` for backend ``name``."""
    if name == "auto":
        # The CUDA simulator is a correctness tool, far slower than any real backend.
        name = next(n for n in available() if not getattr(_load(n), "is_simulator", False))
    if name not in _MODULES:
        raise ValueError(f"backend must be one of {sorted(_MODULES)} or 'auto', got {name!r}")
    module = _load(name)
    if module is None:
        raise ValueError(
            f"backend {name!r} is not available on this machine; available: {available()}"
        )
    return module
