"""Fully connected (affine) layer: ``y = x W + b``."""

from __future__ import annotations

import numpy as np

from refimpl.ops._checks import check_float_array, check_same_dtype, check_shape


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Affine map ``y = x W + b``.

    Parameters
    ----------
    x : ndarray, shape (N, in_features)
    W : ndarray, shape (in_features, out_features)
    b : ndarray, shape (out_features,)

    Returns
    -------
    y : ndarray, shape (N, out_features), dtype of ``x``
    cache : opaque, for :func:`dense_backward`
    """
    check_float_array("x", x, "(N, in_features)")
    check_float_array("W", W, "(in_features, out_features)")
    check_float_array("b", b, "(out_features,)")
    if W.shape[0] != x.shape[1]:
        raise ValueError(
            f"W must have shape (in_features={x.shape[1]}, out_features) to match x of shape "
            f"{x.shape}, got {W.shape}"
        )
    check_shape("b", b, (W.shape[1],), "out_features of W")
    check_same_dtype("W", W, "x", x)
    check_same_dtype("b", b, "x", x)
    y = x @ W + b
    return y, (x, W)


def dense_backward(dy: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of the affine map: ``dx = dy Wᵀ``, ``dW = xᵀ dy``, ``db = Σ_n dy``.

    Parameters
    ----------
    dy : ndarray, shape (N, out_features), the loss gradient w.r.t. ``y``
    cache : from :func:`dense_forward`

    Returns
    -------
    dx : (N, in_features), dW : (in_features, out_features), db : (out_features,)
    """
    x, W = cache
    check_float_array("dy", dy, "(N, out_features)")
    check_shape("dy", dy, (x.shape[0], W.shape[1]), "the shape of the forward output y")
    check_same_dtype("dy", dy, "x", x)
    dx = dy @ W.T
    dW = x.T @ dy
    db = dy.sum(axis=0)
    return dx, dW, db
