"""Fast implementations of the ``refimpl.ops`` contract, selected through one registry.

Backends (each a module with every name of :data:`CONTRACT`):

  ``numpy`` -- the oracle itself (:mod:`refimpl.ops`), always available;
  ``numba`` -- :mod:`refimpl.kernels.numba`, Numba-compiled CPU kernels;
  ``cuda``  -- :mod:`refimpl.kernels.cuda`, ``numba.cuda`` kernels, listed when a CUDA driver is
               installed (or when ``NUMBA_ENABLE_CUDASIM=1`` runs them on the CUDA simulator).

``get_backend(name)`` imports and returns the module; ``available()`` lists the usable names
without importing a backend (it only looks for the packages they need). Importing a backend
changes no process-wide setting; the numba backend's tuning is an explicit call,
:func:`refimpl.kernels.numba.tune`.
"""

from __future__ import annotations

import ctypes.util
import importlib
import importlib.util
import os
import types

#: Every name a backend must provide; a test enumerates it for every backend. ``sched.*``
#: are the scheduler kernels, reached as ``get_backend(name).sched.tlr_pass`` and so on.
CONTRACT = (
    "dense_forward", "dense_backward",
    "conv2d_forward", "conv2d_backward",
    "dense_relu_forward", "dense_relu_backward",
    "conv2d_relu_forward", "conv2d_relu_backward",
    "conv2d_relu_maxpool2d_forward", "conv2d_relu_maxpool2d_backward",
    "maxpool2d_forward", "maxpool2d_backward",
    "identity_forward", "identity_backward",
    "relu_forward", "relu_backward",
    "tanh_forward", "tanh_backward",
    "sigmoid_forward", "sigmoid_backward",
    "sin_forward", "sin_backward",
    "cos_forward", "cos_backward",
    "softmax_cross_entropy", "mse",
    "sched.tlr_pass", "sched.grad_pair_pass",
)
#: Backward ops that take the keyword ``need_dx`` (False: skip ``dx`` and return None for it).
NEED_DX = ("dense_backward", "conv2d_backward", "dense_relu_backward", "conv2d_relu_backward",
           "conv2d_relu_maxpool2d_backward")

_MODULES = {
    "numpy": "refimpl.ops", "numba": "refimpl.kernels.numba", "cuda": "refimpl.kernels.cuda",
}
#: Every backend name :func:`get_backend` takes besides ``auto`` (the table of the package:
#: :func:`refimpl.registry.backend_names` and the command lines read it from here).
BACKENDS = tuple(_MODULES)
#: Preference order for ``auto`` (fastest first).
_AUTO_ORDER = ("cuda", "numba", "numpy")
_cache: dict[str, types.ModuleType] = {}


def _installed(package: str) -> bool:
    """Whether ``package`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _may_run(name: str) -> bool:
    """A cheap look for what backend ``name`` needs; no backend is imported."""
    if name == "numpy":
        return True
    if name == "numba":
        return _installed("numba")
    # cuda: numba-cuda, and a driver library or the simulator. Whether a GPU really answers
    # is only known after importing numba.cuda, which get_backend("cuda") does.
    simulator = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
    driver = ctypes.util.find_library("cuda") is not None or os.path.exists("/dev/nvidiactl")
    return _installed("numba") and _installed("numba_cuda") and (simulator or driver)


def _load(name: str) -> types.ModuleType | None:
    if name in _cache:
        return _cache[name]
    if not _may_run(name):
        return None
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError:
        return None
    if not module.is_available():
        return None
    _cache[name] = module
    return module


def available() -> list[str]:
    """Names of the backends that can run here, fastest first; imports none of them."""
    return [name for name in _AUTO_ORDER if _may_run(name)]


def resolve(name: str = "auto") -> str:
    """The backend name ``name`` stands for: ``auto`` becomes the fastest usable one.

    ``auto`` never picks the CUDA simulator, a correctness tool far slower than any backend.
    """
    if name != "auto":
        if name not in _MODULES:
            raise ValueError(
                f"backend must be one of {sorted(_MODULES)} or 'auto', got {name!r}"
            )
        return name
    for candidate in available():
        module = _load(candidate)
        if module is not None and not module.is_simulator:
            return candidate
    return "numpy"  # pragma: no cover - the oracle is always usable


def get_backend(name: str = "auto") -> types.ModuleType:
    """The module implementing every name of :data:`CONTRACT` for backend ``name``."""
    name = resolve(name)
    module = _load(name)
    if module is None:
        raise ValueError(
            f"backend {name!r} is not available on this machine; available: {available()}"
        )
    return module


def name_of(backend: types.ModuleType) -> str:
    """The name of a backend module: ``name_of(get_backend("auto"))`` says which one runs."""
    for name, module_name in _MODULES.items():
        if backend.__name__ == module_name:
            return name
    raise ValueError(f"{backend.__name__} is not a backend; get one with get_backend(name), "
                     f"name one of {sorted(_MODULES)} or 'auto'")


def lookup(backend: types.ModuleType, name: str):
    """``backend``'s function for a :data:`CONTRACT` entry (``"sched.tlr_pass"`` included)."""
    target = backend
    for part in name.split("."):
        target = getattr(target, part)
    return target
