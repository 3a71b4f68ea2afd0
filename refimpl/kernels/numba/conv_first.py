"""Stride-1 convolution of a one-channel input (a model's first layer) as direct Numba loops.

Same math as :mod:`refimpl.ops.conv` with ``C_in = 1``:
``y[n, o, i, j] = b[o] + Σ_{u,v} W[o, 0, u, v] x̃[n, 0, i + u, j + v]``. With ``K = kh kw``
terms (9 for a 3x3 kernel) the im2col product is too thin for BLAS to pay: it writes and reads
back the whole (C_out, N H_out W_out) output once more than the arithmetic needs. Here one task
per image keeps the zero-padded image in cache and, for each block of two output channels,
sweeps it once per kernel offset with contiguous, vectorised loops; the bias, the relu and the
max pooling are applied as each output plane is finished, so the unpooled output is never
stored. The weight gradient ``dW[o, 0, u, v] = Σ_{n,i,j} g[n, o, i, j] x̃[n, 0, i + u, j + v]``
is summed per image in float64 (one partial sum per output column, so the loop vectorises
without reassociating a sum; after a max pooling, only the windows' arg-max pixels, the only
nonzero gradients), the images' sums added in order and rounded once. The input gradient, which
a first layer does not need (``need_dx=False``), is the same scatter as col2im.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refimpl.kernels.numba import profile
from refimpl.kernels.numba.pool import _backward as route_planes
from refimpl.kernels.numba.pool import pool_plane, pool_plane_2

# The pooling loops are inlined into these kernels, and Numba's disk cache keys a kernel on its
# own file only: after editing pool.py, touch this file so that they are compiled again.

#: Output channels computed per sweep of an image (one load of each input value feeds both;
#: with more, the loop would write more arrays than the compiler checks for overlap, and it
#: would not vectorise).
BLOCK = 2


@njit(cache=True, parallel=True, fastmath=False)
def _forward(x, W, b, padding, h_out, w_out, mode, k, y, argmax):  # pragma: no cover - compiled
    """Fill ``y`` with ``conv + b`` (mode 0), its relu (mode 1), or the max pooling of window k
    of its relu with the arg-max offsets in ``argmax`` (mode 2)."""
    n_img, height, width = x.shape[0], x.shape[2], x.shape[3]
    c_out, kh, kw = W.shape[0], W.shape[2], W.shape[3]
    cols = w_out + kw - 1  # the padded width: row stride of the planes below
    span = h_out * cols  # outputs as rows of ``cols``; columns from w_out on are never read
    zero = y.dtype.type(0)
    for n in prange(n_img):
        plane = np.zeros((h_out + kh - 1) * cols + kw, dtype=x.dtype)  # + kw: the unread tail
        for i in range(height):
            for j in range(width):
                plane[(i + padding) * cols + j + padding] = x[n, 0, i, j]
        acc = np.empty((BLOCK, span), dtype=x.dtype)
        first, second = acc[0], acc[1]
        for o0 in range(0, c_out, BLOCK):
            o1 = min(o0 + 1, c_out - 1)  # an odd last channel is computed twice
            acc[:, :] = 0
            for u in range(kh):
                row = u * cols
                if kw == 3:  # a kernel row per sweep: three loads feed six products
                    a0, a1, a2 = W[o0, 0, u, 0], W[o0, 0, u, 1], W[o0, 0, u, 2]
                    b0, b1, b2 = W[o1, 0, u, 0], W[o1, 0, u, 1], W[o1, 0, u, 2]
                    left, middle = plane[row:row + span], plane[row + 1:row + 1 + span]
                    right = plane[row + 2:row + 2 + span]
                    for q in range(span):
                        first[q] += a0 * left[q] + a1 * middle[q] + a2 * right[q]
                        second[q] += b0 * left[q] + b1 * middle[q] + b2 * right[q]
                    continue
                for v in range(kw):
                    w0, w1 = W[o0, 0, u, v], W[o1, 0, u, v]
                    window = plane[row + v:row + v + span]
                    for q in range(span):
                        first[q] += w0 * window[q]
                        second[q] += w1 * window[q]
            for r in range(min(BLOCK, c_out - o0)):
                o = o0 + r
                grid = acc[r].reshape((h_out, cols))
                if mode == 2:
                    if k == 2:
                        pool_plane_2(grid, b[o], True, y[n, o], argmax[n, o])
                    else:
                        pool_plane(grid, k, b[o], True, y[n, o], argmax[n, o])
                    continue
                for i in range(h_out):
                    for j in range(w_out):
                        value = grid[i, j] + b[o]
                        if mode == 1 and value < 0:
                            value = zero
                        y[n, o, i, j] = value


@njit(cache=True, parallel=True, fastmath=False)
def _weight_grad(x, g, padding, kh, kw):  # pragma: no cover - compiled
    """Per image, ``Σ_{i,j} g[n, o, i, j] x̃[n, 0, i + u, j + v]`` in float64, shape
    (N, C_out, kh, kw), from the gradient ``g`` at the conv output. The sum runs as one partial
    sum per output column j (a vector loop over j), added up at the end."""
    n_img, c_out, h_out, w_out = g.shape
    height, width = x.shape[2], x.shape[3]
    partial = np.empty((n_img, c_out, kh, kw))
    for n in prange(n_img):
        plane = np.zeros((h_out + kh - 1, w_out + kw - 1))
        for i in range(height):
            for j in range(width):
                plane[i + padding, j + padding] = x[n, 0, i, j]
        sums = np.empty((kh * kw, w_out))
        for o in range(c_out):
            sums[:, :] = 0.0
            for i in range(h_out):
                row = g[n, o, i]
                for u in range(kh):
                    for v in range(kw):
                        total, image_row = sums[u * kw + v], plane[i + u, v:v + w_out]
                        for j in range(w_out):
                            total[j] += np.float64(row[j]) * image_row[j]
            for u in range(kh):
                for v in range(kw):
                    partial[n, o, u, v] = np.sum(sums[u * kw + v])
    return partial


@njit(cache=True, parallel=True, fastmath=False)
def _weight_grad_pooled_3x3(x, dy, argmax, k, padding):  # pragma: no cover - compiled
    """:func:`_weight_grad` of a 3x3 kernel for the gradient the pooling backward routes from
    ``dy`` (N, C_out, H_p, W_p): nonzero only at each window's arg-max, so only those pixels
    are visited, adding each window's ``dy`` times the 3x3 input patch at its arg-max (nine
    sums kept in registers; no 0 · x is formed)."""
    n_img, c_out, h_pooled, w_pooled = dy.shape
    height, width = x.shape[2], x.shape[3]
    partial = np.empty((n_img, c_out, 3, 3))
    for n in prange(n_img):
        plane = np.zeros((height + 2 * padding, width + 2 * padding))
        for i in range(height):
            for j in range(width):
                plane[i + padding, j + padding] = x[n, 0, i, j]
        for o in range(c_out):
            s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = 0.0
            for i in range(h_pooled):
                for j in range(w_pooled):
                    at = argmax[n, o, i, j]
                    if at < 0:
                        continue
                    g = np.float64(dy[n, o, i, j])
                    if k == 2:  # no integer division in the common case
                        top, left = 2 * i + (at >> 1), 2 * j + (at & 1)
                    else:
                        top, left = i * k + at // k, j * k + at % k
                    r0, r1, r2 = plane[top], plane[top + 1], plane[top + 2]
                    s00 += g * r0[left]
                    s01 += g * r0[left + 1]
                    s02 += g * r0[left + 2]
                    s10 += g * r1[left]
                    s11 += g * r1[left + 1]
                    s12 += g * r1[left + 2]
                    s20 += g * r2[left]
                    s21 += g * r2[left + 1]
                    s22 += g * r2[left + 2]
            total = partial[n, o]
            total[0, 0], total[0, 1], total[0, 2] = s00, s01, s02
            total[1, 0], total[1, 1], total[1, 2] = s10, s11, s12
            total[2, 0], total[2, 1], total[2, 2] = s20, s21, s22
    return partial


@njit(cache=True, parallel=True, fastmath=False)
def _input_grad(g, W, padding, height, width):  # pragma: no cover - compiled
    """dx[n, 0] = Σ_{o,u,v} W[o, 0, u, v] g[n, o] placed at offset (u, v), cropped; float64."""
    n_img, c_out, h_out, w_out = g.shape
    kh, kw = W.shape[2], W.shape[3]
    dx = np.empty((n_img, 1, height, width), dtype=g.dtype)
    for n in prange(n_img):
        plane = np.zeros((h_out + kh - 1, w_out + kw - 1))
        for o in range(c_out):
            for u in range(kh):
                for v in range(kw):
                    w = np.float64(W[o, 0, u, v])
                    for i in range(h_out):
                        target, row = plane[i + u, v:v + w_out], g[n, o, i]
                        for j in range(w_out):
                            target[j] += w * row[j]
        for i in range(height):
            for j in range(width):
                dx[n, 0, i, j] = plane[i + padding, j + padding]
    return dx


def _output_size(x, W, padding):
    return x.shape[2] + 2 * padding - W.shape[2] + 1, x.shape[3] + 2 * padding - W.shape[3] + 1


def _run(x, W, b, padding, mode, k, shape, argmax):
    h_out, w_out = _output_size(x, W, padding)
    y = np.empty(shape, dtype=x.dtype)
    with profile.phase("direct conv" + ("", ", bias+relu", ", bias+relu+maxpool")[mode],
                       flops=2.0 * y.shape[0] * W.shape[0] * h_out * w_out * W[0].size):
        _forward(x, W, b, padding, h_out, w_out, mode, k, y, argmax)
    return y, (x, W, padding, h_out, w_out)


def forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, padding: int, relu: bool
            ) -> tuple[np.ndarray, tuple]:
    """``conv2d(x, W, b, 1, padding)`` (then relu when asked) for ``x`` (N, 1, H, W), contiguous
    arrays, arguments already checked; returns y and the cache of :func:`backward`."""
    n, c_out = x.shape[0], W.shape[0]
    h_out, w_out = _output_size(x, W, padding)
    no_argmax = np.empty((1, 1, 1, 1), dtype=np.int8)
    return _run(x, W, b, padding, 1 if relu else 0, 0, (n, c_out, h_out, w_out), no_argmax)


def forward_pooled(x: np.ndarray, W: np.ndarray, b: np.ndarray, padding: int, k: int,
                   argmax: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``maxpool2d(relu(conv2d(x, W, b, 1, padding)), k)``, filling ``argmax`` (its shape) with
    each window's first-maximum offset (-1 where NaN or cut by the relu)."""
    return _run(x, W, b, padding, 2, k, argmax.shape, argmax)


def backward(g: np.ndarray, cache: tuple, need_dx: bool, argmax: np.ndarray | None = None,
             k: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
    """``(dx or None, dW)`` from ``g``, the gradient at the conv output (N, C_out, H_out,
    W_out); or, with ``argmax`` and ``k``, from the pooled gradient routed as the pooling
    backward routes it (the unpooled gradient is then never stored for ``dW``)."""
    x, W, padding, h_out, w_out = cache
    kh, kw = W.shape[2], W.shape[3]
    with profile.phase("direct weight grad"):
        if argmax is not None and (kh, kw) == (3, 3):
            dW = _weight_grad_pooled_3x3(x, g, argmax, k, padding).sum(axis=0)
        else:
            routed = g if argmax is None else route_planes(g, argmax, h_out, w_out, k)
            dW = _weight_grad(x, routed, padding, kh, kw).sum(axis=0)
    dW = dW.reshape(W.shape).astype(W.dtype)
    if not need_dx:
        return None, dW
    if argmax is not None:
        g = route_planes(g, argmax, h_out, w_out, k)
    with profile.phase("direct input grad"):
        dx = _input_grad(g, W, padding, x.shape[2], x.shape[3])
    return dx, dW
