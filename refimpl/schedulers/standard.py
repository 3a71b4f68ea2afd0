"""The standard schedules, with the semantics of ``torch.optim.lr_scheduler`` (docs/methods.md §3).

Every class takes torch's arguments with the optimizer replaced by ``lr``: a float, one float
per parameter group, or a :class:`~refimpl.schedulers.lr_base.ParamGroups` shared with other
schedulers (then they compose as torch schedulers sharing an optimizer do). The rate after
construction is torch's rate after its constructor (epoch 0); the ``k``-th ``step()`` gives
torch's rate at epoch ``k``; ``step(epoch)`` jumps as torch's deprecated ``step(epoch)`` does.

``step()`` is the *recursive* ("chainable") form torch uses: each rate is computed from the
rate the group holds, so traces agree with torch to rounding. ``closed_form(epoch)`` gives the
textbook formula from the initial rates. Every class has ``explain()``: the closed-form terms
at the last epoch (listed in each docstring) besides ``last_epoch``, ``lrs`` and ``base_lrs``.

Resume as torch does with ``last_epoch=k`` (the groups must hold ``initial_lr``: pass
``lr=ParamGroups(lr=current, initial_lr=base)``), or with ``state_dict``/``load_state_dict``.
All epoch-indexed schedulers take ``interval="epoch"`` (default) or ``"step"`` to tell the
trainer whether an "epoch" of the schedule is an epoch or one optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .base import Scheduler
from .checks import check_choice, check_factor, check_int, check_interval, check_lr, per_group
from .composite import ChainedScheduler, SequentialLR
from .lr_base import (
    Formula,
    GroupRates,
    LrArg,
    LRScheduler,
    ParamGroups,
    as_param_groups,
    number,
)

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "LambdaLR",
    "LinearLR",
    "LinearWarmup",
    "MultiStepLR",
    "MultiplicativeLR",
    "ParamGroups",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]


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
    """The construction LambdaLR and MultiplicativeLR share: one callable per group."""

    _state_keys = ("interval", "last_epoch")

    def __init__(self, lr: LrArg, lr_lambda: Any, last_epoch: int = -1, *,
                 interval: str = "epoch"):
        self.lr_lambdas = _lambdas(lr_lambda, len(as_param_groups(lr)))
        super().__init__(lr, last_epoch, interval=interval)


class LambdaLR(_LambdaScheduler):
    """``lr_e = base * lr_lambda(e)`` (torch's LambdaLR); this *is* its closed form.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    lr_lambda : callable ``epoch -> factor``, or one per group
    last_epoch : int, default -1 (fresh); ``k`` resumes at epoch ``k + 1`` as torch does.
    interval : "epoch" (default) or "step"

    ``explain()`` adds ``factors`` (``lr_lambda(e)`` per group). The callables are not part of
    ``state_dict()``; build the scheduler with the same ones before loading.
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


#: The bound a loss must beat to improve, as torch writes it, per (mode, threshold_mode).
_PLATEAU_BOUNDS = {("min", "rel"): "best*(1 - threshold)", ("min", "abs"): "best - threshold",
                   ("max", "rel"): "best*(1 + threshold)", ("max", "abs"): "best + threshold"}


class ReduceLROnPlateau(GroupRates, Scheduler):
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

    Groups added to a shared :class:`ParamGroups` while running (torch's
    ``optimizer.add_param_group``) get the scalar ``min_lr``; with a per-group ``min_lr`` list
    the next reduction raises ``ValueError`` until ``min_lrs`` is extended, as in torch.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    mode : "min" | "max", default "min"
    factor : float in [0, 1), default 0.1
    patience : int >= 0, default 10
    threshold : float >= 0, default 1e-4
    threshold_mode : "rel" | "abs", default "rel"
    cooldown : int >= 0, default 0
    min_lr : float or list (one per group), default 0
    eps : float >= 0, default 1e-8
    interval : "epoch" (default; feed the validation loss) or "step" (feed the batch loss)

    ``explain()`` gives ``rule`` (the comparison made at the last step with its numbers,
    and what followed: ``"loss 0.93 >= best*(1 - threshold) = 0.9*(1 - 0.0001) = 0.89991:
    no improvement, num_bad_epochs 3 > patience 2 -> reduce: ..."``), ``loss``, ``bound``
    (the value the loss had to beat), ``improved``, ``reduced`` (whether the bad count
    exceeded ``patience``), ``best_before``, ``num_bad_counted`` (the count compared with
    ``patience``), ``lrs_before``, and the state after the step: ``best``,
    ``num_bad_epochs``, ``cooldown_counter``, with the hyper-parameters ``mode``,
    ``threshold``, ``threshold_mode``, ``patience``, ``cooldown``, ``factor``, ``min_lr``
    (per group) and ``eps``.
    """

    signal = "loss"
    _state_keys = ("interval", "mode", "factor", "patience", "threshold", "threshold_mode",
                   "cooldown", "min_lrs", "default_min_lr", "eps", "best", "num_bad_epochs",
                   "cooldown_counter", "last_epoch")

    def __init__(self, lr: LrArg, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8, *,
                 interval: str = "epoch"):
        self.groups = as_param_groups(lr)
        self.base_lrs = list(self.groups.lrs)
        self.interval = check_interval(interval)
        self.mode = check_choice(mode, "mode", ("min", "max"))
        self.factor = check_factor(factor, "factor", low=0.0, high=1.0, high_open=True)
        self.patience = check_int(patience, "patience", 0)
        self.threshold = check_lr(threshold, "threshold")
        self.threshold_mode = check_choice(threshold_mode, "threshold_mode", ("rel", "abs"))
        self.cooldown = check_int(cooldown, "cooldown", 0)
        self.min_lrs = per_group(min_lr, len(self.groups), "min_lr")
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else self.min_lrs[0]
        self.eps = check_lr(eps, "eps")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._after_load()

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
        best_before, cooldown_before, lrs_before = self.best, self.cooldown_counter, self.lrs
        bound = self.improvement_bound(self.best)
        improved = self.is_better(current, self.best)
        if improved:
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during cooldown do not count
        counted = self.num_bad_epochs
        reduced = counted > self.patience
        if reduced:
            self._reduce()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._explained = {"loss": current, "bound": bound, "improved": improved,
                           "reduced": reduced, "best_before": best_before,
                           "num_bad_counted": counted, "cooldown_before": cooldown_before,
                           "lrs_before": lrs_before}
        return self.lr

    def _reduce(self) -> None:
        n_groups = len(self.groups)
        if n_groups != len(self.min_lrs):
            if self.default_min_lr is None:
                raise ValueError(
                    f"the groups number {n_groups} but min_lr was given for "
                    f"{len(self.min_lrs)}; set min_lrs to one value per group")
            self.min_lrs = [self.default_min_lr] * n_groups
        self.base_lrs += self.lrs[len(self.base_lrs):]  # groups added since construction
        self.lrs = [self._reduced(lr, min_lr) for lr, min_lr in zip(self.lrs, self.min_lrs)]

    def _reduced(self, lr: float, min_lr: float) -> float:
        new_lr = max(lr * self.factor, min_lr)
        return new_lr if lr - new_lr > self.eps else lr

    def explain(self) -> dict[str, Any]:
        """The last ``step(loss)``: see the class docstring for the keys."""
        last = {key: value for key, value in self._explained.items() if key != "cooldown_before"}
        return {"scheduler": "ReduceLROnPlateau", "rule": self._rule(),
                "last_epoch": self.last_epoch, "lrs": list(self.lrs), **last,
                "best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter, "mode": self.mode,
                "threshold": self.threshold, "threshold_mode": self.threshold_mode,
                "patience": self.patience, "cooldown": self.cooldown, "factor": self.factor,
                "min_lr": list(self.min_lrs), "eps": self.eps}

    def _rule(self) -> str:
        """The comparison of the last step with its numbers, and what followed from it."""
        last = self._explained
        if last["loss"] is None:
            return (f"no step yet (or since a load): best {number(self.best)}, "
                    f"num_bad_epochs {self.num_bad_epochs}")
        loss, best, bound = last["loss"], last["best_before"], last["bound"]
        form = _PLATEAU_BOUNDS[(self.mode, self.threshold_mode)]
        values = form.replace("best", number(best)).replace("threshold", number(self.threshold))
        if math.isnan(loss):
            text = "loss nan is never an improvement"
        else:
            better, worse = ("<", ">=") if self.mode == "min" else (">", "<=")
            sign = better if last["improved"] else worse
            text = f"loss {number(loss)} {sign} {form} = {values} = {number(bound)}"
        if last["improved"]:
            text += f": improvement, best <- {number(loss)}"
        else:
            text += ": no improvement"
        if last["cooldown_before"] > 0:
            text += (f"; cooldown {last['cooldown_before']} -> {last['cooldown_before'] - 1}: "
                     "bad epochs not counted")
        counted = last["num_bad_counted"]
        if not last["reduced"]:
            return text + f"; num_bad_epochs {counted} <= patience {self.patience} -> rates kept"
        return text + (f"; num_bad_epochs {counted} > patience {self.patience} -> reduce"
                       f"{self._reduction(last['lrs_before'])}; cooldown {self.cooldown} "
                       "starts, num_bad_epochs <- 0")

    def _reduction(self, lrs_before: list[float]) -> str:
        """Group 0's reduction with its numbers (torch's rule, eps included)."""
        lr, min_lr = lrs_before[0], self.min_lrs[0]
        new = max(lr * self.factor, min_lr)
        text = (f": lr <- max(lr*factor, min_lr) = max({number(lr)}*{number(self.factor)}, "
                f"{number(min_lr)}) = {number(new)}")
        if not lr - new > self.eps:
            text += f", not applied: lr - new = {number(lr - new)} <= eps {number(self.eps)}"
        return text + (" (group 0)" if len(lrs_before) > 1 else "")

    def _after_load(self) -> None:
        """A state does not hold the last step: explain() describes none until the next."""
        self._explained = {"loss": None, "bound": None, "improved": None, "reduced": False,
                           "best_before": None, "num_bad_counted": None,
                           "cooldown_before": 0, "lrs_before": None}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state saved by ``state_dict``; all or nothing."""
        if isinstance(state, dict) and "default_min_lr" not in state:
            state = {**state, "default_min_lr": None}  # states saved before the key existed
        if isinstance(state, dict) and isinstance(state.get("lrs"), list) \
                and len(state["lrs"]) != len(self.groups):
            raise ValueError(f"state dict holds {len(state['lrs'])} rates but this scheduler "
                             f"has {len(self.groups)} groups; build it with as many groups")
        super().load_state_dict(state)


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
