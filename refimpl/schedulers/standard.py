"""The standard schedules, with the semantics of ``torch.optim.lr_scheduler`` (docs/methods.md §3).

Every class follows :mod:`refimpl.schedulers.base`: construct with the initial ``lr`` (one
float, or one per parameter group), then ``step()`` (or ``step(loss)`` for
:class:`ReduceLROnPlateau`) returns the new rate. The rate after construction is torch's rate
after its constructor (epoch 0); the ``k``-th ``step()`` gives torch's rate at epoch ``k``.

``step()`` is the *recursive* form torch uses (each rate computed from the previous one), so
traces agree with torch to rounding; ``closed_form(epoch)`` gives the textbook formula from
the initial rates. The two agree up to the rounding the recursion accumulates (tested).

All epoch-indexed schedulers take ``interval="epoch"`` (default) or ``"step"`` to tell the
trainer whether an "epoch" of the schedule is an epoch or one optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .base import Scheduler, as_group_list, check_lr

__all__ = [
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "LinearWarmup",
    "MultiStepLR",
    "ReduceLROnPlateau",
    "StepLR",
]

LrArg = float | Sequence[float]


# -- argument checks --------------------------------------------------------------------------
def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_factor(value: Any, name: str, *, low: float, high: float,
                  low_open: bool = False, high_open: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if not math.isfinite(number) or below or above:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return number


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_interval(value: Any) -> str:
    return _check_choice(value, "interval", ("epoch", "step"))


class _EpochScheduler(Scheduler):
    """An epoch-indexed schedule: ``step()`` advances ``last_epoch`` and applies ``_recurse``."""

    signal = "none"

    def __init__(self, lr: LrArg, interval: str = "epoch"):
        super().__init__(lr)
        self.interval = _check_interval(interval)
        self.last_epoch = 0

    def step(self) -> float:
        """Advance one epoch (or step) and return the new rate of the first group."""
        self.last_epoch += 1
        self.lrs = [self._recurse(lr, base) for lr, base in zip(self.lrs, self.base_lrs)]
        return self.lr

    def closed_form(self, epoch: int) -> list[float]:
        """Rates of all groups at ``epoch`` from the closed form (one float per group)."""
        epoch = _check_int(epoch, "epoch", 0)
        return [self._closed(base, epoch) for base in self.base_lrs]

    def _recurse(self, lr: float, base_lr: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _closed(self, base_lr: float, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class ConstantLR(_EpochScheduler):
    """``lr = base * factor`` for epochs ``e < total_iters``, then ``base`` (torch's ConstantLR).

    Recursive form: multiply by ``factor`` at construction, by ``1/factor`` at
    ``e == total_iters``.

    Parameters
    ----------
    lr : float or list of float -- initial rate(s), one per parameter group.
    factor : float in (0, 1], default 1/3 -- torch also accepts 0, which then divides by
        zero at ``total_iters``.
    total_iters : int >= 1, default 5
    interval : "epoch" (default) or "step"
    """

    _state_keys = ("interval", "last_epoch", "factor", "total_iters")

    def __init__(self, lr: LrArg, factor: float = 1.0 / 3, total_iters: int = 5, *,
                 interval: str = "epoch"):
        super().__init__(lr, interval)
        self.factor = _check_factor(factor, "factor", low=0.0, high=1.0, low_open=True)
        self.total_iters = _check_int(total_iters, "total_iters", 1)
        self.lrs = [base * self.factor for base in self.base_lrs]

    def _recurse(self, lr: float, base_lr: float) -> float:
        return lr * (1.0 / self.factor) if self.last_epoch == self.total_iters else lr

    def _closed(self, base_lr: float, epoch: int) -> float:
        return base_lr * (self.factor + (epoch >= self.total_iters) * (1 - self.factor))


class StepLR(_EpochScheduler):
    """``lr = base * gamma^floor(e / step_size)`` (torch's StepLR).

    Recursive form: multiply by ``gamma`` whenever ``e`` is a positive multiple of
    ``step_size``.

    Parameters
    ----------
    lr : float or list of float
    step_size : int >= 1
    gamma : float >= 0, default 0.1
    interval : "epoch" (default) or "step"
    """

    _state_keys = ("interval", "last_epoch", "step_size", "gamma")

    def __init__(self, lr: LrArg, step_size: int, gamma: float = 0.1, *,
                 interval: str = "epoch"):
        super().__init__(lr, interval)
        self.step_size = _check_int(step_size, "step_size", 1)
        self.gamma = _check_factor(gamma, "gamma", low=0.0, high=math.inf)

    def _recurse(self, lr: float, base_lr: float) -> float:
        return lr * self.gamma if self.last_epoch % self.step_size == 0 else lr

    def _closed(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(_EpochScheduler):
    """``lr = base * gamma^(number of milestones <= e)`` (torch's MultiStepLR).

    Recursive form: at a milestone ``e`` listed ``n`` times, multiply by ``gamma^n`` (also at
    ``e = 0``, i.e. at construction, as torch does).

    Parameters
    ----------
    lr : float or list of float
    milestones : list of int >= 0 -- sorted here; repeats count, as in torch.
    gamma : float >= 0, default 0.1
    interval : "epoch" (default) or "step"
    """

    _state_keys = ("interval", "last_epoch", "milestones", "gamma")

    def __init__(self, lr: LrArg, milestones: Sequence[int], gamma: float = 0.1, *,
                 interval: str = "epoch"):
        super().__init__(lr, interval)
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise ValueError(f"milestones must be a list of integers, got {milestones!r}")
        self.milestones = sorted(_check_int(m, "milestones", 0) for m in milestones)
        self.gamma = _check_factor(gamma, "gamma", low=0.0, high=math.inf)
        self.lrs = [self._recurse(lr, base) for lr, base in zip(self.lrs, self.base_lrs)]

    def _recurse(self, lr: float, base_lr: float) -> float:
        count = self.milestones.count(self.last_epoch)
        return lr * self.gamma**count if count else lr

    def _closed(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** sum(m <= epoch for m in self.milestones)


class ExponentialLR(_EpochScheduler):
    """``lr = base * gamma^e`` (torch's ExponentialLR); recursive form ``lr <- lr * gamma``.

    Parameters
    ----------
    lr : float or list of float
    gamma : float >= 0
    interval : "epoch" (default) or "step"
    """

    _state_keys = ("interval", "last_epoch", "gamma")

    def __init__(self, lr: LrArg, gamma: float, *, interval: str = "epoch"):
        super().__init__(lr, interval)
        self.gamma = _check_factor(gamma, "gamma", low=0.0, high=math.inf)

    def _recurse(self, lr: float, base_lr: float) -> float:
        return lr * self.gamma

    def _closed(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma**epoch


class CosineAnnealingLR(_EpochScheduler):
    """``lr = eta_min + (base - eta_min) (1 + cos(pi e / T_max)) / 2`` (torch's
    CosineAnnealingLR; past ``T_max`` the cosine continues, rising back to ``base`` at
    ``2 T_max``).

    Recursive form (torch's): ``lr_e = eta_min + (lr_{e-1} - eta_min)
    (1 + cos(pi e/T)) / (1 + cos(pi (e-1)/T))``, except when ``e - 1 - T`` is a multiple of
    ``2T`` (the denominator vanishes), where ``lr_e = lr_{e-1} + (base - eta_min)
    (1 - cos(pi/T)) / 2``.

    Parameters
    ----------
    lr : float or list of float
    T_max : int >= 1 -- half period, in epochs.
    eta_min : float >= 0, default 0 -- one float for all groups, as in torch.
    interval : "epoch" (default) or "step"
    """

    _state_keys = ("interval", "last_epoch", "T_max", "eta_min")

    def __init__(self, lr: LrArg, T_max: int, eta_min: float = 0.0, *,
                 interval: str = "epoch"):
        super().__init__(lr, interval)
        self.T_max = _check_int(T_max, "T_max", 1)
        self.eta_min = check_lr(eta_min, "eta_min")

    def _recurse(self, lr: float, base_lr: float) -> float:
        e, t_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if (e - 1 - t_max) % (2 * t_max) == 0:
            return lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        ratio = (1 + math.cos(math.pi * e / t_max)) / (1 + math.cos(math.pi * (e - 1) / t_max))
        return ratio * (lr - eta_min) + eta_min

    def _closed(self, base_lr: float, epoch: int) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (
            1 + math.cos(math.pi * epoch / self.T_max)) / 2


class CosineAnnealingWarmRestarts(_EpochScheduler):
    """SGDR: ``lr = eta_min + (base - eta_min) (1 + cos(pi T_cur / T_i)) / 2`` (torch's
    CosineAnnealingWarmRestarts).

    ``T_cur`` counts epochs since the last restart; a restart happens when ``T_cur`` reaches
    ``T_i`` (then ``T_cur <- T_cur - T_i``, ``T_i <- T_i * T_mult``), starting from
    ``T_i = T_0``. Here the recursion lives in ``(T_cur, T_i)`` and the rate is always the
    formula above, as in torch. ``closed_form`` finds the cycle of ``epoch`` by counting
    (torch's float-logarithm shortcut can misplace a restart boundary).

    Parameters
    ----------
    lr : float or list of float
    T_0 : int >= 1 -- length of the first cycle.
    T_mult : int >= 1, default 1 -- growth of the cycle length at each restart.
    eta_min : float >= 0, default 0
    interval : "epoch" (default) or "step"
    """

    _state_keys = ("interval", "last_epoch", "T_0", "T_mult", "eta_min", "T_cur", "T_i")

    def __init__(self, lr: LrArg, T_0: int, T_mult: int = 1, eta_min: float = 0.0, *,
                 interval: str = "epoch"):
        super().__init__(lr, interval)
        self.T_0 = _check_int(T_0, "T_0", 1)
        self.T_mult = _check_int(T_mult, "T_mult", 1)
        self.eta_min = check_lr(eta_min, "eta_min")
        self.T_cur, self.T_i = 0, self.T_0
        self.lrs = [self._rate(base, self.T_cur, self.T_i) for base in self.base_lrs]

    def _rate(self, base_lr: float, t_cur: int, t_i: int) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2

    def step(self) -> float:
        """Advance one epoch (restarting when the cycle ends) and return the new rate."""
        self.last_epoch += 1
        self.T_cur += 1
        if self.T_cur >= self.T_i:
            self.T_cur -= self.T_i
            self.T_i *= self.T_mult
        self.lrs = [self._rate(base, self.T_cur, self.T_i) for base in self.base_lrs]
        return self.lr

    def _closed(self, base_lr: float, epoch: int) -> float:
        t_cur, t_i = epoch, self.T_0
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= self.T_mult
        return self._rate(base_lr, t_cur, t_i)


class LinearWarmup(Scheduler):
    """Linear warm-up from ``start_factor * lr`` to ``lr`` over ``total_iters`` epochs, then
    hand over to another scheduler ``after`` (or keep ``lr`` when ``after`` is None).

    ``lr_e = base (s + (1 - s) e / T)`` for ``e < T`` (closed form; the step uses torch
    LinearLR's recursion ``lr_e = lr_{e-1} (1 + (1 - s) / (T s + (e - 1)(1 - s)))``);
    at ``e >= T`` the rate is ``after``'s rate at epoch ``e - T`` (``after`` is untouched
    during warm-up and stepped from ``e = T + 1`` on).

    torch equivalent: ``SequentialLR(opt, [LinearLR(opt, start_factor=s, end_factor=1.0,
    total_iters=T), after], milestones=[T])``; with ``after=None``, ``LinearLR(opt,
    start_factor=s, end_factor=1.0, total_iters=T)``; both agree exactly with torch
    (with ``after=None`` the recursion ends at ``base`` up to a few ulps, as torch's does).
    Unlike torch's SequentialLR, ``after`` may be loss-driven (:class:`ReduceLROnPlateau`):
    then ``step(loss)`` is the signature, and losses seen during warm-up are ignored.

    Parameters
    ----------
    lr : float or list of float -- must equal ``after``'s initial rates.
    after : Scheduler or None
    start_factor : float in (0, 1], default 1/3 (torch's default)
    total_iters : int >= 1, default 5
    interval : "epoch" or "step"; defaults to ``after``'s interval (else "epoch").
    """

    def __init__(self, lr: LrArg, after: Scheduler | None = None, *,
                 start_factor: float = 1.0 / 3, total_iters: int = 5,
                 interval: str | None = None):
        super().__init__(lr)
        if after is not None:
            if not isinstance(after, Scheduler):
                raise ValueError(f"after must be a Scheduler or None, got {type(after).__name__}")
            if list(after.base_lrs) != list(self.base_lrs):
                raise ValueError(
                    f"after was built with lr={after.base_lrs}, the warm-up with "
                    f"lr={self.base_lrs}; build both with the same initial lr"
                )
            if isinstance(after, LinearWarmup):
                raise ValueError("after must not itself be a LinearWarmup")
        self.after = after
        self.signal = after.signal if after is not None else "none"
        self.interval = _check_interval(
            interval if interval is not None else (after.interval if after else "epoch"))
        self.start_factor = _check_factor(start_factor, "start_factor", low=0.0, high=1.0,
                                          low_open=True)
        self.total_iters = _check_int(total_iters, "total_iters", 1)
        self.last_epoch = 0
        self.lrs = [base * self.start_factor for base in self.base_lrs]

    _state_keys = ("interval", "last_epoch", "start_factor", "total_iters")

    def step(self, *signal: Any) -> float:
        """Advance one epoch; ``signal`` (e.g. the loss) is passed on to ``after``."""
        self.last_epoch += 1
        e, total, s = self.last_epoch, self.total_iters, self.start_factor
        if e < total or (e == total and self.after is None):
            growth = 1.0 + (1.0 - s) / (total * s + (e - 1) * (1.0 - s))
            self.lrs = [lr * growth for lr in self.lrs]
        elif self.after is None:
            pass  # warm-up over: keep the rate (torch's LinearLR past total_iters)
        elif e == total:
            self.lrs = list(self.after.lrs)
        else:
            self.after.step(*signal)
            self.lrs = list(self.after.lrs)
        return self.lr

    def closed_form(self, epoch: int) -> list[float]:
        """Rates at ``epoch`` (one per group); past warm-up, ``after.closed_form``."""
        epoch = _check_int(epoch, "epoch", 0)
        if epoch < self.total_iters:
            s = self.start_factor
            return [base * (s + (1 - s) * epoch / self.total_iters) for base in self.base_lrs]
        if self.after is None:
            return list(self.base_lrs)
        if not hasattr(self.after, "closed_form"):
            raise ValueError(f"{type(self.after).__name__} has no closed form")
        return self.after.closed_form(epoch - self.total_iters)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["after"] = None if self.after is None else self.after.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Load the warm-up's state and ``after``'s (nested under ``"after"``); all or nothing."""
        before = self.state_dict()
        try:
            super().load_state_dict(state)
            if "after" not in state:
                raise ValueError("state dict for LinearWarmup is missing keys ['after']")
            if (state["after"] is None) != (self.after is None):
                raise ValueError(
                    "state dict and this LinearWarmup disagree on whether `after` is set; "
                    "build the warm-up with the same kind of `after` scheduler"
                )
            if self.after is not None:
                self.after.load_state_dict(state["after"])
        except (ValueError, TypeError):
            Scheduler.load_state_dict(self, before)
            if self.after is not None:
                self.after.load_state_dict(before["after"])
            raise


class ReduceLROnPlateau(Scheduler):
    """Multiply the rate by ``factor`` when the monitored loss stops improving (torch's
    ReduceLROnPlateau).

    ``step(loss)``: the loss *improves* when ``loss < best (1 - threshold)`` (mode ``min``,
    ``rel``), ``loss < best - threshold`` (``min``, ``abs``), ``loss > best (1 + threshold)``
    (``max``, ``rel``) or ``loss > best + threshold`` (``max``, ``abs``); ties with the
    threshold are not improvements. An improvement sets ``best`` and zeroes the bad count,
    otherwise the bad count grows. During cooldown the cooldown counter falls by one and the
    bad count is zeroed. When the bad count exceeds ``patience``, each group gets
    ``new = max(lr factor, min_lr)``, applied only if ``lr - new > eps``; then cooldown
    starts and the bad count is zeroed. A NaN loss is never an improvement (as in torch).

    Parameters
    ----------
    lr : float or list of float
    mode : "min" | "max", default "min"
    factor : float in [0, 1), default 0.1
    patience : int >= 0, default 10
    threshold : float >= 0, default 1e-4
    threshold_mode : "rel" | "abs", default "rel"
    cooldown : int >= 0, default 0
    min_lr : float or list (one per group), default 0
    eps : float >= 0, default 1e-8
    interval : "epoch" (default; feed the validation loss) or "step" (feed the batch loss)
    """

    signal = "loss"
    _state_keys = ("interval", "mode", "factor", "patience", "threshold", "threshold_mode",
                   "cooldown", "min_lrs", "eps", "best", "num_bad_epochs",
                   "cooldown_counter", "last_epoch")

    def __init__(self, lr: LrArg, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: LrArg = 0.0, eps: float = 1e-8, *, interval: str = "epoch"):
        super().__init__(lr)
        self.interval = _check_interval(interval)
        self.mode = _check_choice(mode, "mode", ("min", "max"))
        self.factor = _check_factor(factor, "factor", low=0.0, high=1.0, high_open=True)
        self.patience = _check_int(patience, "patience", 0)
        self.threshold = check_lr(threshold, "threshold")
        self.threshold_mode = _check_choice(threshold_mode, "threshold_mode", ("rel", "abs"))
        self.cooldown = _check_int(cooldown, "cooldown", 0)
        self.min_lrs = as_group_list(min_lr, self.n_groups, "min_lr")
        self.eps = check_lr(eps, "eps")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def improvement_bound(self, best: float) -> float:
        """The value a loss must beat (strictly) to improve on ``best`` (torch's expressions)."""
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return best * (1.0 - self.threshold)
            return best - self.threshold
        if self.threshold_mode == "rel":
            return best * (self.threshold + 1.0)
        return best + self.threshold

    def is_better(self, loss: float, best: float) -> bool:
        """Whether ``loss`` improves on ``best`` by more than the threshold."""
        bound = self.improvement_bound(best)
        return loss < bound if self.mode == "min" else loss > bound

    def step(self, loss: float) -> float:
        """Consume one loss value and return the (possibly reduced) rate of the first group."""
        try:
            current = float(loss)
        except (TypeError, ValueError):
            raise ValueError(f"loss must be a number, got {loss!r}") from None
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during cooldown do not count
        if self.num_bad_epochs > self.patience:
            self.lrs = [self._reduced(lr, min_lr) for lr, min_lr in zip(self.lrs, self.min_lrs)]
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.lr

    def _reduced(self, lr: float, min_lr: float) -> float:
        new_lr = max(lr * self.factor, min_lr)
        return new_lr if lr - new_lr > self.eps else lr
