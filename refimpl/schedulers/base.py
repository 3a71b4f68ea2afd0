"""The one protocol every scheduler follows.

A scheduler is constructed with the initial learning rate ``lr`` (a float, or one float per
parameter group), and exposes

* ``lr``      -- the rate in force now (float; the first group's rate when there are groups),
* ``lrs``     -- the rates of all groups (list of floats),
* ``step(...) -> float`` -- consumes its signal, updates the rates, returns the new ``lr``,
* ``state_dict()`` / ``load_state_dict(state)`` -- plain JSON-serialisable dicts,
* ``apply_to(optimizer)`` -- writes the rates (and cycled momenta) into an optimizer's groups.

The signal a scheduler consumes is explicit in two class attributes, which is all a trainer
needs to drive any scheduler without knowing its class:

* ``interval`` -- ``"step"`` (called after every optimizer step) or ``"epoch"`` (once per epoch),
* ``signal``   -- what ``step`` takes: ``"none"`` (``step()``), ``"loss"`` (``step(loss)``,
  the batch loss for step-interval schedulers, the validation loss for epoch-interval ones),
  ``"params"`` (``step(params)``, the list of parameter arrays), ``"grads"``
  (``step(grads)``), or ``"batch_losses"`` (``step(batch_losses)``, the epoch's batch losses).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from typing import Any

from .checks import check_lr


class Scheduler:
    """Base class: holds the per-group rates and the state-dict plumbing.

    Subclasses set ``interval`` and ``signal``, implement ``step``, and list the names of
    their mutable attributes in ``_state_keys`` (hyper-parameters included, so that loading
    a state dict restores the whole object).
    """

    interval: str = "epoch"
    signal: str = "none"
    _state_keys: Sequence[str] = ()
    #: Whether ``lrs`` may hold a negative rate. A torch-style formula evaluated past the end
    #: of its schedule gives one (OneCycleLR's linear anneal at ``total_steps``, as torch's
    #: does); such a state must load back, and a trainer refuses the rate only if a step
    #: would use it. ``base_lrs`` are always finite and >= 0.
    _signed_lrs: bool = False

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
        """Restore a state saved by ``state_dict``: all or nothing, and only what the
        constructor would accept.

        The state may hold exactly the keys this scheduler's own ``state_dict()`` writes
        (unknown keys are refused, missing ones too). Its hyper-parameters are checked by the
        class's own constructor: a throw-away scheduler is built from them (see
        :meth:`_validation_kwargs`), so a value the constructor refuses (``factor=5``,
        ``patience=-3``) is refused here with the constructor's message, and a value it
        accepts is stored as the constructor would store it. Every other value (counters,
        buffers) is checked against the kind of value this scheduler holds under the same key
        (a number where a number is held, an int where an int is, ...). Nothing is assigned
        before every check has passed, so a bad state raises ``ValueError`` (or ``TypeError``
        for a state that is not a dict) and leaves the scheduler exactly as it was.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        cls = state.get("class")
        if cls != type(self).__name__:
            raise ValueError(
                f"state dict belongs to {cls!r}, not {type(self).__name__!r}; "
                "load it into a scheduler of the class that saved it"
            )
        unknown = sorted(set(state) - set(self.state_dict()))
        if unknown:
            raise ValueError(
                f"state dict for {cls} has unknown keys {unknown}; it may hold only the keys "
                f"its state_dict() writes"
            )
        required = ["base_lrs", "lrs", *self._state_keys]
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"state dict for {cls} is missing keys {missing}")
        # the group count comes from the state, like every hyper-parameter
        n_groups = len(state["base_lrs"]) if isinstance(state["base_lrs"], list) else 0
        new = {key: _rates(state[key], max(n_groups, 1), key,
                           signed=self._signed_lrs and key == "lrs")
               for key in ("base_lrs", "lrs")}
        checked, fresh = self._checked_hyper_parameters(state)
        new.update(checked)
        for key in self._state_keys:
            if key in new:
                continue
            value = _from_plain(state[key])
            if value is None and fresh is not None and getattr(fresh, key) is None:
                new[key] = None  # a slot empty before the first step (e.g. the last loss)
            else:
                new[key] = _conform(value, _to_plain(getattr(self, key)), key)
        before = {key: getattr(self, key) for key in new}
        try:  # a property setter or the hook may still refuse a value: then undo it all
            for key, value in new.items():
                setattr(self, key, value)
            self._after_load()
        except (TypeError, ValueError):
            for key, value in before.items():
                setattr(self, key, value)
            raise

    #: Constructor arguments that say where to resume rather than how to schedule (torch's
    #: ``last_epoch``): the scheduler that checks a loaded state is built without them.
    _resume_args: Sequence[str] = ("last_epoch",)

    def _validation_kwargs(self, state: dict) -> dict[str, Any] | None:
        """The constructor arguments that rebuild this scheduler's hyper-parameters from
        ``state``, or ``None`` when the constructor needs live objects (child schedulers).

        ``lr`` (and ``base_lr``) is ``state["base_lrs"]``; an argument ``name`` listed in
        ``_state_keys`` is ``state[name]``, or ``state[name + "s"]`` for one kept per group
        (``min_lr`` is held as ``min_lrs``); an argument not in the state takes its default,
        or, when it has none, this scheduler's own value (e.g. the callables of a lambda
        schedule). Subclasses whose constructor cannot be driven this way override this
        method (returning ``None`` leaves only the kind checks).
        """
        kwargs: dict[str, Any] = {}
        for name, param in inspect.signature(type(self)).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) \
                    or name in self._resume_args:
                continue
            if name in ("lr", "base_lr"):  # the rates the schedule starts from
                kwargs[name] = list(state["base_lrs"])
            elif name in self._state_keys or name + "s" in self._state_keys:
                kwargs[name] = copy.deepcopy(
                    state[name] if name in self._state_keys else state[name + "s"])
            elif param.default is param.empty:
                live = getattr(self, name, getattr(self, name + "s", _ABSENT))
                if live is _ABSENT or _holds_scheduler(live):
                    return None
                kwargs[name] = live
        return kwargs

    def _checked_hyper_parameters(self, state: dict) -> tuple[dict[str, Any], Any]:
        """The loaded hyper-parameters as the class's constructor checks and stores them,
        and the freshly built scheduler that checked them (``None`` when none could be)."""
        kwargs = self._validation_kwargs(state)
        if kwargs is None:
            return {}, None
        try:
            probe = type(self)(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"state dict for {type(self).__name__}: {exc} (a loaded state must hold "
                "hyper-parameters the constructor accepts)"
            ) from None
        keys = [key for key in self._state_keys
                if key in kwargs or (key.endswith("s") and key[:-1] in kwargs)]
        return {key: copy.deepcopy(getattr(probe, key)) for key in keys}, probe

    def apply_to(self, optimizer: Any) -> None:
        """Write this scheduler's rates, and its cycled momenta, into ``optimizer``'s
        parameter groups: :func:`apply_to`."""
        apply_to(self, optimizer)

    def explain(self) -> dict:
        """The intermediates of the last ``step`` as a dict, with a one-sentence ``rule``.

        Every scheduler overrides this with its own terms (documented in its docstring);
        this default gives only the class and the rates.
        """
        return {"rule": f"{type(self).__name__}.step", "lrs": list(self.lrs)}

    def _after_load(self) -> None:
        """Hook for subclasses: rebuild derived objects (arrays) and check invariants after
        a load; raising ``ValueError``/``TypeError`` here undoes the load."""


_ABSENT = object()


def apply_to(scheduler: Any, optimizer: Any) -> None:
    """Write ``scheduler.lrs`` into ``optimizer.param_groups``, and its momenta where it
    cycles them, as a torch scheduler writes its optimizer's groups after each step.

    A manual loop calls it after every ``scheduler.step()``::

        optimizer.step(grads)
        scheduler.step()
        scheduler.apply_to(optimizer)      # or apply_to(scheduler, optimizer)

    One rate is written to every group, or one rate per group. ``CyclicLR`` and
    ``OneCycleLR`` built with ``cycle_momentum=True`` also expose ``momentums`` (one per
    group): each goes into the group's ``betas[0]`` (Adam's beta1) or its ``momentum``
    (SGD's), as torch writes them; an optimizer with neither is refused.

    The rates are written as they are, as torch writes them: a schedule evaluated past its
    end may hold a rate no step should use (``OneCycleLR``'s linear anneal at
    ``total_steps`` is below zero, as torch's). The optimizer does not check its rates;
    :class:`refimpl.training.Trainer` refuses such a rate before a step would use it.

    Raises
    ------
    ValueError
        The rates are not one per group (nor a single one); a rate is NaN or infinite; or
        momenta are cycled for an optimizer whose groups hold neither ``momentum`` nor
        ``betas``.
    """
    groups = optimizer.param_groups
    lrs = list(scheduler.lrs)
    if len(lrs) == 1:
        lrs = lrs * len(groups)
    if len(lrs) != len(groups):
        raise ValueError(f"the scheduler has {len(lrs)} rates but the optimizer has "
                         f"{len(groups)} parameter groups; build them with the same groups")
    lrs = [_finite(lr, f"scheduler lr (group {index})") for index, lr in enumerate(lrs)]
    momentums = list(getattr(scheduler, "momentums", None) or [])
    if len(momentums) == 1:
        momentums = momentums * len(groups)
    if momentums and not all("betas" in group or "momentum" in group for group in groups):
        raise ValueError("cycle_momentum needs an optimizer with momentum or betas (SGD, "
                         "Adam); build the scheduler with cycle_momentum=False")
    for group, lr in zip(groups, lrs):
        group["lr"] = lr
    for group, momentum in zip(groups, momentums):
        if "betas" in group:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum


def _holds_scheduler(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Scheduler) for v in value)
    return isinstance(value, Scheduler)


def _finite(value: Any, name: str) -> float:
    """``value`` as a finite float, of either sign."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _rates(value: Any, n_groups: int, key: str, signed: bool = False) -> list[float]:
    """``n_groups`` rates, each finite and >= 0 (any finite number when ``signed``)."""
    if not isinstance(value, list) or len(value) != n_groups:
        raise ValueError(f"state[{key!r}] must be a list of {n_groups} rates, got {value!r}")
    if signed:
        return [_finite(v, f"state[{key!r}]") for v in value]
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
