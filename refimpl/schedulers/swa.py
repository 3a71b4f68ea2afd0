"""SWALR: anneal each group's rate to a constant for stochastic weight averaging
(torch's ``torch.optim.swa_utils.SWALR``; docs/methods.md §3)."""

from __future__ import annotations

import math
from typing import Any

from .checks import check_choice, check_int, per_group
from .lr_base import LrArg, LRScheduler, as_param_groups

__all__ = ["SWALR"]


class SWALR(LRScheduler):
    """Anneal from the rate held to ``swa_lr`` over ``anneal_epochs`` steps, then hold it.

    With ``k`` the number of ``step()`` calls so far (0 at construction),
    ``t_k = clip(k / max(1, A), 0, 1)`` (``A = anneal_epochs``; when ``A = 0``, ``k`` counts
    from 1), ``alpha_k = (1 - cos(pi t_k)) / 2`` (``"cos"``) or ``t_k`` (``"linear"``)::

        lr_k = swa_lr * alpha_k + start * (1 - alpha_k),
        start = (lr_{k-1} - alpha_{k-1} swa_lr) / (1 - alpha_{k-1})   (swa_lr if alpha = 1)

    i.e. torch's recursion recovers the starting rate from the rate held, so the anneal reads
    ``lr_k = swa_lr alpha_k + lr_start (1 - alpha_k)`` when nothing else moves the rate.

    Parameters
    ----------
    lr : float, list of float or ParamGroups
    swa_lr : float or list (one per group)
    anneal_epochs : int >= 0, default 10
    anneal_strategy : "cos" (default) or "linear"
    last_epoch : int, default -1
    interval : "epoch" (default) or "step"

    As in torch, ``swa_lr`` lives in the groups: two SWALR on shared groups both use the
    ``swa_lr`` of the one built last.

    ``explain()`` adds ``alpha``, ``previous_alpha`` and ``start_lrs`` (the recovered start).
    """

    has_closed_form = False
    _state_keys = ("interval", "last_epoch", "swa_lrs", "anneal_epochs", "anneal_strategy")

    def __init__(self, lr: LrArg, swa_lr: Any, anneal_epochs: int = 10,
                 anneal_strategy: str = "cos", last_epoch: int = -1, *,
                 interval: str = "epoch"):
        groups = as_param_groups(lr)
        for group, value in zip(groups.groups, per_group(swa_lr, len(groups), "swa_lr")):
            group["swa_lr"] = value  # in the groups, as torch keeps it (shared, last one wins)
        self.anneal_strategy = check_choice(anneal_strategy, "anneal_strategy",
                                            ("cos", "linear"))
        self.anneal_epochs = check_int(anneal_epochs, "anneal_epochs", 0)
        self._explained: dict[str, Any] = {}
        super().__init__(groups, last_epoch, interval=interval)

    @property
    def swa_lrs(self) -> list[float]:
        """Each group's ``swa_lr`` (held in the groups, like torch's ``group["swa_lr"]``)."""
        return [group["swa_lr"] for group in self.groups.groups]

    @swa_lrs.setter
    def swa_lrs(self, values: list[float]) -> None:
        for group, value in zip(self.groups.groups, values):
            group["swa_lr"] = value

    def _alpha(self, k: int) -> float:
        t = max(0, min(1, k / max(1, self.anneal_epochs)))
        return (1 - math.cos(math.pi * t)) / 2 if self.anneal_strategy == "cos" else t

    @staticmethod
    def _start(lr: float, swa_lr: float, alpha: float) -> float:
        return swa_lr if alpha == 1 else (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self) -> list[float]:
        k = self._step_count - 1
        if self.anneal_epochs == 0:
            k = max(1, k)
        previous, alpha = self._alpha(k - 1), self._alpha(k)
        starts = [self._start(lr, swa, previous) for lr, swa in zip(self.lrs, self.swa_lrs)]
        self._explained = {"alpha": alpha, "previous_alpha": previous, "start_lrs": starts}
        return [swa * alpha + start * (1 - alpha) for swa, start in zip(self.swa_lrs, starts)]

    def closed_form(self, epoch: int) -> list[float]:
        """The anneal from ``base_lrs`` after ``epoch`` steps, nothing else moving the rate."""
        alpha = self._alpha(max(1, epoch) if self.anneal_epochs == 0 else epoch)
        return [swa * alpha + base * (1 - alpha) for swa, base in zip(self.swa_lrs,
                                                                      self.base_lrs)]

    def _terms(self) -> dict[str, Any]:
        return dict(self._explained)
