"""Max pooling (window k, stride k, floor mode) on the CPU, one parallel task per (n, c) plane.

Same math as :mod:`refimpl.ops.pool`: ``y[n, c, i, j] = max_{u,v} x[n, c, k i + u, k j + v]``;
the gradient goes to the first maximum of each window in row-major order. A window holding
a NaN gives NaN and passes no gradient (it has no arg-max), as in the oracle.

The loops over one plane, :func:`pool_plane` / :func:`pool_plane_2` (forward) and
:func:`route_plane` (backward), are this backend's only max pooling: the fused
conv+relu+maxpool step (:mod:`refimpl.kernels.numba.conv`) runs them on the planes of its
matrix product, with the bias and the relu applied to each value as it is read.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from refimpl.kernels.numba import profile
from refimpl.kernels.numba.tuning import loop_threads
from refimpl.ops.checks import check_maxpool2d_args, check_maxpool2d_grad


@njit(cache=True, inline="always", fastmath=False)
def pool_plane(plane, k, bias, relu, pooled, where):  # pragma: no cover - compiled
    """Max-pool one (H, W) ``plane`` with window and stride ``k`` into ``pooled`` (h_p, w_p),
    and write in ``where`` the row-major offset ``u k + v`` of each window's first maximum.

    A window holding NaN gives NaN and offset -1. With ``relu``, each value is first taken
    as ``max(value + bias, 0)`` (NaN kept), and the offset is -1 also where the maximum is
    not > 0: the relu passes no gradient there (the conv+relu+maxpool step).
    """
    zero, nan = pooled.dtype.type(0), pooled.dtype.type(math.nan)
    for i in range(pooled.shape[0]):
        for j in range(pooled.shape[1]):
            best, best_at, has_nan = zero, -1, False
            for u in range(k):
                row = plane[i * k + u]
                for v in range(k):
                    value = row[j * k + v]
                    if relu:
                        value = value + bias
                        value = zero if value < 0 else value
                    if math.isnan(value):
                        has_nan = True
                    elif best_at < 0 or value > best:  # strictly greater: the first maximum
                        best, best_at = value, u * k + v
            pooled[i, j] = nan if has_nan else best
            where[i, j] = -1 if has_nan or (relu and not best > zero) else best_at


@njit(cache=True, inline="always", fastmath=False)
def pool_plane_2(plane, bias, relu, pooled, where):  # pragma: no cover - compiled
    """:func:`pool_plane` for k = 2, written with selects instead of branches."""
    zero, nan = pooled.dtype.type(0), pooled.dtype.type(math.nan)
    for i in range(pooled.shape[0]):
        top, bottom = plane[2 * i], plane[2 * i + 1]
        out, at_row = pooled[i], where[i]
        for j in range(pooled.shape[1]):
            a, c = top[2 * j], top[2 * j + 1]
            p, q = bottom[2 * j], bottom[2 * j + 1]
            if relu:  # max(value + bias, 0); NaN stays NaN
                a, c, p, q = a + bias, c + bias, p + bias, q + bias
                a = zero if a < 0 else a
                c = zero if c < 0 else c
                p = zero if p < 0 else p
                q = zero if q < 0 else q
            best, at = a, 0
            more = c > best
            best, at = (c, 1) if more else (best, at)
            more = p > best
            best, at = (p, 2) if more else (best, at)
            more = q > best
            best, at = (q, 3) if more else (best, at)
            bad = math.isnan(a) | math.isnan(c) | math.isnan(p) | math.isnan(q)
            out[j] = nan if bad else best
            at_row[j] = -1 if bad or (relu and not best > zero) else at


@njit(cache=True, inline="always", fastmath=False)
def route_plane(grad, where, k, dx):  # pragma: no cover - compiled
    """The gradient of one pooled plane at its (H, W) input ``dx``, every element written
    once: ``g = grad[i, j]`` at offset ``where[i, j]`` of window (i, j), 0 elsewhere in the
    window (a NaN or inf ``g`` reaches the arg-max only, as in the oracle) and at the rows and
    columns no window covers."""
    zero = dx.dtype.type(0)
    h_p, w_p = grad.shape
    for i in range(h_p):
        g_row, at_row = grad[i], where[i]
        for u in range(k):
            row = dx[i * k + u]
            for j in range(w_p):
                g, at = g_row[j], at_row[j]
                for v in range(k):
                    row[j * k + v] = g if u * k + v == at else zero
            for j in range(w_p * k, dx.shape[1]):
                row[j] = zero
    for i in range(h_p * k, dx.shape[0]):
        dx[i, :] = zero


@njit(cache=True, parallel=True, fastmath=False)
def _forward(x, k, y, argmax):  # pragma: no cover - compiled
    """Fill ``y`` and ``argmax`` (N, C, H // k, W // k); one task per (n, c) plane."""
    n_img, channels = x.shape[0], x.shape[1]
    zero = y.dtype.type(0)
    for task in prange(n_img * channels):
        n, c = task // channels, task % channels
        if k == 2:
            pool_plane_2(x[n, c], zero, False, y[n, c], argmax[n, c])
        else:
            pool_plane(x[n, c], k, zero, False, y[n, c], argmax[n, c])


@njit(cache=True, parallel=True, fastmath=False)
def _backward(dy, argmax, height, width, k):  # pragma: no cover - compiled
    """dx (N, C, height, width) from ``dy`` and the arg-max offsets; one task per plane."""
    n_img, channels = dy.shape[0], dy.shape[1]
    dx = np.empty((n_img, channels, height, width), dtype=dy.dtype)
    for task in prange(n_img * channels):
        n, c = task // channels, task % channels
        if k == 2:  # a constant window size: the compiler unrolls the window loops
            route_plane(dy[n, c], argmax[n, c], 2, dx[n, c])
        else:
            route_plane(dy[n, c], argmax[n, c], k, dx[n, c])
    return dx


def maxpool2d_forward(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, tuple]:
    """x (N, C, H, W) -> y (N, C, H // k, W // k), cache (window arg-max offsets)."""
    k, h_out, w_out = check_maxpool2d_args(x, k)
    shape = (x.shape[0], x.shape[1], h_out, w_out)
    y = np.empty(shape, dtype=x.dtype)
    # Offsets u k + v < k² fit one byte for k <= 11: a quarter of the arg-max traffic.
    argmax = np.empty(shape, dtype=np.int8 if k * k <= 127 else np.int32)
    with loop_threads(), profile.phase("maxpool"):
        _forward(np.ascontiguousarray(x), k, y, argmax)
    return y, (argmax, x.shape, k, x.dtype)


def maxpool2d_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    """Route each ``dy[n, c, i, j]`` to its window's first arg-max; zero elsewhere."""
    argmax, x_shape, k, dtype = cache
    h, w = x_shape[2:]
    check_maxpool2d_grad(dy, x_shape, k, dtype)
    dy = np.ascontiguousarray(dy)
    with loop_threads(), profile.phase("maxpool"):
        return _backward(dy, argmax, h, w, k)
