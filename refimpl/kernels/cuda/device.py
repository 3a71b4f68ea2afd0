"""The ops contract on numba device arrays: inputs and outputs stay on the GPU.

Same names and equations as ``refimpl.ops`` (``kernels.CONTRACT``), with two differences
that keep a training step on the device: every array argument and result is a numba
device array, and the losses return the loss as a 1-element float64 device array (the
NumPy-level functions in ``refimpl.kernels.cuda`` copy it out as a Python float). The fused
ops are the oracle's compositions (:func:`refimpl.ops.fused.compose_fused`) over the device
ops below: the layer's kernel, then the relu kernel (then the pooling kernel).
"""

from types import SimpleNamespace

from refimpl.ops.fused import compose_fused

from .activations import (  # noqa: F401
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
from .conv import conv2d_backward, conv2d_forward
from .dense import dense_backward, dense_forward
from .losses import mse, softmax_cross_entropy  # noqa: F401
from .pool import maxpool2d_backward, maxpool2d_forward

_FUSED = compose_fused(SimpleNamespace(
    dense_forward=dense_forward, dense_backward=dense_backward,
    conv2d_forward=conv2d_forward, conv2d_backward=conv2d_backward,
    relu_forward=relu_forward, relu_backward=relu_backward,
    maxpool2d_forward=maxpool2d_forward, maxpool2d_backward=maxpool2d_backward,
))
dense_relu_forward = _FUSED["dense_relu_forward"]
dense_relu_backward = _FUSED["dense_relu_backward"]
conv2d_relu_forward = _FUSED["conv2d_relu_forward"]
conv2d_relu_backward = _FUSED["conv2d_relu_backward"]
conv2d_relu_maxpool2d_forward = _FUSED["conv2d_relu_maxpool2d_forward"]
conv2d_relu_maxpool2d_backward = _FUSED["conv2d_relu_maxpool2d_backward"]
