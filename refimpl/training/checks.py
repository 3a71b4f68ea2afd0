"""Argument and data checks of the trainer: a clear ``ValueError`` before anything runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from refimpl.data import check_classification_data

__all__ = ["check_data"]


def check_data(model: Any, data: Any, loss: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` checked against ``model`` (dtype, per-example shape, classes) and ``loss``."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be a tuple (X, y), got {type(data).__name__}")
    X, y = data
    dtype = getattr(model, "dtype", None)
    if loss == "cross_entropy":
        check_classification_data(X, y, dtype=dtype, name=name)
    else:
        _check_regression_data(X, y, dtype, name)
    try:
        out = model.forward(X[:1])
    except Exception as exc:  # noqa: BLE001 - any layer's complaint is about X's shape
        raise ValueError(f"{name} X has per-example shape {X.shape[1:]}, which the model "
                         f"cannot take ({exc})") from None
    if loss == "cross_entropy":
        check_classification_data(X, y, n_classes=out.shape[1], name=name)
    elif y.shape[1:] != out.shape[1:]:
        raise ValueError(f"{name} targets have per-example shape {y.shape[1:]} but the "
                         f"model outputs {out.shape[1:]}")
    return X, y


def _check_regression_data(X: Any, y: Any, dtype: Any, name: str) -> None:
    if not isinstance(X, np.ndarray) or not isinstance(y, np.ndarray):
        raise ValueError(f"{name} must be a tuple (X, y) of NumPy arrays")  # noqa: TRY004
    for label, array in (("X", X), ("y", y)):
        if dtype is not None and array.dtype != np.dtype(dtype):
            raise ValueError(f"{name} {label} has dtype {array.dtype} but the model is "
                             f"{np.dtype(dtype)}; cast with .astype(np.{np.dtype(dtype)})")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} {label} contains NaN or inf")
    if y.ndim < 2 or len(y) != len(X) or len(X) == 0:
        raise ValueError(f"{name} y must have shape (N, outputs) with N = {len(X)} >= 1, got "
                         f"{y.shape}")
