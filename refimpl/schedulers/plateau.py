"""ReduceLROnPlateau: lower the rate when the monitored loss stops improving, as
``torch.optim.lr_scheduler.ReduceLROnPlateau`` does (docs/methods.md §3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .base import Scheduler
from .checks import (
    check_choice,
    check_factor,
    check_int,
    check_interval,
    check_lr,
    per_group,
)
from .lr_base import (
    GroupRates,
    LrArg,
    as_param_groups,
    number,
)

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
