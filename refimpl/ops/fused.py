"""Fused ops: a dense or conv layer followed by relu (and max pooling), written as the
composition of the basic ops (docs/methods.md §1, (1.19)–(1.21)).

``dense_relu_forward(x, W, b) = relu_forward(dense_forward(x, W, b))``,
``conv2d_relu_forward(x, W, b, s, p) = relu_forward(conv2d_forward(x, W, b, s, p))`` and
``conv2d_relu_maxpool2d_forward(x, W, b, s, p, k) =
maxpool2d_forward(conv2d_relu_forward(x, W, b, s, p), k)``; the backward passes run the
backward ops in reverse order.

:func:`compose_fused` writes these compositions once, over any set of basic ops: here over
the oracle's, which defines the fused ops of the contract (a backend's own fused kernel
must return the same numbers), and in ``refimpl.kernels.cuda.device`` over the CUDA kernels.

Examples
--------
dense+relu on one sample: the second output is cut by the relu, so it passes no gradient
to ``W``'s second column or ``b``'s second entry:

>>> import numpy as np
>>> from refimpl.ops import dense_relu_backward, dense_relu_forward
>>> W = np.array([[1.0, -1.0], [1.0, -1.0]])
>>> y, cache = dense_relu_forward(np.array([[1.0, 2.0]]), W, np.array([0.0, 1.0]))
>>> print(y)
[[3. 0.]]
>>> dx, dW, db = dense_relu_backward(np.array([[1.0, 1.0]]), cache)
>>> print(dW)
[[1. 0.]
 [2. 0.]]
>>> print(db)
[1. 0.]
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from refimpl.ops import activations, conv, dense, pool

#: The basic ops a composition is built from (attributes of the namespace it is given).
BASIC_OPS = (
    "dense_forward", "dense_backward", "conv2d_forward", "conv2d_backward",
    "relu_forward", "relu_backward", "maxpool2d_forward", "maxpool2d_backward",
)


def compose_fused(basic: Any) -> dict[str, Callable]:
    """The six fused functions built from the basic ops of ``basic``.

    Parameters
    ----------
    basic : module or namespace
        Any object with the attributes named in :data:`BASIC_OPS` (the oracle's ops, or a
        backend's). They are looked up once, here.

    Returns
    -------
    dict
        ``{"dense_relu_forward": ..., "dense_relu_backward": ..., "conv2d_relu_forward": ...,
        "conv2d_relu_backward": ..., "conv2d_relu_maxpool2d_forward": ...,
        "conv2d_relu_maxpool2d_backward": ...}``; every backward takes ``need_dx`` and
        returns ``(dx, dW, db)``.
    """
    missing = [name for name in BASIC_OPS if not callable(getattr(basic, name, None))]
    if missing:
        raise ValueError(f"basic must provide the ops {list(BASIC_OPS)}; it lacks {missing}")
    dense_forward, dense_backward = basic.dense_forward, basic.dense_backward
    conv2d_forward, conv2d_backward = basic.conv2d_forward, basic.conv2d_backward
    relu_forward, relu_backward = basic.relu_forward, basic.relu_backward
    maxpool2d_forward, maxpool2d_backward = basic.maxpool2d_forward, basic.maxpool2d_backward

    def dense_relu_forward(x, W, b):
        """``y = max(x W + b, 0)``; shapes as ``dense_forward``."""
        z, dense_cache = dense_forward(x, W, b)
        y, relu_cache = relu_forward(z)
        return y, (dense_cache, relu_cache)

    def dense_relu_backward(dy, cache, *, need_dx: bool = True):
        """``(dx, dW, db)`` of the dense layer for the gradient ``dy · [x W + b > 0]``."""
        dense_cache, relu_cache = cache
        return dense_backward(relu_backward(dy, relu_cache), dense_cache, need_dx=need_dx)

    def conv2d_relu_forward(x, W, b, stride: int = 1, padding: int = 0):
        """``y = max(conv2d(x, W, b), 0)``; shapes as ``conv2d_forward``."""
        z, conv_cache = conv2d_forward(x, W, b, stride, padding)
        y, relu_cache = relu_forward(z)
        return y, (conv_cache, relu_cache)

    def conv2d_relu_backward(dy, cache, *, need_dx: bool = True):
        """``(dx, dW, db)`` of the convolution for the gradient ``dy · [conv2d(x) > 0]``."""
        conv_cache, relu_cache = cache
        return conv2d_backward(relu_backward(dy, relu_cache), conv_cache, need_dx=need_dx)

    def conv2d_relu_maxpool2d_forward(x, W, b, stride: int = 1, padding: int = 0, k: int = 2):
        """``y = maxpool2d(max(conv2d(x, W, b), 0), k)``: (N, C_out, H_out // k, W_out // k)."""
        z, conv_relu_cache = conv2d_relu_forward(x, W, b, stride, padding)
        y, pool_cache = maxpool2d_forward(z, k)
        return y, (conv_relu_cache, pool_cache)

    def conv2d_relu_maxpool2d_backward(dy, cache, *, need_dx: bool = True):
        """``(dx, dW, db)`` of the convolution for the pooled gradient ``dy``: routed to each
        window's first maximum, masked by the relu, then through the convolution's backward."""
        conv_relu_cache, pool_cache = cache
        dz = maxpool2d_backward(dy, pool_cache)
        return conv2d_relu_backward(dz, conv_relu_cache, need_dx=need_dx)

    fused = (dense_relu_forward, dense_relu_backward, conv2d_relu_forward, conv2d_relu_backward,
             conv2d_relu_maxpool2d_forward, conv2d_relu_maxpool2d_backward)
    for function in fused:
        function.__qualname__ = function.__name__
    return {function.__name__: function for function in fused}


_ORACLE = compose_fused(SimpleNamespace(
    dense_forward=dense.dense_forward, dense_backward=dense.dense_backward,
    conv2d_forward=conv.conv2d_forward, conv2d_backward=conv.conv2d_backward,
    relu_forward=activations.relu_forward, relu_backward=activations.relu_backward,
    maxpool2d_forward=pool.maxpool2d_forward, maxpool2d_backward=pool.maxpool2d_backward,
))
dense_relu_forward = _ORACLE["dense_relu_forward"]
dense_relu_backward = _ORACLE["dense_relu_backward"]
conv2d_relu_forward = _ORACLE["conv2d_relu_forward"]
conv2d_relu_backward = _ORACLE["conv2d_relu_backward"]
conv2d_relu_maxpool2d_forward = _ORACLE["conv2d_relu_maxpool2d_forward"]
conv2d_relu_maxpool2d_backward = _ORACLE["conv2d_relu_maxpool2d_backward"]
