"""The ops oracle: pure NumPy forward/backward pairs, and the ``numpy`` backend of ``refimpl.kernels``.

Every op of ``kernels.CONTRACT`` is defined here, in one module per idea:

* :mod:`~refimpl.ops.dense`, :mod:`~refimpl.ops.conv`, :mod:`~refimpl.ops.pool` -- layers;
* :mod:`~refimpl.ops.activations` -- element-wise activations (``ACTIVATIONS`` by name);
* :mod:`~refimpl.ops.losses` -- softmax cross-entropy and mse, each with its gradient;
* :mod:`~refimpl.ops.fused` -- dense+relu, conv+relu and conv+relu+maxpool, as compositions
  of the ops above (:func:`~refimpl.ops.fused.compose_fused` builds them from any backend's
  basic ops);
* :mod:`~refimpl.ops.sched` -- the inner products of the TLR and hypergradient schedulers;
* :mod:`~refimpl.ops.checks` -- the argument checks every backend calls.

Beside the contract: :mod:`~refimpl.ops.dropout` (inverted dropout, the same NumPy
functions on every backend), the activation table ``ACTIVATIONS``, and the convolution
helpers ``im2col``, ``col2im`` and ``conv2d_output_size``. ``__all__`` lists exactly the
contract's top-level names, as every backend's does.

A forward returns ``(y, cache)`` and the matching backward reads the cache (docs/methods.md
§1). Inputs must be float32 or float64 arrays and the outputs keep that dtype; bad shapes,
dtypes or labels raise ``ValueError`` naming the argument.
"""

from refimpl.ops import activations, conv, dropout, sched
from refimpl.ops.activations import (
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
from refimpl.ops.conv import conv2d_backward, conv2d_forward
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

# Beside the contract, so not in __all__: the activation table, convolution helpers, dropout.
ACTIVATIONS = activations.ACTIVATIONS
im2col, col2im, conv2d_output_size = conv.im2col, conv.col2im, conv.conv2d_output_size
dropout_mask = dropout.dropout_mask
dropout_forward, dropout_backward = dropout.dropout_forward, dropout.dropout_backward

#: The oracle never runs on the CUDA simulator (``kernels.get_backend("auto")`` asks).
is_simulator = False


def is_available() -> bool:
    """The oracle is pure NumPy, so it is always usable."""
    return True


#: The contract's top-level names (``refimpl.kernels.CONTRACT``), as in every backend.
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
