"""2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``) via im2col.

The input is zero-padded, every ``kh x kw`` window of the batch is copied into one column
of a matrix (im2col), and the convolution becomes one matrix product with the flattened
weights.
The backward pass multiplies by the same matrices and scatters the window gradients back
(col2im) with one strided addition per kernel offset.
"""

from __future__ import annotations

import numpy as np

from refimpl.ops.checks import check_conv2d_args, check_conv2d_grad, conv2d_output_size

__all__ = ["col2im", "conv2d_backward", "conv2d_forward", "conv2d_output_size", "im2col"]


def im2col(x_padded: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """Copy every window of ``x_padded`` into a column of one matrix for the whole batch.

    Parameters
    ----------
    x_padded : ndarray, shape (N, C, Hp, Wp), already zero-padded
    kh, kw, stride : window size and step

    Returns
    -------
    cols : ndarray, shape (C * kh * kw, N * H_out * W_out); column ``(n, i, j)`` holds the
        window of sample ``n`` whose top-left corner is ``(i * stride, j * stride)``,
        flattened in (C, kh, kw) order -- the order of ``W.reshape(C_out, -1)``.
    """
    # (N, C, Hp-kh+1, Wp-kw+1, kh, kw): a view, no copy yet.
    windows = np.lib.stride_tricks.sliding_window_view(x_padded, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]
    n, c, h_out, w_out = windows.shape[:4]
    # The reshape to (C kh kw, N H_out W_out) is where the copy happens.
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * h_out * w_out)


def col2im(
    dcols: np.ndarray, padded_shape: tuple[int, ...], kh: int, kw: int, stride: int
) -> np.ndarray:
    """Adjoint of :func:`im2col`: add each window's gradient back onto the padded input.

    ``dcols`` has shape (C, kh, kw, N, H_out, W_out); returns shape ``padded_shape``.
    """
    h_out, w_out = dcols.shape[4:]
    dx_padded = np.zeros(padded_shape, dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            # Kernel offset (i, j) touched the input pixels i + stride * (0..H_out-1), etc.
            rows = slice(i, i + stride * h_out, stride)
            cols = slice(j, j + stride * w_out, stride)
            dx_padded[:, :, rows, cols] += dcols[:, i, j].transpose(1, 0, 2, 3)
    return dx_padded


def conv2d_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, tuple]:
    """Cross-correlation ``y[n, o, i, j] = b[o] + Σ_{c,u,v} W[o, c, u, v] x̃[n, c, s i + u, s j + v]``.

    ``x̃`` is ``x`` zero-padded by ``padding`` on each side of H and W, ``s`` the stride
    (docs/methods.md §1).

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
    W : ndarray, shape (C_out, C_in, kh, kw)
    b : ndarray, shape (C_out,)
    stride, padding : int

    Returns
    -------
    y : ndarray, shape (N, C_out, H_out, W_out) with
        ``H_out = (H + 2 padding - kh) // stride + 1`` (same for W)
    cache : opaque, for :func:`conv2d_backward`

    Examples
    --------
    A 2x2 kernel of ones over a 3x3 image sums each window; with ``dy`` all ones, ``dx``
    counts the windows that cover each pixel, ``dW`` sums what each kernel entry saw:

    >>> import numpy as np
    >>> from refimpl.ops import conv2d_backward, conv2d_forward
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> y, cache = conv2d_forward(x, np.ones((1, 1, 2, 2)), np.zeros(1))
    >>> print(y)
    [[[[ 8. 12.]
       [20. 24.]]]]
    >>> dx, dW, db = conv2d_backward(np.ones_like(y), cache)
    >>> print(dx)
    [[[[1. 2. 1.]
       [2. 4. 2.]
       [1. 2. 1.]]]]
    >>> print(dW)
    [[[[ 8. 12.]
       [20. 24.]]]]
    >>> print(db)
    [4.]
    >>> conv2d_forward(x, np.ones((1, 1, 2, 2)), np.zeros(1), stride=1, padding=1)[0].shape
    (1, 1, 4, 4)
    """
    stride, padding, h_out, w_out = check_conv2d_args(x, W, b, stride, padding)
    c_out, _, kh, kw = W.shape
    n = x.shape[0]
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    x_padded = np.pad(x, pad) if padding else x
    cols = im2col(x_padded, kh, kw, stride)  # (C_in kh kw, N H_out W_out)
    # (1.3) as one product Y = W X over the whole batch, plus the bias of each output channel.
    y = (W.reshape(c_out, -1) @ cols + b[:, None]).reshape(c_out, n, h_out, w_out)
    y = np.ascontiguousarray(y.transpose(1, 0, 2, 3))
    return y, (cols, W, x.shape, x_padded.shape, stride, padding)


def conv2d_backward(
    dy: np.ndarray, cache: tuple, *, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward` (docs/methods.md §1; example there).

    With ``X`` the im2col matrix (C_in kh kw, N H_out W_out), ``dY`` the output gradient
    laid out as (C_out, N H_out W_out) and ``W`` as (C_out, C_in kh kw):
    ``dW = dY Xᵀ``, ``db[o] = Σ_{n,i,j} dy[n, o, i, j]`` and ``dx = col2im(Wᵀ dY)`` with the
    padding cropped off.

    Parameters
    ----------
    dy : ndarray, shape (N, C_out, H_out, W_out)
    cache : from :func:`conv2d_forward`
    need_dx : bool, keyword-only, default True
        False skips the product and col2im of ``dx`` (returned as None), for a model's
        first layer. Part of the contract: every backend accepts it.

    Returns
    -------
    dx : (N, C_in, H, W) or None, dW : (C_out, C_in, kh, kw), db : (C_out,)
    """
    cols, W, x_shape, padded_shape, stride, padding = cache
    c_out, c_in, kh, kw = W.shape
    n, _, h, w = x_shape
    h_out, w_out = check_conv2d_grad(dy, x_shape, W, stride, padding)
    dy_matrix = dy.transpose(1, 0, 2, 3).reshape(c_out, n * h_out * w_out)
    dW = (dy_matrix @ cols.T).reshape(W.shape)
    db = dy.sum(axis=(0, 2, 3))
    if not need_dx:
        return None, dW, db
    dcols = (W.reshape(c_out, -1).T @ dy_matrix).reshape(c_in, kh, kw, n, h_out, w_out)
    dx_padded = col2im(dcols, padded_shape, kh, kw, stride)
    dx = dx_padded[:, :, padding : padding + h, padding : padding + w]
    return np.ascontiguousarray(dx), dW, db
