"""The ops contract on numba device arrays: inputs and outputs stay on the GPU.

Same names and equations as ``refimpl.ops`` (``kernels.CONTRACT``), with two differences
that keep a training step on the device: every array argument and result is a numba
device array, and the losses return the loss as a 1-element float64 device array (the
NumPy-level functions in ``kernels.cuda`` copy it out as a Python float).
"""

from .activations import (  # noqa: F401
    cos_backward,
    cos_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    sin_backward,
    sin_forward,
    tanh_backward,
    tanh_forward,
)
from .conv import conv2d_backward, conv2d_forward  # noqa: F401
from .dense import dense_backward, dense_forward  # noqa: F401
from .losses import mse, softmax_cross_entropy  # noqa: F401
from .pool import maxpool2d_backward, maxpool2d_forward  # noqa: F401
