"""Element-wise activations on device arrays, one thread per element.

Forward ``y = f(x)``, backward ``dx = dy · f'(·)`` with the derivative written in terms of
what the cache keeps (docs/methods.md §1):

=========  ===================  ============  ===========================
name       f(x)                 cache keeps   dx
=========  ===================  ============  ===========================
relu       max(x, 0)            x             dy if x > 0, else 0 (relu'(0) = 0)
tanh       tanh(x)              y             dy · (1 − y²)
sigmoid    1 / (1 + e^(−x))     y             dy · y · (1 − y)
sin        sin(x)               x             dy · cos(x)
cos        cos(x)               x             −dy · sin(x)
=========  ===================  ============  ===========================

Each rule is a small device function; one kernel factory turns a rule into a kernel, so
the launch code is written once.
"""

from __future__ import annotations

import math

from numba import cuda

from refimpl.ops.checks import check_elementwise_grad, check_float_any

from ._common import check_on_device, launch_1d


@cuda.jit(device=True)
def _relu(x):
    # NaN passes through (as np.maximum) so a NaN stays visible to the trainer's check.
    return x if x > 0 or math.isnan(x) else 0.0


@cuda.jit(device=True)
def _relu_grad(dy, x):
    return dy if x > 0 else 0.0  # dy where x > 0, else 0 (1.8): an inf or NaN dy gives 0


@cuda.jit(device=True)
def _tanh(x):
    return math.tanh(x)


@cuda.jit(device=True)
def _tanh_grad(dy, y):
    return dy * (1 - y * y)


@cuda.jit(device=True)
def _sigmoid(x):
    # Two branches so exp never overflows: e^(-x) for x >= 0, e^x otherwise.
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    z = math.exp(x)
    return z / (1 + z)


@cuda.jit(device=True)
def _sigmoid_grad(dy, y):
    return dy * y * (1 - y)


@cuda.jit(device=True)
def _sin(x):
    return math.sin(x)


@cuda.jit(device=True)
def _sin_grad(dy, x):
    return dy * math.cos(x)


@cuda.jit(device=True)
def _cos(x):
    return math.cos(x)


@cuda.jit(device=True)
def _cos_grad(dy, x):
    return -dy * math.sin(x)


def _unary_kernel(rule):
    @cuda.jit
    def kernel(x, y):
        i = cuda.grid(1)
        if i < x.size:
            y[i] = rule(x[i])

    return kernel


def _binary_kernel(rule):
    @cuda.jit
    def kernel(dy, saved, dx):
        i = cuda.grid(1)
        if i < dy.size:
            dx[i] = rule(dy[i], saved[i])

    return kernel


def _make_activation(name: str, rule, grad_rule, cache_output: bool):
    forward_kernel = _unary_kernel(rule)
    backward_kernel = _binary_kernel(grad_rule)

    def forward(x):
        check_on_device(x=x)
        check_float_any("x", x)
        y = cuda.device_array(x.shape, dtype=x.dtype)
        n = x.size
        if n:
            forward_kernel[launch_1d(n)](x.reshape(n), y.reshape(n))
        return y, (y if cache_output else x)

    def backward(dy, cache):
        check_on_device(dy=dy)
        check_elementwise_grad(dy, tuple(cache.shape), cache.dtype)  # cache: x or y
        dx = cuda.device_array(dy.shape, dtype=dy.dtype)
        n = dy.size
        if n:
            backward_kernel[launch_1d(n)](dy.reshape(n), cache.reshape(n), dx.reshape(n))
        return dx

    forward.__name__ = f"{name}_forward"
    backward.__name__ = f"{name}_backward"
    kept = "y" if cache_output else "x"
    forward.__doc__ = (
        f"{name} forward on a device array of any shape: ``(y, cache)``, cache keeps {kept}."
    )
    backward.__doc__ = f"{name} backward on device arrays: ``dx`` (see the module table)."
    return forward, backward


relu_forward, relu_backward = _make_activation("relu", _relu, _relu_grad, False)
tanh_forward, tanh_backward = _make_activation("tanh", _tanh, _tanh_grad, True)
sigmoid_forward, sigmoid_backward = _make_activation("sigmoid", _sigmoid, _sigmoid_grad, True)
sin_forward, sin_backward = _make_activation("sin", _sin, _sin_grad, False)
cos_forward, cos_backward = _make_activation("cos", _cos, _cos_grad, False)


def identity_forward(x):
    """identity forward on a device array: ``(x, cache)``, the array itself (not copied)."""
    check_on_device(x=x)
    check_float_any("x", x)
    return x, (tuple(x.shape), x.dtype)


def identity_backward(dy, cache):
    """identity backward on device arrays: ``dx = dy``."""
    shape, dtype = cache
    check_on_device(dy=dy)
    check_elementwise_grad(dy, shape, dtype)
    return dy
