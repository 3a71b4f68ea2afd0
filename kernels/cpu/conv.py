"""2-D convolution on the CPU: parallel im2col / col2im in Numba around BLAS products.

Same math as :mod:`refimpl.ops.conv` (cross-correlation, zero padding, stride):
``y[n, o, i, j] = b[o] + Σ_{c,u,v} W[o, c, u, v] x̃[n, c, s i + u, s j + v]``.

Layout: the im2col matrix is stored transposed, ``cols`` of shape (C_in kh kw, N H_out W_out),
so every copy in im2col and col2im runs along image rows, and the three products (NumPy's
BLAS, which releases the GIL and uses its own thread pool) are

* forward  ``Y = W_m cols``          (C_out, N H_out W_out), then bias (+ relu) into NCHW,
* backward ``dW = dY colsᵀ``,  ``dcols = W_mᵀ dY``,  ``dx = col2im(dcols)``,

with ``W_m`` = W reshaped to (C_out, C_in kh kw). On ``lrpo_cnn`` the products take about
half of a conv layer's time and im2col/col2im the rest (single-thread profile in
docs/benchmarks.md); col2im adds the kernel offsets in the oracle's order.

The fused ``conv2d_relu_*`` pair applies relu in the same NCHW copy as the bias and agrees
with its oracle, :func:`refimpl.ops.fused.conv2d_relu_forward`. How many threads the Numba
loops use is the measured policy of :mod:`kernels.cpu.tuning`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from kernels.cpu import profile
from kernels.cpu.tuning import loop_threads
from refimpl.ops.checks import check_conv2d_args, check_conv2d_grad


@njit(cache=True, fastmath=False)
def _valid_range(offset, stride, size, count):
    """Indices ``j`` in [0, count) with ``0 <= j * stride + offset < size``, as (lo, hi)."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    last = (size - 1 - offset) // stride + 1 if size - 1 - offset >= 0 else 0
    return lo, max(lo, min(count, last))


# The copy loops index flat views with unsigned integers: Numba then drops the negative-index
# wrap-around test from every access, which halves the time of these short inner loops.
@njit(cache=True, parallel=True, fastmath=False)
def _im2col(x, kh, kw, stride, padding, h_out, w_out):
    """cols[(c, u, v), (n, i, j)] = x̃[n, c, s i + u, s j + v] (zero outside x)."""
    n_img, channels, height, width = x.shape
    plane = h_out * w_out
    n_cols = n_img * plane
    cols = np.empty((channels * kh * kw, n_cols), dtype=x.dtype)
    src, dst = x.reshape(-1), cols.reshape(-1)
    # One task per (channel, image): its plane is read kh * kw times while it is in cache
    # (measured 1.4-1.7x faster on lrpo_cnn's shapes than one task per (row, image)).
    for task in prange(channels * n_img):
        c = task // n_img
        n = task % n_img
        image = (n * channels + c) * height * width
        for u in range(kh):
            for v in range(kw):
                row = (c * kh + u) * kw + v
                j_lo, j_hi = _valid_range(v - padding, stride, width, w_out)
                for i in range(h_out):
                    start = row * n_cols + n * plane + i * w_out
                    r = i * stride + u - padding
                    if r < 0 or r >= height:
                        j_lo_row, j_hi_row = w_out, w_out
                    else:
                        j_lo_row, j_hi_row = j_lo, j_hi
                    for j in range(j_lo_row):
                        dst[uint64(start + j)] = 0
                    first = image + r * width + v - padding
                    if stride == 1:  # contiguous on both sides: LLVM vectorises this copy
                        for j in range(j_lo_row, j_hi_row):
                            dst[uint64(start + j)] = src[uint64(first + j)]
                    else:
                        for j in range(j_lo_row, j_hi_row):
                            dst[uint64(start + j)] = src[uint64(first + j * stride)]
                    for j in range(j_hi_row, w_out):
                        dst[uint64(start + j)] = 0
    return cols


@njit(cache=True, parallel=True, fastmath=False)
def _col2im(dcols, n_img, channels, height, width, kh, kw, stride, padding, h_out, w_out):
    """Adjoint of :func:`_im2col`; offsets (u, v) are added in the oracle's order."""
    plane = h_out * w_out
    n_cols = n_img * plane
    dx = np.zeros((n_img, channels, height, width), dtype=dcols.dtype)
    src, dst = dcols.reshape(-1), dx.reshape(-1)
    # Channel-major tasks: consecutive tasks read the same kh * kw rows of ``dcols`` at
    # consecutive offsets, sequential streams the prefetcher follows (as in _im2col).
    for task in prange(channels * n_img):
        c = task // n_img
        n = task % n_img
        image = (n * channels + c) * height * width
        for u in range(kh):
            i_lo, i_hi = _valid_range(u - padding, stride, height, h_out)
            for v in range(kw):
                j_lo, j_hi = _valid_range(v - padding, stride, width, w_out)
                row = ((c * kh + u) * kw + v) * n_cols + n * plane
                for i in range(i_lo, i_hi):
                    first = image + (i * stride + u - padding) * width + v - padding
                    start = row + i * w_out
                    if stride == 1:  # contiguous on both sides: vectorised
                        for j in range(j_lo, j_hi):
                            dst[uint64(first + j)] += src[uint64(start + j)]
                    else:
                        for j in range(j_lo, j_hi):
                            dst[uint64(first + j * stride)] += src[uint64(start + j)]
    return dx


@njit(cache=True, parallel=True, fastmath=False)
def _rows_to_nchw(out, b, n_img, relu):
    """(C_out, N P) product -> (N, C_out, P) plus bias, then max(., 0) when ``relu``."""
    c_out = out.shape[0]
    plane = out.shape[1] // n_img
    y = np.empty((n_img, c_out, plane), dtype=out.dtype)
    for task in prange(n_img * c_out):
        n = task // c_out
        o = task % c_out
        for p in range(plane):
            value = out[o, n * plane + p] + b[o]
            if relu and value < 0:
                value = 0
            y[n, o, p] = value
    return y


@njit(cache=True, parallel=True, fastmath=False)
def _nchw_to_rows(dy, y, relu):
    """(N, C_out, P) gradient -> (C_out, N P), masked by ``y > 0`` when ``relu``."""
    n_img, c_out, plane = dy.shape
    rows = np.empty((c_out, n_img * plane), dtype=dy.dtype)
    for task in prange(n_img * c_out):
        n = task // c_out
        o = task % c_out
        for p in range(plane):
            g = dy[n, o, p]
            if relu and not y[n, o, p] > 0:
                g = 0
            rows[o, n * plane + p] = g
    return rows


#: From these sizes on (output pixels N H_out W_out, and rows C_in kh kw of the column
#: matrix) the weight gradient is taken as (cols dYᵀ)ᵀ: OpenBLAS runs that orientation faster
#: than dY colsᵀ on lrpo_cnn's two inner convs (backward 6.4 -> 4.3 ms and 10.9 -> 9.8 ms,
#: interleaved single-thread CPU time) but slower on its first (9 rows: 3.6 -> 4.3 ms).
#: Other products keep the oracle's orientation, so their sums are rounded as the oracle's.
TRANSPOSED_DW_MIN_PIXELS = 4096
TRANSPOSED_DW_MIN_ROWS = 64


def _run_forward(x, W, b, stride, padding, relu):
    stride, padding, h_out, w_out = check_conv2d_args(x, W, b, stride, padding)
    x, W, b = (np.ascontiguousarray(a) for a in (x, W, b))
    n, c_out, kh, kw = x.shape[0], W.shape[0], W.shape[2], W.shape[3]
    with loop_threads():
        with profile.phase("im2col"):
            cols = _im2col(x, kh, kw, stride, padding, h_out, w_out)
        with profile.gemm("gemm Y=W.cols", c_out, cols.shape[0], cols.shape[1]):
            out = W.reshape(c_out, -1) @ cols
        with profile.phase("bias+relu, to NCHW" if relu else "bias, to NCHW"):
            y = _rows_to_nchw(out, b, n, relu)
    y = y.reshape(n, c_out, h_out, w_out)
    return y, (cols, W, x.shape, stride, padding, y if relu else None)


def _run_backward(dy, cache, need_dx):
    cols, W, x_shape, stride, padding, y = cache
    c_out, c_in, kh, kw = W.shape
    n, _, h, w = x_shape
    h_out, w_out = check_conv2d_grad(dy, x_shape, W, stride, padding)
    dy = np.ascontiguousarray(dy).reshape(n, c_out, h_out * w_out)
    relu = y is not None
    with loop_threads(), profile.phase("relu mask, to rows" if relu else "to rows"):
        dy_rows = _nchw_to_rows(dy, y.reshape(dy.shape) if relu else dy, relu)
    # NumPy's float32 pairwise sum, as the oracle's: a float64 sum in the pass above differs
    # from it by more than 1e-5 of |db| where the terms cancel.
    with profile.phase("bias grad"):
        db = dy_rows.sum(axis=1)
    if dy_rows.shape[1] >= TRANSPOSED_DW_MIN_PIXELS and cols.shape[0] >= TRANSPOSED_DW_MIN_ROWS:
        with profile.gemm("gemm dWT=cols.dYT", cols.shape[0], dy_rows.shape[1], c_out):
            dW = np.ascontiguousarray((cols @ dy_rows.T).T).reshape(W.shape)
    else:
        with profile.gemm("gemm dW=dY.colsT", c_out, dy_rows.shape[1], cols.shape[0]):
            dW = (dy_rows @ cols.T).reshape(W.shape)
    if not need_dx:
        return None, dW, db
    with profile.gemm("gemm dcols=WT.dY", cols.shape[0], c_out, dy_rows.shape[1]):
        dcols = W.reshape(c_out, -1).T @ dy_rows
    with loop_threads(), profile.phase("col2im"):
        dx = _col2im(dcols, n, c_in, h, w, kh, kw, stride, padding, h_out, w_out)
    return dx, dW, db


def conv2d_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, tuple]:
    """Cross-correlation; x (N, C_in, H, W), W (C_out, C_in, kh, kw), b (C_out,).

    Returns y (N, C_out, H_out, W_out), ``H_out = (H + 2 padding - kh) // stride + 1``,
    and an opaque cache for :func:`conv2d_backward`.
    """
    return _run_forward(x, W, b, stride, padding, False)


def conv2d_backward(
    dy: np.ndarray, cache: tuple, *, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``dW = dY colsᵀ``, ``db = Σ_{n,i,j} dy``, ``dx = col2im(W_mᵀ dY)``.

    ``need_dx=False`` (an extension beyond the contract) skips the product and col2im of
    ``dx`` and returns None for it, for a model's first layer.
    """
    return _run_backward(dy, cache, need_dx)


def conv2d_relu_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, tuple]:
    """Fused ``max(conv2d(x, W, b) , 0)``: bias and relu applied in the NCHW copy."""
    return _run_forward(x, W, b, stride, padding, True)


def conv2d_relu_backward(
    dy: np.ndarray, cache: tuple, *, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of the fused pair: the conv backward of ``dy · [y > 0]``."""
    return _run_backward(dy, cache, need_dx)
