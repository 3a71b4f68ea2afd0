"""Dense (affine) layer on the CPU: BLAS products, bias (and relu) added in one Numba pass.

Same math as :mod:`refimpl.ops.dense`: ``y = x W + b``; ``dx = dy Wᵀ``, ``dW = xᵀ dy``,
``db = Σ_n dy``. The fused ``dense_relu_*`` pair computes ``relu(x W + b)`` in one pass
over the output and agrees with its oracle, :func:`refimpl.ops.fused.dense_relu_forward`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from refimpl.kernels.numba import profile
from refimpl.ops.checks import check_dense_args, check_dense_grad


# Dense outputs are small (batch x features): a single thread beats waking a second one.
@njit(cache=True, fastmath=False)
def _add_bias(y, b, relu):
    """In place: ``y[n, :] += b``, then ``max(., 0)`` when ``relu`` (NaN kept, as np.maximum)."""
    rows, cols = y.shape
    for i in range(rows):
        for j in range(cols):
            v = y[i, j] + b[j]
            if relu and v < 0:
                v = 0
            y[i, j] = v


def _forward(x, W, b, relu):
    with profile.gemm("gemm y=x.W", x.shape[0], x.shape[1], W.shape[1]):
        y = x @ W
    with profile.phase("bias+relu" if relu else "bias"):
        _add_bias(y, b, relu)
    return y


@njit(cache=True, fastmath=False)
def _relu_mask(dy, y):
    """``dy · [y > 0]`` (y is the relu output, so ``y > 0`` iff the pre-activation was)."""
    out = np.empty_like(dy)
    rows, cols = dy.shape
    for i in range(rows):
        for j in range(cols):
            out[i, j] = dy[i, j] if y[i, j] > 0 else 0
    return out


def _writable(out, W) -> bool:
    """Whether ``out`` is a pair (dW, db) that the products can be written into."""
    if out is None:
        return False
    dW, db = out
    return (isinstance(dW, np.ndarray) and isinstance(db, np.ndarray)
            and dW.shape == W.shape and db.shape == (W.shape[1],)
            and dW.dtype == db.dtype == W.dtype and dW.flags.c_contiguous
            and db.flags.c_contiguous and dW.flags.writeable and db.flags.writeable)


def _backward(dy, x, W, need_dx, out=None):
    dx = None
    if need_dx:
        with profile.gemm("gemm dx=dy.WT", dy.shape[0], dy.shape[1], W.shape[0]):
            dx = dy @ W.T
    # The same BLAS call and reduction either way; ``out`` only spares the caller a copy.
    into = _writable(out, W)
    with profile.gemm("gemm dW=xT.dy", x.shape[1], x.shape[0], dy.shape[1]):
        dW = np.dot(x.T, dy, out=out[0]) if into else x.T @ dy
    with profile.phase("bias grad"):
        db = np.sum(dy, axis=0, out=out[1]) if into else dy.sum(axis=0)
    return dx, dW, db


def _check_grad(dy, x, W) -> np.ndarray:
    check_dense_grad(dy, x, W)
    return np.ascontiguousarray(dy)


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``y = x W + b``; x (N, in), W (in, out), b (out,) -> y (N, out), cache."""
    check_dense_args(x, W, b)
    x, W, b = (np.ascontiguousarray(a) for a in (x, W, b))
    return _forward(x, W, b, False), (x, W)


def dense_backward(
    dy: np.ndarray, cache: tuple, *, need_dx: bool = True, out: tuple | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``dx = dy Wᵀ``, ``dW = xᵀ dy``, ``db = Σ_n dy``.

    ``need_dx=False`` (a keyword of the contract, ``refimpl.kernels.NEED_DX``) skips ``dx``
    and returns None for it: the first layer of a model needs no input gradient.
    ``out=(dW, db)`` (an extension beyond the contract, listed in
    ``refimpl.kernels.numba.GRADS_OUT``): C-contiguous arrays of the gradients' shapes and
    dtype that receive them, and are returned; the same numbers, without the copy into a
    layer's gradient buffers (:mod:`refimpl.kernels.plan` passes them). Arrays that do not
    fit are ignored.
    """
    x, W = cache
    return _backward(_check_grad(dy, x, W), x, W, need_dx, out)


def dense_relu_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Fused ``y = max(x W + b, 0)``; equals ``relu_forward(dense_forward(x, W, b)[0])``."""
    check_dense_args(x, W, b)
    x, W, b = (np.ascontiguousarray(a) for a in (x, W, b))
    y = _forward(x, W, b, True)
    return y, (x, W, y)


def dense_relu_backward(
    dy: np.ndarray, cache: tuple, *, need_dx: bool = True, out: tuple | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of the fused pair: the dense backward of ``dy · [y > 0]`` (``out`` as in
    :func:`dense_backward`)."""
    x, W, y = cache
    dy = _check_grad(dy, x, W)
    with profile.phase("relu mask"):
        dy = _relu_mask(dy, y)
    return _backward(dy, x, W, need_dx, out)
