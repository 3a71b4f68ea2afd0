"""Argument and data checks of the trainer: a clear exception before anything runs.

What is not the kind of object asked for (a name where a model, optimizer or scheduler is
wanted) raises ``TypeError`` saying how to build one; a value of the right kind that cannot
work (data of the wrong shape, an optimizer over another model's arrays) raises
``ValueError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refimpl.data import check_classification_data

__all__ = ["check_callbacks", "check_data", "check_model", "check_optimizer"]

_MODEL_METHODS = ("forward", "backward", "parameters", "gradients", "state_dict",
                  "load_state_dict")
_OPTIMIZER_METHODS = ("step", "state_dict", "load_state_dict")
_HOOKS = ("on_batch_end", "on_epoch_end")


def check_model(model: Any) -> None:
    """Refuse what is not a model: a ``Sequential`` or anything with its methods."""
    how = ("build one with refimpl.model.build('dense:64,relu,dense:10', input_shape) or "
           "refimpl.registry.get_model(name, input_shape)")
    if isinstance(model, str):
        raise TypeError(f"model must be a model object, got the string {model!r}; {how}")
    missing = [name for name in _MODEL_METHODS if not callable(getattr(model, name, None))]
    missing += [] if hasattr(model, "layers") else ["layers"]
    if missing:
        raise TypeError(f"model must be a refimpl model (refimpl.model.Sequential), got "
                        f"{type(model).__name__} without {', '.join(missing)}; {how}")


def check_optimizer(optimizer: Any, model: Any) -> None:
    """Refuse what is not an optimizer, and one not built over ``model.parameters()``.

    The trainer hands ``model.gradients()`` to ``optimizer.step``, which pairs them with its
    own parameters in order; an optimizer over other arrays (another model's, or this one's
    before a rebuild) would update those and leave the model untrained.
    """
    how = ("build one over the model's parameters, e.g. SGD(model.parameters(), lr=0.1) "
           "from refimpl.optim, or by name with refimpl.registry.make_optimizer('sgd', "
           "model.parameters(), lr=0.1)")
    if isinstance(optimizer, str):
        raise TypeError(f"optimizer must be an optimizer object, got the string "
                        f"{optimizer!r}; {how}")
    missing = [name for name in _OPTIMIZER_METHODS if not callable(getattr(optimizer, name, None))]
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "params" in g
                                               for g in groups):
        missing.append("param_groups")
    if missing:
        raise TypeError(f"optimizer must be an optimizer (refimpl.optim), got "
                        f"{type(optimizer).__name__} without {', '.join(missing)}; {how}")
    own = [id(p) for group in groups for p in group["params"]]
    if own != [id(p) for p in model.parameters()]:
        shared = len(set(own) & {id(p) for p in model.parameters()})
        raise ValueError(
            f"optimizer must be built over model.parameters() (the same arrays, in the same "
            f"order): it holds {len(own)} arrays, {shared} of them the model's "
            f"{len(model.parameters())}; {how}")


def check_callbacks(callbacks: Any) -> list:
    """``callbacks`` as a list; each must define ``on_batch_end`` or ``on_epoch_end``."""
    if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__") \
            or any(hasattr(callbacks, hook) for hook in _HOOKS):
        raise TypeError(f"callbacks must be a list of objects, got {type(callbacks).__name__}"
                        "; wrap a single one in a list: callbacks=[callback]")
    callbacks = list(callbacks)
    for index, callback in enumerate(callbacks):
        if not any(callable(getattr(callback, hook, None)) for hook in _HOOKS):
            raise TypeError(f"callbacks[{index}] ({type(callback).__name__}) defines neither "
                            f"on_batch_end(trainer, logs) nor on_epoch_end(trainer, logs), so "
                            f"it would never be called")
    return callbacks


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
