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
from collections.abc import Sequence
from typing import Any


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
        """Restore a state saved by ``state_dict``: all or nothing.

        Every value is checked against the kind of value this scheduler holds under the same
        key (a number where a number is held, an int where an int is, a list of numbers where
        a list of numbers is, ...) before anything is assigned, so a bad state raises
        ``ValueError`` or ``TypeError`` and leaves the scheduler exactly as it was.
        """
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
        # the group count comes from the state, like every hyper-parameter
        n_groups = len(state["base_lrs"]) if isinstance(state["base_lrs"], list) else 0
        new = {key: _rates(state[key], max(n_groups, 1), key) for key in ("base_lrs", "lrs")}
        for key in self._state_keys:
            new[key] = _conform(_from_plain(state[key]), _to_plain(getattr(self, key)), key)
        before = {key: getattr(self, key) for key in new}
        try:  # a property setter or the hook may still refuse a value: then undo it all
            for key, value in new.items():
                setattr(self, key, value)
            self._after_load()
        except (TypeError, ValueError):
            for key, value in before.items():
                setattr(self, key, value)
            raise

    def explain(self) -> dict:
        """The intermediates of the last ``step`` as a dict, with a one-sentence ``rule``.

        Every scheduler overrides this with its own terms (documented in its docstring);
        this default gives only the class and the rates.
        """
        return {"rule": f"{type(self).__name__}.step", "lrs": list(self.lrs)}

    def _after_load(self) -> None:
        """Hook for subclasses: rebuild derived objects (arrays) and check invariants after
        a load; raising ``ValueError``/``TypeError`` here undoes the load."""


def _rates(value: Any, n_groups: int, key: str) -> list[float]:
    if not isinstance(value, list) or len(value) != n_groups:
        raise ValueError(f"state[{key!r}] must be a list of {n_groups} rates, got {value!r}")
    return [check_lr(v, f"state[{key!r}]") for v in value]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_numeric_tree(value: Any) -> bool:
    """None, a number, or lists / string-keyed dicts nesting those: what a not-yet-filled slot
    may receive (subclasses check the structure further in their setters or ``_after_load``)."""
    if value is None or _is_number(value):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_numeric_tree(v) for k, v in value.items())
    return isinstance(value, list) and all(_is_numeric_tree(v) for v in value)


def _conform(new: Any, old: Any, key: str) -> Any:
    """Return ``new`` if it is the same kind of value as ``old`` (both in plain form)."""
    if old is None:
        ok = _is_numeric_tree(new)
    elif isinstance(old, bool):
        ok = isinstance(new, bool)
    elif isinstance(old, int):
        ok = isinstance(new, int) and not isinstance(new, bool)
    elif isinstance(old, float):
        ok = _is_number(new)
    elif isinstance(old, str):
        ok = isinstance(new, str)
    elif isinstance(old, list):
        ok = isinstance(new, list)
        if ok and old:
            if len(old) == len(new) and not all(_is_number(v) for v in old):
                new = [_conform(n, o, key) for n, o in zip(new, old)]
            else:  # a list whose length may change: every entry like the first one held
                new = [_conform(n, old[0], key) for n in new]
        elif ok:
            ok = all(_is_numeric_tree(v) for v in new)
    elif isinstance(old, dict):
        ok = isinstance(new, dict) and set(new) == set(old)
        if ok:
            new = {k: _conform(new[k], old[k], key) for k in old}
    else:
        ok = type(new) is type(old)
    if not ok:
        raise ValueError(
            f"state[{key!r}] = {new!r} is not the kind of value this scheduler keeps there "
            f"(it holds {old!r}); load a state saved by the same scheduler"
        )
    return new


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
