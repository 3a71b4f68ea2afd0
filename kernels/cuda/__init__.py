"""CUDA backend: the ``refimpl.ops`` contract as ``numba.cuda`` kernels.

Two layers:

* this module -- every op of ``kernels.CONTRACT`` on **NumPy arrays**: inputs are copied
  to the device, the kernels run, results are copied back (same dtype, float32 or
  float64). This is what ``kernels.get_backend("cuda")`` returns and what the tests
  compare with the oracle. Caches stay on the device.
* :mod:`kernels.cuda.device` -- the same ops on **device arrays**, plus
  :class:`SGD` (momentum, on device-resident parameters) and the per-step scheduler math
  (:class:`GreedyLR`, :class:`NewtonLR`, :class:`DLRS`), so a training step copies no
  weights to the host.

With ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run on Numba's CUDA simulator
(``is_simulator`` is True, and ``kernels.get_backend("auto")`` never picks it). Kernels
launch asynchronously on a GPU: time them only after ``numba.cuda.synchronize()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from . import device
from ._common import is_available, is_device_array, is_simulator
from ._common import to_device as _float_to_device
from .optim import SGD
from .schedulers import DLRS, GreedyLR, NewtonLR

__all__ = [
    "DLRS",
    "SGD",
    "GreedyLR",
    "NewtonLR",
    "conv2d_backward",
    "conv2d_forward",
    "cos_backward",
    "cos_forward",
    "dense_backward",
    "dense_forward",
    "device",
    "is_available",
    "is_simulator",
    "maxpool2d_backward",
    "maxpool2d_forward",
    "mse",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "sin_backward",
    "sin_forward",
    "softmax_cross_entropy",
    "synchronize",
    "tanh_backward",
    "tanh_forward",
    "to_device",
    "to_host",
]


def to_device(a: Any, name: str = "array") -> Any:
    """A float NumPy array copied to the device (a device array is returned as is)."""
    return a if is_device_array(a) else _float_to_device(a, name)


def to_host(a: Any) -> np.ndarray:
    """A device array copied to a NumPy array."""
    return a.copy_to_host()


def synchronize() -> None:
    """Wait for every launched kernel; call before reading a clock."""
    cuda.synchronize()


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    """``y = x W + b``; see :func:`kernels.cuda.dense.dense_forward`."""
    y, cache = device.dense_forward(to_device(x, "x"), to_device(W, "W"), to_device(b, "b"))
    return to_host(y), cache


def dense_backward(
    dy: np.ndarray, cache: Any, *, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``dx = dy Wᵀ, dW = xᵀ dy, db = Σ dy``; see :func:`kernels.cuda.dense.dense_backward`.

    ``need_dx=False`` returns None for ``dx`` (computed on the device, not copied back).
    """
    dx, dW, db = device.dense_backward(to_device(dy, "dy"), cache)
    return (to_host(dx) if need_dx else None), to_host(dW), to_host(db)


def conv2d_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, Any]:
    """Cross-correlation, NCHW; see :func:`kernels.cuda.conv.conv2d_forward`."""
    y, cache = device.conv2d_forward(
        to_device(x, "x"), to_device(W, "W"), to_device(b, "b"), stride, padding
    )
    return to_host(y), cache


def conv2d_backward(
    dy: np.ndarray, cache: Any, *, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``(dx, dW, db)``; see :func:`kernels.cuda.conv.conv2d_backward`.

    ``need_dx=False`` returns None for ``dx`` (computed on the device, not copied back).
    """
    dx, dW, db = device.conv2d_backward(to_device(dy, "dy"), cache)
    return (to_host(dx) if need_dx else None), to_host(dW), to_host(db)


def maxpool2d_forward(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, Any]:
    """Max over ``k x k`` windows, stride ``k``; see :func:`kernels.cuda.pool.maxpool2d_forward`."""
    y, cache = device.maxpool2d_forward(to_device(x, "x"), k)
    return to_host(y), cache


def maxpool2d_backward(dy: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient to each window's first arg-max; see :func:`kernels.cuda.pool.maxpool2d_backward`."""
    return to_host(device.maxpool2d_backward(to_device(dy, "dy"), cache))


def _activation(name: str):
    forward_on_device = getattr(device, f"{name}_forward")
    backward_on_device = getattr(device, f"{name}_backward")

    def forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
        y, cache = forward_on_device(to_device(x, "x"))
        return to_host(y), cache

    def backward(dy: np.ndarray, cache: Any) -> np.ndarray:
        return to_host(backward_on_device(to_device(dy, "dy"), cache))

    forward.__name__, backward.__name__ = f"{name}_forward", f"{name}_backward"
    forward.__doc__ = forward_on_device.__doc__.replace("a device array", "a NumPy array")
    backward.__doc__ = backward_on_device.__doc__.replace("on device arrays", "on NumPy arrays")
    return forward, backward


relu_forward, relu_backward = _activation("relu")
tanh_forward, tanh_backward = _activation("tanh")
sigmoid_forward, sigmoid_backward = _activation("sigmoid")
sin_forward, sin_backward = _activation("sin")
cos_forward, cos_backward = _activation("cos")


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and ``dlogits``; see :mod:`kernels.cuda.losses`."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    n_classes = np.shape(logits)[-1] if np.ndim(logits) == 2 else 0
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}) (one per logits column)")
    loss, dlogits = device.softmax_cross_entropy(
        to_device(logits, "logits"), cuda.to_device(labels.astype(np.int64))
    )
    return float(to_host(loss)[0]), to_host(dlogits)


def mse(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """``mean((y − t)²)`` and ``dpred``; see :mod:`kernels.cuda.losses`."""
    pred = to_device(pred, "pred")
    if not is_device_array(target):  # as the oracle: a numeric target is cast to pred's dtype
        target = np.asarray(target)
        if target.dtype.kind not in "iuf":
            raise ValueError(
                f"target must be a numeric array with the shape of pred, got {target.dtype}"
            )
        target = target.astype(pred.dtype, copy=False)
    loss, dpred = device.mse(pred, to_device(target, "target"))
    return float(to_host(loss)[0]), to_host(dpred)
