"""Cyclical schedules with momentum cycling: torch's CyclicLR and OneCycleLR
(docs/methods.md §3).

Both set the rate from a closed form in the step count, and, with ``cycle_momentum=True``,
move the momentum against the rate (high rate, low momentum). ``.momentums`` holds one value
per group (``None`` without cycling); the trainer applies it to SGD's ``momentum`` or to
Adam's ``beta1``, as torch writes ``group["momentum"]`` or ``group["betas"][0]``. Both step
per optimizer step (``interval="step"`` by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .checks import check_choice, check_factor, check_flag, check_int, per_group
from .lr_base import Formula, LrArg, LRScheduler, as_param_groups, number

__all__ = ["CyclicLR", "OneCycleLR"]


def _check_momentum(value: Any, name: str) -> float:
    """A finite momentum >= 0; as torch, no upper bound here (the optimizer has one)."""
    return check_factor(value, name, low=0.0, high=math.inf)


class _MomentumCycling(LRScheduler):
    """Momentum bookkeeping shared by the cyclical schedules."""

    cycle_momentum: bool

    @property
    def momentums(self) -> list[float] | None:
        """The momentum (SGD) or beta1 (Adam) per group; ``None`` without cycling."""
        if not self.cycle_momentum:
            return None
        return [group["momentum"] for group in self.groups.groups]

    def _set_momentums(self, values: Sequence[float]) -> None:
        for group, value in zip(self.groups.groups, values):
            group["momentum"] = value

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["momentums"] = self.momentums
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state saved by ``state_dict``, momenta included; all or nothing."""
        momentums = state.get("momentums") if isinstance(state, dict) else None
        if self.cycle_momentum and (
                not isinstance(momentums, list) or len(momentums) != len(self.groups)
                or not all(isinstance(m, (int, float)) for m in momentums)):
                raise ValueError(f"state['momentums'] must hold {len(self.groups)} numbers, "
                                 f"got {momentums!r}")
        super().load_state_dict(state)
        if self.cycle_momentum:
            self._set_momentums([float(m) for m in momentums])


class CyclicLR(_MomentumCycling):
    """Cyclical learning rate (torch's CyclicLR; Smith, "Cyclical Learning Rates").

    With ``S = step_size_up + step_size_down``, ``r = step_size_up / S`` and ``e`` the step::

        cycle = floor(1 + e / S),   x = 1 + e / S - cycle
        scale = x / r  if x <= r  else  (x - 1) / (r - 1)
        lr    = base_lr + (max_lr - base_lr) * scale * g
        mom   = max_momentum - (max_momentum - base_momentum) * scale * g

    where ``g = scale_fn(cycle)`` (``scale_mode="cycle"``) or ``scale_fn(e)``
    (``"iterations"``); the modes give ``g = 1`` (triangular), ``1 / 2^(cycle - 1)``
    (triangular2) and ``gamma^e`` (exp_range).

    Parameters
    ----------
    lr : float, list of float or ParamGroups -- one entry per group (the rates are replaced
        by ``base_lr`` at construction, as in torch).
    base_lr, max_lr : float or list (one per group)
    step_size_up : int >= 1, default 2000; step_size_down : int >= 1 or None (= up)
    mode : "triangular" | "triangular2" | "exp_range", default "triangular"
    gamma : float, default 1 -- exp_range's base.
    scale_fn : callable or None -- replaces ``mode``'s function; not saved in ``state_dict``.
    scale_mode : "cycle" | "iterations" -- used with ``scale_fn`` (the modes fix their own).
    cycle_momentum : bool, default True
    base_momentum, max_momentum : float or list, defaults 0.8 and 0.9
    last_epoch : int, default -1
    interval : "step" (default) or "epoch"

    ``explain()`` adds ``cycle``, ``x``, ``scale`` (the triangle's height in [0, 1]),
    ``amplitude`` (``g``) and ``momentums``.

    Examples
    --------
    The rate after construction, then after each of 8 ``step()`` calls:

    >>> from refimpl.schedulers import CyclicLR
    >>> scheduler = CyclicLR(0.01, base_lr=0.01, max_lr=0.1, step_size_up=2)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(8)]
    >>> [round(lr, 6) for lr in rates]
    [0.01, 0.055, 0.1, 0.055, 0.01, 0.055, 0.1, 0.055, 0.01]
    """

    has_closed_form = False  # torch's step(epoch) evaluates get_lr at that step
    _state_keys = ("interval", "last_epoch", "max_lrs", "total_size", "step_ratio", "mode",
                   "gamma", "scale_mode", "cycle_momentum", "base_momentums", "max_momentums")

    def __init__(self, lr: LrArg, base_lr: float | Sequence[float],
                 max_lr: float | Sequence[float], step_size_up: int = 2000,
                 step_size_down: int | None = None, mode: str = "triangular",
                 gamma: float = 1.0, scale_fn: Callable[[float], float] | None = None,
                 scale_mode: str = "cycle", cycle_momentum: bool = True,
                 base_momentum: float | Sequence[float] = 0.8,
                 max_momentum: float | Sequence[float] = 0.9, last_epoch: int = -1, *,
                 interval: str = "step"):
        groups = as_param_groups(lr)
        n_groups = len(groups)
        base_lrs = per_group(base_lr, n_groups, "base_lr")
        self.max_lrs = per_group(max_lr, n_groups, "max_lr")
        up = float(check_int(step_size_up, "step_size_up", 1))
        down = up if step_size_down is None else float(
            check_int(step_size_down, "step_size_down", 1))
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if scale_fn is None:
            mode = check_choice(mode, "mode", ("triangular", "triangular2", "exp_range"))
            scale_mode = "iterations" if mode == "exp_range" else "cycle"
        elif not callable(scale_fn):
            raise ValueError(f"scale_fn must be a callable or None, got {scale_fn!r}")
        self.mode, self.scale_fn_custom = mode, scale_fn
        self.gamma = check_factor(gamma, "gamma", low=0.0, high=math.inf)
        self.scale_mode = check_choice(scale_mode, "scale_mode", ("cycle", "iterations"))
        self.cycle_momentum = check_flag(cycle_momentum, "cycle_momentum")
        self.base_momentums = per_group(base_momentum, n_groups, "base_momentum",
                                        _check_momentum)
        self.max_momentums = per_group(max_momentum, n_groups, "max_momentum",
                                       _check_momentum)
        if last_epoch == -1:
            groups.lrs = base_lrs
            if self.cycle_momentum:
                for group, momentum in zip(groups.groups, self.max_momentums):
                    group["momentum"] = momentum
        self.groups = groups
        super().__init__(groups, last_epoch, interval=interval)
        self.base_lrs = base_lrs

    def scale_fn(self, x: float) -> float:
        """The amplitude ``g`` at ``x`` (a cycle number or a step, see ``scale_mode``)."""
        if self.scale_fn_custom is not None:
            return self.scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma**x

    def _shape(self, epoch: int) -> tuple[int, float, float, float]:
        """``(cycle, x, scale, g)`` at step ``epoch``."""
        cycle = math.floor(1 + epoch / self.total_size)
        x = 1.0 + epoch / self.total_size - cycle
        if x <= self.step_ratio:
            scale = x / self.step_ratio
        else:
            scale = (x - 1) / (self.step_ratio - 1)
        amplitude = self.scale_fn(cycle if self.scale_mode == "cycle" else epoch)
        return cycle, x, scale, amplitude

    def closed_form(self, epoch: int) -> list[float]:
        _, _, scale, amplitude = self._shape(epoch)
        return [base + (top - base) * scale * amplitude
                for base, top in zip(self.base_lrs, self.max_lrs)]

    def closed_form_momentums(self, epoch: int) -> list[float]:
        """The momenta at step ``epoch`` (the same whether or not they are applied)."""
        _, _, scale, amplitude = self._shape(epoch)
        return [top - (top - low) * scale * amplitude
                for low, top in zip(self.base_momentums, self.max_momentums)]

    def get_lr(self) -> list[float]:
        if self.cycle_momentum:
            self._set_momentums(self.closed_form_momentums(self.last_epoch))
        return self.closed_form(self.last_epoch)

    def _terms(self) -> dict[str, Any]:
        cycle, x, scale, amplitude = self._shape(self.last_epoch)
        return {"cycle": cycle, "x": x, "scale": scale, "amplitude": amplitude,
                "momentums": self.momentums}

    def _formula(self, group: int) -> Formula:
        e, size, ratio = self.last_epoch, self.total_size, self.step_ratio
        cycle, x, scale, amplitude = self._shape(e)
        base, top = self.base_lrs[group], self.max_lrs[group]
        if x <= ratio:
            height = f"x/r = {number(x)}/{number(ratio)}"
        else:
            height = f"(x - 1)/(r - 1) = ({number(x)} - 1)/({number(ratio)} - 1)"
        by = cycle if self.scale_mode == "cycle" else e
        kind = self.mode if self.scale_fn_custom is None else "scale_fn"
        note = (f"cycle = floor(1 + e/S) = floor(1 + {e}/{number(size)}) = {cycle}, "
                f"x = 1 + e/S - cycle = {number(x)}, scale = {height} = {number(scale)}, "
                f"g = {kind}({by}) = {number(amplitude)}")
        return Formula(f"cyclic ({kind})", "base_lr + (max_lr - base_lr)*scale*g",
                       f"{number(base)} + ({number(top)} - {number(base)})*{number(scale)}"
                       f"*{number(amplitude)}",
                       base + (top - base) * scale * amplitude, max(abs(base), abs(top)), note)


class OneCycleLR(_MomentumCycling):
    """The 1cycle policy (torch's OneCycleLR; Smith & Topin, "Super-Convergence").

    With ``T = total_steps`` (or ``epochs * steps_per_epoch``), ``initial = max_lr /
    div_factor`` and ``min = initial / final_div_factor``, the phases end at steps::

        two phases:   p T - 1 (initial -> max_lr),        T - 1 (max_lr -> min)
        three phases: p T - 1 (initial -> max_lr), 2 p T - 2 (max_lr -> initial),
                      T - 1 (initial -> min)

    (``p = pct_start``). In the phase ``[s, t]`` holding step ``e``, ``pct = (e - s)/(t - s)``
    and ``lr = anneal(start, end, pct)`` with ``anneal = end + (start - end)(1 + cos(pi pct))/2``
    (``"cos"``) or ``start + (end - start) pct`` (``"linear"``). The momentum anneals the other
    way: ``max_momentum -> base_momentum`` while the rate rises, back while it falls (and stays
    at ``max_momentum`` in the third phase). Stepping past ``T`` raises ``ValueError``.

    Parameters
    ----------
    lr : float, list of float or ParamGroups -- sets the number of groups (the rates start
        at ``initial``).
    max_lr : float or list (one per group)
    total_steps : int >= 1, or ``epochs`` and ``steps_per_epoch``
    pct_start : float in [0, 1], default 0.3
    anneal_strategy : "cos" (default) or "linear"
    cycle_momentum : bool, default True
    base_momentum, max_momentum : float or list, defaults 0.85 and 0.95
    div_factor : float > 0, default 25; final_div_factor : float > 0, default 1e4
    three_phase : bool, default False
    last_epoch : int, default -1 -- resuming, the groups keep ``initial_lr``; ``max_lr`` and
        ``min_lr`` come from the arguments (torch reads them from its groups).
    interval : "step" (default) or "epoch"

    ``explain()`` adds ``phase`` (index), ``pct``, ``start_lrs``, ``end_lrs`` and
    ``momentums``.

    Examples
    --------
    The rate after construction, then after each of 9 ``step()`` calls:

    >>> from refimpl.schedulers import OneCycleLR
    >>> scheduler = OneCycleLR(0.1, max_lr=0.1, total_steps=10)
    >>> rates = [scheduler.lr] + [scheduler.step() for _ in range(9)]
    >>> [round(lr, 4) for lr in rates]
    [0.004, 0.052, 0.1, 0.095, 0.0812, 0.0611, 0.0389, 0.0188, 0.005, 0.0]
    """

    has_closed_form = False
    _state_keys = ("interval", "last_epoch", "total_steps", "phase_ends", "anneal_strategy",
                   "cycle_momentum", "max_lrs", "min_lrs", "base_momentums", "max_momentums")

    def __init__(self, lr: LrArg, max_lr: float | Sequence[float],
                 total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | Sequence[float] = 0.85,
                 max_momentum: float | Sequence[float] = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1, *, interval: str = "step"):
        groups = as_param_groups(lr)
        n_groups = len(groups)
        self.total_steps = self._total_steps(total_steps, epochs, steps_per_epoch)
        pct_start = check_factor(pct_start, "pct_start", low=0.0, high=1.0)
        self.anneal_strategy = check_choice(anneal_strategy, "anneal_strategy", ("cos", "linear"))
        div_factor = check_factor(div_factor, "div_factor", low=0.0, high=math.inf, low_open=True)
        final_div_factor = check_factor(final_div_factor, "final_div_factor", low=0.0,
                                        high=math.inf, low_open=True)
        self.phase_ends = self._phase_ends(pct_start, check_flag(three_phase, "three_phase"))
        self.max_lrs = per_group(max_lr, n_groups, "max_lr")
        initial_lrs = [top / div_factor for top in self.max_lrs]
        self.min_lrs = [initial / final_div_factor for initial in initial_lrs]
        self.cycle_momentum = check_flag(cycle_momentum, "cycle_momentum")
        self.max_momentums = per_group(max_momentum, n_groups, "max_momentum", _check_momentum)
        self.base_momentums = per_group(base_momentum, n_groups, "base_momentum",
                                        _check_momentum)
        if last_epoch == -1:
            for group, initial in zip(groups.groups, initial_lrs):
                group["initial_lr"] = initial
            if self.cycle_momentum:
                for group, momentum in zip(groups.groups, self.max_momentums):
                    group["momentum"] = momentum
        super().__init__(groups, last_epoch, interval=interval)

    @staticmethod
    def _total_steps(total_steps: Any, epochs: Any, steps_per_epoch: Any) -> int:
        if total_steps is not None:
            return check_int(total_steps, "total_steps", 1)
        if epochs is None or steps_per_epoch is None:
            raise ValueError("OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
        return check_int(epochs, "epochs", 1) * check_int(steps_per_epoch, "steps_per_epoch", 1)

    def _phase_ends(self, pct_start: float, three_phase: bool) -> list[float]:
        up_end = float(pct_start * self.total_steps) - 1
        if three_phase:
            return [up_end, float(2 * pct_start * self.total_steps) - 2,
                    float(self.total_steps - 1)]
        return [up_end, float(self.total_steps - 1)]

    def _endpoints(self, index: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """Start and end rates, start and end momenta of phase ``index``."""
        initial, top, low = self.base_lrs, self.max_lrs, self.min_lrs
        m_top, m_low = self.max_momentums, self.base_momentums
        if len(self.phase_ends) == 3:
            table = [(initial, top, m_top, m_low), (top, initial, m_low, m_top),
                     (initial, low, m_top, m_top)]
        else:
            table = [(initial, top, m_top, m_low), (top, low, m_low, m_top)]
        return table[index]

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _phase(self, step: int) -> tuple[int, float]:
        """``(phase index, pct)`` of ``step`` (torch's walk over the phase ends)."""
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR was stepped {step} times but total_steps is "
                             f"{self.total_steps}; build it with the run's full length")
        start = 0.0
        for index, end in enumerate(self.phase_ends):
            if step <= end or index == len(self.phase_ends) - 1:
                if end == start:
                    raise ValueError(
                        f"phase {index} of OneCycleLR has zero length (pct_start * "
                        f"total_steps = {self.phase_ends[0] + 1}); change pct_start")
                return index, (step - start) / (end - start)
            start = end
        raise AssertionError("unreachable")  # pragma: no cover

    def closed_form(self, epoch: int) -> list[float]:
        index, pct = self._phase(epoch)
        starts, ends, _, _ = self._endpoints(index)
        return [self._anneal(a, b, pct) for a, b in zip(starts, ends)]

    def closed_form_momentums(self, epoch: int) -> list[float]:
        """The momenta at step ``epoch``."""
        index, pct = self._phase(epoch)
        _, _, starts, ends = self._endpoints(index)
        return [self._anneal(a, b, pct) for a, b in zip(starts, ends)]

    def get_lr(self) -> list[float]:
        lrs = self.closed_form(self.last_epoch)
        if self.cycle_momentum:
            self._set_momentums(self.closed_form_momentums(self.last_epoch))
        return lrs

    def _terms(self) -> dict[str, Any]:
        index, pct = self._phase(self.last_epoch)
        starts, ends, _, _ = self._endpoints(index)
        return {"phase": index, "pct": pct, "start_lrs": list(starts), "end_lrs": list(ends),
                "momentums": self.momentums}

    def _formula(self, group: int) -> Formula:
        e = self.last_epoch
        index, pct = self._phase(e)
        starts, ends, _, _ = self._endpoints(index)
        start, end = starts[group], ends[group]
        first = 0.0 if index == 0 else self.phase_ends[index - 1]
        last = self.phase_ends[index]
        if self.anneal_strategy == "cos":
            symbols = "end + (start - end)*(1 + cos(pi*pct))/2"
            values = (f"{number(end)} + ({number(start)} - {number(end)})"
                      f"*(1 + cos(pi*{number(pct)}))/2")
        else:
            symbols = "start + (end - start)*pct"
            values = f"{number(start)} + ({number(end)} - {number(start)})*{number(pct)}"
        note = (f"pct = (e - phase start)/(phase end - phase start) = ({e} - {number(first)})"
                f"/({number(last)} - {number(first)}) = {number(pct)}")
        return Formula(f"one-cycle phase {index} ({self.anneal_strategy})", symbols, values,
                       self._anneal(start, end, pct), max(abs(start), abs(end)), note)
