"""The ops oracle: pure NumPy forward/backward pairs, the ``numpy`` backend of ``kernels``.

Every function of ``kernels.CONTRACT`` is exported here (see docs/architecture.md and spec
§1); a ``cache`` returned by a forward is read only by the matching backward. Inputs must be
float32 or float64 ndarrays and the outputs keep that dtype; bad shapes, dtypes or labels
raise ``ValueError`` naming the argument.
"""

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
from refimpl.ops.losses import mse, softmax_cross_entropy
from refimpl.ops.pool import maxpool2d_backward, maxpool2d_forward

#: The oracle never runs on the CUDA simulator (``kernels.get_backend("auto")`` asks).
is_simulator = False


def is_available() -> bool:
    """The oracle is pure NumPy, so it is always usable (``kernels`` asks every backend)."""
    return True


__all__ = [
    "ACTIVATIONS",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_output_size",
    "cos_backward",
    "cos_forward",
    "dense_backward",
    "dense_forward",
    "identity_backward",
    "identity_forward",
    "im2col",
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
    "tanh_backward",
    "tanh_forward",
]
