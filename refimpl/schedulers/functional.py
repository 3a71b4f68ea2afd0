"""LambdaLR and MultiplicativeLR: a rate given by the user's function of the epoch, with the
semantics of ``torch.optim.lr_scheduler`` (docs/methods.md §3; conventions shared by every
torch-style schedule in :mod:`refimpl.schedulers.lr_base`).

A callable object's plain-data attributes travel in the state dict (JSON); a function's do
not, as in torch, which pickles them.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import _to_plain
from .checks import check_int
from .lr_base import (
    Formula,
    LrArg,
    LRScheduler,
    as_param_groups,
    number,
)


def _lambdas(lr_lambda: Any, n_groups: int) -> list[Callable[[int], float]]:
    """One callable per group (torch's rule: one for all, or a list with one per group)."""
    if isinstance(lr_lambda, (list, tuple)):
        if len(lr_lambda) != n_groups:
            raise ValueError(f"lr_lambda has {len(lr_lambda)} entries but there are "
                             f"{n_groups} parameter groups; give one callable or one per group")
        functions = list(lr_lambda)
    else:
        functions = [lr_lambda] * n_groups
    for function in functions:
        if not callable(function):
            raise ValueError(f"lr_lambda must be a callable epoch -> factor, got {function!r}")  # noqa: TRY004 - bad input is a ValueError throughout
    return functions


class _LambdaScheduler(LRScheduler):
    """What LambdaLR and MultiplicativeLR share: one callable per group, and the state of
    callable *objects* in ``state_dict()`` (torch's rule, below)."""

    _state_keys = ("interval", "last_epoch")

    def __init__(self, lr: LrArg, lr_lambda: Any, last_epoch: int = -1, *,
                 interval: str = "epoch"):
        self.lr_lambdas = _lambdas(lr_lambda, len(as_param_groups(lr)))
        super().__init__(lr, last_epoch, interval=interval)

    def state_dict(self) -> dict:
        """The state, with ``lr_lambdas``: per group, the attributes of the callable when it
        is an object (an instance of a class with ``__call__``), ``None`` for a function or
        a lambda, as torch saves them. Only attributes that are plain data are kept (numbers,
        strings, bools, ``None``, NumPy arrays and scalars as lists and numbers, and lists or
        string-keyed dicts of those); others (another object, a function) are left out, as a
        JSON state cannot hold them."""
        state = super().state_dict()
        state["lr_lambdas"] = [_callable_state(function) for function in self.lr_lambdas]
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state saved by ``state_dict`` (all or nothing), then each saved callable
        object's attributes into this scheduler's callable of the same group (torch's
        ``lr_lambda.__dict__.update``; an attribute held as a NumPy array or scalar is
        restored as one). A state without ``lr_lambdas`` restores no attributes."""
        saved = state.get("lr_lambdas") if isinstance(state, dict) else None
        if saved is not None:
            self._check_callable_states(saved)
        super().load_state_dict(state)
        for function, attributes in zip(self.lr_lambdas, saved or []):
            if attributes is not None:
                vars(function).update({name: _like(value, vars(function).get(name))
                                       for name, value in attributes.items()})

    def _check_callable_states(self, saved: Any) -> None:
        if not isinstance(saved, list) or len(saved) != len(self.lr_lambdas):
            raise ValueError(f"state['lr_lambdas'] must be a list of {len(self.lr_lambdas)} "
                             f"entries (None or a dict of attributes), got {saved!r}")
        for group, (function, attributes) in enumerate(zip(self.lr_lambdas, saved)):
            if attributes is None:
                continue
            if not isinstance(attributes, dict) or not all(isinstance(k, str)
                                                           for k in attributes):
                raise ValueError(f"state['lr_lambdas'][{group}] must be None or a dict of "
                                 f"attributes, got {attributes!r}")
            if not hasattr(function, "__dict__"):
                raise ValueError(f"state['lr_lambdas'][{group}] holds attributes, but this "
                                 f"scheduler's lr_lambda for group {group} "
                                 f"({type(function).__name__}) cannot hold any; build it with "
                                 "the callable that was saved")


def _callable_state(function: Any) -> dict | None:
    """The plain-data attributes of a callable object; ``None`` for a function (torch saves
    ``fn.__dict__`` for anything that is not a ``types.FunctionType``)."""
    if isinstance(function, types.FunctionType) or not hasattr(function, "__dict__"):
        return None
    plain = {name: _to_plain(value) for name, value in vars(function).items()}
    return {name: value for name, value in plain.items() if _is_plain(value)}


def _is_plain(value: Any) -> bool:
    """Whether ``value`` is JSON data: None, bool, int, float, str, or lists / string-keyed
    dicts of those."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _like(value: Any, held: Any) -> Any:
    """``value`` in the NumPy type of ``held`` when ``held`` is an array or a NumPy scalar."""
    if isinstance(held, np.ndarray):
        return np.asarray(value, dtype=held.dtype)
    if isinstance(held, np.generic):
        return type(held)(value)
    return value


class LambdaLR(_LambdaScheduler):
    """``lr_e = base * lr_lambda(e)`` (torch's LambdaLR); this *is* its closed form.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    lr_lambda : callable ``epoch -> factor``, or one per group
    last_epoch : int, default -1 (fresh); ``k`` resumes at epoch ``k + 1`` as torch does.
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``factors`` (``lr_lambda(e)`` per group). The callables themselves are
    not part of ``state_dict()`` (build the scheduler with the same ones before loading); the
    attributes of a callable *object* are, as in torch (see ``state_dict``).

    Examples
    --------
    The rate after construction, then after each of 4 ``step()`` calls:

    >>> from refimpl.schedulers import LambdaLR
    >>> scheduler = LambdaLR(0.1, lambda epoch: 1 / (1 + epoch))
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(4)]
    >>> [round(lr, 6) for lr in rates]
    [0.1, 0.05, 0.033333, 0.025, 0.02]
    """

    def get_lr(self) -> list[float]:
        return self.closed_form(self.last_epoch)

    def closed_form(self, epoch: int) -> list[float]:
        return [base * f(epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]

    def _terms(self) -> dict[str, Any]:
        return {"factors": [f(self.last_epoch) for f in self.lr_lambdas]}

    def _formula(self, group: int) -> Formula:
        base, e = self.base_lrs[group], self.last_epoch
        factor = self.lr_lambdas[group](e)
        return Formula("lambda", "base_lr*lr_lambda(e)", f"{number(base)}*{number(factor)}",
                       base * factor, abs(base * factor), f"lr_lambda({e}) = {number(factor)}")


class MultiplicativeLR(_LambdaScheduler):
    """``lr_e = lr_{e-1} * lr_lambda(e)`` for ``e >= 1`` (torch's MultiplicativeLR), i.e.
    ``lr_e = base * prod_{k=1..e} lr_lambda(k)``.

    torch has no closed form here: ``step(epoch)`` multiplies the rate held by
    ``lr_lambda(epoch)`` once, as torch does. ``closed_form(epoch)`` is the product above.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    lr_lambda : callable ``epoch -> factor``, or one per group
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``factors`` (``lr_lambda(e)`` per group, ``None`` at construction).
    ``state_dict()`` keeps a callable object's attributes, as LambdaLR's does.

    Examples
    --------
    The rate after construction, then after each of 4 ``step()`` calls:

    >>> from refimpl.schedulers import MultiplicativeLR
    >>> scheduler = MultiplicativeLR(0.1, lambda epoch: 0.9)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(4)]
    >>> [round(lr, 6) for lr in rates]
    [0.1, 0.09, 0.081, 0.0729, 0.06561]
    """

    has_closed_form = False

    def get_lr(self) -> list[float]:
        if self._is_initial:
            self._lrs_before = None
            return self.lrs
        self._lrs_before = list(self.lrs)  # for explain(): the rate each factor multiplied
        return [lr * f(self.last_epoch) for f, lr in zip(self.lr_lambdas, self.lrs)]

    def closed_form(self, epoch: int) -> list[float]:
        rates = list(self.base_lrs)
        for k in range(1, check_int(epoch, "epoch", 0) + 1):
            rates = [lr * f(k) for f, lr in zip(self.lr_lambdas, rates)]
        return rates

    def _terms(self) -> dict[str, Any]:
        if self._step_count <= 1 and self.last_epoch <= 0:
            return {"factors": None}
        return {"factors": [f(self.last_epoch) for f in self.lr_lambdas]}

    def _formula(self, group: int) -> Formula | None:
        before = getattr(self, "_lrs_before", None)
        if before is None:  # construction, or a loaded state (it does not keep lr_{e-1})
            if self._step_count <= 1 and self.last_epoch <= 0:
                base = self.base_lrs[group]
                return Formula("multiplicative", "base_lr (no factor at construction)",
                               number(base), base, abs(base))
            return None
        lr, e = before[group], self.last_epoch
        factor = self.lr_lambdas[group](e)
        return Formula("multiplicative", "lr_{e-1}*lr_lambda(e)",
                       f"{number(lr)}*{number(factor)}", lr * factor, abs(lr * factor),
                       f"lr_lambda({e}) = {number(factor)}")

    def _after_load(self) -> None:
        self._lrs_before = None  # a state does not say what the last step multiplied
