"""Check anyone's scheduler against ours, step by step, and say which rule parted them.

:func:`check` feeds the same signals to *their* implementation and to a fresh refimpl
scheduler, reads both rates after construction (step 0) and after every signal (step k),
and compares them::

    |ours - theirs| <= atol + rtol * |theirs|          (every parameter group)

It stops at the first step where a rate differs (``until="first"``), or walks every step
and lists every difference (``until="end"``). Each difference is labelled:

* ``"rounding"``: ``|ours - theirs|`` is at most :data:`ROUNDING_ULPS` (4) ulps of the
  largest of ``|ours|``, ``|theirs|`` and ``term_scale`` in our ``explain()`` (the largest
  term our rate is computed from: a rate that is a difference of nearly equal terms, such
  as a cosine near its minimum, carries the rounding of those terms, not of itself);
* ``"rule"``: larger; the rules, or what they were fed, differ;
* ``"follows"``: larger, after an earlier ``"rule"`` difference and without ``resync``:
  the two states parted there, so this step may be only its consequence.

The answer, a :class:`CheckResult`, holds the first differing step, both values, and
``explain()`` of our scheduler at that step and the step before: the rule that fired and
the numbers that made it fire; with ``until="end"``, every difference as well.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schedulers.base import Scheduler
from ..schedulers.checks import check_choice, check_int

__all__ = ["ROUNDING_ULPS", "RTOL_FLOAT32", "RTOL_FLOAT64", "CheckResult", "Difference",
           "check"]

#: Default relative tolerance for float64 rates (the project's bound for float64 traces).
RTOL_FLOAT64 = 1e-12
#: Default relative tolerance when their rates are float32 (the project's float32 bound).
RTOL_FLOAT32 = 1e-5
#: A difference of at most this many ulps (of the largest of both rates and our formula's
#: ``term_scale``; float32 ulps when their rates are float32) is labelled ``"rounding"``.
ROUNDING_ULPS = 4
#: How many runs of differing steps ``str()`` lists; ``differences`` holds them all.
RUNS_SHOWN = 12


@dataclass(frozen=True)
class Difference:
    """One differing step of :func:`check`: the group that differs most there.

    Attributes
    ----------
    step : int
        Their step (signals they were fed); ours is ``our_step = step - offset``.
    our_step : int
    group : int
    ours, theirs : float
    rel_diff : float
        ``|ours - theirs| / |theirs|`` (``inf`` where theirs is 0 or a rate is NaN).
    label : str
        ``"rule"``, ``"rounding"`` or ``"follows"`` (see :func:`check`).
    cause : str
        One line: our rule at that step (``"rule"``), the difference in ulps
        (``"rounding"``), or the rule difference it comes after (``"follows"``).
    """

    step: int
    our_step: int
    group: int
    ours: float
    theirs: float
    rel_diff: float
    label: str
    cause: str

    def __str__(self) -> str:
        return (f"step {self.step}: {self.label}, group {self.group}, ours {self.ours!r}, "
                f"theirs {self.theirs!r} (relative difference {self.rel_diff:.3g}): "
                f"{self.cause}")


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`check`.

    A result is truthy when ``ok`` and falsy when a step differs, so a failed result is
    falsy::

        result = check(theirs, ours, losses)
        if not result:
            print(result)   # the first differing step and the rule that fired there

    Attributes
    ----------
    ok : bool
        Every group's rate agreed at every step compared.
    step : int or None
        First differing step, counted on their side (0 = after construction, k = after the
        k-th signal they were fed); ``None`` when ``ok``. Ours is ``our_step``.
    ours, theirs : float or None
        The two rates there (the group that differs most); ``None`` when ``ok``.
    group : int or None
        Index of that parameter group.
    explain : dict
        ``ours.explain()`` at that step (after the last step compared when ``ok``).
    previous : dict
        ``ours.explain()`` one step earlier (empty at our step 0).
    signal : Any
        The signal both were fed last at that step (``None`` at step 0, at the first step
        compared with an ``offset``, and for pure schedules).
    steps : int
        Number of signals fed to both: up to and including ``step`` with
        ``until="first"``, all of them when ``ok`` or with ``until="end"``.
    rtol, atol : float
        The tolerance used.
    bound : str
        Which bound failed: ``"rtol"`` (only the relative bound was in force), ``"atol"``
        (their rate is 0, so only ``atol`` could pass it) or ``"atol + rtol"``; ``""`` when ok.
    max_rel_diff : float
        Largest ``|ours - theirs| / |theirs|`` seen over the steps compared.
    subject : str
        ``"<our class> vs <their class>"``.
    lrs_ours, lrs_theirs : list
        Every group's rate at ``step``.
    label : str
        The first difference's label: ``"rule"`` or ``"rounding"``; ``""`` when ok.
    differences : list of Difference
        Every differing step in order (only the first with ``until="first"``).
    until : str
        ``"first"`` or ``"end"``, as passed.
    offset : int
        Their step ``t`` was compared with our step ``t - offset``.
    resync : bool
        Whether ours took their rates after each difference.
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
    label: str = ""
    differences: list = field(default_factory=list)
    until: str = "first"
    offset: int = 0
    resync: bool = False

    @property
    def our_step(self) -> int | None:
        """Our step compared with their ``step``: ``step - offset``."""
        return None if self.step is None else self.step - self.offset

    def __bool__(self) -> bool:
        """``ok``: a failed result is falsy (``if not check(...): print(result)``)."""
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return (f"{self.subject}{_alignment(self.offset)}: equal over {self.steps} steps "
                    f"(max relative difference {self.max_rel_diff:.3g}; rtol {self.rtol:g}, "
                    f"atol {self.atol:g})")
        lines = self._first_difference()
        if self.until == "end":
            lines += _summary(self.differences, self.resync)
        return "\n".join(lines)

    def _first_difference(self) -> list[str]:
        diff = abs(self.ours - self.theirs)
        allowed = self.atol + self.rtol * abs(self.theirs)
        rel = diff / abs(self.theirs) if self.theirs else math.inf
        ours_at = self.our_step
        if self.offset:
            when = f"their step {self.step}, our step {ours_at}"
        else:
            when = "after construction" if self.step == 0 else f"after signal {self.step}"
        first = self.differences[0] if self.differences else None
        lines = [
            (f"{self.subject}: first difference at step {self.step} ({when}), "
             f"group {self.group}"),
            f"  ours   = {self.ours!r}",
            f"  theirs = {self.theirs!r}",
            (f"  bound failed ({self.bound}): |ours - theirs| = {diff:.6g} > atol + rtol*|theirs|"
             f" = {self.atol:g} + {self.rtol:g}*{abs(self.theirs):.6g} = {allowed:.6g}"
             f" (relative difference {rel:.3g})"),
        ]
        if first is not None and first.label == "rounding":
            lines.append(f"  label: rounding ({first.cause})")
        elif first is not None:
            lines.append(f"  label: {first.label} (more than {ROUNDING_ULPS} ulps apart)")
        if len(self.lrs_ours) > 1:
            lines.append(f"  all groups: ours {self.lrs_ours!r}, theirs {self.lrs_theirs!r}")
        if self.step and ours_at:  # a signal both were fed
            lines.append(f"  signal {max(self.step, ours_at)}: {describe_signal(self.signal)}")
        lines.append(f"  rule (ours): {self.explain.get('rule', '(not stated)')}")
        lines.append(f"    {format_state(self.explain)}")
        if ours_at:
            before = f"our step {ours_at - 1}" if self.offset else f"step {ours_at - 1}"
            lines.append(f"  state before ({before}): "
                         f"{self.previous.get('rule', '(not stated)')}")
            lines.append(f"    {format_state(self.previous)}")
        return lines


def _alignment(offset: int) -> str:
    if not offset:
        return ""
    sign = "-" if offset > 0 else "+"
    return f" (their step t against our step t {sign} {abs(offset)})"


def _runs(differences: Sequence[Difference]) -> list[list[Difference]]:
    """Consecutive steps with the same label, grouped."""
    runs: list[list[Difference]] = []
    for item in differences:
        if runs and runs[-1][-1].step + 1 == item.step and runs[-1][-1].label == item.label:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _summary(differences: Sequence[Difference], resync: bool) -> list[str]:
    """The lines ``str()`` adds for ``until="end"``: counts by label, then one line per run."""
    counts = Counter(item.label for item in differences)
    parts = [f"{counts[name]} {name}" for name in ("rule", "follows", "rounding")
             if counts[name]]
    plural = "s" if len(differences) != 1 else ""
    resynced = " (ours took their rates after each)" if resync else ""
    lines = [(f"  {len(differences)} differing step{plural}: {', '.join(parts)}; first at "
              f"step {differences[0].step}, last at step {differences[-1].step}{resynced}")]
    runs = _runs(differences)
    for run in runs[:RUNS_SHOWN]:
        head = run[0]
        where = str(head.step) if len(run) == 1 else f"{head.step}-{run[-1].step}"
        if len(run) == 1:
            values = f"ours {head.ours:.6g}, theirs {head.theirs:.6g}"
        else:
            worst = max(item.rel_diff for item in run)
            values = f"{len(run)} steps, relative difference up to {worst:.3g}"
        lines.append(f"    {where:>11} {head.label:<8} {values}: {_one_line(head.cause)}")
    if len(runs) > RUNS_SHOWN:
        lines.append(f"    ... {len(runs) - RUNS_SHOWN} more runs (result.differences has "
                     "every step)")
    return lines


def _one_line(text: str, width: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


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
    if callable(signal):
        return f"closure {getattr(signal, '__name__', type(signal).__name__)}"
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
    optimizer = _is_torch_optimizer(theirs)
    default_feed = _closure_feed(theirs) if optimizer else _step_feed(theirs)
    if read_lr is not None:
        return (lambda t: read_lr(theirs)), (feed or default_feed), name
    if feed is not None:
        raise ValueError("feed was given without read_lr; pass read_lr(obj) -> rate(s) too")
    if optimizer:  # an optimizer that adapts its own rate (the TLR authors' wrapper)
        holder = _group_holder(theirs)
        return (lambda t: [g["lr"] for g in holder.param_groups]), default_feed, \
            f"{type(theirs).__module__}.{name}"
    groups = getattr(getattr(theirs, "optimizer", None), "param_groups", None)
    if groups is not None:
        return (lambda t: [g["lr"] for g in theirs.optimizer.param_groups]), \
            default_feed, f"{type(theirs).__module__}.{name}"
    if isinstance(theirs, Scheduler):
        return (lambda t: theirs.lrs), default_feed, name
    if callable(theirs):
        return theirs, (lambda signal: None), getattr(theirs, "__name__", name)
    raise TypeError(
        f"cannot read rates from a {name}: pass a torch scheduler (anything with "
        ".optimizer.param_groups), a torch optimizer that sets its own rates, a schedule "
        "function t -> lr, or read_lr= and feed=")


def _is_torch_optimizer(theirs: Any) -> bool:
    """Whether ``theirs`` is a ``torch.optim.Optimizer``; torch is not imported for this
    (an object of torch's cannot exist unless torch is imported already)."""
    torch = sys.modules.get("torch")
    optimizer = getattr(getattr(torch, "optim", None), "Optimizer", None)
    return isinstance(optimizer, type) and isinstance(theirs, optimizer)


def _group_holder(optimizer: Any) -> Any:
    """Where a torch optimizer keeps its rates: its own ``param_groups``, or, for a wrapper
    that never called ``Optimizer.__init__`` (the TLR authors' ``TLR(optimizer)``), those of
    the optimizer it wraps, ``.optimizer``."""
    for holder in (optimizer, getattr(optimizer, "optimizer", None)):
        if isinstance(getattr(holder, "param_groups", None), list):
            return holder
    raise TypeError(f"{type(optimizer).__name__} is a torch optimizer with no param_groups "
                    "(nor .optimizer.param_groups); pass read_lr= to read its rates")


def _closure_feed(optimizer: Any) -> Callable[[Any], None]:
    """Feed a torch optimizer as a training loop does: ``step(closure)``, the closure
    returning the signal (a loss) as a 0-d float64 tensor; a callable signal is the
    closure itself; no signal, ``step()``."""
    import torch  # already imported: `optimizer` is a torch object

    def feed(signal: Any) -> None:
        if signal is None:
            optimizer.step()
        elif callable(signal):
            optimizer.step(signal)
        elif np.ndim(signal) == 0:
            loss = torch.as_tensor(float(signal), dtype=torch.float64)
            optimizer.step(lambda: loss)
        else:
            raise ValueError(
                f"{type(optimizer).__name__} is a torch optimizer, fed step(closure) with a "
                f"closure returning the loss; the signal {describe_signal(signal)} is not a "
                "loss: give losses (or closures), or pass read_lr= and feed= to feed it "
                "yourself")
    return feed


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


def _check_offset(offset: Any, n_signals: int) -> int:
    offset = check_int(offset, "offset", -n_signals,
                       why=" (|offset| must not exceed the number of signals)")
    if offset > n_signals:
        raise ValueError(f"offset must be <= {n_signals}, the number of signals, got {offset}: "
                         "their step t is compared with our step t - offset")
    return offset


def check(theirs: Any, ours: Scheduler, signals: Sequence[Any] | None = None, *,
          steps: int | None = None, read_lr: Callable[[Any], Any] | None = None,
          feed: Callable[[Any, Any], None] | None = None, rtol: float | None = None,
          atol: float = 0.0, label: str | None = None, until: str = "first",
          offset: int = 0, resync: bool = False) -> CheckResult:
    """Feed the same signals to ``theirs`` and ``ours``; report where their rates part.

    Parameters
    ----------
    theirs : object
        Their implementation: a torch ``LRScheduler`` / ``ReduceLROnPlateau`` or anything
        with ``.optimizer.param_groups`` (rates read there, fed with ``.step(signal)`` or
        ``.step()``); a ``torch.optim.Optimizer`` that sets its own rates (read from its
        ``param_groups``, or its ``.optimizer``'s for a wrapper that never called
        ``Optimizer.__init__``; fed with ``.step(closure)``, the closure returning the
        signal, a loss, as a 0-d tensor, or with the signal itself when it is a callable;
        torch is never imported for this check); a refimpl scheduler; a
        schedule function ``t -> lr`` (optax / keras style: step 0 reads ``theirs(0)``); or
        any object, with ``read_lr`` and ``feed``.
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
        ``feed(theirs, signal)``; defaults to ``theirs.step(signal)`` (``step(closure)`` for
        a torch optimizer, see ``theirs``).
    rtol, atol : float
        Pass when ``|ours - theirs| <= atol + rtol |theirs|`` for every group. ``rtol``
        defaults to 1e-12 (float64 rates) or 1e-5 when their rates are float32; ``atol``
        (default 0) is for rates that reach 0.
    label : str, optional
        Their name in the report (default: their class name).
    until : "first" or "end"
        Stop at the first differing step (default), or walk every step and list every
        difference in ``differences``, each labelled ``"rounding"``, ``"rule"`` or
        ``"follows"`` (see the module docstring).
    offset : int, default 0
        Compare their step ``t`` with our step ``t - offset``, for an implementation whose
        timeline is shifted (the TLR authors' first update comes at call 3K+1, ours at
        2K+1: ``offset=K``). The side that is ahead is first fed the first ``|offset|``
        signals alone; after that both are fed the same signal, so the steps compared saw
        the same last signal (ours skips the first ``offset`` signals when ``offset > 0``).
    resync : bool, default False
        With ``until="end"``: after each differing step, ours takes their rates
        (``ours.lrs = theirs``) before the next signal, so a later difference is our rule
        applied to their rate, not a consequence of the earlier one (state other than the
        rates, such as counters and caches, is not copied).

    Returns
    -------
    CheckResult
        ``ok``, the first difference (``step``, both values, ``label``, ``explain``),
        ``differences`` and a readable ``str()``; falsy when not ``ok``.
    """
    if not isinstance(ours, Scheduler):
        raise TypeError(f"ours must be a refimpl scheduler, got {type(ours).__name__}")
    if atol < 0 or (rtol is not None and rtol < 0):
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol!r}, atol={atol!r}")
    until = check_choice(until, "until", ("first", "end"))
    if not isinstance(resync, bool):
        raise TypeError(f"resync must be True or False, got {resync!r}")
    if resync and until != "end":
        raise ValueError("resync=True needs until='end': until='first' stops at the first "
                         "difference, so there is nothing to resynchronise")
    signals = _signals(signals, steps)
    offset = _check_offset(offset, len(signals))
    wrapped = None if feed is None else (lambda signal: feed(theirs, signal))
    read, feed_theirs, their_name = _their_io(theirs, read_lr, wrapped)
    subject = f"{type(ours).__name__} vs {label or their_name}"
    ahead_theirs, ahead_ours = max(offset, 0), max(-offset, 0)
    previous: dict = {}
    for signal in signals[:ahead_theirs]:  # the side ahead runs alone first
        feed_theirs(signal)
    for signal in signals[:ahead_ours]:
        previous = _explain(ours)
        _feed_ours(ours, signal)
    first = read(ahead_theirs)
    if rtol is None:
        rtol = RTOL_FLOAT32 if _is_float32(first) else RTOL_FLOAT64
    walk = _Walk(subject, float(rtol), float(atol), until, offset, resync,
                 float32=_is_float32(first))
    walk.compare(ahead_theirs, ours, first, previous, None)
    for index in range(abs(offset), len(signals)):
        if walk.stopped:
            break
        signal = signals[index]
        previous = _explain(ours)
        _feed_ours(ours, signal)
        feed_theirs(signal)
        t = index + 1 - ahead_ours
        walk.compare(t, ours, read(t), previous, signal)
    return walk.result(len(signals) - abs(offset), _explain(ours))


def _term_scale(explain: dict, group: int) -> float:
    """``term_scale`` of an ``explain()`` for ``group`` (0 when it gives none)."""
    value = explain.get("term_scale")
    if isinstance(value, (list, tuple)):
        value = value[group] if group < len(value) else None
    try:
        scale = abs(float(value))
    except (TypeError, ValueError):
        return 0.0
    return scale if math.isfinite(scale) else 0.0


def _resync(ours: Scheduler, rates: np.ndarray) -> None:
    try:
        ours.lrs = [float(v) for v in rates]
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"resync=True sets ours.lrs to their rates, which "
                         f"{type(ours).__name__} refused ({exc}); use resync=False") from None


@dataclass
class _Walk:
    """The comparison done at each step, and what it found so far."""

    subject: str
    rtol: float
    atol: float
    until: str
    offset: int
    resync: bool
    float32: bool = False
    max_rel_diff: float = 0.0
    stopped: bool = False
    rule_step: int | None = None
    differences: list = field(default_factory=list)
    first: dict = field(default_factory=dict)

    def compare(self, t: int, ours: Scheduler, their_value: Any, previous: dict,
                signal: Any) -> None:
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
        rel = np.nan_to_num(rel, nan=np.inf)
        self.max_rel_diff = max(self.max_rel_diff, float(rel.max()))
        bad = diff > self.atol + self.rtol * np.abs(np.nan_to_num(yours))
        if not bad.any():
            return
        group = int(np.argmax(np.where(bad, diff, -1.0)))
        explain = _explain(ours)
        label, cause = self._label(t, float(diff[group]), float(mine[group]),
                                   float(yours[group]), _term_scale(explain, group), explain)
        self.differences.append(Difference(
            step=t, our_step=t - self.offset, group=group, ours=float(mine[group]),
            theirs=float(yours[group]), rel_diff=float(rel[group]), label=label, cause=cause))
        if not self.first:
            bound = ("atol" if yours[group] == 0 else "rtol" if self.atol == 0
                     else "atol + rtol")
            self.first = {
                "step": t, "ours": float(mine[group]), "theirs": float(yours[group]),
                "group": group, "explain": explain, "previous": previous, "signal": signal,
                "bound": bound, "label": label, "lrs_ours": mine.tolist(),
                "lrs_theirs": yours.tolist(), "steps": t - max(self.offset, 0)}
        if self.until == "first":
            self.stopped = True
        elif self.resync:
            _resync(ours, yours)

    def _label(self, t: int, diff: float, ours: float, theirs: float, scale: float,
               explain: dict) -> tuple[str, str]:
        """``(label, one-line cause)`` of a difference at their step ``t``."""
        larger = max(abs(ours), abs(theirs))
        reference = max(larger, scale)
        kind = np.float32 if self.float32 else np.float64
        ulp = float(np.spacing(kind(reference)))
        if math.isfinite(diff) and diff <= ROUNDING_ULPS * ulp:
            what = "the larger rate" if reference == larger else "term_scale, our largest term"
            precision = "float32 " if self.float32 else ""
            return "rounding", (f"|ours - theirs| = {diff / ulp:.3g} {precision}ulps of "
                                f"{reference:.6g} = {what}; at most {ROUNDING_ULPS} ulps is "
                                "rounding")
        rule = _one_line(explain.get("rule", "(no rule stated)"), width=1000)
        if self.rule_step is not None and not self.resync:
            return "follows", (f"may follow from the rule difference at step "
                               f"{self.rule_step} (no resync); ours: {rule}")
        if self.rule_step is None:
            self.rule_step = t
        return "rule", rule

    def result(self, steps: int, explain: dict) -> CheckResult:
        common = {"rtol": self.rtol, "atol": self.atol, "max_rel_diff": self.max_rel_diff,
                  "subject": self.subject, "until": self.until, "offset": self.offset,
                  "resync": self.resync}
        if not self.first:
            return CheckResult(ok=True, step=None, ours=None, theirs=None, group=None,
                               explain=explain, previous={}, signal=None, steps=steps,
                               bound="", **common)
        first = dict(self.first)
        if self.until == "end":
            first["steps"] = steps
        return CheckResult(ok=False, differences=list(self.differences), **first, **common)
