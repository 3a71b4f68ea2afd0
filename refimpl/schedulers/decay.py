"""The step and polynomial decays of ``torch.optim.lr_scheduler`` (docs/methods.md §3):
StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR, PolynomialLR.

Each class takes torch's arguments with the optimizer replaced by ``lr`` (a float, one per
group, or a shared :class:`~refimpl.schedulers.lr_base.ParamGroups`). ``step()`` is torch's
recursive form, so traces agree with torch to rounding; ``closed_form(epoch)`` is the
textbook formula; ``explain()`` gives the formula's terms at the last epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .checks import check_factor, check_int
from .lr_base import (
    Formula,
    LrArg,
    LRScheduler,
    number,
)


class StepLR(LRScheduler):
    """``lr_e = base * gamma^floor(e / step_size)`` (torch's StepLR).

    Recursive form: multiply by ``gamma`` whenever ``e`` is a positive multiple of
    ``step_size``.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    step_size : int >= 1
    gamma : float >= 0, default 0.1
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``exponent`` (``floor(e / step_size)``) and ``gamma``.

    Examples
    --------
    The rate after construction, then after each of 6 ``step()`` calls:

    >>> from refimpl.schedulers import StepLR
    >>> scheduler = StepLR(0.1, step_size=2, gamma=0.5)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(6)]
    >>> rates
    [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]
    """

    _state_keys = ("interval", "last_epoch", "step_size", "gamma")

    def __init__(self, lr: LrArg, step_size: int, gamma: float = 0.1, last_epoch: int = -1, *,
                 interval: str = "epoch"):
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = check_factor(gamma, "gamma", low=0.0, high=math.inf)
        super().__init__(lr, last_epoch, interval=interval)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self.lrs
        return [lr * self.gamma for lr in self.lrs]

    def closed_form(self, epoch: int) -> list[float]:
        return [base * self.gamma ** (epoch // self.step_size) for base in self.base_lrs]

    def _terms(self) -> dict[str, Any]:
        return {"exponent": self.last_epoch // self.step_size, "gamma": self.gamma}

    def _formula(self, group: int) -> Formula:
        base, e = self.base_lrs[group], self.last_epoch
        value = base * self.gamma ** (e // self.step_size)
        return Formula("step", "base_lr*gamma^floor(e/step_size)",
                       f"{number(base)}*{number(self.gamma)}^floor({e}/{self.step_size})",
                       value, abs(value))


class MultiStepLR(LRScheduler):
    """``lr_e = base * gamma^(number of milestones <= e)`` (torch's MultiStepLR).

    Recursive form: at a milestone ``e`` listed ``n`` times, multiply by ``gamma^n`` (also at
    ``e = 0``, i.e. at construction, as torch does).

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    milestones : list of int >= 0 -- sorted here; repeats count, as in torch.
    gamma : float >= 0, default 0.1
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``exponent`` (milestones passed) and ``gamma``.

    Examples
    --------
    The rate after construction, then after each of 6 ``step()`` calls:

    >>> from refimpl.schedulers import MultiStepLR
    >>> scheduler = MultiStepLR(0.1, milestones=[2, 5], gamma=0.1)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(6)]
    >>> [round(lr, 6) for lr in rates]
    [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]
    """

    _state_keys = ("interval", "last_epoch", "milestones", "gamma")

    def __init__(self, lr: LrArg, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1, *, interval: str = "epoch"):
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise ValueError(f"milestones must be a list of integers, got {milestones!r}")
        self.milestones = sorted(check_int(m, "milestones", 0) for m in milestones)
        self.gamma = check_factor(gamma, "gamma", low=0.0, high=math.inf)
        super().__init__(lr, last_epoch, interval=interval)

    def get_lr(self) -> list[float]:
        count = self.milestones.count(self.last_epoch)
        return [lr * self.gamma**count for lr in self.lrs] if count else self.lrs

    def closed_form(self, epoch: int) -> list[float]:
        return [base * self.gamma ** sum(m <= epoch for m in self.milestones)
                for base in self.base_lrs]

    def _terms(self) -> dict[str, Any]:
        return {"exponent": sum(m <= self.last_epoch for m in self.milestones),
                "gamma": self.gamma}

    def _formula(self, group: int) -> Formula:
        base, e = self.base_lrs[group], self.last_epoch
        passed = sum(m <= e for m in self.milestones)
        value = base * self.gamma**passed
        return Formula("multistep", "base_lr*gamma^(number of milestones <= e)",
                       f"{number(base)}*{number(self.gamma)}^{passed}", value, abs(value),
                       f"milestones {self.milestones}, e = {e}")


class ConstantLR(LRScheduler):
    """``lr_e = base * factor`` for ``e < total_iters``, then ``base`` (torch's ConstantLR).

    Recursive form: multiply by ``factor`` at ``e = 0``, by ``1/factor`` at
    ``e == total_iters``.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    factor : float in (0, 1], default 1/3 -- torch also accepts 0, which then divides by
        zero at ``total_iters``.
    total_iters : int >= 1, default 5
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``multiplier`` (``factor`` before ``total_iters``, else 1).

    Examples
    --------
    The rate after construction, then after each of 5 ``step()`` calls:

    >>> from refimpl.schedulers import ConstantLR
    >>> scheduler = ConstantLR(0.1, factor=0.5, total_iters=3)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(5)]
    >>> rates
    [0.05, 0.05, 0.05, 0.1, 0.1, 0.1]
    """

    _state_keys = ("interval", "last_epoch", "factor", "total_iters")

    def __init__(self, lr: LrArg, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1, *, interval: str = "epoch"):
        self.factor = check_factor(factor, "factor", low=0.0, high=1.0, low_open=True)
        self.total_iters = check_int(total_iters, "total_iters", 1)
        super().__init__(lr, last_epoch, interval=interval)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.factor for lr in self.lrs]
        if self.last_epoch != self.total_iters:
            return self.lrs
        return [lr * (1.0 / self.factor) for lr in self.lrs]

    def closed_form(self, epoch: int) -> list[float]:
        return [base * (self.factor + (epoch >= self.total_iters) * (1 - self.factor))
                for base in self.base_lrs]

    def _terms(self) -> dict[str, Any]:
        return {"multiplier": 1.0 if self.last_epoch >= self.total_iters else self.factor}

    def _formula(self, group: int) -> Formula:
        base, e, total = self.base_lrs[group], self.last_epoch, self.total_iters
        if e >= total:
            return Formula("constant", "base_lr once e >= total_iters", number(base), base,
                           abs(base), f"e = {e} >= total_iters = {total}")
        value = base * self.factor
        return Formula("constant", "base_lr*factor while e < total_iters",
                       f"{number(base)}*{number(self.factor)}", value, abs(value),
                       f"e = {e} < total_iters = {total}")


class LinearLR(LRScheduler):
    """``lr_e = base (s + (f - s) min(e, T) / T)`` with ``s = start_factor``,
    ``f = end_factor``, ``T = total_iters`` (torch's LinearLR).

    Recursive form (torch's): ``lr_0 = base s``, ``lr_e = lr_{e-1} (1 + (f - s) /
    (T s + (e - 1)(f - s)))`` for ``1 <= e <= T``, unchanged after.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    start_factor : float in (0, 1], default 1/3
    end_factor : float in [0, 1], default 1
    total_iters : int >= 1, default 5
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``multiplier`` (``s + (f - s) min(e, T) / T``).

    Examples
    --------
    The rate after construction, then after each of 5 ``step()`` calls:

    >>> from refimpl.schedulers import LinearLR
    >>> scheduler = LinearLR(0.1, start_factor=0.25, end_factor=1.0, total_iters=3)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(5)]
    >>> [round(lr, 6) for lr in rates]
    [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]
    """

    _state_keys = ("interval", "last_epoch", "start_factor", "end_factor", "total_iters")

    def __init__(self, lr: LrArg, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1, *, interval: str = "epoch"):
        self.start_factor = check_factor(start_factor, "start_factor", low=0.0, high=1.0,
                                         low_open=True)
        self.end_factor = check_factor(end_factor, "end_factor", low=0.0, high=1.0)
        self.total_iters = check_int(total_iters, "total_iters", 1)
        super().__init__(lr, last_epoch, interval=interval)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self.lrs]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self.lrs
        s, f, total = self.start_factor, self.end_factor, self.total_iters
        growth = 1.0 + (f - s) / (total * s + (self.last_epoch - 1) * (f - s))
        return [lr * growth for lr in self.lrs]

    def _multiplier(self, epoch: int) -> float:
        s, f = self.start_factor, self.end_factor
        return s + (f - s) * min(self.total_iters, epoch) / self.total_iters

    def closed_form(self, epoch: int) -> list[float]:
        return [base * self._multiplier(epoch) for base in self.base_lrs]

    def _terms(self) -> dict[str, Any]:
        return {"multiplier": self._multiplier(self.last_epoch)}

    def _formula(self, group: int) -> Formula:
        base, e, total = self.base_lrs[group], self.last_epoch, self.total_iters
        s, f = self.start_factor, self.end_factor
        return Formula("linear", "base_lr*(s + (f - s)*min(e, T)/T)",
                       f"{number(base)}*({number(s)} + ({number(f)} - {number(s)})"
                       f"*min({e}, {total})/{total})",
                       base * self._multiplier(e), abs(base) * max(s, f))


class ExponentialLR(LRScheduler):
    """``lr_e = base * gamma^e`` (torch's ExponentialLR); recursive form ``lr <- lr * gamma``.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    gamma : float >= 0
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``gamma`` and ``exponent`` (``e``).

    Examples
    --------
    The rate after construction, then after each of 4 ``step()`` calls:

    >>> from refimpl.schedulers import ExponentialLR
    >>> scheduler = ExponentialLR(0.1, gamma=0.5)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(4)]
    >>> rates
    [0.1, 0.05, 0.025, 0.0125, 0.00625]
    """

    _state_keys = ("interval", "last_epoch", "gamma")

    def __init__(self, lr: LrArg, gamma: float, last_epoch: int = -1, *,
                 interval: str = "epoch"):
        self.gamma = check_factor(gamma, "gamma", low=0.0, high=math.inf)
        super().__init__(lr, last_epoch, interval=interval)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self.lrs
        return [lr * self.gamma for lr in self.lrs]

    def closed_form(self, epoch: int) -> list[float]:
        return [base * self.gamma**epoch for base in self.base_lrs]

    def _terms(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "exponent": self.last_epoch}

    def _formula(self, group: int) -> Formula:
        base, e = self.base_lrs[group], self.last_epoch
        value = base * self.gamma**e
        return Formula("exponential", "base_lr*gamma^e",
                       f"{number(base)}*{number(self.gamma)}^{e}", value, abs(value))


class PolynomialLR(LRScheduler):
    """``lr_e = base (1 - min(e, T) / T)^power`` with ``T = total_iters`` (torch's
    PolynomialLR).

    Recursive form (torch's): ``lr_e = lr_{e-1} ((1 - e/T) / (1 - (e-1)/T))^power`` for
    ``1 <= e <= T``, unchanged after (0 from ``e = T`` on).

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    total_iters : int >= 1, default 5
    power : float >= 0, default 1
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``multiplier`` (``(1 - min(e, T)/T)^power``).

    Examples
    --------
    The rate after construction, then after each of 6 ``step()`` calls:

    >>> from refimpl.schedulers import PolynomialLR
    >>> scheduler = PolynomialLR(0.1, total_iters=4, power=2.0)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(6)]
    >>> [round(lr, 6) for lr in rates]
    [0.1, 0.05625, 0.025, 0.00625, 0.0, 0.0, 0.0]
    """

    _state_keys = ("interval", "last_epoch", "total_iters", "power")

    def __init__(self, lr: LrArg, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1, *, interval: str = "epoch"):
        self.total_iters = check_int(total_iters, "total_iters", 1)
        self.power = check_factor(power, "power", low=0.0, high=math.inf)
        super().__init__(lr, last_epoch, interval=interval)

    def get_lr(self) -> list[float]:
        if self._is_initial or self.last_epoch > self.total_iters:
            return self.lrs
        e, total = self.last_epoch, self.total_iters
        decay = ((1.0 - e / total) / (1.0 - (e - 1) / total)) ** self.power
        return [lr * decay for lr in self.lrs]

    def _multiplier(self, epoch: int) -> float:
        return (1.0 - min(self.total_iters, epoch) / self.total_iters) ** self.power

    def closed_form(self, epoch: int) -> list[float]:
        return [base * self._multiplier(epoch) for base in self.base_lrs]

    def _terms(self) -> dict[str, Any]:
        return {"multiplier": self._multiplier(self.last_epoch)}

    def _formula(self, group: int) -> Formula:
        base, e, total = self.base_lrs[group], self.last_epoch, self.total_iters
        return Formula("polynomial", "base_lr*(1 - min(e, T)/T)^power",
                       f"{number(base)}*(1 - min({e}, {total})/{total})^{number(self.power)}",
                       base * self._multiplier(e), abs(base))
