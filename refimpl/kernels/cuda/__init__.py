"""CUDA backend: the ``refimpl.ops`` contract as ``numba.cuda`` kernels.

Three parts:

* this module -- every name of ``kernels.CONTRACT`` on **NumPy arrays**: the arguments are
  checked as the oracle checks them (:mod:`refimpl.ops.checks`, same messages), copied to
  the device, the kernels run, and the results are copied back (same dtype, float32 or
  float64). This is what ``kernels.get_backend("cuda")`` returns and what the tests compare
  with the oracle. Caches stay on the device.
* :mod:`refimpl.kernels.cuda.device` -- the same ops on **device arrays**, so a chain of ops copies
  nothing to the host between them.
* :mod:`refimpl.kernels.cuda.sched` -- the scheduler kernels, mirroring :mod:`refimpl.kernels.numba.sched`.
* :mod:`refimpl.kernels.cuda.train` -- beside the contract: a training step that keeps the
  parameters, gradients and optimizer state on the device (``Trainer`` runs it for a model on
  this backend), with the optimizer kernels of :mod:`refimpl.kernels.cuda.optim`.

With ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run on Numba's CUDA simulator
(``is_simulator`` is True, and ``kernels.get_backend("auto")`` never picks it). Kernels
launch asynchronously on a GPU: time them only after ``numba.cuda.synchronize()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from refimpl.ops import checks

# y = x has nothing to run on the device: the oracle's pair is this backend's.
from refimpl.ops.activations import identity_backward, identity_forward

from . import _common, device, sched

# Beside the contract, as the numba backend's optim: the trainer's device-resident step.
from . import optim as optim
from . import train as train
from ._common import is_device_array, to_device

# Beside the contract, so not in __all__: what kernels.get_backend asks of a backend.
is_available, is_simulator = _common.is_available, _common.is_simulator

#: The contract's top-level names (``refimpl.kernels.CONTRACT``), as in every backend; the
#: device layer and the transfer helpers (``device``, ``to_device``, ``to_host``,
#: ``synchronize``, ...) are outside it.
__all__ = [
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_relu_backward",
    "conv2d_relu_forward",
    "conv2d_relu_maxpool2d_backward",
    "conv2d_relu_maxpool2d_forward",
    "cos_backward",
    "cos_forward",
    "dense_backward",
    "dense_forward",
    "dense_relu_backward",
    "dense_relu_forward",
    "identity_backward",
    "identity_forward",
    "maxpool2d_backward",
    "maxpool2d_forward",
    "mse",
    "relu_backward",
    "relu_forward",
    "sched",
    "sigmoid_backward",
    "sigmoid_forward",
    "sin_backward",
    "sin_forward",
    "softmax_cross_entropy",
    "tanh_backward",
    "tanh_forward",
]

Grads = tuple[np.ndarray | None, np.ndarray, np.ndarray]


def to_host(a: Any) -> np.ndarray | None:
    """A device array copied to a NumPy array (None stays None)."""
    return None if a is None else a.copy_to_host()


def synchronize() -> None:
    """Wait for every launched kernel; call before reading a clock."""
    cuda.synchronize()


def _on_device(*arrays: Any) -> list[Any]:
    return [to_device(a) for a in arrays]


def _forward(on_device, arrays: tuple[Any, ...], *options: Any) -> tuple[np.ndarray, Any]:
    """``on_device`` run on device copies of ``arrays`` (then ``options``): its output copied
    back to the host, its cache left on the device."""
    y, cache = on_device(*_on_device(*arrays), *options)
    return to_host(y), cache


def _backward(on_device, dy: np.ndarray, cache: Any, need_dx: bool) -> Grads:
    checks.check_float_any("dy", dy)
    return tuple(to_host(g) for g in on_device(to_device(dy), cache, need_dx=need_dx))


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    """``y = x W + b``; see :func:`refimpl.kernels.cuda.dense.dense_forward`."""
    checks.check_dense_args(x, W, b)
    return _forward(device.dense_forward, (x, W, b))


def dense_backward(dy: np.ndarray, cache: Any, *, need_dx: bool = True) -> Grads:
    """``dx = dy Wᵀ, dW = xᵀ dy, db = Σ dy``; ``need_dx=False`` returns None for ``dx``."""
    return _backward(device.dense_backward, dy, cache, need_dx)


def dense_relu_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    """``y = max(x W + b, 0)``; see :func:`refimpl.kernels.cuda.device.dense_relu_forward`."""
    checks.check_dense_args(x, W, b)
    return _forward(device.dense_relu_forward, (x, W, b))


def dense_relu_backward(dy: np.ndarray, cache: Any, *, need_dx: bool = True) -> Grads:
    """Gradients of the fused dense + relu pair."""
    return _backward(device.dense_relu_backward, dy, cache, need_dx)


def conv2d_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, Any]:
    """Cross-correlation, NCHW; see :func:`refimpl.kernels.cuda.conv.conv2d_forward`."""
    checks.check_conv2d_args(x, W, b, stride, padding)
    return _forward(device.conv2d_forward, (x, W, b), stride, padding)


def conv2d_backward(dy: np.ndarray, cache: Any, *, need_dx: bool = True) -> Grads:
    """``(dx, dW, db)``; ``need_dx=False`` returns None for ``dx`` (and skips its kernel)."""
    return _backward(device.conv2d_backward, dy, cache, need_dx)


def conv2d_relu_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, Any]:
    """``y = max(conv2d(x, W, b), 0)``; see :func:`refimpl.kernels.cuda.device.conv2d_relu_forward`."""
    checks.check_conv2d_args(x, W, b, stride, padding)
    return _forward(device.conv2d_relu_forward, (x, W, b), stride, padding)


def conv2d_relu_backward(dy: np.ndarray, cache: Any, *, need_dx: bool = True) -> Grads:
    """Gradients of the fused conv + relu pair."""
    return _backward(device.conv2d_relu_backward, dy, cache, need_dx)


def conv2d_relu_maxpool2d_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0, k: int = 2
) -> tuple[np.ndarray, Any]:
    """``y = maxpool2d(max(conv2d(x, W, b), 0), k)``; see
    :func:`refimpl.kernels.cuda.device.conv2d_relu_maxpool2d_forward`."""
    _, _, h_out, w_out = checks.check_conv2d_args(x, W, b, stride, padding)
    checks.check_maxpool2d_args(np.empty((1, 1, h_out, w_out), x.dtype), k)
    return _forward(device.conv2d_relu_maxpool2d_forward, (x, W, b), stride, padding, k)


def conv2d_relu_maxpool2d_backward(dy: np.ndarray, cache: Any, *, need_dx: bool = True) -> Grads:
    """Gradients of the fused conv + relu + maxpool step."""
    return _backward(device.conv2d_relu_maxpool2d_backward, dy, cache, need_dx)


def maxpool2d_forward(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, Any]:
    """Max over ``k x k`` windows, stride ``k``; see :func:`refimpl.kernels.cuda.pool.maxpool2d_forward`."""
    checks.check_maxpool2d_args(x, k)
    return _forward(device.maxpool2d_forward, (x,), k)


def maxpool2d_backward(dy: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient to each window's first arg-max; see :func:`refimpl.kernels.cuda.pool.maxpool2d_backward`."""
    checks.check_float_any("dy", dy)
    return to_host(device.maxpool2d_backward(to_device(dy), cache))


def _activation(name: str):
    forward_on_device = getattr(device, f"{name}_forward")
    backward_on_device = getattr(device, f"{name}_backward")

    def forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
        checks.check_float_any("x", x)
        return _forward(forward_on_device, (x,))

    def backward(dy: np.ndarray, cache: Any) -> np.ndarray:
        checks.check_float_any("dy", dy)
        return to_host(backward_on_device(to_device(dy), cache))

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
    """Mean softmax cross-entropy and ``dlogits``; see :mod:`refimpl.kernels.cuda.losses`."""
    labels = checks.check_cross_entropy_args(logits, labels)
    loss, dlogits = device.softmax_cross_entropy(
        to_device(logits), cuda.to_device(labels.astype(np.int64))
    )
    return float(to_host(loss)[0]), to_host(dlogits)


def mse(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """``mean((y − t)²)`` and ``dpred``; a numeric target is cast to pred's dtype, as the oracle."""
    checks.check_mse_args(pred, target)
    if not is_device_array(target):
        target = np.asarray(target).astype(pred.dtype, copy=False)
    loss, dpred = device.mse(to_device(pred), to_device(target))
    return float(to_host(loss)[0]), to_host(dpred)
