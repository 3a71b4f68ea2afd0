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
from .checks import check_factor


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


#: Widths of the two arctan terms of Adacomp's update that do not carry ``beta``: fixed
#: constants of the rule (the same in every script of the authors' code release).
COMPENSATION_WIDTH = 5.0
SETBACK_WIDTH = 5.5
#: Smallest ``beta`` that keeps every setback factor above 0 (see :func:`adacomp_rate`).
MIN_BETA = 0.55


def adacomp_rate(lr: float, decrease: float, beta: float = 0.6,
                 tolerance: float = 1e-5) -> float:
    """One Adacomp update (Li et al. 2021, Eq. (9)) of a rate ``lr >= 0``.

    ``decrease`` is the drop of the loss since the previous call, ``l_prev - l_now``::

        decrease >  tolerance:  lr/2 + lr * (1/2 + atan(decrease + 1/lr) / (5 pi))
        decrease < -tolerance:  lr/2 + lr * (1/4 - atan(lr) / (beta pi)
                                             + 1/4 - atan(1/lr - decrease) / (5.5 pi))
        otherwise:              lr/2

    Closed forms of the same update, which bound it: after progress the rate is multiplied
    by ``1 + atan(decrease + 1/lr) / (5 pi)``, in (1, 1.1), closer to 1.1 the smaller the
    rate; after a setback by ``1 - atan(lr) / (beta pi) - atan(1/lr + |decrease|) / (5.5 pi)``,
    in (1 - 1/(2 beta) - 1/11, 1), near its low end for a large rate; that low end is > 0
    for ``beta >= 0.55``. A rate of 0 stays 0 (every term is a multiple of it).
    """
    if lr == 0.0:
        return 0.0
    half = lr / 2.0
    if decrease > tolerance:  # progress: compensate, more for a small rate
        return half + lr * (0.5 + math.atan(decrease + 1.0 / lr) / (COMPENSATION_WIDTH * math.pi))
    if decrease < -tolerance:  # setback: penalize, more for a large rate and a large rise
        by_rate = 0.25 - math.atan(lr) / (beta * math.pi)
        by_loss = 0.25 - math.atan(1.0 / lr - decrease) / (SETBACK_WIDTH * math.pi)
        return half + lr * (by_rate + by_loss)
    return half


class Adacomp(Scheduler):
    """Adacomp, Li, Ren, Zhao, Yang (2021), Applied Sciences 11(21):10184: the DLRS
    paper's zeroth-order baseline, which moves the rate from loss values alone.

    After each optimizer step, with ``decrease = l_{t-1} - l_t`` the fall of the loss since
    the previous step, every group's rate ``lr`` becomes :func:`adacomp_rate` ``(lr,
    decrease)``, the paper's Eq. (9) (``beta`` is the constant that equation carries; the
    paper sets it to 0.6 for its MNIST study)::

        decrease >  tol:  lr/2 + lr * (1/2 + atan(decrease + 1/lr) / (5 pi))
        decrease < -tol:  lr/2 + lr * (1/4 - atan(lr) / (beta pi)
                                       + 1/4 - atan(1/lr - decrease) / (5.5 pi))
        otherwise:        lr/2
        lr <- clip(lr, min_lr, max_lr)          (no clip by default)

    The paper's four requirements (its Section 3.2) read off this: a loss that rose lowers
    the rate and one that fell raises it; the raise is bounded (at most 10%) and shrinks as
    the rate grows, so small rates are compensated; the cut deepens with the rate (``atan(lr)
    / (beta pi)`` tends to ``1/(2 beta)``), so large rates are penalized, and with the size
    of the rise.

    Parameters
    ----------
    lr : float or list of float
        Initial rate (> 0), per group.
    beta : float
        The penalty constant of Eq. (9): a smaller ``beta`` cuts large rates harder. Default
        0.6, the paper's setting; must be >= 0.55 so that a setback keeps the rate positive.
        (The authors' CIFAR-10 scripts use 5.)
    tolerance : float
        Dead band: ``|decrease| <= tolerance`` halves the rate. Default 1e-5.
    min_lr, max_lr : float
        Optional clip after every update (defaults 0 and ``None``: none, as in the paper).

    Notes
    -----
    Source of the equation: the stored copies of the article lost its typeset mathematics,
    so the terms above are read from the authors' code release (github.com/IoTDATALab/
    Adacomp, ``main_adacomp.py`` and the other ``main_Adacomp*.py`` scripts), whose MNIST
    script has ``beta = 0.6`` as its default as the paper's Eq. (9) setting does. That code
    differs in four ways, all **interpretations** here:

    * it writes 3.14 for pi; we use ``math.pi`` (the arctan terms differ by 5e-4 relative);
    * the dead band ``tolerance = 1e-5`` and the halving inside it come from the code; with
      ``tolerance=0`` only an unchanged loss halves the rate;
    * ``decrease`` there is a sum of one-step differences since the last reset (every 10 or
      20 batches, or the epoch start, depending on the script), i.e. the fall of the loss
      over that window. Here it is the fall between the two most recent ``step`` calls:
      calling ``step`` every ``k`` batches reproduces the scripts that update once per
      window of ``k``;
    * its first update compares the first loss with 0 (an empty buffer); here the first
      call only stores the loss.

    The MNIST scripts also switch to Adadelta, at the mean of the logged rates, for the
    second half of the epochs: a protocol of those experiments, not part of the rule.

    ``step(loss)`` after every optimizer step with the batch loss. ``interval="step"``,
    ``signal="loss"``.
    """

    interval = "step"
    signal = "loss"
    #: names the rule above; studies key their Adacomp runs by it, so change it with the rule
    rule = "li2021"
    _state_keys = ("beta", "tolerance", "min_lr", "max_lr", "prev_loss")

    def __init__(
        self,
        lr: float | Sequence[float],
        beta: float = 0.6,
        tolerance: float = 1e-5,
        min_lr: float = 0.0,
        max_lr: float | None = None,
    ):
        super().__init__(lr)
        if min(self.base_lrs) <= 0.0:
            raise ValueError(f"lr must be > 0 for Adacomp (it uses 1/lr), got {lr!r}")
        self.beta = check_factor(
            beta, "beta", low=MIN_BETA, high=math.inf,
            hint="; below 0.55 a setback can make a large rate negative (the paper uses 0.6)")
        self.tolerance = check_lr(tolerance, "tolerance")
        self.min_lr = check_lr(min_lr, "min_lr")
        self.max_lr = None if max_lr is None else check_lr(max_lr, "max_lr")
        if self.max_lr is not None and self.min_lr > self.max_lr:
            raise ValueError(f"need min_lr <= max_lr, got {min_lr!r} > {max_lr!r}")
        self.prev_loss: float | None = None

    def _clip(self, lr: float) -> float:
        lr = max(lr, self.min_lr)
        return lr if self.max_lr is None else min(lr, self.max_lr)

    def step(self, loss: float) -> float:
        """Consume one loss; from the second call on, move every group's rate."""
        loss = float(loss)
        if not math.isfinite(loss):
            raise ValueError(f"loss must be finite, got {loss!r}")
        prev, self.prev_loss = self.prev_loss, loss
        before = list(self.lrs)
        if prev is None:
            self._last = {"loss": loss, "prev_loss": None, "decrease": None,
                          "lrs_before": before, "unclipped": list(before)}
            return self.lr
        decrease = prev - loss
        unclipped = [adacomp_rate(lr, decrease, self.beta, self.tolerance) for lr in before]
        self.lrs = [self._clip(lr) for lr in unclipped]
        self._last = {"loss": loss, "prev_loss": prev, "decrease": decrease,
                      "lrs_before": before, "unclipped": unclipped}
        return self.lr

    def _after_load(self) -> None:
        self.__dict__.pop("_last", None)  # explain() must not describe the step before a load

    def branch(self, decrease: float) -> str:
        """``"progress"`` (decrease > tolerance), ``"setback"`` (decrease < -tolerance) or
        ``"flat"`` (in between: the rate is halved)."""
        if decrease > self.tolerance:
            return "progress"
        return "setback" if decrease < -self.tolerance else "flat"

    def explain(self) -> dict:
        """What the last :meth:`step` did, and why.

        Returns
        -------
        dict
            ``rule`` (one sentence), ``branch`` (``"first"`` -- the first loss, only
            stored --, ``"progress"``, ``"setback"`` or ``"flat"``, see :meth:`branch`),
            ``decrease`` (``prev_loss - loss``), ``loss``, ``prev_loss``, ``lrs_before``,
            ``unclipped`` (Eq. (9) before the clip), ``clipped`` (per group) and ``lrs``.
            Before the first step only the rates.
        """
        last = getattr(self, "_last", None)
        if last is None:
            return {"rule": "no step yet (or since a load)", "lrs": list(self.lrs)}
        decrease = last["decrease"]
        if decrease is None:
            branch, rule = "first", "first: no previous loss -> loss stored, rates kept"
        else:
            branch = self.branch(decrease)
            rule = {
                "progress": (f"progress: decrease {decrease!r} > {self.tolerance:g} -> lr/2 + "
                             "lr (1/2 + atan(decrease + 1/lr) / (5 pi))"),
                "setback": (f"setback: decrease {decrease!r} < -{self.tolerance:g} -> lr/2 + "
                            f"lr (1/2 - atan(lr) / ({self.beta:g} pi) "
                            "- atan(1/lr - decrease) / (5.5 pi))"),
                "flat": f"flat: |decrease| {abs(decrease)!r} <= {self.tolerance:g} -> lr/2",
            }[branch]
        return {"rule": rule, "branch": branch, **last,
                "clipped": [u != lr for u, lr in zip(last["unclipped"], self.lrs)],
                "lrs": list(self.lrs)}
