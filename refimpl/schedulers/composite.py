"""Schedules made of schedules: torch's SequentialLR and ChainedScheduler (docs/methods.md §3).

The children act on one shared :class:`~refimpl.schedulers.lr_base.ParamGroups` (torch
builds them on one optimizer), so each reads the rates the others left. Either build them
on one::

    groups = ParamGroups([0.1, 0.01])
    warm = LinearLR(groups, start_factor=0.1, total_iters=5)
    decay = ExponentialLR(groups, gamma=0.9)
    schedule = SequentialLR(groups, [warm, decay], milestones=[5])

or build each from the same rates, and the composite puts them on one (:func:`shared_groups`)::

    lr = [0.1, 0.01]
    schedule = SequentialLR(lr, [LinearLR(lr, start_factor=0.1, total_iters=5),
                                 ExponentialLR(lr, gamma=0.9)], milestones=[5])
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from .base import Scheduler
from .checks import check_int, check_interval
from .lr_base import GroupRates, LrArg, ParamGroups, rule_of


def _check_children(schedulers: Any, owner: str) -> list[Scheduler]:
    if not isinstance(schedulers, (list, tuple)) or not schedulers:
        raise ValueError(f"{owner} needs a non-empty list of schedulers, got {schedulers!r}")
    for index, child in enumerate(schedulers):
        if not isinstance(child, Scheduler) or not hasattr(child, "groups"):
            raise ValueError(f"schedulers[{index}] of {owner} must be a torch-style scheduler "
                             f"of refimpl.schedulers, got {type(child).__name__}")
        if child.signal != "none":
            raise ValueError(f"{owner} cannot hold the loss-driven {type(child).__name__} "
                             f"(schedulers[{index}]): its step needs a loss, as in torch")
    return list(schedulers)


def shared_groups(children: Sequence[Scheduler], lr: Any, owner: str) -> ParamGroups:
    """The one :class:`ParamGroups` a composite's children act on.

    * Children built on one ``ParamGroups`` (torch: on one optimizer) act on it; a
      composite's own ``lr``, when given, must be that one.
    * Children built each from the same rates (floats: the natural spelling, which gives
      each child private rates) are rebuilt on one new ``ParamGroups`` holding those rates
      (:func:`_rebuild_on_one`). This needs children not yet stepped, built from equal rates
      (equal to the composite's ``lr`` when it has one).

    Anything else is refused with ``ValueError`` naming the child and the fix.
    """
    fix = (f"build every child on one ParamGroups (g = ParamGroups(lr); {owner}(..., "
           "[StepLR(g, ...), ...])), or every child from the same rates")
    if isinstance(lr, ParamGroups) or all(_given_rates(c) is None for c in children):
        groups = lr if isinstance(lr, ParamGroups) else children[0].groups
        for index, child in enumerate(children):
            if child.groups is not groups:
                raise ValueError(f"schedulers[{index}] of {owner} acts on other rates than "
                                 f"{'lr' if isinstance(lr, ParamGroups) else 'schedulers[0]'}"
                                 f"; {fix}")
        if lr is not None and not isinstance(lr, ParamGroups):
            raise ValueError(f"the schedulers of {owner} share a ParamGroups; pass that one as "
                             "lr (lr=groups), not rates")
        return groups
    rates = ParamGroups(lr).lrs if lr is not None else _given_rates(children[0])
    for index, child in enumerate(children):
        given = _given_rates(child)
        if given is None:
            raise ValueError(f"schedulers[{index}] of {owner} was built on a ParamGroups but "
                             f"others from rates; {fix}")
        if given != rates:
            raise ValueError(f"schedulers[{index}] of {owner} was built from lr={given}, not "
                             f"{rates}; {fix}")
        if child._step_count != 1:
            raise ValueError(f"schedulers[{index}] of {owner} has been stepped since it was "
                             f"built; pass fresh schedulers, or {fix}")
        if any(other is child for other in children[:index]):
            raise ValueError(f"schedulers[{index}] of {owner} is listed twice; pass each "
                             "scheduler once")
    return _rebuild_on_one(children, rates)


def _rebuild_on_one(children: Sequence[Scheduler], rates: list[float]) -> ParamGroups:
    """Run each child's constructor again, in order and in place (references to the children
    stay valid), with its own arguments but one new ``ParamGroups`` holding ``rates``: each
    construction then starts from the rates the children before it left, exactly as torch
    schedulers built one after another on one optimizer."""
    groups = ParamGroups(rates)
    for child in children:
        args, kwargs = child._arguments  # recorded by LRScheduler.__new__
        if args:
            args = (groups, *args[1:])
        else:
            kwargs = {**kwargs, "lr": groups}
        child.__init__(*args, **kwargs)
    return groups


def _given_rates(child: Scheduler) -> list[float] | None:
    """The rates ``child`` was built from, or ``None`` when it was built on a ParamGroups
    (or is not a scheduler the composite can rebuild)."""
    args, kwargs = getattr(child, "_arguments", ((), {}))
    lr = args[0] if args else kwargs.get("lr")
    if lr is None or isinstance(lr, ParamGroups):
        return None
    return [float(v) for v in (lr if isinstance(lr, (list, tuple)) else [lr])]


def _common_interval(schedulers: Sequence[Scheduler], interval: str | None) -> str:
    if interval is not None:
        return check_interval(interval)
    intervals = {child.interval for child in schedulers}
    if len(intervals) > 1:
        raise ValueError(f"the schedulers step per {sorted(intervals)}; build them with one "
                         "interval or pass interval= explicitly")
    return intervals.pop()


def _undo(scheduler: Any) -> None:
    """torch's ``recursive_undo``: step every leaf back by one epoch."""
    if hasattr(scheduler, "_schedulers"):
        for child in scheduler._schedulers:
            _undo(child)
    elif hasattr(scheduler, "last_epoch"):
        scheduler.last_epoch -= 1


class _Composite(GroupRates, Scheduler):
    """State handling shared by the composites: own keys plus the children's states."""

    signal = "none"
    _schedulers: list[Scheduler]

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def _children(self) -> list[Scheduler]:
        return self._schedulers

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["schedulers"] = [child.state_dict() for child in self._children()]
        return state

    def load_state_dict(self, state: dict) -> None:
        """Load the own state and every child's (nested under ``"schedulers"``); all or
        nothing."""
        before = self.state_dict()
        children = self._children()
        try:
            super().load_state_dict(state)
            nested = state.get("schedulers")
            if not isinstance(nested, list) or len(nested) != len(children):
                raise ValueError(f"state dict for {type(self).__name__} must hold "
                                 f"{len(children)} child states under 'schedulers'")
            for child, child_state in zip(children, nested):
                child.load_state_dict(child_state)
            self.lrs = state["lrs"]
        except (ValueError, TypeError):
            Scheduler.load_state_dict(self, before)
            for child, child_state in zip(children, before["schedulers"]):
                child.load_state_dict(child_state)
            self.lrs = before["lrs"]
            raise

    def _initial_step(self) -> None:
        """As torch: a composite's initial step is one ordinary step."""
        self._step_count = 0
        self.step()


class SequentialLR(_Composite):
    """Run ``schedulers[i]`` between ``milestones[i-1]`` and ``milestones[i]`` (torch's
    SequentialLR).

    Rule, with ``i = number of milestones <= e``: at ``e = milestones[i-1]`` scheduler ``i``
    restarts at its epoch 0 (its closed form at 0 where it has one, else its rule applied to
    the rates held); otherwise scheduler ``i`` takes one ordinary ``step()``. Construction,
    as torch: rates back to ``initial_lr``, every child one epoch back, then the initial step
    of the scheduler in force at epoch 0.

    Parameters
    ----------
    lr : ParamGroups -- the groups every child was built on; or the rates every child was
        built from (then the children are put on one ParamGroups, see :func:`shared_groups`).
    schedulers : list of schedulers built on ``lr`` (none loss-driven)
    milestones : non-decreasing list of ints, one fewer than ``schedulers``
    last_epoch : int, default -1
    interval : "epoch" or "step"; defaults to the children's common interval.

    ``explain()``: ``active`` (index of the scheduler in force) and its ``explain()``.
    """

    _state_keys = ("interval", "last_epoch", "milestones")

    def __init__(self, lr: LrArg, schedulers: Sequence[Scheduler], milestones: Sequence[int],
                 last_epoch: int = -1, *, interval: str | None = None):
        children = _check_children(schedulers, "SequentialLR")
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise ValueError(f"milestones must be a list of integers, got {milestones!r}")
        milestones = [check_int(m, "milestones", 0) for m in milestones]
        if len(milestones) != len(children) - 1:
            raise ValueError(f"SequentialLR needs one milestone fewer than schedulers; got "
                             f"{len(children)} schedulers and {len(milestones)} milestones")
        if milestones != sorted(milestones):
            raise ValueError(f"milestones must be non-decreasing, got {milestones}")
        self.interval = _common_interval(children, interval)
        groups = shared_groups(children, lr, "SequentialLR")
        self.groups, self._schedulers, self.milestones = groups, children, milestones
        self.last_epoch = check_int(last_epoch, "last_epoch", -1) + 1
        self.base_lrs = [group["initial_lr"] for group in groups.groups]
        self.lrs = list(self.base_lrs)
        _undo(self)
        self._schedulers[bisect_right(self.milestones, 0)]._initial_step()

    def step(self) -> float:
        """Advance one epoch and return the first group's rate."""
        self.last_epoch += 1
        index = bisect_right(self.milestones, self.last_epoch)
        child = self._schedulers[index]
        if index > 0 and self.milestones[index - 1] == self.last_epoch:
            if not hasattr(child, "_update_lr"):
                raise ValueError(f"{type(child).__name__} cannot restart at a milestone "
                                 "(torch's SequentialLR cannot either)")
            child._update_lr(0)
        else:
            child.step()
        return self.lr

    def explain(self) -> dict[str, Any]:
        """The scheduler in force and its own explanation."""
        index = bisect_right(self.milestones, self.last_epoch)
        child = self._schedulers[index].explain()
        rule = (f"schedulers[{index}] ({type(self._schedulers[index]).__name__}) in force at "
                f"epoch {self.last_epoch} (milestones {self.milestones}): "
                f"{child.get('rule', rule_of(self._schedulers[index]))}")
        return {"scheduler": "SequentialLR", "rule": rule,
                "last_epoch": self.last_epoch, "active": index,
                "lrs": list(self.lrs), "child": child}


class ChainedScheduler(_Composite):
    """Step every scheduler in turn on the same rates (torch's ChainedScheduler): their
    effects compose, e.g. ``StepLR`` then ``ExponentialLR`` give ``base gamma_1^floor(e/s)
    gamma_2^e`` for the chainable rules.

    Parameters
    ----------
    schedulers : list of schedulers built on one ParamGroups, or each from the same rates
        (see :func:`shared_groups`); none loss-driven. As in torch, there is no ``lr``
        argument.

    ``explain()``: ``children``, the ``explain()`` of each in order.
    """

    _state_keys = ("interval", "last_epoch")

    def __init__(self, schedulers: Sequence[Scheduler]):
        self._schedulers = _check_children(schedulers, "ChainedScheduler")
        self.interval = _common_interval(self._schedulers, None)
        self.groups = groups = shared_groups(self._schedulers, None, "ChainedScheduler")
        self.base_lrs = [group.get("initial_lr", group["lr"]) for group in groups.groups]
        self.last_epoch = 0

    def step(self) -> float:
        """Step every child once, in order; return the first group's rate."""
        self.last_epoch += 1
        for child in self._schedulers:
            child.step()
        return self.lr

    def explain(self) -> dict[str, Any]:
        """Every child's explanation, in order."""
        children = [child.explain() for child in self._schedulers]
        steps = "; then ".join(f"{type(child).__name__}: {explained.get('rule', rule_of(child))}"
                               for child, explained in zip(self._schedulers, children))
        return {"scheduler": "ChainedScheduler",
                "rule": f"every child in turn on the same rates: {steps}",
                "last_epoch": self.last_epoch, "lrs": list(self.lrs), "children": children}
