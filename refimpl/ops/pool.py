"""Max pooling with a square window ``k`` and stride ``k`` (torch floor mode), docs/methods.md §1.

Both passes work on the windows laid out side by side: ``windows[n, c, i, j]`` holds the
``k * k`` pixels of window ``(i, j)`` in row-major order, so that pixel ``m = u k + v`` of
the window is ``x[n, c, k i + u, k j + v]``.
"""

from __future__ import annotations

import numpy as np

from refimpl.ops.checks import check_maxpool2d_args, check_maxpool2d_grad


def _to_windows(x: np.ndarray, k: int, h_out: int, w_out: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, h_out, w_out, k k); rows and columns outside every window dropped."""
    n, c = x.shape[:2]
    whole = x[:, :, : k * h_out, : k * w_out].reshape(n, c, h_out, k, w_out, k)
    return whole.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h_out, w_out, k * k)


def _from_windows(windows: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`_to_windows`: (N, C, h_out, w_out, k k) -> (N, C, k h_out, k w_out)."""
    n, c, h_out, w_out = windows.shape[:4]
    grid = windows.reshape(n, c, h_out, w_out, k, k).transpose(0, 1, 2, 4, 3, 5)
    return grid.reshape(n, c, k * h_out, k * w_out)


def maxpool2d_forward(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, tuple]:
    """``y[n, c, i, j] = max_{0 <= u, v < k} x[n, c, k i + u, k j + v]``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    k : int, window size and stride

    Returns
    -------
    y : ndarray, shape (N, C, H // k, W // k); trailing rows/cols that do not fill a
        window are dropped. A window holding NaN gives NaN.
    cache : opaque, for :func:`maxpool2d_backward`; it records, per window, the position
        ``u k + v`` of the first maximum in row-major order (the tie rule of torch), or -1
        for a window holding NaN

    Examples
    --------
    Two 2x2 windows; the second holds three 5s, and its gradient goes to the first of them
    in row-major order:

    >>> import numpy as np
    >>> from refimpl.ops import maxpool2d_backward, maxpool2d_forward
    >>> x = np.array([[[[1.0, 3.0, 5.0, 5.0],
    ...                 [2.0, 0.0, 5.0, 1.0]]]])
    >>> y, cache = maxpool2d_forward(x, 2)
    >>> print(y)
    [[[[3. 5.]]]]
    >>> print(maxpool2d_backward(np.array([[[[10.0, 20.0]]]]), cache))
    [[[[ 0. 10. 20.  0.]
       [ 0.  0.  0.  0.]]]]
    """
    k, h_out, w_out = check_maxpool2d_args(x, k)
    windows = _to_windows(x, k, h_out, w_out)
    first = windows.argmax(axis=-1)  # np.argmax returns the first maximum (or the first NaN)
    y = np.take_along_axis(windows, first[..., None], axis=-1)[..., 0]
    argmax = np.where(np.isnan(y), -1, first)  # a window holding NaN has no arg-max
    return y, (argmax, x.shape, k, x.dtype)


def maxpool2d_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    """Route each ``dy[n, c, i, j]`` to the (first) arg-max of its window; zero elsewhere
    (example: :func:`maxpool2d_forward`).

    Each window's ``dy`` goes to its arg-max pixel and every other pixel gets exactly 0 (a
    selection, as torch's scatter: a NaN or infinite ``dy`` reaches the arg-max only); a
    window holding NaN (no arg-max) passes no gradient. Pixels outside every window get 0.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    """
    argmax, x_shape, k, dtype = cache
    h_out, w_out = check_maxpool2d_grad(dy, x_shape, k, dtype)
    dwindows = np.where(argmax[..., None] == np.arange(k * k), dy[..., None], 0)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    dx[:, :, : k * h_out, : k * w_out] = _from_windows(dwindows, k)
    return dx
