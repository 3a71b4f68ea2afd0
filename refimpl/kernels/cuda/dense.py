"""Dense layer on device arrays: ``y = x W + b`` and its backward, with a tiled matmul.

Equations (docs/methods.md §1): ``y = x W + b``; ``dx = dy Wᵀ``, ``dW = xᵀ dy``, ``db = Σ_rows dy``.
One matmul kernel serves all three products through its transpose flags.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from refimpl.ops.checks import check_dense_args, check_dense_grad

from ._common import check_on_device, for_dtypes, is_simulator, launch_1d

#: Side of the square shared-memory tiles of the matmul (TILE x TILE threads per block):
#: 16 on a GPU; 8 on the simulator, where each thread is a Python thread and a smaller tile
#: lets test shapes span several tiles cheaply (same kernel code either way).
TILE = 8 if is_simulator else 16


def _make_gemm(scalar: type):
    @cuda.jit
    def gemm(a, b, c, trans_a, trans_b, bias, use_bias):
        """c[i, j] = sum_k op(a)[i, k] op(b)[k, j] (+ bias[j]); op transposes when flagged.

        Each block computes a TILE x TILE tile of ``c``; the inner dimension is walked in
        TILE-wide steps, staging one tile of each operand in shared memory.
        """
        tile_a = cuda.shared.array((TILE, TILE), scalar)
        tile_b = cuda.shared.array((TILE, TILE), scalar)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        n_rows, n_cols = c.shape
        inner = a.shape[0] if trans_a else a.shape[1]
        acc = scalar(0)
        for start in range(0, inner, TILE):
            k = start + tx
            if row < n_rows and k < inner:
                tile_a[ty, tx] = a[k, row] if trans_a else a[row, k]
            else:
                tile_a[ty, tx] = scalar(0)
            k = start + ty
            if k < inner and col < n_cols:
                tile_b[ty, tx] = b[col, k] if trans_b else b[k, col]
            else:
                tile_b[ty, tx] = scalar(0)
            cuda.syncthreads()
            for q in range(TILE):
                acc += tile_a[ty, q] * tile_b[q, tx]
            cuda.syncthreads()
        if row < n_rows and col < n_cols:
            if use_bias:
                acc += bias[col]
            c[row, col] = acc

    return gemm


def _make_column_sum(scalar: type):
    @cuda.jit
    def column_sum(m, out):
        """out[j] = sum_i m[i, j], one thread per column."""
        col = cuda.grid(1)
        if col < out.size:
            acc = scalar(0)
            for row in range(m.shape[0]):
                acc += m[row, col]
            out[col] = acc

    return column_sum


_GEMM = for_dtypes(_make_gemm)
_COLUMN_SUM = for_dtypes(_make_column_sum)


def matmul(a, b, trans_a: bool = False, trans_b: bool = False, bias=None):
    """Return ``op(a) @ op(b) (+ bias)`` as a new device array (no host copy)."""
    n_rows = a.shape[1] if trans_a else a.shape[0]
    inner_a = a.shape[0] if trans_a else a.shape[1]
    inner_b = b.shape[1] if trans_b else b.shape[0]
    n_cols = b.shape[0] if trans_b else b.shape[1]
    if inner_a != inner_b:
        raise ValueError(f"matmul inner dimensions differ: {inner_a} vs {inner_b}")
    c = cuda.device_array((n_rows, n_cols), dtype=a.dtype)
    grid = (max(1, math.ceil(n_cols / TILE)), max(1, math.ceil(n_rows / TILE)))
    use_bias = bias is not None
    _GEMM[np.dtype(a.dtype)][grid, (TILE, TILE)](
        a, b, c, trans_a, trans_b, bias if use_bias else c.reshape(c.size), use_bias
    )
    return c


def dense_forward(x, W, b):
    """``y = x W + b`` on device arrays.

    Parameters
    ----------
    x : device array (N, in)
    W : device array (in, out)
    b : device array (out,)

    Returns
    -------
    y : device array (N, out)
    cache : opaque, read by :func:`dense_backward`
    """
    check_on_device(x=x, W=W, b=b)
    check_dense_args(x, W, b)
    return matmul(x, W, bias=b), (x, W)


def dense_backward(dy, cache, *, need_dx: bool = True):
    """``dx = dy Wᵀ``, ``dW = xᵀ dy``, ``db = Σ_rows dy`` on device arrays.

    Parameters
    ----------
    dy : device array (N, out)
    cache : from :func:`dense_forward`
    need_dx : bool, keyword-only; False skips ``dx`` and returns None for it

    Returns
    -------
    dx (N, in) or None, dW (in, out), db (out,) : device arrays
    """
    x, W = cache
    check_on_device(dy=dy)
    check_dense_grad(dy, x, W)
    dx = matmul(dy, W, trans_b=True) if need_dx else None
    dW = matmul(x, dy, trans_a=True)
    db = cuda.device_array(W.shape[1], dtype=dy.dtype)
    _COLUMN_SUM[np.dtype(dy.dtype)][launch_1d(db.size)](dy, db)
    return dx, dW, db
