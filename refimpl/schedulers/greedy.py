"""GreedyLR (GreedyLR paper; docs/methods.md §4): raise the rate while the loss improves, lower it when not.

Core rule, per step with observed (optionally smoothed) loss ``l_t`` and factor ``0 < F < 1``::

    improved  = l_t < best - threshold            (mode "min", threshold_mode "abs")
    good, bad = (good + 1, 0) if improved else (0, bad + 1)
    good > patience  ->  lr <- min(lr / F, max_lr)
    bad  > patience  ->  lr <- max(lr * F, min_lr)

With ``patience = 0`` this is the paper's bare rule: every improvement divides the rate by F,
every non-improvement multiplies it by F.

The practical parts follow the semantics of ``transformers.optimization.GreedyLR`` (the
cross-check anchor; our trace equals its trace bit for bit, see ``tests/schedulers/greedy/test_greedy.py``):

* cooldown (after a decrease) and warmup (after an increase) suspend counting for that many
  steps and zero both counts;
* a change of the rate by no more than ``eps`` is skipped;
* ``smooth=True`` replaces each loss by the mean of the last ``window_size`` losses, kept as a
  running sum (add the new value, subtract the one that leaves the window);
* reset: each decrease attempted while every group sits at its ``min_lr`` counts down
  ``reset_start``; at zero the rates return to their initial values and all state (best,
  counts, cooldown, warmup, smoothing window) is cleared. Any increase restarts the countdown.
  A reset happens inside a decrease, so the cooldown of that decrease still starts after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .base import Scheduler
from .checks import check_choice, check_factor, check_flag, check_int, check_lr, per_group

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


def _upper_bounds(max_lr: float | Sequence[float], n_groups: int) -> list[float]:
    """``max_lr`` per group; ``inf`` (no upper bound, as transformers allows) is kept."""
    values = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * n_groups
    finite = [0.0 if isinstance(v, (int, float)) and v == math.inf else v for v in values]
    checked = per_group(finite, n_groups, "max_lr")
    return [math.inf if v == math.inf else c for v, c in zip(values, checked)]


def _check_bounds(min_lrs: Sequence[float], max_lrs: Sequence[float]) -> None:
    """Refuse ``min_lr > max_lr`` in any group: every increase is capped at ``max_lr`` and
    every decrease floored at ``min_lr``, so the rate would stop moving between them."""
    for group, (low, high) in enumerate(zip(min_lrs, max_lrs)):
        if low > high:
            where = f" (group {group})" if len(min_lrs) > 1 else ""
            raise ValueError(f"min_lr={low!r} is above max_lr={high!r}{where}: increases are "
                             "capped at max_lr and decreases floored at min_lr, so the rate "
                             "would stop moving; pass min_lr <= max_lr")


class GreedyLR(Scheduler):
    """Greedy multiplicative learning-rate adaptation driven by the batch loss.

    Parameters
    ----------
    lr : float or list of float
        Initial rate, one per parameter group if a list.
    mode : {"min", "max"}
        Whether the watched signal should decrease (a loss) or increase (an accuracy).
    factor : float
        ``F`` in ``(0, 1)``: a decrease multiplies by F, an increase divides by F.
    patience : int
        Number of consecutive good (bad) steps tolerated before increasing (decreasing).
    threshold : float
        Minimal improvement over the best value seen to count as "good".
    threshold_mode : {"rel", "abs"}
        ``abs``: better means ``l < best - threshold``; ``rel``: ``l < best * (1 - threshold)``
        (mirrored for ``mode="max"``).
    cooldown, warmup : int
        Steps during which counting is suspended after a decrease (cooldown) or an
        increase (warmup).
    min_lr, max_lr : float or list of float
        Bounds on the rate, per group if lists; ``max_lr=math.inf`` means no upper bound;
        ``min_lr > max_lr`` is refused. An initial ``lr`` outside ``[min_lr, max_lr]`` is
        accepted, as transformers accepts it: the rule only moves it toward the range (a
        rate above ``max_lr`` is never raised, one below ``min_lr`` never lowered), and once
        inside it stays inside until a reset returns it to ``lr`` (docs/methods.md §4).
    eps : float
        A change of the rate not larger than ``eps`` is skipped.
    smooth : bool
        Feed the rolling mean of the last ``window_size`` losses instead of the raw loss.
    window_size : int
        Length of the smoothing window.
    reset_start : int
        Number of decreases attempted with every group at ``min_lr`` before a full reset.

    Notes
    -----
    The keyword names are those of ``transformers.optimization.GreedyLR`` so one can be
    swapped for the other; ours takes the initial rate instead of an optimizer, and
    ``step(loss)`` returns the new rate. ``interval="step"``, ``signal="loss"``.

    Examples
    --------
    More than ``patience`` better losses in a row divide the rate by ``factor``; as many worse
    ones multiply it (the first loss improves on the initial ``best``, infinity):

    >>> from refimpl.schedulers import GreedyLR
    >>> scheduler = GreedyLR(0.1, patience=1, factor=0.5)
    >>> [scheduler.step(loss) for loss in [1.0, 0.9, 0.95, 0.97, 0.8, 0.7]]
    [0.1, 0.2, 0.2, 0.1, 0.1, 0.2]
    >>> print(scheduler.explain()["rule"])  # doctest: +NORMALIZE_WHITESPACE
    increase: value 0.7 < best 0.8 by more than threshold 1e-06 (abs); num_good 2 > patience 1
    -> lr / factor 0.5, at most max_lr
    """

    interval = "step"
    signal = "loss"
    _state_keys = (
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "warmup",
        "min_lrs",
        "max_lrs",
        "eps",
        "smooth",
        "window_size",
        "reset_start",
        "best",
        "num_good",
        "num_bad",
        "cooldown_counter",
        "warmup_counter",
        "reset_countdown",
        "window",
        "window_sum",
        "last_step",
    )

    def __init__(
        self,
        lr: float | Sequence[float],
        mode: str = "min",
        factor: float = 0.95,
        patience: int = 10,
        threshold: float = 1e-6,
        threshold_mode: str = "abs",
        cooldown: int = 0,
        warmup: int = 0,
        min_lr: float | Sequence[float] = 1e-3,
        max_lr: float | Sequence[float] = 1.0,
        eps: float = 1e-8,
        smooth: bool = False,
        window_size: int = 50,
        reset_start: int = 500,
    ):
        super().__init__(lr)
        self.mode = check_choice(mode, "mode", _MODES)
        self.threshold_mode = check_choice(threshold_mode, "threshold_mode", _THRESHOLD_MODES)
        self.factor = check_factor(factor, "factor", low=0, high=1, low_open=True,
                                   high_open=True, hint="; use e.g. 0.95")
        self.patience = check_int(patience, "patience", 0, whole_float=True)
        self.cooldown = check_int(cooldown, "cooldown", 0, whole_float=True)
        self.warmup = check_int(warmup, "warmup", 0, whole_float=True)
        self.reset_start = check_int(reset_start, "reset_start", 0, whole_float=True)
        self.window_size = check_int(window_size, "window_size", 1, whole_float=True)
        self.threshold = check_lr(threshold, "threshold")
        self.min_lrs = per_group(min_lr, self.n_groups, "min_lr")
        self.max_lrs = _upper_bounds(max_lr, self.n_groups)
        _check_bounds(self.min_lrs, self.max_lrs)
        self.eps = check_lr(eps, "eps")
        self.smooth = check_flag(smooth, "smooth")
        self.last_step = 0
        self._clear_state()

    # ------------------------------------------------------------------ state
    def _clear_state(self) -> None:
        """Forget everything learned from the losses (used at start and on reset)."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_good = 0
        self.num_bad = 0
        self.cooldown_counter = 0
        self.warmup_counter = 0
        self.reset_countdown = self.reset_start
        self.window: list[float] = []
        self.window_sum = 0.0

    def load_state_dict(self, state: dict) -> None:
        """Restore a state: refimpl's own (all or nothing, every key required), or one written
        by ``transformers.optimization.GreedyLR.state_dict()``.

        A transformers state is recognised by having no ``"class"`` key. As transformers
        does, it may be partial (older versions wrote fewer keys): a key it lacks keeps this
        scheduler's value. Its names are mapped to ours (``num_good_epochs`` -> ``num_good``,
        ``num_bad_epochs`` -> ``num_bad``, ``last_epoch`` -> ``last_step``, ``reset_start``
        (its running countdown) -> ``reset_countdown``, ``reset_start_original`` ->
        ``reset_start``, ``_last_lr`` -> ``lrs``, ``_init_lrs`` -> ``base_lrs``,
        ``_streaming_avg`` -> ``window``/``window_sum``; ``verbose`` is ignored), then the
        result is loaded all or nothing like our own. Keys neither names are refused. When the
        state turns ``smooth`` on without a ``_streaming_avg`` for a scheduler built without
        smoothing, smoothing stays off, as transformers (which has no window then) behaves.
        """
        if isinstance(state, dict) and "class" not in state:
            state = self._from_transformers(state)
        super().load_state_dict(state)

    def _from_transformers(self, theirs: dict) -> dict:
        """Our state dict: this scheduler's state overlaid with a transformers state."""
        unknown = sorted(set(theirs) - set(_FROM_TRANSFORMERS) - {"verbose", "_streaming_avg"})
        if unknown:
            raise ValueError(
                f"state has keys {unknown} that neither refimpl's nor transformers' GreedyLR "
                "writes; pass a dict from GreedyLR.state_dict()")
        ours = self.state_dict()
        for their_key, our_key in _FROM_TRANSFORMERS.items():
            if their_key in theirs:
                value = theirs[their_key]
                ours[our_key] = list(value) if isinstance(value, (list, tuple)) else value
        average = theirs.get("_streaming_avg")
        if average is not None:
            if not isinstance(average, dict):
                raise ValueError(f"state['_streaming_avg'] must be a dict, got {average!r}")
            ours["window"] = list(average.get("values", []))
            ours["window_sum"] = average.get("sum", 0.0)
            ours["window_size"] = average.get("window_size", ours["window_size"])
        elif ours["smooth"] and not self.smooth:
            ours["smooth"] = False  # transformers built without smoothing has no window
        return ours

    # ------------------------------------------------------------------ rule
    def smoothed(self, loss: float) -> float:
        """Rolling mean of the last ``window_size`` losses (running sum, as transformers)."""
        self.window.append(loss)
        self.window_sum += loss
        if len(self.window) > self.window_size:
            self.window_sum -= self.window.pop(0)
        return self.window_sum / len(self.window)

    def is_better(self, value: float) -> bool:
        """Whether ``value`` improves on ``best`` by more than the threshold."""
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return value < self.best * (1.0 - self.threshold)
            return value < self.best - self.threshold
        if self.threshold_mode == "rel":
            return value > self.best * (1.0 + self.threshold)
        return value > self.best + self.threshold

    def step(self, loss: float) -> float:
        """Consume one loss, update the rates, return the first group's rate."""
        value = float(loss)
        if self.smooth:
            value = self.smoothed(value)
        self.last_step += 1
        before = {"lrs_before": list(self.lrs), "best_before": self.best,
                  "num_good_before": self.num_good, "num_bad_before": self.num_bad}
        improved = None

        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_good = self.num_bad = 0
            branch = "cooldown"
        elif self.warmup_counter > 0:
            self.warmup_counter -= 1
            self.num_good = self.num_bad = 0
            branch = "warmup"
        else:
            improved = self.is_better(value)
            if improved:
                self.best = value
                self.num_good += 1
                self.num_bad = 0
            else:
                self.num_bad += 1
                self.num_good = 0
            branch = "count"
            if self.num_good > self.patience:
                branch = "increase"
                self._increase()
                self.warmup_counter = self.warmup
                self.num_good = 0
            elif self.num_bad > self.patience:
                branch = "reset" if self._decrease() else "decrease"
                self.cooldown_counter = self.cooldown
                self.num_bad = 0
        self._last = {"branch": branch, "loss": float(loss), "value": value,
                      "improved": improved, **before}
        return self.lr

    def explain(self) -> dict:
        """What the last :meth:`step` did, and why.

        Returns
        -------
        dict
            ``rule`` (one sentence), ``branch`` -- ``"cooldown"`` / ``"warmup"`` (counting
            suspended), ``"count"`` (counted, rate kept), ``"increase"``, ``"decrease"`` or
            ``"reset"`` (a decrease that ended the countdown at ``min_lr``) --, ``loss`` (as
            fed), ``value`` (the smoothed loss when ``smooth``, else the loss), ``improved``
            (``None`` while suspended), ``best`` / ``best_before``, ``num_good`` / ``num_bad``
            and their values before the step, ``patience``, ``cooldown_counter``,
            ``warmup_counter``, ``reset_countdown``, ``lrs_before`` and ``lrs``. Before the
            first step (or after a load) only the counters and rates.
        """
        state = {"best": self.best, "num_good": self.num_good, "num_bad": self.num_bad,
                 "patience": self.patience, "cooldown_counter": self.cooldown_counter,
                 "warmup_counter": self.warmup_counter,
                 "reset_countdown": self.reset_countdown, "lrs": list(self.lrs)}
        last = getattr(self, "_last", None)
        if last is None:
            return {"rule": "no step yet (or since a load)", **state}
        return {"rule": self._rule(last), **last, **state}

    def _after_load(self) -> None:
        self.__dict__.pop("_last", None)  # explain() must not describe the step before a load

    def _rule(self, last: dict) -> str:
        """One sentence for the branch taken."""
        branch, value = last["branch"], last["value"]
        if branch in ("cooldown", "warmup"):
            return (f"{branch}: counting suspended ({getattr(self, branch + '_counter')} "
                    "steps left), both counts zeroed, rates kept")
        side = "<" if self.mode == "min" else ">"
        verdict = (f"value {value!r} {side} best {last['best_before']!r} by more than "
                   f"threshold {self.threshold:g} ({self.threshold_mode})" if last["improved"]
                   else f"value {value!r} does not improve on best "
                        f"{last['best_before']!r} (threshold {self.threshold:g}, "
                        f"{self.threshold_mode})")
        if branch == "increase":
            return (f"increase: {verdict}; num_good {last['num_good_before'] + 1} > patience "
                    f"{self.patience} -> lr / factor {self.factor:g}, at most max_lr")
        if branch in ("decrease", "reset"):
            what = ("lr * factor, at least min_lr; every group at min_lr for reset_start "
                    f"{self.reset_start} decreases -> reset to the initial rates"
                    if branch == "reset" else f"lr * factor {self.factor:g}, at least min_lr")
            return (f"{branch}: {verdict}; num_bad {last['num_bad_before'] + 1} > patience "
                    f"{self.patience} -> {what}")
        return f"count: {verdict}; num_good {self.num_good}, num_bad {self.num_bad} <= " \
               f"patience {self.patience}, rates kept"

    def _increase(self) -> None:
        for i, old in enumerate(self.lrs):
            new = min(old / self.factor, self.max_lrs[i])
            if new - old > self.eps:
                self.lrs[i] = new
        self.reset_countdown = self.reset_start

    def _decrease(self) -> bool:
        """Lower every group's rate; return whether this decrease ended in a reset."""
        for i, old in enumerate(self.lrs):
            new = max(old * self.factor, self.min_lrs[i])
            if old - new > self.eps:
                self.lrs[i] = new
        if all(lr <= lo for lr, lo in zip(self.lrs, self.min_lrs)):
            self.reset_countdown -= 1
            if self.reset_countdown <= 0:
                self.lrs = list(self.base_lrs)
                self._clear_state()
                return True
        return False


#: transformers' GreedyLR state-dict key -> ours (see ``GreedyLR.load_state_dict``)
_FROM_TRANSFORMERS = {
    "factor": "factor", "min_lrs": "min_lrs", "max_lrs": "max_lrs", "patience": "patience",
    "cooldown": "cooldown", "warmup": "warmup", "cooldown_counter": "cooldown_counter",
    "warmup_counter": "warmup_counter", "mode": "mode", "threshold": "threshold",
    "threshold_mode": "threshold_mode", "best": "best", "num_bad_epochs": "num_bad",
    "num_good_epochs": "num_good", "eps": "eps", "last_epoch": "last_step",
    "smooth": "smooth", "window_size": "window_size", "reset_start": "reset_countdown",
    "reset_start_original": "reset_start", "_last_lr": "lrs", "_init_lrs": "base_lrs",
}
