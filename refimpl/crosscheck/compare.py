"""Check anyone's scheduler against ours, step by step, and say which rule parted them.

:func:`check` feeds the same signals to *their* implementation and to a fresh refimpl
scheduler, reads both rates after construction (step 0) and after every signal (step k),
and stops at the first step where a rate differs by more than the tolerance::

    |ours - theirs| <= atol + rtol * |theirs|          (every parameter group)

The answer, a :class:`CheckResult`, holds the step, both values, and ``explain()`` of our
scheduler at that step and the step before: the rule that fired and the numbers that
made it fire.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schedulers.base import Scheduler
from ..schedulers.checks import check_int

__all__ = ["RTOL_FLOAT32", "RTOL_FLOAT64", "CheckResult", "check"]

#: Default relative tolerance for float64 rates (the project's bound for float64 traces).
RTOL_FLOAT64 = 1e-12
#: Default relative tolerance when their rates are float32 (the project's float32 bound).
RTOL_FLOAT32 = 1e-5


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`check`.

    Attributes
    ----------
    ok : bool
        Every group's rate agreed at every step.
    step : int or None
        First differing step (0 = after construction, k = after the k-th signal); ``None``
        when ``ok``.
    ours, theirs : float or None
        The two rates there (the group that differs most); ``None`` when ``ok``.
    group : int or None
        Index of that parameter group.
    explain : dict
        ``ours.explain()`` at that step (after the last step compared when ``ok``).
    previous : dict
        ``ours.explain()`` one step earlier (empty at step 0).
    signal : Any
        The signal fed at that step (``None`` at step 0 and for pure schedules).
    steps : int
        Number of signals fed to both (up to and including ``step``).
    rtol, atol : float
        The tolerance used.
    bound : str
        Which bound failed: ``"rtol"`` (only the relative bound was in force), ``"atol"``
        (their rate is 0, so only ``atol`` could pass it) or ``"atol + rtol"``; ``""`` when ok.
    max_rel_diff : float
        Largest ``|ours - theirs| / |theirs|`` seen over the steps compared.
    subject : str
        ``"<our class> vs <their class>"``.
    """

    ok: bool
    step: int | None
    ours: float | None
    theirs: float | None
    group: int | None
    explain: dict
    previous: dict
    signal: Any
    steps: int
    rtol: float
    atol: float
    bound: str
    max_rel_diff: float
    subject: str
    lrs_ours: list = field(default_factory=list)
    lrs_theirs: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return (f"{self.subject}: equal over {self.steps} steps (max relative difference "
                    f"{self.max_rel_diff:.3g}; rtol {self.rtol:g}, atol {self.atol:g})")
        diff = abs(self.ours - self.theirs)
        allowed = self.atol + self.rtol * abs(self.theirs)
        rel = diff / abs(self.theirs) if self.theirs else math.inf
        when = "after construction" if self.step == 0 else f"after signal {self.step}"
        lines = [
            (f"{self.subject}: first difference at step {self.step} ({when}), "
             f"group {self.group}"),
            f"  ours   = {self.ours!r}",
            f"  theirs = {self.theirs!r}",
            (f"  bound failed ({self.bound}): |ours - theirs| = {diff:.6g} > atol + rtol*|theirs|"
             f" = {self.atol:g} + {self.rtol:g}*{abs(self.theirs):.6g} = {allowed:.6g}"
             f" (relative difference {rel:.3g})"),
        ]
        if len(self.lrs_ours) > 1:
            lines.append(f"  all groups: ours {self.lrs_ours!r}, theirs {self.lrs_theirs!r}")
        if self.step:
            lines.append(f"  signal {self.step}: {describe_signal(self.signal)}")
        lines.append(f"  rule (ours): {self.explain.get('rule', '(not stated)')}")
        lines.append(f"    {format_state(self.explain)}")
        if self.step:
            lines.append(f"  state before (step {self.step - 1}): "
                         f"{self.previous.get('rule', '(not stated)')}")
            lines.append(f"    {format_state(self.previous)}")
        return "\n".join(lines)


def format_state(state: dict) -> str:
    """``key=value`` pairs of an ``explain()`` dict, ``rule`` left out, floats in 6 digits."""
    parts = []
    for key, value in state.items():
        if key == "rule":
            continue
        parts.append(f"{key}={_short(value)}")
    return " ".join(parts) if parts else "(nothing recorded)"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def describe_signal(signal: Any) -> str:
    """One line about a signal: a loss, an epoch's batch losses, or a list of arrays."""
    if signal is None:
        return "none"
    if np.isscalar(signal):
        return repr(float(signal))
    items = list(signal)
    if items and all(np.ndim(x) == 0 for x in items):
        values = np.asarray(items, dtype=np.float64)
        head = ", ".join(f"{v:.6g}" for v in values[:3])
        return (f"{len(values)} batch losses, first {float(values[0])!r}, "
                f"last {float(values[-1])!r}, "
                f"mean {values.mean():.6g} [{head}{', ...' if len(values) > 3 else ''}]")
    shapes = [tuple(np.shape(x)) for x in items]
    norm = math.sqrt(sum(float(np.sum(np.asarray(x, dtype=np.float64) ** 2)) for x in items))
    return f"{len(items)} arrays, shapes {shapes}, total norm {norm:.6g}"


# -- reading and feeding their implementation -------------------------------------------------
def _their_io(theirs: Any, read_lr: Callable | None, feed: Callable | None):
    """``(read(t) -> rates, feed(signal), name)`` for every kind of ``theirs``."""
    name = type(theirs).__name__
    if read_lr is not None:
        return (lambda t: read_lr(theirs)), (feed or _step_feed(theirs)), name
    if feed is not None:
        raise ValueError("feed was given without read_lr; pass read_lr(obj) -> rate(s) too")
    groups = getattr(getattr(theirs, "optimizer", None), "param_groups", None)
    if groups is not None:
        return (lambda t: [g["lr"] for g in theirs.optimizer.param_groups]), \
            _step_feed(theirs), f"{type(theirs).__module__}.{name}"
    if isinstance(theirs, Scheduler):
        return (lambda t: theirs.lrs), _step_feed(theirs), name
    if callable(theirs):
        return theirs, (lambda signal: None), getattr(theirs, "__name__", name)
    raise TypeError(
        f"cannot read rates from a {name}: pass a torch scheduler (anything with "
        ".optimizer.param_groups), a schedule function t -> lr, or read_lr= and feed=")


def _step_feed(theirs: Any) -> Callable[[Any], None]:
    def feed(signal: Any) -> None:
        with warnings.catch_warnings():  # torch asks for optimizer.step() first; not ours
            warnings.filterwarnings("ignore", message=r".*lr_scheduler\.step\(\).*")
            if signal is None:
                theirs.step()
            else:
                theirs.step(signal)
    return feed


def _as_rates(value: Any, what: str) -> np.ndarray:
    """Rates as a 1-D float64 array (one per group) from a float, list, array or tensors."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        value = [v.detach().cpu().numpy() if hasattr(v, "detach") else v for v in value]
    try:
        rates = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise TypeError(f"{what} gave {value!r}, not a rate or a list of rates") from None
    if rates.size == 0:
        raise ValueError(f"{what} gave no rate")
    return rates


def _is_float32(value: Any) -> bool:
    items = value if isinstance(value, (list, tuple)) else [value]
    return any(getattr(v, "dtype", None) is not None and "float32" in str(v.dtype)
               for v in items)


def _signals(signals: Sequence[Any] | None, steps: int | None) -> list[Any]:
    if signals is None:
        if steps is None:
            raise ValueError("give signals (one per step) or steps=N for a pure schedule")
        return [None] * check_int(steps, "steps", 0, whole_float=True)
    signals = list(signals)
    if steps is not None:
        if steps > len(signals):
            raise ValueError(f"steps={steps} but only {len(signals)} signals were given")
        signals = signals[: int(steps)]
    return signals


def _explain(ours: Scheduler) -> dict:
    explain = getattr(ours, "explain", None)
    return dict(explain()) if callable(explain) else {}


def _feed_ours(ours: Scheduler, signal: Any) -> None:
    if signal is None:
        if ours.signal != "none":
            raise ValueError(f"{type(ours).__name__} needs a {ours.signal!r} signal every "
                             "step; pass signals=[...] instead of steps=N")
        ours.step()
    else:
        ours.step(signal)


def check(theirs: Any, ours: Scheduler, signals: Sequence[Any] | None = None, *,
          steps: int | None = None, read_lr: Callable[[Any], Any] | None = None,
          feed: Callable[[Any, Any], None] | None = None, rtol: float | None = None,
          atol: float = 0.0, label: str | None = None) -> CheckResult:
    """Feed the same signals to ``theirs`` and ``ours``; report the first step they part.

    Parameters
    ----------
    theirs : object
        Their implementation: a torch ``LRScheduler`` / ``ReduceLROnPlateau`` or anything
        with ``.optimizer.param_groups`` (rates read there, fed with ``.step(signal)`` or
        ``.step()``); a refimpl scheduler; a schedule function ``t -> lr`` (optax / keras
        style: step 0 reads ``theirs(0)``); or any object, with ``read_lr`` and ``feed``.
    ours : Scheduler
        A freshly constructed refimpl scheduler.
    signals : sequence, optional
        One entry per step: a loss, an epoch's list of batch losses (DLRS), a list of
        parameter arrays (NewtonLR) or gradient arrays (hypergradient rules). Omit for a pure
        schedule and give ``steps``.
    steps : int, optional
        Number of steps (all signals when omitted).
    read_lr : callable, optional
        ``read_lr(theirs) -> rate or list of rates``.
    feed : callable, optional
        ``feed(theirs, signal)``; defaults to ``theirs.step(signal)``.
    rtol, atol : float
        Pass when ``|ours - theirs| <= atol + rtol |theirs|`` for every group. ``rtol``
        defaults to 1e-12 (float64 rates) or 1e-5 when their rates are float32; ``atol``
        (default 0) is for rates that reach 0.
    label : str, optional
        Their name in the report (default: their class name).

    Returns
    -------
    CheckResult
        ``ok``, ``step``, both values, ``explain`` and a readable ``str()``.
    """
    if not isinstance(ours, Scheduler):
        raise TypeError(f"ours must be a refimpl scheduler, got {type(ours).__name__}")
    if atol < 0 or (rtol is not None and rtol < 0):
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol!r}, atol={atol!r}")
    signals = _signals(signals, steps)
    wrapped = None if feed is None else (lambda signal: feed(theirs, signal))
    read, feed_theirs, their_name = _their_io(theirs, read_lr, wrapped)
    subject = f"{type(ours).__name__} vs {label or their_name}"
    first = read(0)
    if rtol is None:
        rtol = RTOL_FLOAT32 if _is_float32(first) else RTOL_FLOAT64
    state = _Walk(subject, float(rtol), float(atol))
    previous: dict = {}
    result = state.compare(0, ours, first, previous, None)
    for t, signal in enumerate(signals, start=1):
        if result is not None:
            return result
        previous = _explain(ours)
        _feed_ours(ours, signal)
        feed_theirs(signal)
        result = state.compare(t, ours, read(t), previous, signal)
    return result if result is not None else state.success(len(signals), _explain(ours))


@dataclass
class _Walk:
    """The comparison done at each step, and the largest relative difference so far."""

    subject: str
    rtol: float
    atol: float
    max_rel_diff: float = 0.0

    def compare(self, t: int, ours: Scheduler, their_value: Any, previous: dict,
                signal: Any) -> CheckResult | None:
        mine = _as_rates(ours.lrs, "ours.lrs")
        yours = _as_rates(their_value, "their rate reader")
        if yours.size == 1 and mine.size > 1:
            raise ValueError(f"their implementation gives 1 rate but ours has {mine.size} "
                             "groups; build ours with one rate")
        if yours.size != mine.size:
            raise ValueError(f"their implementation has {yours.size} parameter groups, "
                             f"ours {mine.size}; give ours one rate per group")
        diff = np.abs(mine - yours)
        same_nan = np.isnan(mine) & np.isnan(yours)
        diff = np.where(same_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(diff == 0, 0.0, diff / np.abs(yours))
        self.max_rel_diff = max(self.max_rel_diff, float(np.nan_to_num(rel, nan=np.inf).max()))
        bad = diff > self.atol + self.rtol * np.abs(np.nan_to_num(yours))
        if not bad.any():
            return None
        group = int(np.argmax(np.where(bad, diff, -1.0)))
        bound = ("atol" if yours[group] == 0 else "rtol" if self.atol == 0 else "atol + rtol")
        return CheckResult(
            ok=False, step=t, ours=float(mine[group]), theirs=float(yours[group]), group=group,
            explain=_explain(ours), previous=previous, signal=signal, steps=t,
            rtol=self.rtol, atol=self.atol, bound=bound, max_rel_diff=self.max_rel_diff,
            subject=self.subject, lrs_ours=mine.tolist(), lrs_theirs=yours.tolist())

    def success(self, steps: int, explain: dict) -> CheckResult:
        return CheckResult(
            ok=True, step=None, ours=None, theirs=None, group=None, explain=explain,
            previous={}, signal=None, steps=steps, rtol=self.rtol, atol=self.atol, bound="",
            max_rel_diff=self.max_rel_diff, subject=self.subject)
