"""The ops oracle: pure NumPy forward/backward pairs, and the ``numpy`` backend of ``refimpl.kernels``.

Every op of ``kernels.CONTRACT`` is defined here, in one module per idea:

* :mod:`~refimpl.ops.dense`, :mod:`~refimpl.ops.conv`, :mod:`~refimpl.ops.pool` -- layers;
* :mod:`~refimpl.ops.activations` -- element-wise activations (``ACTIVATIONS`` by name);
* :mod:`~refimpl.ops.losses` -- softmax cross-entropy and mse, each with its gradient;
* :mod:`~refimpl.ops.fused` -- dense+relu, conv+relu and conv+relu+maxpool, as compositions
  of the ops above;
* :mod:`~refimpl.ops.sched` -- the inner products of the TLR and hypergradient schedulers;
* :mod:`~refimpl.ops.checks` -- the argument checks every backend calls.

A forward returns ``(y, cache)`` and the matching backward reads the cache (docs/methods.md
§1). Inputs must be float32 or float64 arrays and the outputs keep that dtype; bad shapes,
dtypes or labels raise ``ValueError`` naming the argument.
"""

from refimpl.ops import sched
from refimpl.ops.activations import (
    ACTIVATIONS,
    cos_backward,
    cos_forward,
    identity_backward,
    identity_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    sin_backward,
    sin_forward,
    tanh_backward,
    tanh_forward,
)
from refimpl.ops.conv import col2im, conv2d_backward, conv2d_forward, conv2d_output_size, im2col
from refimpl.ops.dense import dense_backward, dense_forward
from refimpl.ops.fused import (
    conv2d_relu_backward,
    conv2d_relu_forward,
    conv2d_relu_maxpool2d_backward,
    conv2d_relu_maxpool2d_forward,
    dense_relu_backward,
    dense_relu_forward,
)
from refimpl.ops.losses import mse, softmax_cross_entropy
from refimpl.ops.pool import maxpool2d_backward, maxpool2d_forward

#: The oracle never runs on the CUDA simulator (``kernels.get_backend("auto")`` asks).
is_simulator = False


def is_available() -> bool:
    """The oracle is pure NumPy, so it is always usable."""
    return True


__all__ = [
    "ACTIVATIONS",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_output_size",
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
    "im2col",
    "is_available",
    "is_simulator",
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
