"""Max pooling with a square window ``k`` and stride ``k`` (torch floor mode).

Both passes loop over the ``k * k`` offsets ``(u, v)`` of a window: the strided view
``x[:, :, u::k, v::k]`` holds pixel ``(u, v)`` of every window at once, so each pass is
``k * k`` whole-array operations.
"""

from __future__ import annotations

import numpy as np

from refimpl.ops.checks import check_maxpool2d_args, check_maxpool2d_grad


def _offset_view(x: np.ndarray, u: int, v: int, k: int, h_out: int, w_out: int) -> np.ndarray:
    """Pixel ``(u, v)`` of every window: shape (N, C, h_out, w_out), a view of ``x``."""
    return x[:, :, u : u + k * h_out : k, v : v + k * w_out : k]


def maxpool2d_forward(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, tuple]:
    """``y[n, c, i, j] = max_{0 <= u, v < k} x[n, c, k i + u, k j + v]``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    k : int, window size and stride

    Returns
    -------
    y : ndarray, shape (N, C, H // k, W // k); trailing rows/cols that do not fill a
        window are dropped
    cache : opaque, for :func:`maxpool2d_backward`; it records, per window, the position
        ``u k + v`` of the first maximum in row-major order (the tie rule of torch)
    """
    k, h_out, w_out = check_maxpool2d_args(x, k)
    y = _offset_view(x, 0, 0, k, h_out, w_out).copy()
    for u in range(k):
        for v in range(k):
            np.maximum(y, _offset_view(x, u, v, k, h_out, w_out), out=y)
    # Visit the offsets in reverse row-major order so the first maximum is written last.
    argmax = np.full(y.shape, -1, dtype=np.int32)
    for u in reversed(range(k)):
        for v in reversed(range(k)):
            hit = _offset_view(x, u, v, k, h_out, w_out) == y
            np.putmask(argmax, hit, u * k + v)
    return y, (argmax, x.shape, k)


def maxpool2d_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    """Route each ``dy[n, c, i, j]`` to the (first) arg-max of its window; zero elsewhere.

    A window holding NaN has no arg-max and passes no gradient.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    """
    argmax, x_shape, k = cache
    h_out, w_out = check_maxpool2d_grad(dy, x_shape, k)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for u in range(k):
        for v in range(k):
            _offset_view(dx, u, v, k, h_out, w_out)[...] = dy * (argmax == u * k + v)
    return dx
