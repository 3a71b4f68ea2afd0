"""The ops contract on numba device arrays: inputs and outputs stay on the GPU.

Same names and equations as ``refimpl.ops`` (``kernels.CONTRACT``), with two differences
that keep a training step on the device: every array argument and result is a numba
device array, and the losses return the loss as a 1-element float64 device array (the
NumPy-level functions in ``refimpl.kernels.cuda`` copy it out as a Python float). The fused pairs
run the layer's kernel, then the relu kernel (then the pooling kernel), as the oracle
composes them.
"""

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


def dense_relu_forward(x, W, b):
    """``y = max(x W + b, 0)`` on device arrays; cache for :func:`dense_relu_backward`."""
    z, dense_cache = dense_forward(x, W, b)
    y, relu_cache = relu_forward(z)
    return y, (dense_cache, relu_cache)


def dense_relu_backward(dy, cache, *, need_dx: bool = True):
    """``(dx, dW, db)`` of the dense layer for the gradient ``dy · [x W + b > 0]``."""
    dense_cache, relu_cache = cache
    return dense_backward(relu_backward(dy, relu_cache), dense_cache, need_dx=need_dx)


def conv2d_relu_forward(x, W, b, stride: int = 1, padding: int = 0):
    """``y = max(conv2d(x, W, b), 0)`` on device arrays."""
    z, conv_cache = conv2d_forward(x, W, b, stride, padding)
    y, relu_cache = relu_forward(z)
    return y, (conv_cache, relu_cache)


def conv2d_relu_backward(dy, cache, *, need_dx: bool = True):
    """``(dx, dW, db)`` of the convolution for the gradient ``dy · [conv2d(x) > 0]``."""
    conv_cache, relu_cache = cache
    return conv2d_backward(relu_backward(dy, relu_cache), conv_cache, need_dx=need_dx)


def conv2d_relu_maxpool2d_forward(x, W, b, stride: int = 1, padding: int = 0, k: int = 2):
    """``y = maxpool2d(max(conv2d(x, W, b), 0), k)`` on device arrays."""
    z, conv_relu_cache = conv2d_relu_forward(x, W, b, stride, padding)
    y, pool_cache = maxpool2d_forward(z, k)
    return y, (conv_relu_cache, pool_cache)


def conv2d_relu_maxpool2d_backward(dy, cache, *, need_dx: bool = True):
    """``(dx, dW, db)`` of the convolution for the pooled gradient ``dy``."""
    conv_relu_cache, pool_cache = cache
    dz = maxpool2d_backward(dy, pool_cache)
    return conv2d_relu_backward(dz, conv_relu_cache, need_dx=need_dx)
