"""LinearWarmup: a linear warm-up handing over to another scheduler, which may be loss-driven
(docs/methods.md §3).
"""

from __future__ import annotations

from typing import Any

from .base import Scheduler
from .checks import check_int, check_interval
from .composite import SequentialLR
from .decay import LinearLR
from .lr_base import (
    LrArg,
    ParamGroups,
    as_param_groups,
)


class LinearWarmup(SequentialLR):
    """Linear warm-up from ``start_factor * lr`` to ``lr`` over ``total_iters`` epochs, then
    hand over to another scheduler ``after`` (or keep ``lr`` when ``after`` is None).

    ``lr_e = base (s + (1 - s) e / T)`` for ``e < T`` (closed form; the step uses torch
    LinearLR's recursion); at ``e >= T`` the rate is ``after``'s rate at epoch ``e - T``.

    It is ``SequentialLR(lr, [LinearLR(lr, start_factor=s, end_factor=1.0, total_iters=T),
    after], milestones=[T])``, and with ``after=None`` a lone ``LinearLR`` (its recursion ends
    at ``base`` up to a few ulps, as torch's does). Unlike torch's SequentialLR, ``after`` may
    be loss-driven (:class:`ReduceLROnPlateau`): then ``step(loss)`` is the signature, losses
    seen during warm-up are ignored, and at ``e = T`` the rates return to ``base`` and the
    plateau rule takes over.

    Parameters
    ----------
    lr : float or list of float -- must equal ``after``'s initial rates.
    after : Scheduler or None -- built on its own rates; the warm-up takes it over.
    start_factor : float in (0, 1], default 1/3 (torch's default)
    total_iters : int >= 1, default 5
    interval : "epoch" or "step"; defaults to ``after``'s interval (else "epoch").

    ``explain()``: the warm-up's ``LinearLR`` terms before ``T``, then ``after``'s.

    Examples
    --------
    The rate after construction, then after each of 6 ``step()`` calls:

    >>> from refimpl.schedulers import CosineAnnealingLR, LinearWarmup
    >>> scheduler = LinearWarmup(0.1, CosineAnnealingLR(0.1, T_max=4), start_factor=0.5, total_iters=2)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(6)]
    >>> [round(lr, 6) for lr in rates]
    [0.05, 0.075, 0.1, 0.085355, 0.05, 0.014645, 0.0]
    """

    def __init__(self, lr: LrArg, after: Scheduler | None = None, *,
                 start_factor: float = 1.0 / 3, total_iters: int = 5,
                 interval: str | None = None):
        groups = as_param_groups(lr)
        if after is not None:
            self._check_after(after, groups)
        interval = interval if interval is not None else (after.interval if after else "epoch")
        warmup = LinearLR(groups, start_factor, 1.0, total_iters, interval=interval)
        self.after = after
        self.start_factor, self.total_iters = warmup.start_factor, warmup.total_iters
        if after is None or after.signal == "loss":
            self._plateau = after
            self._init_alone(groups, warmup, interval)
        else:
            self._plateau = None
            after.groups = groups  # adopt: the warm-up and `after` share the rates
            super().__init__(groups, [warmup, after], [warmup.total_iters], interval=interval)
        self.signal = after.signal if after is not None else "none"

    @staticmethod
    def _check_after(after: Any, groups: ParamGroups) -> None:
        if not isinstance(after, Scheduler):
            raise ValueError(f"after must be a Scheduler or None, got {type(after).__name__}")  # noqa: TRY004 - bad input is a ValueError throughout
        if isinstance(after, LinearWarmup):
            raise ValueError("after must not itself be a LinearWarmup")  # noqa: TRY004 - bad input is a ValueError throughout
        if list(after.base_lrs) != groups.lrs:
            raise ValueError(
                f"after was built with lr={after.base_lrs}, the warm-up with "
                f"lr={groups.lrs}; build both with the same initial lr")

    def _init_alone(self, groups: ParamGroups, warmup: LinearLR, interval: str) -> None:
        """A lone LinearLR (``after`` None), or the LinearLR before a loss-driven ``after``."""
        self.groups, self.interval = groups, check_interval(interval)
        self._schedulers, self.milestones = [warmup], [warmup.total_iters]
        self.base_lrs = list(warmup.base_lrs)
        self.last_epoch = 0

    def step(self, *signal: Any) -> float:
        """Advance one epoch; ``signal`` (e.g. the loss) is passed on to ``after``."""
        if self._plateau is None and self.after is not None:
            return super().step()
        self.last_epoch += 1
        warmup = self._schedulers[0]
        if self.after is None or self.last_epoch < self.total_iters:
            warmup.step()
        elif self.last_epoch == self.total_iters:
            self.lrs = list(self.base_lrs)
            self.after.groups = self.groups
        else:
            self.after.step(*signal)
        return self.lr

    def closed_form(self, epoch: int) -> list[float]:
        """Rates at ``epoch`` (one per group); past warm-up, ``after.closed_form``."""
        epoch = check_int(epoch, "epoch", 0)
        if epoch < self.total_iters or self.after is None:
            return self._schedulers[0].closed_form(epoch)
        if not hasattr(self.after, "closed_form"):
            raise ValueError(f"{type(self.after).__name__} has no closed form")
        return self.after.closed_form(epoch - self.total_iters)

    _state_keys = ("interval", "last_epoch", "start_factor", "total_iters")

    def state_dict(self) -> dict:
        state = Scheduler.state_dict(self)
        state["warmup"] = self._schedulers[0].state_dict()
        state["after"] = None if self.after is None else self.after.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Load the warm-up's state, its LinearLR's (``"warmup"``) and ``after``'s
        (``"after"``); all or nothing."""
        before = self.state_dict()
        try:
            self._load(state)
        except (ValueError, TypeError):
            self._load(before)
            raise

    def _load(self, state: dict) -> None:
        Scheduler.load_state_dict(self, state)
        missing = [key for key in ("warmup", "after") if key not in state]
        if missing:
            raise ValueError(f"state dict for LinearWarmup is missing keys {missing}")
        if (state["after"] is None) != (self.after is None):
            raise ValueError(
                "state dict and this LinearWarmup disagree on whether `after` is set; "
                "build the warm-up with the same kind of `after` scheduler")
        self._schedulers[0].load_state_dict(state["warmup"])
        if self.after is not None:
            self.after.load_state_dict(state["after"])
            if self._plateau is not None and self.last_epoch >= self.total_iters:
                self.after.groups = self.groups
        self.milestones = [self.total_iters]
        self.lrs = state["lrs"]

    def explain(self) -> dict[str, Any]:
        """``after``'s explanation once it has taken over, else the warm-up's."""
        active = self._schedulers[0]
        if self.after is not None and self.last_epoch >= self.total_iters:
            active = self.after
        explained = active.explain()
        part = "warm-up" if active is self._schedulers[0] else "after the warm-up"
        return {**explained, "scheduler": "LinearWarmup",
                "rule": f"{part}, {type(active).__name__}: {explained['rule']}",
                "active": type(active).__name__, "last_epoch": self.last_epoch}
