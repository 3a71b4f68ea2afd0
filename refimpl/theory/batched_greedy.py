"""GreedyLR advanced for many independent runs at once (one NumPy operation per step).

This is the rule of :class:`refimpl.schedulers.GreedyLR` (docs/methods.md §4) with the run index as an
array axis, so a Monte-Carlo check over thousands of seeds costs one vectorised update per
step instead of thousands of Python calls. It is *not* a second definition:
``tests/theory/test_theory.py`` replays the same losses through both and requires identical lr traces.

Supported options (single parameter group, ``mode="min"``): ``factor`` (a scalar, or one
value per run for factor sweeps), ``patience``, ``threshold`` with ``threshold_mode`` ``abs`` or
``rel``, ``cooldown``, ``warmup``, ``min_lr``, ``max_lr``, ``eps`` and ``reset_start``.
Not supported: ``mode="max"``, ``smooth=True`` and several parameter groups -- the theorem
checks do not use them; asking for them raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np


class BatchedGreedyLR:
    """GreedyLR over ``n_runs`` independent loss streams; ``step(losses) -> lrs``.

    Per run, with ``F`` the factor::

        improved   = loss < best - threshold      (abs)   or   loss < best * (1 - threshold) (rel)
        good > patience -> lr <- min(lr / F, max_lr),  then warmup
        bad  > patience -> lr <- max(lr * F, min_lr),  then cooldown
        reset after ``reset_start`` decreases attempted at min_lr

    exactly as :class:`refimpl.schedulers.GreedyLR` (see that class for the full semantics).
    """

    def __init__(
        self,
        lr: float,
        n_runs: int,
        factor: float | np.ndarray = 0.95,
        patience: int = 10,
        threshold: float = 1e-6,
        threshold_mode: str = "abs",
        cooldown: int = 0,
        warmup: int = 0,
        min_lr: float = 1e-3,
        max_lr: float = 1.0,
        eps: float = 1e-8,
        reset_start: int = 500,
        mode: str = "min",
        smooth: bool = False,
    ):
        if mode != "min":
            raise ValueError(f"BatchedGreedyLR supports mode='min' only, got {mode!r}; "
                             "use refimpl.schedulers.GreedyLR for mode='max'")
        if smooth:
            raise ValueError("BatchedGreedyLR does not support smooth=True; "
                             "use refimpl.schedulers.GreedyLR for smoothed losses")
        if threshold_mode not in ("abs", "rel"):
            raise ValueError(f"threshold_mode must be 'abs' or 'rel', got {threshold_mode!r}")
        self.factor = np.broadcast_to(np.asarray(factor, dtype=np.float64), (n_runs,)).copy()
        if not np.all((self.factor > 0) & (self.factor < 1)):
            raise ValueError("factor must lie in (0, 1) for every run; use e.g. 0.95")
        if not 0 <= min_lr <= max_lr:
            raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
        self.patience, self.threshold, self.threshold_mode = int(patience), float(threshold), threshold_mode
        self.cooldown, self.warmup, self.eps = int(cooldown), int(warmup), float(eps)
        self.min_lr, self.max_lr, self.reset_start = float(min_lr), float(max_lr), int(reset_start)
        self.initial_lr = float(lr)
        self.lr = np.full(n_runs, float(lr))
        self.best = np.full(n_runs, np.inf)
        self.num_good = np.zeros(n_runs, dtype=np.int64)
        self.num_bad = np.zeros(n_runs, dtype=np.int64)
        self.cooldown_counter = np.zeros(n_runs, dtype=np.int64)
        self.warmup_counter = np.zeros(n_runs, dtype=np.int64)
        self.reset_countdown = np.full(n_runs, self.reset_start, dtype=np.int64)

    def _is_better(self, loss: np.ndarray) -> np.ndarray:
        if self.threshold_mode == "rel":
            return loss < self.best * (1.0 - self.threshold)
        return loss < self.best - self.threshold

    def step(self, losses: np.ndarray) -> np.ndarray:
        """Consume one loss per run, update the rates, return them (shape ``(n_runs,)``)."""
        losses = np.asarray(losses, dtype=np.float64)
        in_cooldown = self.cooldown_counter > 0
        in_warmup = ~in_cooldown & (self.warmup_counter > 0)
        counting = ~in_cooldown & ~in_warmup
        self.cooldown_counter[in_cooldown] -= 1
        self.warmup_counter[in_warmup] -= 1
        paused = ~counting
        self.num_good[paused] = 0
        self.num_bad[paused] = 0

        better = counting & self._is_better(losses)
        worse = counting & ~better
        self.best[better] = losses[better]
        self.num_good[better] += 1
        self.num_bad[better] = 0
        self.num_bad[worse] += 1
        self.num_good[worse] = 0

        increase = counting & (self.num_good > self.patience)
        decrease = counting & ~increase & (self.num_bad > self.patience)
        self._increase(increase)
        self._decrease(decrease)
        return self.lr.copy()

    def _increase(self, mask: np.ndarray) -> None:
        new = np.minimum(self.lr / self.factor, self.max_lr)
        apply = mask & (new - self.lr > self.eps)
        self.lr[apply] = new[apply]
        self.warmup_counter[mask] = self.warmup
        self.num_good[mask] = 0
        self.reset_countdown[mask] = self.reset_start

    def _decrease(self, mask: np.ndarray) -> None:
        new = np.maximum(self.lr * self.factor, self.min_lr)
        apply = mask & (self.lr - new > self.eps)
        self.lr[apply] = new[apply]
        at_min = mask & (self.lr <= self.min_lr)
        self.reset_countdown[at_min] -= 1
        reset = at_min & (self.reset_countdown <= 0)
        if np.any(reset):
            self.lr[reset] = self.initial_lr
            self.best[reset] = np.inf
            self.num_good[reset] = 0
            self.warmup_counter[reset] = 0
            self.reset_countdown[reset] = self.reset_start
        self.cooldown_counter[mask] = self.cooldown
        self.num_bad[mask] = 0
