"""Fused ops: a dense or conv layer followed by relu (and max pooling), written as the
composition of the basic ops.

``dense_relu_forward(x, W, b) = relu_forward(dense_forward(x, W, b))``,
``conv2d_relu_forward(x, W, b, s, p) = relu_forward(conv2d_forward(x, W, b, s, p))`` and
``conv2d_relu_maxpool2d_forward(x, W, b, s, p, k) =
maxpool2d_forward(conv2d_relu_forward(x, W, b, s, p), k)``; the backward passes run the
backward ops in reverse order. Here they are the oracle of the
fast backends' fused kernels (``refimpl.kernels.numba`` adds bias and relu in one pass over the output),
so the numbers of a fused op are those of the two ops in turn.
"""

from __future__ import annotations

import numpy as np

from refimpl.ops.activations import relu_backward, relu_forward
from refimpl.ops.conv import conv2d_backward, conv2d_forward
from refimpl.ops.dense import dense_backward, dense_forward
from refimpl.ops.pool import maxpool2d_backward, maxpool2d_forward

Grads = tuple[np.ndarray | None, np.ndarray, np.ndarray]


def dense_relu_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``y = max(x W + b, 0)``; shapes as :func:`~refimpl.ops.dense.dense_forward`."""
    z, dense_cache = dense_forward(x, W, b)
    y, relu_cache = relu_forward(z)
    return y, (dense_cache, relu_cache)


def dense_relu_backward(dy: np.ndarray, cache: tuple, *, need_dx: bool = True) -> Grads:
    """``(dx, dW, db)`` of the dense layer for the gradient ``dy · [x W + b > 0]``."""
    dense_cache, relu_cache = cache
    return dense_backward(relu_backward(dy, relu_cache), dense_cache, need_dx=need_dx)


def conv2d_relu_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, tuple]:
    """``y = max(conv2d(x, W, b), 0)``; shapes as :func:`~refimpl.ops.conv.conv2d_forward`."""
    z, conv_cache = conv2d_forward(x, W, b, stride, padding)
    y, relu_cache = relu_forward(z)
    return y, (conv_cache, relu_cache)


def conv2d_relu_backward(dy: np.ndarray, cache: tuple, *, need_dx: bool = True) -> Grads:
    """``(dx, dW, db)`` of the convolution for the gradient ``dy · [conv2d(x) > 0]``."""
    conv_cache, relu_cache = cache
    return conv2d_backward(relu_backward(dy, relu_cache), conv_cache, need_dx=need_dx)


def conv2d_relu_maxpool2d_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0, k: int = 2
) -> tuple[np.ndarray, tuple]:
    """``y = maxpool2d(max(conv2d(x, W, b), 0), k)``: (N, C_out, H_out // k, W_out // k)."""
    z, conv_relu_cache = conv2d_relu_forward(x, W, b, stride, padding)
    y, pool_cache = maxpool2d_forward(z, k)
    return y, (conv_relu_cache, pool_cache)


def conv2d_relu_maxpool2d_backward(dy: np.ndarray, cache: tuple, *, need_dx: bool = True) -> Grads:
    """``(dx, dW, db)`` of the convolution for the pooled gradient ``dy``: routed to each
    window's first maximum, masked by the relu, then through the convolution's backward."""
    conv_relu_cache, pool_cache = cache
    dz = maxpool2d_backward(dy, pool_cache)
    return conv2d_relu_backward(dz, conv_relu_cache, need_dx=need_dx)
