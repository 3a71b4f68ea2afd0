"""Max pooling (window k, stride k, NCHW) on device arrays.

``y[n, c, i, j] = max_{0 ≤ u, v < k} x[n, c, i·k + u, j·k + v]``; the gradient goes to the
arg-max of each window, the first one in row-major order on ties; a window holding NaN outputs NaN and passes
no gradient (as the oracle). Trailing rows/columns
that do not fill a window are dropped (``H_out = H // k``, torch floor mode) and get a
zero gradient. Windows do not overlap, so the backward scatter has no write conflicts.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from refimpl.ops.checks import check_maxpool2d_args, check_maxpool2d_grad

from ._common import check_on_device, launch_1d


@cuda.jit
def _maxpool_forward_kernel(x, k, y, argmax):
    """One thread per output: scan the window, keep the first strict maximum."""
    idx = cuda.grid(1)
    if idx >= y.size:
        return
    _n_batch, channels, h_out, w_out = y.shape
    j = idx % w_out
    i = (idx // w_out) % h_out
    c = (idx // (w_out * h_out)) % channels
    n = idx // (w_out * h_out * channels)
    best_row = i * k
    best_col = j * k
    best = x[n, c, best_row, best_col]
    has_nan = False
    for u in range(k):
        for v in range(k):
            value = x[n, c, i * k + u, j * k + v]
            if math.isnan(value):
                has_nan = True
            elif value > best:
                best = value
                best_row = i * k + u
                best_col = j * k + v
    if has_nan:  # as the oracle: NaN propagates forward, and the window passes no gradient
        y[n, c, i, j] = math.nan
        argmax[n, c, i, j] = -1
    else:
        y[n, c, i, j] = best
        argmax[n, c, i, j] = best_row * x.shape[3] + best_col


@cuda.jit
def _zero_kernel(a):
    idx = cuda.grid(1)
    if idx < a.size:
        a[idx] = 0


@cuda.jit
def _maxpool_backward_kernel(dy, argmax, width, dx):
    """One thread per output: route dy to the input position that won the window."""
    idx = cuda.grid(1)
    if idx >= dy.size:
        return
    _n_batch, channels, h_out, w_out = dy.shape
    j = idx % w_out
    i = (idx // w_out) % h_out
    c = (idx // (w_out * h_out)) % channels
    n = idx // (w_out * h_out * channels)
    flat = argmax[n, c, i, j]
    if flat >= 0:
        dx[n, c, flat // width, flat % width] = dy[n, c, i, j]


def maxpool2d_forward(x, k: int = 2):
    """Max over non-overlapping ``k x k`` windows.

    Parameters
    ----------
    x : device array (N, C, H, W)
    k : int, window side and stride

    Returns
    -------
    y : device array (N, C, H // k, W // k)
    cache : opaque (input shape and arg-max positions), read by :func:`maxpool2d_backward`
    """
    check_on_device(x=x)
    k, h_out, w_out = check_maxpool2d_args(x, k)
    out_shape = (x.shape[0], x.shape[1], h_out, w_out)
    y = cuda.device_array(out_shape, dtype=x.dtype)
    argmax = cuda.device_array(out_shape, dtype=np.int64)
    _maxpool_forward_kernel[launch_1d(y.size)](x, k, y, argmax)
    return y, (tuple(x.shape), argmax, k, x.dtype)


def maxpool2d_backward(dy, cache):
    """Gradient of :func:`maxpool2d_forward`: ``dy`` placed at each window's arg-max.

    Returns
    -------
    dx : device array (N, C, H, W), zero outside the arg-max positions
    """
    x_shape, argmax, k, dtype = cache
    check_on_device(dy=dy)
    check_maxpool2d_grad(dy, x_shape, k, dtype)
    dx = cuda.device_array(x_shape, dtype=dy.dtype)
    flat = dx.reshape(dx.size)
    _zero_kernel[launch_1d(dx.size)](flat)
    _maxpool_backward_kernel[launch_1d(dy.size)](dy, argmax, x_shape[3], dx)
    return dx
