"""2-D convolution on the CPU: parallel im2col / col2im in Numba around BLAS products.

Same math as :mod:`refimpl.ops.conv` (cross-correlation, zero padding, stride):
``y[n, o, i, j] = b[o] + Σ_{c,u,v} W[o, c, u, v] x̃[n, c, s i + u, s j + v]``.

Layout: the im2col matrix is stored transposed, ``cols`` of shape (C_in kh kw, N H_out W_out),
so every copy in im2col and col2im runs along image rows, and the three products (NumPy's
BLAS, which releases the GIL and uses its own thread pool) are

* forward  ``Y = W_m cols``          (C_out, N H_out W_out), then bias (+ relu) into NCHW,
* backward ``dW = dY colsᵀ``,  ``dcols = W_mᵀ dY``,  ``dx = col2im(dcols)``,

with ``W_m`` = W reshaped to (C_out, C_in kh kw); col2im adds the kernel offsets in the
oracle's order. Where the time goes is measured in docs/benchmarks.md.

The fused ``conv2d_relu_*`` pair applies relu in the same NCHW copy as the bias and agrees
with its oracle, :func:`refimpl.ops.fused.conv2d_relu_forward`; ``conv2d_relu_maxpool2d_*``
also pools there, with the pooling loops of :mod:`refimpl.kernels.numba.pool`. How many
threads the Numba loops use is the measured policy of :mod:`refimpl.kernels.numba.tuning`.

Other paths. A 3x3, stride-1, float32 convolution may run as Winograd F(2x2, 3x3)
(:mod:`refimpl.kernels.numba.winograd`, fewer multiplications; docs/methods.md §1 gives the
identity and its float32 error bound) and a stride-1 convolution of a one-channel input as
direct loops (:mod:`refimpl.kernels.numba.conv_first`). Which path a layer shape takes is
measured per machine (:func:`refimpl.kernels.numba.tuning.conv_path`); im2col is the fallback
and the only path of float64 3x3 layers and of every other shape. Those paths produce the
convolution in NCHW; the relu, the pooling and the bias gradient are applied here as the
oracle applies them (:func:`_path_forward`, :func:`_path_backward`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange, uint64

from refimpl.kernels.numba import conv_first, profile, tuning, winograd
from refimpl.kernels.numba.activations import relu_backward
from refimpl.kernels.numba.pool import _backward as route_planes
from refimpl.kernels.numba.pool import pool_plane, pool_plane_2, route_plane
from refimpl.kernels.numba.tuning import loop_threads
from refimpl.ops.checks import (
    check_conv2d_args,
    check_conv2d_grad,
    check_maxpool2d_args,
    check_maxpool2d_grad,
)


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
    # One task per (channel, image): its plane is read kh * kw times while it is in cache.
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
#: matrix) the weight gradient is taken as (cols dYᵀ)ᵀ, the orientation OpenBLAS measured
#: faster there (docs/benchmarks.md); smaller products keep the oracle's orientation, so their
#: sums are rounded as the oracle's.
TRANSPOSED_DW_MIN_PIXELS = 4096
TRANSPOSED_DW_MIN_ROWS = 64


def _run_forward(x, W, b, stride, padding, relu):
    stride, padding, h_out, w_out = check_conv2d_args(x, W, b, stride, padding)
    x, W, b = (np.ascontiguousarray(a) for a in (x, W, b))
    n, c_out, kh, kw = x.shape[0], W.shape[0], W.shape[2], W.shape[3]
    path = tuning.conv_path(x.shape, W.shape, stride, padding, x.dtype)
    if path != "im2col":
        return _path_forward(path, x, W, b, padding, relu, 0, h_out, w_out)
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
    if isinstance(cache, PathCache):
        return _path_backward(dy, cache, need_dx)
    cols, W, x_shape, stride, padding, y = cache
    c_out = W.shape[0]
    n = x_shape[0]
    h_out, w_out = check_conv2d_grad(dy, x_shape, W, stride, padding)
    dy = np.ascontiguousarray(dy).reshape(n, c_out, h_out * w_out)
    relu = y is not None
    with loop_threads(), profile.phase("relu mask, to rows" if relu else "to rows"):
        dy_rows = _nchw_to_rows(dy, y.reshape(dy.shape) if relu else dy, relu)
    return _backward_from_rows(dy_rows, cols, W, x_shape, stride, padding, h_out, w_out,
                               need_dx)


def _backward_from_rows(dy_rows, cols, W, x_shape, stride, padding, h_out, w_out, need_dx,
                        db=None):
    """``db`` (unless given), ``dW`` and (``need_dx``) ``dx`` from the gradient in rows
    (C_out, N P)."""
    c_out, c_in, kh, kw = W.shape
    n, _, h, w = x_shape
    # NumPy's float32 pairwise sum, as the oracle's: a float64 sum in the pass above differs
    # from it by more than 1e-5 of |db| where the terms cancel.
    if db is None:
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


# -- conv + relu + max pooling as one step --------------------------------------------------
# The pooling is refimpl.kernels.numba.pool's, inlined into these kernels. Numba's disk cache
# keys a kernel on its own file only: after editing pool.py, touch this file (or clear
# __pycache__) so that these kernels are compiled again.
@njit(cache=True, parallel=True, fastmath=False)
def _rows_to_pooled(out, b, n_img, h_out, w_out, k, y, argmax):  # pragma: no cover - compiled
    """Fill ``y`` (N, C_out, H_out // k, W_out // k) with the max pooling of
    ``r = max(out + b, 0)``, and ``argmax`` with the offset of each window's first maximum
    (-1 where the window holds NaN or its maximum is not > 0, so the relu passes nothing);
    ``out`` is the (C_out, N P) product. The relu output r itself is never stored."""
    c_out = out.shape[0]
    planes = out.reshape(c_out, n_img, h_out, w_out)
    for task in prange(n_img * c_out):
        n, o = task // c_out, task % c_out
        if k == 2:
            pool_plane_2(planes[o, n], b[o], True, y[n, o], argmax[n, o])
        else:
            pool_plane(planes[o, n], k, b[o], True, y[n, o], argmax[n, o])


@njit(cache=True, parallel=True, fastmath=False)
def _pooled_to_rows(dy, argmax, h_out, w_out, k):  # pragma: no cover - compiled
    """The gradient of ``maxpool(relu(conv))`` at the conv output, in rows (C_out, N P):
    ``g`` at a window's arg-max (none where the relu cut the maximum: see
    :func:`_rows_to_pooled`), 0 elsewhere in the window and at pixels no window covers (what
    the oracle's pool then relu backward give)."""
    n_img, c_out = dy.shape[0], dy.shape[1]
    rows = np.empty((c_out, n_img * h_out * w_out), dtype=dy.dtype)
    planes = rows.reshape(c_out, n_img, h_out, w_out)
    for task in prange(n_img * c_out):
        n, o = task // c_out, task % c_out
        if k == 2:  # a constant window size: the compiler unrolls the window loops
            route_plane(dy[n, o], argmax[n, o], 2, planes[o, n])
        else:
            route_plane(dy[n, o], argmax[n, o], k, planes[o, n])
    return rows


@njit(cache=True, parallel=True, fastmath=False)
def _pooled_bias_grad(y, dy):  # pragma: no cover - compiled
    """``db[o] = sum over n, i, j of dy[n, o, i, j] where y[n, o, i, j] > 0`` (so NaN and inf
    in dy reach db only where the pooled output passed the relu), one channel per task,
    summed in float64 with four interleaved partial sums per plane in a fixed order (the
    same bits on every run); the oracle sums in the array's dtype, so the two agree to the
    dtype's tolerance (docs/methods.md §1), not bit for bit."""
    n_img, c_out = y.shape[0], y.shape[1]
    size = y.shape[2] * y.shape[3]
    ys, gs = y.reshape(n_img, c_out, size), dy.reshape(n_img, c_out, size)
    db = np.empty(c_out, dtype=dy.dtype)
    for o in prange(c_out):
        total = 0.0
        for n in range(n_img):
            yp, gp = ys[n, o], gs[n, o]
            s0 = s1 = s2 = s3 = 0.0
            m = 0
            while m + 4 <= size:  # loads before the selects: no branch on the data
                g0, g1, g2, g3 = gp[m], gp[m + 1], gp[m + 2], gp[m + 3]
                y0, y1, y2, y3 = yp[m], yp[m + 1], yp[m + 2], yp[m + 3]
                s0 += g0 if y0 > 0 else 0.0
                s1 += g1 if y1 > 0 else 0.0
                s2 += g2 if y2 > 0 else 0.0
                s3 += g3 if y3 > 0 else 0.0
                m += 4
            while m < size:
                g0, y0 = gp[m], yp[m]
                s0 += g0 if y0 > 0 else 0.0
                m += 1
            total += (s0 + s1) + (s2 + s3)
        db[o] = total
    return db


#: From this many conv output pixels (N H_out W_out) on, the fused step's bias gradient is
#: summed over the pooled gradient (a k² times smaller array; docs/benchmarks.md); smaller
#: batches sum the rows, rounded as the oracle's sum.
POOLED_DB_MIN_PIXELS = 4096


def conv2d_relu_maxpool2d_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0, k: int = 2
) -> tuple[np.ndarray, tuple]:
    """Fused ``maxpool2d(max(conv2d(x, W, b), 0), k)``, without storing the relu output.

    Equals ``maxpool2d_forward(conv2d_relu_forward(x, W, b, stride, padding)[0], k)`` (the
    same sums, the same maxima: the oracle,
    :func:`refimpl.ops.fused.conv2d_relu_maxpool2d_forward`); the op of
    :class:`refimpl.kernels.plan.Conv2dReLUPool`.
    """
    stride, padding, h_out, w_out = check_conv2d_args(x, W, b, stride, padding)
    k = check_maxpool2d_args(np.empty((1, 1, h_out, w_out), x.dtype), k)[0]
    x, W, b = (np.ascontiguousarray(a) for a in (x, W, b))
    n, c_out, kh, kw = x.shape[0], W.shape[0], W.shape[2], W.shape[3]
    path = tuning.conv_path(x.shape, W.shape, stride, padding, x.dtype, pool=k)
    if path != "im2col":
        return _path_forward(path, x, W, b, padding, True, k, h_out, w_out)
    shape = (n, c_out, h_out // k, w_out // k)
    y = np.empty(shape, dtype=x.dtype)
    argmax = np.empty(shape, dtype=np.int8 if k * k <= 127 else np.int32)
    with loop_threads():
        with profile.phase("im2col"):
            cols = _im2col(x, kh, kw, stride, padding, h_out, w_out)
        with profile.gemm("gemm Y=W.cols", c_out, cols.shape[0], cols.shape[1]):
            out = W.reshape(c_out, -1) @ cols
        with profile.phase("bias+relu+maxpool"):
            _rows_to_pooled(out, b, n, h_out, w_out, k, y, argmax)
    return y, (cols, W, x.shape, stride, padding, y, argmax, h_out, w_out, k)


def conv2d_relu_maxpool2d_backward(
    dy: np.ndarray, cache: tuple, *, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_relu_maxpool2d_forward`: the conv backward of the pooling
    and relu gradients, built in one pass from ``dy`` (N, C_out, H_out // k, W_out // k)."""
    if isinstance(cache, PathCache):
        return _path_backward(dy, cache, need_dx)
    cols, W, x_shape, stride, padding, y, argmax, h_out, w_out, k = cache
    check_maxpool2d_grad(dy, (x_shape[0], W.shape[0], h_out, w_out), k, y.dtype)
    dy = np.ascontiguousarray(dy)
    db = None
    if x_shape[0] * h_out * w_out >= POOLED_DB_MIN_PIXELS:
        # The rows hold g at each window's arg-max where the maximum passed the relu, and 0
        # elsewhere: the same sum from the k² times smaller pooled arrays.
        with loop_threads(), profile.phase("bias grad (pooled)"):
            db = _pooled_bias_grad(y, dy)
    with loop_threads(), profile.phase("maxpool+relu grad, to rows"):
        dy_rows = _pooled_to_rows(dy, argmax, h_out, w_out, k)
    return _backward_from_rows(dy_rows, cols, W, x_shape, stride, padding, h_out, w_out,
                               need_dx, db)


# -- the Winograd and direct paths -------------------------------------------------------------
class PathCache(NamedTuple):
    """The cache of a convolution that ran on ``path`` (``"winograd"`` or ``"direct"``)."""

    path: str
    inner: tuple  # the path module's own cache
    x_shape: tuple
    W: np.ndarray
    padding: int
    out_size: tuple  # (H_out, W_out) of the convolution
    y: np.ndarray | None  # the relu (or pooled) output, None without relu
    argmax: np.ndarray | None  # the pooling's arg-max offsets, None without pooling
    k: int  # the pooling window, 0 without pooling


_PATHS = {"winograd": winograd, "direct": conv_first}


@njit(cache=True, parallel=True, fastmath=False)
def _relu_pool_batch_last(zt, k, y, argmax):  # pragma: no cover - compiled
    """``y[n, o] = maxpool2d(max(zt[o, :, :, n], 0), k)`` from the batch-last conv output
    ``zt`` (C_out, rows, cols, N) of the Winograd path, read in place; arg-max offsets in
    ``argmax`` (-1 where the window holds NaN or its maximum is not > 0)."""
    n_img, c_out = y.shape[0], y.shape[1]
    zero = zt.dtype.type(0)
    for task in prange(n_img * c_out):
        n, o = task // c_out, task % c_out
        if k == 2:
            pool_plane_2(zt[o, :, :, n], zero, True, y[n, o], argmax[n, o])
        else:
            pool_plane(zt[o, :, :, n], k, zero, True, y[n, o], argmax[n, o])


def _path_forward(path, x, W, b, padding, relu, k, h_out, w_out):
    """Forward on ``path`` (contiguous, checked arguments); ``k > 0`` pools after the relu."""
    module = _PATHS[path]
    argmax = None
    if k:
        shape = (x.shape[0], W.shape[0], h_out // k, w_out // k)
        argmax = np.empty(shape, dtype=np.int8 if k * k <= 127 else np.int32)
    with loop_threads():
        if not k:
            y, inner = module.forward(x, W, b, padding, relu)
        elif path == "direct":  # pooled as each plane is finished
            y, inner = module.forward_pooled(x, W, b, padding, k, argmax)
        else:  # pooled from the transform's batch-last output, never stored as NCHW
            zt, inner = module.forward_batch_last(x, W, b, padding, False)
            y = np.empty(argmax.shape, dtype=x.dtype)
            with profile.phase("relu+maxpool"):
                _relu_pool_batch_last(zt, k, y, argmax)
    return y, PathCache(path, inner, x.shape, W, padding, (h_out, w_out), y if relu else None,
                        argmax, k)


def _path_backward(dy, cache, need_dx):
    """Backward of :func:`_path_forward`: ``g``, the gradient at the conv output, is what the
    oracle's pooling and relu backward give (a selection), and ``db`` its sum as the oracle
    sums it; ``dW`` and ``dx`` come from the path."""
    x_shape, W, padding, y, argmax, k = (cache.x_shape, cache.W, cache.padding, cache.y,
                                          cache.argmax, cache.k)
    (n, c_out), (h_out, w_out) = (x_shape[0], W.shape[0]), cache.out_size
    module = _PATHS[cache.path]
    if not k:
        check_conv2d_grad(dy, x_shape, W, 1, padding)
        dy = np.ascontiguousarray(dy)
        g = dy if y is None else relu_backward(dy, y)  # y > 0 exactly where x > 0
        with loop_threads():
            dx, dW = module.backward(g, cache.inner, need_dx)
        with profile.phase("bias grad"):
            return dx, dW, g.sum(axis=(0, 2, 3))
    check_maxpool2d_grad(dy, (n, c_out, h_out, w_out), k, y.dtype)
    dy = np.ascontiguousarray(dy)
    with loop_threads():
        if cache.path == "direct" and n * h_out * w_out >= POOLED_DB_MIN_PIXELS:
            # dW routes the pooled gradient itself; db as conv2d_relu_maxpool2d_backward's.
            dx, dW = module.backward(dy, cache.inner, need_dx, argmax, k)
            with profile.phase("bias grad (pooled)"):
                return dx, dW, _pooled_bias_grad(y, dy)
        with profile.phase("maxpool+relu grad"):
            g = route_planes(dy, argmax, h_out, w_out, k)
        dx, dW = module.backward(g, cache.inner, need_dx)
    with profile.phase("bias grad"):
        return dx, dW, g.sum(axis=(0, 2, 3))


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

    ``need_dx=False`` (a keyword of the contract, ``refimpl.kernels.NEED_DX``) skips the
    product and col2im of ``dx`` and returns None for it, for a model's first layer.
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
