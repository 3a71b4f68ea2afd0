"""Fully connected (affine) layer: ``y = x W + b``."""

from __future__ import annotations

import numpy as np

from refimpl.ops.checks import check_dense_args, check_dense_grad


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Affine map ``y = x W + b`` (docs/methods.md §1).

    Parameters
    ----------
    x : ndarray, shape (N, in_features)
    W : ndarray, shape (in_features, out_features)
    b : ndarray, shape (out_features,)

    Returns
    -------
    y : ndarray, shape (N, out_features), dtype of ``x``
    cache : opaque, for :func:`dense_backward`

    Examples
    --------
    One sample, two inputs, three outputs; then the gradients for ``dy = [[1, 0, 2]]``:

    >>> import numpy as np
    >>> from refimpl.ops import dense_backward, dense_forward
    >>> x = np.array([[1.0, 2.0]])
    >>> W = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]])
    >>> y, cache = dense_forward(x, W, np.array([0.5, 0.0, -1.0]))
    >>> print(y)
    [[1.5 2.  7. ]]
    >>> dx, dW, db = dense_backward(np.array([[1.0, 0.0, 2.0]]), cache)
    >>> print(dx)  # dy Wᵀ
    [[5. 6.]]
    >>> print(dW)  # xᵀ dy
    [[1. 0. 2.]
     [2. 0. 4.]]
    >>> print(db)  # dy summed over the batch
    [1. 0. 2.]
    """
    check_dense_args(x, W, b)
    y = x @ W + b
    return y, (x, W)


def dense_backward(
    dy: np.ndarray, cache: tuple, *, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of the affine map: ``dx = dy Wᵀ``, ``dW = xᵀ dy``, ``db = Σ_n dy``
    (docs/methods.md §1; example: :func:`dense_forward`).

    Parameters
    ----------
    dy : ndarray, shape (N, out_features), the loss gradient w.r.t. ``y``
    cache : from :func:`dense_forward`
    need_dx : bool, keyword-only, default True
        False skips ``dx`` (returned as None): a model's first layer needs no input
        gradient. Part of the contract: every backend accepts it.

    Returns
    -------
    dx : (N, in_features) or None, dW : (in_features, out_features), db : (out_features,)
    """
    x, W = cache
    check_dense_grad(dy, x, W)
    dx = dy @ W.T if need_dx else None
    dW = x.T @ dy
    db = dy.sum(axis=0)
    return dx, dW, db
