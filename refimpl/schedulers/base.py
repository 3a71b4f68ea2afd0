"""The one protocol every scheduler follows.

A scheduler is constructed with the initial learning rate ``lr`` (a float, or one float per
parameter group), and exposes

* ``lr``      -- the rate in force now (float; the first group's rate when there are groups),
* ``lrs``     -- the rates of all groups (list of floats),
* ``step(...) -> float`` -- consumes its signal, updates the rates, returns the new ``lr``,
* ``state_dict()`` / ``load_state_dict(state)`` -- plain JSON-serialisable dicts.

The signal a scheduler consumes is explicit in two class attributes, which is all a trainer
needs to drive any scheduler without knowing its class:

* ``interval`` -- ``"step"`` (called after every optimizer step) or ``"epoch"`` (once per epoch),
* ``signal``   -- what ``step`` takes: ``"none"`` (``step()``), ``"loss"`` (``step(loss)``,
  the batch loss for step-interval schedulers, the validation loss for epoch-interval ones),
  ``"params"`` (``step(params)``, the list of parameter arrays), ``"grads"``
  (``step(grads)``), or ``"batch_losses"`` (``step(batch_losses)``, the epoch's batch losses).
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def check_lr(value: Any, name: str = "lr") -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming the argument."""
    try:
        lr = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(lr) or lr < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return lr


def as_group_list(value: Any, n_groups: int, name: str) -> list[float]:
    """Broadcast a float (or check a per-group list) to one float per parameter group."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_groups:
            raise ValueError(
                f"{name} has {len(value)} entries but there are {n_groups} parameter groups"
            )
        return [check_lr(v, name) for v in value]
    return [check_lr(value, name)] * n_groups


class Scheduler:
    """Base class: holds the per-group rates and the state-dict plumbing.

    Subclasses set ``interval`` and ``signal``, implement ``step``, and list the names of
    their mutable attributes in ``_state_keys`` (hyper-parameters included, so that loading
    a state dict restores the whole object).
    """

    interval: str = "epoch"
    signal: str = "none"
    _state_keys: Sequence[str] = ()

    def __init__(self, lr: float | Sequence[float]):
        if isinstance(lr, (list, tuple)):
            if len(lr) == 0:
                raise ValueError("lr must be a float or a non-empty list of floats")
            self.base_lrs = [check_lr(v) for v in lr]
        else:
            self.base_lrs = [check_lr(lr)]
        self.lrs = list(self.base_lrs)

    @property
    def lr(self) -> float:
        return self.lrs[0]

    @property
    def n_groups(self) -> int:
        return len(self.base_lrs)

    def step(self, *args, **kwargs) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:
        state = {"class": type(self).__name__, "base_lrs": list(self.base_lrs),
                 "lrs": list(self.lrs)}
        for key in self._state_keys:
            state[key] = _to_plain(getattr(self, key))
        return state

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        cls = state.get("class")
        if cls != type(self).__name__:
            raise ValueError(
                f"state dict belongs to {cls!r}, not {type(self).__name__!r}; "
                "load it into a scheduler of the class that saved it"
            )
        required = ["base_lrs", "lrs", *self._state_keys]
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"state dict for {cls} is missing keys {missing}")
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self.lrs = [float(v) for v in state["lrs"]]
        for key in self._state_keys:
            setattr(self, key, _from_plain(state[key]))


def _to_plain(value: Any) -> Any:
    """Convert NumPy scalars/arrays and tuples to JSON-friendly Python objects."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_plain(v) for k, v in value.items()}
    return value
