"""DLRS, the batch-loss-slope schedule (DLRS paper; docs/methods.md §6), and the Adacomp baseline.

DLRS, once per epoch with batch losses ``l_1 .. l_B``::

    mean  = (l_1 + ... + l_B) / B
    slope = (l_B - l_1) / mean                      normalized loss slope, Delta L
    G     = 10 ** floor(log10(lr))                  granularity: the decade of lr
    delta = delta_d  if slope >= 1                  divergent (a 100% increase)
            delta_o  if 0 <= slope < 1              flat
            delta_i  if slope < 0                   convergent
    lr   <- clip(lr - delta * G * slope, min_lr, max_lr)

A negative slope raises the rate, a positive one lowers it, each by steps of the rate's own
decade.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .base import Scheduler, check_lr


def normalized_slope(batch_losses: Sequence[float]) -> float:
    """``(l_B - l_1) / mean(l)``: the epoch's relative loss change, first batch to last.

    One batch, or losses all zero, give 0 (no evidence of a trend).
    """
    losses = np.asarray(batch_losses, dtype=np.float64).ravel()
    if losses.size == 0:
        raise ValueError("batch_losses is empty; pass the losses of every batch of the epoch")
    if not np.all(np.isfinite(losses)):
        raise ValueError("batch_losses contains NaN or inf; DLRS needs finite losses")
    change = float(losses[-1] - losses[0])
    if change == 0.0:
        return 0.0
    mean = float(losses.mean())
    if mean == 0.0:
        raise ValueError(
            "the mean batch loss is 0 while the losses change; DLRS normalizes by the mean, "
            "so use a loss that is not centred on zero"
        )
    return change / mean


def granularity(lr: float) -> float:
    """``10 ** floor(log10(lr))``: the power of ten just below (or at) ``lr``."""
    if not lr > 0.0:
        raise ValueError(f"DLRS needs lr > 0 to take its decade, got {lr!r}")
    return 10.0 ** math.floor(math.log10(lr))


class DLRS(Scheduler):
    """Loss-based dynamic learning-rate schedule, one update per epoch.

    Parameters
    ----------
    lr : float or list of float
        Initial rate (> 0); each group uses its own decade ``G``.
    delta_d, delta_o, delta_i : float
        Step sizes (in units of ``G``) for the divergent, flat and convergent regimes; the
        paper's PINN values 0.5, 1.0, 0.1.
    min_lr, max_lr : float
        Clip range after every update (defaults 1e-5 and 0.1, those of the public code).

    Notes
    -----
    Regime thresholds are an interpretation (docs/methods.md §6) of the stripped ones: divergent
    ``slope >= 1`` (the paper's "100% increase"), flat ``0 <= slope < 1``, convergent
    ``slope < 0``.

    Unlike the public NumPy implementation (its ``step_v2``), the rate is **not** rounded to
    8 decimals: rounding would collapse any rate below 5e-9 to 0 (and then ``log10`` of the
    decade is undefined), and it makes the rule depend on the rate's decimal position.

    ``step(batch_losses)`` is called once per epoch with that epoch's batch losses.
    ``interval="epoch"``, ``signal="batch_losses"``.
    """

    interval = "epoch"
    signal = "batch_losses"
    _state_keys = ("delta_d", "delta_o", "delta_i", "min_lr", "max_lr", "last_slope")

    def __init__(
        self,
        lr: float | Sequence[float],
        delta_d: float = 0.5,
        delta_o: float = 1.0,
        delta_i: float = 0.1,
        min_lr: float = 1e-5,
        max_lr: float = 0.1,
    ):
        super().__init__(lr)
        for name, value in (("delta_d", delta_d), ("delta_o", delta_o), ("delta_i", delta_i)):
            check_lr(value, name)
        self.min_lr = check_lr(min_lr, "min_lr")
        self.max_lr = check_lr(max_lr, "max_lr")
        if not 0.0 < self.min_lr <= self.max_lr:
            raise ValueError(
                f"need 0 < min_lr <= max_lr (the rate's decade needs lr > 0), got "
                f"min_lr={min_lr!r}, max_lr={max_lr!r}"
            )
        if min(self.base_lrs) <= 0.0:
            raise ValueError(f"lr must be > 0 for DLRS (it takes log10 of it), got {lr!r}")
        self.delta_d, self.delta_o, self.delta_i = float(delta_d), float(delta_o), float(delta_i)
        self.last_slope = 0.0

    def delta(self, slope: float) -> float:
        """The step size of the regime that ``slope`` falls in."""
        if slope >= 1.0:
            return self.delta_d
        if slope >= 0.0:
            return self.delta_o
        return self.delta_i

    def step(self, batch_losses: Sequence[float]) -> float:
        """Update every group's rate from one epoch of batch losses; return the first."""
        slope = normalized_slope(batch_losses)
        delta = self.delta(slope)
        self.last_slope = slope
        before = list(self.lrs)
        steps = [delta * granularity(lr) * slope for lr in before]
        self.lrs = [min(max(lr - step, self.min_lr), self.max_lr)
                    for lr, step in zip(before, steps)]
        losses = np.asarray(batch_losses, dtype=np.float64).ravel()
        self._last = {"first": float(losses[0]), "last": float(losses[-1]),
                      "mean": float(losses.mean()), "batches": int(losses.size),
                      "lrs_before": before, "unclipped": [lr - st for lr, st in zip(before, steps)]}
        return self.lr

    def _after_load(self) -> None:
        self.__dict__.pop("_last", None)  # explain() must not describe the step before a load

    def regime(self, slope: float) -> str:
        """``"divergent"`` (slope >= 1), ``"flat"`` (0 <= slope < 1) or ``"convergent"``."""
        if slope >= 1.0:
            return "divergent"
        return "flat" if slope >= 0.0 else "convergent"

    def explain(self) -> dict:
        """What the last :meth:`step` did, and why.

        Returns
        -------
        dict
            ``rule`` (one sentence), ``slope`` (``Delta L``), ``regime`` (``"divergent"``,
            ``"flat"`` or ``"convergent"``), ``delta`` (that regime's step size),
            ``granularity`` (``G`` per group, from the rate before the step), ``first``,
            ``last``, ``mean`` and ``batches`` (the epoch's losses), ``lrs_before``,
            ``unclipped`` (``lr - delta G slope``), ``clipped`` (per group: whether
            ``[min_lr, max_lr]`` changed it), ``term_scale`` (per group, the larger of
            ``|lr|`` and ``|delta G slope|``: the new rate is their difference) and ``lrs``.
            Before the first step only the rates.
        """
        last = getattr(self, "_last", None)
        if last is None:
            return {"rule": "no step yet (or since a load)", "lrs": list(self.lrs)}
        slope = self.last_slope
        regime, delta = self.regime(slope), self.delta(slope)
        bounds = {"divergent": "slope >= 1", "flat": "0 <= slope < 1",
                  "convergent": "slope < 0"}[regime]
        granularities = [granularity(lr) for lr in last["lrs_before"]]
        return {
            "rule": (f"{regime}: slope {slope!r} ({bounds}) -> delta {delta:g}; "
                     f"lr <- clip(lr - delta * G * slope, {self.min_lr:g}, {self.max_lr:g})"),
            "slope": slope, "regime": regime, "delta": delta, "granularity": granularities,
            **last,
            "clipped": [u != lr for u, lr in zip(last["unclipped"], self.lrs)],
            "term_scale": [max(abs(lr), abs(lr - u))
                           for lr, u in zip(last["lrs_before"], last["unclipped"])],
            "lrs": list(self.lrs),
        }


class Adacomp(Scheduler):
    """Adacomp baseline: a zeroth-order rule on the last two losses (interpretation).

    Paper 004 describes Adacomp (Li et al., 2021) only in words: it adapts the rate from the
    difference between the previous and the current loss, "penalizes large learning rates and
    compensates small learning rates"; the formula was lost in extraction. **Interpretation**
    (stated here, used exactly): with ``r = (l_{t-1} - l_t) / |l_{t-1}|`` the relative
    improvement of the last step and ``lr_0`` the initial rate::

        r >= 0 (progress):  lr <- lr + beta_inc * tanh(r) * lr_0**2 / (lr + lr_0)
        r <  0 (setback):   lr <- lr / (1 + beta_dec * tanh(-r) * lr / lr_0)
        lr <- clip(lr, min_lr, max_lr)

    The increase is bounded (``tanh <= 1``) and shrinks as the rate grows ("compensates small
    rates"); the decrease grows with the rate ("penalizes large rates"). Only loss values
    are used, no gradients.

    Parameters
    ----------
    lr : float or list of float
        Initial rate ``lr_0`` (> 0), per group.
    beta_inc, beta_dec : float
        Strength of the compensation and of the penalty (defaults 0.1 and 1.0).
    min_lr, max_lr : float
        Clip range (defaults 1e-5 and 1.0).

    Notes
    -----
    ``step(loss)`` after every optimizer step with the batch loss; the first call only stores
    it. ``interval="step"``, ``signal="loss"``.
    """

    interval = "step"
    signal = "loss"
    #: names the rule above; studies key their Adacomp runs by it, so change it with the rule
    rule = "interpretation-1"
    _state_keys = ("beta_inc", "beta_dec", "min_lr", "max_lr", "prev_loss")

    def __init__(
        self,
        lr: float | Sequence[float],
        beta_inc: float = 0.1,
        beta_dec: float = 1.0,
        min_lr: float = 1e-5,
        max_lr: float = 1.0,
    ):
        super().__init__(lr)
        if min(self.base_lrs) <= 0.0:
            raise ValueError(f"lr must be > 0 for Adacomp, got {lr!r}")
        self.beta_inc = check_lr(beta_inc, "beta_inc")
        self.beta_dec = check_lr(beta_dec, "beta_dec")
        self.min_lr = check_lr(min_lr, "min_lr")
        self.max_lr = check_lr(max_lr, "max_lr")
        if self.min_lr > self.max_lr:
            raise ValueError(f"need min_lr <= max_lr, got {min_lr!r} > {max_lr!r}")
        self.prev_loss: float | None = None

    def step(self, loss: float) -> float:
        """Consume one loss; from the second call on, move every group's rate."""
        loss = float(loss)
        if not math.isfinite(loss):
            raise ValueError(f"loss must be finite, got {loss!r}")
        prev, self.prev_loss = self.prev_loss, loss
        self._last = {"loss": loss, "prev_loss": prev, "r": None, "lrs_before": list(self.lrs),
                      "unclipped": list(self.lrs)}
        if prev is None or prev == 0.0:
            return self.lr
        r = (prev - loss) / abs(prev)
        new = []
        for lr, lr0 in zip(self.lrs, self.base_lrs):
            if r >= 0.0:
                lr = lr + self.beta_inc * math.tanh(r) * lr0 * lr0 / (lr + lr0)
            else:
                lr = lr / (1.0 + self.beta_dec * math.tanh(-r) * lr / lr0)
            new.append(min(max(lr, self.min_lr), self.max_lr))
            self._last["unclipped"][len(new) - 1] = lr
        self._last["r"] = r
        self.lrs = new
        return self.lr

    def _after_load(self) -> None:
        self.__dict__.pop("_last", None)  # explain() must not describe the step before a load

    def explain(self) -> dict:
        """What the last :meth:`step` did, and why.

        Returns
        -------
        dict
            ``rule`` (one sentence), ``branch`` (``"first"`` -- the first loss, or a
            previous loss of 0: rates kept --, ``"progress"`` for ``r >= 0``, ``"setback"``
            for ``r < 0``), ``r`` (relative improvement), ``loss``, ``prev_loss``,
            ``lrs_before``, ``unclipped``, ``clipped`` (per group) and ``lrs``.
        """
        last = getattr(self, "_last", None)
        if last is None:
            return {"rule": "no step yet (or since a load)", "lrs": list(self.lrs)}
        r = last["r"]
        if r is None:
            branch, rule = "first", "first: no previous loss (or it was 0) -> rates kept"
        elif r >= 0.0:
            branch = "progress"
            rule = (f"progress: r = {r!r} >= 0 -> lr + beta_inc {self.beta_inc:g} tanh(r) "
                    "lr0^2 / (lr + lr0), clipped")
        else:
            branch = "setback"
            rule = (f"setback: r = {r!r} < 0 -> lr / (1 + beta_dec {self.beta_dec:g} "
                    "tanh(-r) lr / lr0), clipped")
        return {"rule": rule, "branch": branch, **last,
                "clipped": [u != lr for u, lr in zip(last["unclipped"], self.lrs)],
                "lrs": list(self.lrs)}
