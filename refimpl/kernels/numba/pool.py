"""Max pooling (window k, stride k, floor mode) on the CPU, one parallel task per (n, c) plane.

Same math as :mod:`refimpl.ops.pool`: ``y[n, c, i, j] = max_{u,v} x[n, c, k i + u, k j + v]``;
the gradient goes to the first maximum of each window in row-major order. A window holding
a NaN gives NaN and passes no gradient (it has no arg-max), as in the oracle.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, uint64

from refimpl.kernels.numba import profile
from refimpl.kernels.numba.tuning import loop_threads
from refimpl.ops.checks import check_maxpool2d_args, check_maxpool2d_grad


# Flat views indexed with unsigned integers: no negative-index test on every access.
@njit(cache=True, inline="always", fastmath=False)
def _window_max(src, corner, width, k):
    """(max, row-major offset of its first occurrence) of one window; (NaN, -1) with a NaN."""
    best = src[uint64(corner)]
    best_at = -1
    has_nan = False
    for u in range(k):
        for v in range(k):
            value = src[uint64(corner + u * width + v)]
            if math.isnan(value):
                has_nan = True
            elif best_at < 0 or value > best:  # strictly greater: first max
                best = value
                best_at = u * k + v
    if has_nan:
        return math.nan, -1
    return best, best_at


@njit(cache=True, parallel=True, fastmath=False)
def _forward(x, k, y, argmax):
    """Fill ``y`` and ``argmax`` (N, C, H // k, W // k); one task per (n, c) plane."""
    n_img, channels, height, width = x.shape
    h_out, w_out = y.shape[2], y.shape[3]
    src, out, where = x.reshape(-1), y.reshape(-1), argmax.reshape(-1)
    for task in prange(n_img * channels):
        for i in range(h_out):
            row = (task * height + i * k) * width
            first = (task * h_out + i) * w_out
            for j in range(w_out):
                best, best_at = _window_max(src, row + j * k, width, k)
                out[uint64(first + j)] = best
                where[uint64(first + j)] = best_at


@njit(cache=True, parallel=True, fastmath=False)
def _forward_2(x, y, argmax):
    """:func:`_forward` for k = 2 with selects instead of branches (2.5x faster on lrpo_cnn's
    first pooling, interleaved single-thread CPU time; the same form made the backward slower)."""
    n_img, channels = x.shape[0], x.shape[1]
    h_out, w_out = y.shape[2], y.shape[3]
    nan = x.dtype.type(math.nan)
    for task in prange(n_img * channels):
        n = task // channels
        c = task % channels
        for i in range(h_out):
            top, bottom = x[n, c, 2 * i], x[n, c, 2 * i + 1]
            out, where = y[n, c, i], argmax[n, c, i]
            for j in range(w_out):
                a, b = top[2 * j], top[2 * j + 1]
                p, q = bottom[2 * j], bottom[2 * j + 1]
                best, at = a, 0
                more = b > best
                best, at = (b, 1) if more else (best, at)
                more = p > best
                best, at = (p, 2) if more else (best, at)
                more = q > best
                best, at = (q, 3) if more else (best, at)
                bad = math.isnan(a) | math.isnan(b) | math.isnan(p) | math.isnan(q)
                out[j] = nan if bad else best
                where[j] = -1 if bad else at


@njit(cache=True, parallel=True, fastmath=False)
def _backward(dy, argmax, height, width, k):
    """Every element of dx written once: ``g`` at the arg-max, ``g * 0`` elsewhere in the
    window (as the oracle's ``dy * mask``: a NaN ``dy`` stays NaN), 0 outside every window."""
    n_img, channels, h_out, w_out = dy.shape
    dx = np.empty((n_img, channels, height, width), dtype=dy.dtype)
    grad, where, dst = dy.reshape(-1), argmax.reshape(-1), dx.reshape(-1)
    for task in prange(n_img * channels):
        plane = task * height * width
        for i in range(h_out):
            at = (task * h_out + i) * w_out
            for u in range(k):
                row = plane + (i * k + u) * width
                for j in range(w_out):
                    g = grad[uint64(at + j)]
                    best_at = where[uint64(at + j)]
                    for v in range(k):
                        dst[uint64(row + j * k + v)] = g if u * k + v == best_at else g * 0
                for col in range(w_out * k, width):  # columns no window covers
                    dst[uint64(row + col)] = 0
        for r in range(h_out * k, height):  # rows no window covers
            for col in range(width):
                dst[uint64(plane + r * width + col)] = 0
    return dx


def maxpool2d_forward(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, tuple]:
    """x (N, C, H, W) -> y (N, C, H // k, W // k), cache (window arg-max offsets)."""
    k, h_out, w_out = check_maxpool2d_args(x, k)
    shape = (x.shape[0], x.shape[1], h_out, w_out)
    y = np.empty(shape, dtype=x.dtype)
    # Offsets u k + v < k² fit one byte for k <= 11: a quarter of the arg-max traffic.
    argmax = np.empty(shape, dtype=np.int8 if k * k <= 127 else np.int32)
    with loop_threads(), profile.phase("maxpool"):
        if k == 2:
            _forward_2(np.ascontiguousarray(x), y, argmax)
        else:
            _forward(np.ascontiguousarray(x), k, y, argmax)
    return y, (argmax, x.shape, k)


def maxpool2d_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    """Route each ``dy[n, c, i, j]`` to its window's first arg-max; zero elsewhere."""
    argmax, x_shape, k = cache
    h, w = x_shape[2:]
    check_maxpool2d_grad(dy, x_shape, k)
    dy = np.ascontiguousarray(dy)
    with loop_threads(), profile.phase("maxpool"):
        return _backward(dy, argmax, h, w, k)
