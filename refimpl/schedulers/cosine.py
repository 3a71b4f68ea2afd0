"""The cosine schedules of ``torch.optim.lr_scheduler`` (docs/methods.md §3):
CosineAnnealingLR and CosineAnnealingWarmRestarts, in torch's recursive form with the closed
form beside it.
"""

from __future__ import annotations

import math
from typing import Any

from .checks import check_factor, check_int, check_lr
from .lr_base import (
    Formula,
    LrArg,
    LRScheduler,
    number,
)


def _cosine(base_lr: float, eta_min: float, t: float, period: float) -> float:
    """``eta_min + (base - eta_min) (1 + cos(pi t / period)) / 2``."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


def _cosine_formula(name: str, base_lr: float, eta_min: float, t: float, period: float,
                    t_name: str, period_name: str) -> Formula:
    """The cosine schedules' rule with its numbers; the rate is a difference of terms as
    large as ``base_lr`` and ``eta_min`` near the cosine's minimum (1 + cos -> 0)."""
    base, low = number(base_lr), number(eta_min)
    return Formula(
        name, f"eta_min + (base_lr - eta_min)*(1 + cos(pi*{t_name}/{period_name}))/2",
        f"{low} + ({base} - {low})*(1 + cos(pi*{number(t)}/{number(period)}))/2",
        _cosine(base_lr, eta_min, t, period), max(abs(base_lr), abs(eta_min)))


class CosineAnnealingLR(LRScheduler):
    """``lr_e = eta_min + (base - eta_min) (1 + cos(pi e / T_max)) / 2`` (torch's
    CosineAnnealingLR; past ``T_max`` the cosine continues, rising back to ``base`` at
    ``2 T_max``).

    Recursive form (torch's): ``lr_e = eta_min + (lr_{e-1} - eta_min)
    (1 + cos(pi e/T)) / (1 + cos(pi (e-1)/T))``, except when ``e - 1 - T`` is a multiple of
    ``2T`` (the denominator vanishes), where ``lr_e = lr_{e-1} + (base - eta_min)
    (1 - cos(pi/T)) / 2``.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    T_max : int >= 1 -- half period, in epochs.
    eta_min : float >= 0, default 0 -- one float for all groups, as in torch.
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``cosine`` (``(1 + cos(pi e / T_max)) / 2``) and ``eta_min``.

    Examples
    --------
    The rate after construction, then after each of 8 ``step()`` calls:

    >>> from refimpl.schedulers import CosineAnnealingLR
    >>> scheduler = CosineAnnealingLR(0.1, T_max=4)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(8)]
    >>> [round(lr, 6) for lr in rates]
    [0.1, 0.085355, 0.05, 0.014645, 0.0, 0.014645, 0.05, 0.085355, 0.1]
    """

    _state_keys = ("interval", "last_epoch", "T_max", "eta_min")

    def __init__(self, lr: LrArg, T_max: int, eta_min: float = 0.0, last_epoch: int = -1, *,
                 interval: str = "epoch"):
        self.T_max = check_int(T_max, "T_max", 1)
        self.eta_min = check_lr(eta_min, "eta_min")
        super().__init__(lr, last_epoch, interval=interval)

    def get_lr(self) -> list[float]:
        e, t_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self.lrs
        if self._step_count == 1 and e > 0:
            return self.closed_form(e)
        if (e - 1 - t_max) % (2 * t_max) == 0:
            return [lr + (base - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
                    for lr, base in zip(self.lrs, self.base_lrs)]
        ratio = (1 + math.cos(math.pi * e / t_max)) / (1 + math.cos(math.pi * (e - 1) / t_max))
        return [ratio * (lr - eta_min) + eta_min for lr in self.lrs]

    def closed_form(self, epoch: int) -> list[float]:
        return [_cosine(base, self.eta_min, epoch, self.T_max) for base in self.base_lrs]

    def _terms(self) -> dict[str, Any]:
        return {"cosine": (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2,
                "eta_min": self.eta_min}

    def _formula(self, group: int) -> Formula:
        return _cosine_formula("cosine", self.base_lrs[group], self.eta_min, self.last_epoch,
                               self.T_max, "e", "T_max")


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR: ``lr = eta_min + (base - eta_min) (1 + cos(pi T_cur / T_i)) / 2`` (torch's
    CosineAnnealingWarmRestarts).

    ``T_cur`` counts epochs since the last restart. ``step()``: ``T_cur <- T_cur + 1``; when
    ``T_cur >= T_i``, ``T_cur <- T_cur mod T_i`` and ``T_i <- T_i T_mult`` (torch's rule;
    a loaded ``T_cur`` past the cycle wraps into it). ``step(epoch)`` takes a real ``epoch``
    (fractional epochs: call it with ``epoch + batch / n_batches``) and places it in its cycle:
    cycle ``n`` covers ``[T_0 (T_mult^n - 1)/(T_mult - 1), ...)`` (``[n T_0, (n+1) T_0)`` when
    ``T_mult = 1``), ``T_i = T_0 T_mult^n``, ``T_cur = epoch - start of cycle n``.
    ``closed_form(epoch)`` is the same placement. Cycles are found by counting, where torch
    takes a float logarithm that can misplace an epoch lying exactly on a restart of a
    ``T_mult > 1`` schedule (e.g. ``T_0 = 1, T_mult = 3``, epoch 121: torch ends cycle 4
    at ``eta_min``, cycle 5 starts at ``base``).

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    T_0 : int >= 1 -- length of the first cycle.
    T_mult : int >= 1, default 1 -- growth of the cycle length at each restart.
    eta_min : float >= 0, default 0
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``T_cur``, ``T_i`` and ``cosine`` (``(1 + cos(pi T_cur / T_i)) / 2``).

    Examples
    --------
    The rate after construction, then after each of 8 ``step()`` calls:

    >>> from refimpl.schedulers import CosineAnnealingWarmRestarts
    >>> scheduler = CosineAnnealingWarmRestarts(0.1, T_0=2, T_mult=2)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(8)]
    >>> [round(lr, 6) for lr in rates]
    [0.1, 0.05, 0.1, 0.085355, 0.05, 0.014645, 0.1, 0.096194, 0.085355]
    """

    has_closed_form = False  # torch's step(epoch) goes through its own placement
    _state_keys = ("interval", "last_epoch", "T_0", "T_mult", "eta_min", "T_cur", "T_i")

    def __init__(self, lr: LrArg, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1, *, interval: str = "epoch"):
        self.T_0 = check_int(T_0, "T_0", 1)
        self.T_mult = check_int(T_mult, "T_mult", 1)
        self.eta_min = check_lr(eta_min, "eta_min")
        self.T_i = self.T_0
        self.T_cur = float(check_int(last_epoch, "last_epoch", -1))
        super().__init__(lr, last_epoch, interval=interval)

    def get_lr(self) -> list[float]:
        return [_cosine(base, self.eta_min, self.T_cur, self.T_i) for base in self.base_lrs]

    def step(self, epoch: float | None = None) -> float:
        """Advance one epoch, or go to the (possibly fractional) ``epoch``; return the rate."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur += 1
            if self.T_cur >= self.T_i:
                self.T_cur %= self.T_i
                self.T_i *= self.T_mult
        else:
            epoch = check_factor(epoch, "epoch", low=0.0, high=math.inf)
            self.T_cur, self.T_i = self._place(epoch)
        self._step_count += 1
        self.last_epoch = math.floor(epoch)
        self.lrs = self.get_lr()
        return self.lr

    def _place(self, epoch: float) -> tuple[float, int]:
        """``(T_cur, T_i)`` of ``epoch``: walk the cycles from the first."""
        if self.T_mult == 1:
            return epoch % self.T_0, self.T_0
        start, t_i = 0, self.T_0
        while epoch >= start + t_i:
            start, t_i = start + t_i, t_i * self.T_mult
        return epoch - start, t_i

    def closed_form(self, epoch: float) -> list[float]:
        t_cur, t_i = self._place(check_factor(epoch, "epoch", low=0.0, high=math.inf))
        return [_cosine(base, self.eta_min, t_cur, t_i) for base in self.base_lrs]

    def _terms(self) -> dict[str, Any]:
        return {"T_cur": self.T_cur, "T_i": self.T_i,
                "cosine": (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2}

    def _formula(self, group: int) -> Formula:
        formula = _cosine_formula("cosine with warm restarts", self.base_lrs[group],
                                  self.eta_min, self.T_cur, self.T_i, "T_cur", "T_i")
        return formula._replace(note=f"epoch {self.last_epoch}: T_cur = {number(self.T_cur)} "
                                     f"epochs into a cycle of T_i = {self.T_i}")

    def _after_load(self) -> None:
        if self.T_i < 1 or self.T_cur < 0:
            raise ValueError(f"state has T_i={self.T_i!r}, T_cur={self.T_cur!r}; "
                             "T_i must be >= 1 and T_cur >= 0")
