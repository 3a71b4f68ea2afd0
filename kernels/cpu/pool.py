"""Max pooling (window k, stride k, floor mode) on the CPU, one parallel task per (n, c) plane.

Same math as :mod:`refimpl.ops.pool`: ``y[n, c, i, j] = max_{u,v} x[n, c, k i + u, k j + v]``;
the gradient goes to the first maximum of each window in row-major order. A window holding
a NaN gives NaN and passes no gradient (it has no arg-max), as in the oracle.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, uint64

from kernels.cpu.tuning import loop_threads
from refimpl.ops.checks import check_maxpool2d_args, check_maxpool2d_grad


# Flat views indexed with unsigned integers: no negative-index test on every access.
@njit(cache=True, parallel=True, fastmath=False)
def _forward(x, k):
    n_img, channels, height, width = x.shape
    h_out, w_out = height // k, width // k
    y = np.empty((n_img, channels, h_out, w_out), dtype=x.dtype)
    argmax = np.empty((n_img, channels, h_out, w_out), dtype=np.int32)
    src, out, where = x.reshape(-1), y.reshape(-1), argmax.reshape(-1)
    for task in prange(n_img * channels):
        for i in range(h_out):
            for j in range(w_out):
                corner = (task * height + i * k) * width + j * k
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
                at = uint64((task * h_out + i) * w_out + j)
                out[at] = math.nan if has_nan else best
                where[at] = -1 if has_nan else best_at
    return y, argmax


@njit(cache=True, parallel=True, fastmath=False)
def _backward(dy, argmax, height, width, k):
    n_img, channels, h_out, w_out = dy.shape
    dx = np.zeros((n_img, channels, height, width), dtype=dy.dtype)
    grad, where, dst = dy.reshape(-1), argmax.reshape(-1), dx.reshape(-1)
    for task in prange(n_img * channels):
        for i in range(h_out):
            for j in range(w_out):
                at = uint64((task * h_out + i) * w_out + j)
                g = grad[at]
                best_at = where[at]
                corner = (task * height + i * k) * width + j * k
                for u in range(k):
                    for v in range(k):
                        # g * 0 off the arg-max, as the oracle's dy * mask (NaN dy stays NaN).
                        dst[uint64(corner + u * width + v)] = g if u * k + v == best_at else g * 0
    return dx


def maxpool2d_forward(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, tuple]:
    """x (N, C, H, W) -> y (N, C, H // k, W // k), cache (window arg-max offsets)."""
    k = check_maxpool2d_args(x, k)[0]
    with loop_threads():
        y, argmax = _forward(np.ascontiguousarray(x), k)
    return y, (argmax, x.shape, k)


def maxpool2d_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    """Route each ``dy[n, c, i, j]`` to its window's first arg-max; zero elsewhere."""
    argmax, x_shape, k = cache
    h, w = x_shape[2:]
    check_maxpool2d_grad(dy, x_shape, k)
    with loop_threads():
        return _backward(np.ascontiguousarray(dy), argmax, h, w, k)
