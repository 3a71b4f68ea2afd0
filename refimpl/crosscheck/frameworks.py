"""Replay the same trace through refimpl and through torch / transformers built-ins.

A *scheduler* cross-check builds torch's equivalent of one of our (freshly constructed)
schedulers, steps both ``steps`` times (feeding the same loss values to loss-driven ones)
and compares the learning-rate traces, construction included (row 0). An *optimizer*
cross-check draws random float64 parameters and gradients from a seed, applies the same
gradients with our optimizer and torch's, and compares the parameters after every step.

The answer is a :class:`CrosscheckResult`: equality within ``rtol``, or the first step that
differs with both values. torch is optional: it is imported inside the functions that need it.

For a scheduler of any other origin (a PyPI package, a paper's code, a schedule function)
use :func:`refimpl.crosscheck.check`, which also says which of our rules fired.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import schedulers
from ..schedulers.base import Scheduler

__all__ = [
    "CrosscheckResult",
    "adversarial_losses",
    "compare_traces",
    "crosscheck_optimizer",
    "crosscheck_scheduler",
    "framework_scheduler",
    "loss_trace",
    "random_losses",
    "replay_scheduler",
    "torch_scheduler",
    "transformers_scheduler",
]

#: Default relative tolerance: the issue's bound for float64 traces.
RTOL = 1e-12
#: Default tolerance per framework: docs/methods.md §3 (torch schedules) and §4 (transformers GreedyLR).
FRAMEWORK_RTOL = {"torch": RTOL, "transformers": 1e-15}


@dataclass(frozen=True)
class CrosscheckResult:
    """Outcome of one cross-check.

    Attributes
    ----------
    subject : what was compared (e.g. ``"CosineAnnealingLR vs torch"``)
    steps : number of steps replayed
    equal : whether every step agrees within ``rtol``
    first_diff_step : first step (0 = after construction) that differs, or None
    ours, theirs : at that step, the two values of the entry (group lr, or parameter entry)
                   that differs most
    max_rel_diff : largest relative difference over the whole trace
    rtol : tolerance used
    """

    subject: str
    steps: int
    equal: bool
    first_diff_step: int | None
    ours: float | None
    theirs: float | None
    max_rel_diff: float
    rtol: float

    def __str__(self) -> str:
        if self.equal:
            return (f"{self.subject}: equal over {self.steps} steps "
                    f"(max relative difference {self.max_rel_diff:.3g} <= {self.rtol:g})")
        return (f"{self.subject}: first difference at step {self.first_diff_step}: "
                f"ours={self.ours!r} theirs={self.theirs!r} "
                f"(max relative difference {self.max_rel_diff:.3g} > {self.rtol:g})")


def compare_traces(ours: Any, theirs: Any, *, rtol: float = RTOL,
                   subject: str = "trace") -> CrosscheckResult:
    """Compare two traces row by row (row = step).

    A row's relative difference is ``max|ours - theirs| / max|theirs|`` (an exact match is 0,
    also when both rows are 0); it must be ``<= rtol``. Rows are 1-D (one value per group or
    per parameter entry); a 1-D trace is one value per step.
    """
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        raise ValueError(f"traces differ in shape: ours {ours.shape}, theirs {theirs.shape}")
    ours2 = ours.reshape(len(ours), -1)
    theirs2 = theirs.reshape(len(theirs), -1)
    diff = np.abs(ours2 - theirs2).max(axis=1)
    scale = np.abs(theirs2).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / scale)
    rel = np.where(np.isnan(ours2).any(axis=1) != np.isnan(theirs2).any(axis=1), np.inf, rel)
    rel = np.nan_to_num(rel, nan=0.0)  # NaN on both sides at the same step counts as equal
    bad = np.flatnonzero(rel > rtol)
    if bad.size == 0:
        return CrosscheckResult(subject, len(ours) - 1, True, None, None, None,
                                float(rel.max(initial=0.0)), rtol)
    step = int(bad[0])
    entry = int(np.argmax(np.abs(ours2[step] - theirs2[step])))
    return CrosscheckResult(subject, len(ours) - 1, False, step, float(ours2[step, entry]),
                            float(theirs2[step, entry]), float(rel.max()), rtol)


# -- loss traces --------------------------------------------------------------------------------
def random_losses(steps: int, seed: int = 0) -> list[float]:
    """A noisy, slowly decreasing loss trace with stretches of stagnation."""
    rng = np.random.default_rng(seed)
    trend = np.exp(-np.linspace(0.0, rng.uniform(0.5, 3.0), steps))
    trend[rng.random(steps) < 0.3] = trend[0]  # stagnating steps
    return list(trend * (1.0 + 0.1 * rng.standard_normal(steps)) + rng.uniform(0, 0.1))


def adversarial_losses(steps: int, seed: int = 0, *, mode: str = "min",
                       threshold: float = 1e-4, threshold_mode: str = "rel") -> list[float]:
    """Loss values that sit exactly on ReduceLROnPlateau's improvement boundary.

    Tracks ``best`` as the scheduler does and mixes: exact ties with the dynamic threshold
    (``best (1 - threshold)`` etc., computed with torch's expression, so not an improvement),
    one ulp past the boundary (an improvement), repeats of ``best``, plateaus at a worse
    value, large improvements and clear regressions. NaN-free.
    """
    rng = np.random.default_rng(seed)
    judge = schedulers.ReduceLROnPlateau(1.0, mode=mode, threshold=threshold,
                                       threshold_mode=threshold_mode)
    sign = 1.0 if mode == "min" else -1.0  # +1: smaller is better
    best = judge.best
    current = float(rng.uniform(1.0, 2.0)) * sign
    losses: list[float] = []
    while len(losses) < steps:
        kind = rng.integers(6) if math.isfinite(best) else 4
        if kind == 0:  # exact tie with the boundary: not an improvement
            run = [judge.improvement_bound(best)]
        elif kind == 1:  # one ulp past the boundary: an improvement
            run = [float(np.nextafter(judge.improvement_bound(best), -sign * math.inf))]
        elif kind == 2:  # repeat the best
            run = [best]
        elif kind == 3:  # plateau at a worse value
            run = [best + sign * (abs(best) * 0.01 + 1e-3)] * int(rng.integers(3, 15))
        elif kind == 4:  # clear improvement
            current = (best if math.isfinite(best) else current) - sign * float(
                rng.uniform(0.01, 0.2))
            run = [current]
        else:  # regression
            run = [best + sign * float(rng.uniform(0.01, 0.5))]
        for value in run[: steps - len(losses)]:
            losses.append(float(value))
            if judge.is_better(value, best):
                best = value
    return losses


# -- torch equivalents --------------------------------------------------------------------------
def _require_torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the torch cross-check needs PyTorch; install it with `pip install torch` "
            "(or `pip install -e .[torch]`)"
        ) from None
    return torch


class _TorchWarmupThenPlateau:
    """torch has no SequentialLR for ReduceLROnPlateau: LinearLR for ``T`` steps, then the
    group rates are reset to the initial ones and a ReduceLROnPlateau takes over."""

    def __init__(self, optimizer, start_factor: float, total_iters: int, plateau_kwargs: dict):
        torch = _require_torch()
        self.optimizer, self.total_iters, self.epoch = optimizer, total_iters, 0
        self.linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor, 1.0,
                                                        total_iters)
        self.plateau_kwargs, self.plateau = plateau_kwargs, None

    def step(self, loss: float) -> None:
        torch = _require_torch()
        self.epoch += 1
        if self.epoch < self.total_iters:
            self.linear.step()
        elif self.epoch == self.total_iters:
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"]
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer,
                                                                      **self.plateau_kwargs)
        else:
            self.plateau.step(loss)


def _plateau_kwargs(s: Scheduler) -> dict:
    return {"mode": s.mode, "factor": s.factor, "patience": s.patience,
            "threshold": s.threshold, "threshold_mode": s.threshold_mode,
            "cooldown": s.cooldown, "min_lr": list(s.min_lrs), "eps": s.eps}


def torch_scheduler(ours: Scheduler, optimizer) -> Any:
    """Build torch's equivalent of our freshly constructed scheduler ``ours`` on ``optimizer``
    (whose groups hold ``ours.base_lrs``). Raises ``ValueError`` for classes with none."""
    torch = _require_torch()
    lrs = torch.optim.lr_scheduler
    if isinstance(ours, schedulers.ConstantLR):
        return lrs.ConstantLR(optimizer, factor=ours.factor, total_iters=ours.total_iters)
    if isinstance(ours, schedulers.StepLR):
        return lrs.StepLR(optimizer, step_size=ours.step_size, gamma=ours.gamma)
    if isinstance(ours, schedulers.MultiStepLR):
        return lrs.MultiStepLR(optimizer, milestones=list(ours.milestones), gamma=ours.gamma)
    if isinstance(ours, schedulers.ExponentialLR):
        return lrs.ExponentialLR(optimizer, gamma=ours.gamma)
    if isinstance(ours, schedulers.CosineAnnealingLR):
        return lrs.CosineAnnealingLR(optimizer, T_max=ours.T_max, eta_min=ours.eta_min)
    if isinstance(ours, schedulers.CosineAnnealingWarmRestarts):
        return lrs.CosineAnnealingWarmRestarts(optimizer, T_0=ours.T_0, T_mult=ours.T_mult,
                                               eta_min=ours.eta_min)
    if isinstance(ours, schedulers.ReduceLROnPlateau):
        return lrs.ReduceLROnPlateau(optimizer, **_plateau_kwargs(ours))
    if isinstance(ours, schedulers.LinearWarmup):
        if ours.after is None:
            return lrs.LinearLR(optimizer, ours.start_factor, 1.0, ours.total_iters)
        if isinstance(ours.after, schedulers.ReduceLROnPlateau):
            return _TorchWarmupThenPlateau(optimizer, ours.start_factor, ours.total_iters,
                                           _plateau_kwargs(ours.after))
        warmup = lrs.LinearLR(optimizer, ours.start_factor, 1.0, ours.total_iters)
        after = torch_scheduler(ours.after, optimizer)
        return lrs.SequentialLR(optimizer, [warmup, after], milestones=[ours.total_iters])
    hint = " (use framework 'transformers' for GreedyLR)" if type(ours).__name__ == "GreedyLR" \
        else ""
    raise ValueError(f"no torch equivalent is known for {type(ours).__name__}{hint}")


def transformers_scheduler(ours: Scheduler, optimizer) -> Any:
    """Build ``transformers.optimization.GreedyLR`` with the hyper-parameters of our GreedyLR
    ``ours`` (the keyword names are the same) on ``optimizer``."""
    try:
        from transformers.optimization import GreedyLR
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the transformers cross-check needs transformers with GreedyLR; install it with "
            "`pip install transformers` (or `pip install -e .[hf]`)"
        ) from None
    if type(ours).__name__ != "GreedyLR":
        raise ValueError(f"transformers has no equivalent of {type(ours).__name__}; "
                         "use framework 'torch' for the standard schedules")
    keys = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "warmup",
            "eps", "smooth", "window_size", "reset_start")
    return GreedyLR(optimizer, min_lr=list(ours.min_lrs), max_lr=list(ours.max_lrs),
                    **{key: getattr(ours, key) for key in keys})


def replay_scheduler(ours: Scheduler, steps: int = 300, losses: Sequence[float] | None = None,
                     *, framework: str = "torch", rtol: float | None = None) -> CrosscheckResult:
    """Step our freshly built scheduler and the framework's equivalent ``steps`` times; compare.

    ``losses`` (one per step) are fed to loss-driven schedulers; required for them.
    ``framework`` is ``"torch"`` (standard schedules) or ``"transformers"`` (GreedyLR);
    ``rtol`` defaults to the spec's bound for that framework (1e-12, and 1e-15 for GreedyLR).
    """
    torch = _require_torch()
    if framework not in FRAMEWORK_RTOL:
        raise ValueError(f"framework must be one of {sorted(FRAMEWORK_RTOL)}, got {framework!r}")
    rtol = FRAMEWORK_RTOL[framework] if rtol is None else rtol
    if ours.signal == "loss" and (losses is None or len(losses) < steps):
        raise ValueError(f"{type(ours).__name__} is loss-driven: pass at least {steps} losses")
    if ours.signal not in ("none", "loss"):
        raise ValueError(f"cannot replay a scheduler with signal {ours.signal!r} against torch")
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in ours.base_lrs]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params,
                                                                            ours.base_lrs)])
    build = torch_scheduler if framework == "torch" else transformers_scheduler
    theirs = build(ours, optimizer)

    def torch_lrs() -> list[float]:
        return [float(group["lr"]) for group in optimizer.param_groups]

    our_trace, their_trace = [list(ours.lrs)], [torch_lrs()]
    for step in range(steps):
        optimizer.step()  # keeps torch's "scheduler before optimizer" warning quiet
        if ours.signal == "loss":
            ours.step(losses[step])
            theirs.step(losses[step])
        else:
            ours.step()
            theirs.step()
        our_trace.append(list(ours.lrs))
        their_trace.append(torch_lrs())
    return compare_traces(our_trace, their_trace, rtol=rtol,
                          subject=f"{type(ours).__name__} vs {framework}")


def framework_scheduler(framework: str, class_name: str, optimizer, kwargs: dict) -> Any:
    """Build the framework's scheduler called ``class_name`` on ``optimizer`` with ``kwargs``.

    ``framework`` is ``"torch"`` (``torch.optim.lr_scheduler``) or ``"transformers"``
    (``transformers.optimization``). Keyword arguments that only refimpl takes
    (``interval``) are left out. Returns ``None`` when the framework has no class of that
    name.
    """
    if framework == "torch":
        module = _require_torch().optim.lr_scheduler
    elif framework == "transformers":
        try:
            import transformers.optimization as module
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("the transformers cross-check needs transformers; install it "
                              "with `pip install transformers` (or `pip install -e .[hf]`)"
                              ) from None
    else:
        raise ValueError(f"framework must be one of {sorted(FRAMEWORK_RTOL)}, got {framework!r}")
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        return None
    accepted = inspect.signature(cls).parameters
    return cls(optimizer, **{k: v for k, v in kwargs.items() if k != "interval" or k in accepted})


def crosscheck_scheduler(name: str, lr: float | Sequence[float] = 0.1, steps: int = 300,
                         seed: int = 0, *, losses: Sequence[float] | str = "random",
                         framework: str = "torch", rtol: float | None = None,
                         **kwargs: Any) -> CrosscheckResult:
    """Build scheduler ``name`` (short or class name) and replay it against ``framework``.

    ``losses`` is a list, or ``"random"`` / ``"adversarial"`` to draw a trace from ``seed``
    (used only by loss-driven schedulers). For ``warmup``, ``after`` may name the scheduler
    that follows (default ``cosine``) and ``after_<key>`` keys configure it.
    """
    from ..registry import make_scheduler, scheduler_class

    if getattr(scheduler_class(name), "__name__", None) == "LinearWarmup":
        kwargs.setdefault("after", "cosine")
    # a schedule's run length (T_max, ...) defaults to the steps replayed
    scheduler = make_scheduler(name, lr, epochs=steps, steps_per_epoch=1, **kwargs)
    if isinstance(losses, str):
        losses = loss_trace(losses, steps, seed, scheduler)
    return replay_scheduler(scheduler, steps, losses, framework=framework, rtol=rtol)


def loss_trace(kind: str, steps: int, seed: int, scheduler: Scheduler) -> list[float]:
    """``"random"`` or ``"adversarial"`` losses (the latter on ``scheduler``'s threshold)."""
    plateau = getattr(scheduler, "after", None) or scheduler  # LinearWarmup: its `after`
    if kind == "random":
        return random_losses(steps, seed)
    if kind == "adversarial":
        options = {} if not hasattr(plateau, "threshold_mode") else {
            "mode": plateau.mode, "threshold": plateau.threshold,
            "threshold_mode": plateau.threshold_mode}
        return adversarial_losses(steps, seed, **options)
    raise ValueError(f"losses must be a list, 'random' or 'adversarial', got {kind!r}")


# -- optimizers ---------------------------------------------------------------------------------
def crosscheck_optimizer(name: str, steps: int = 200, seed: int = 0, *,
                         shapes: Sequence[tuple[int, ...]] = ((5, 3), (3,)),
                         rtol: float = RTOL, **kwargs: Any) -> CrosscheckResult:
    """Apply the same random float64 gradients with our optimizer and torch's; compare the
    parameters (all arrays, flattened) after every step. ``kwargs`` go to both constructors.

    ``name`` is any optimizer of :func:`refimpl.registry.optimizer_names` (``sgd``, ``adam``,
    or a class name); torch's class of the same name is the other side.
    """
    from ..registry import optimizer_class

    torch = _require_torch()
    ours_class = optimizer_class(name)  # an unknown name: the error lists the known ones
    class_name = ours_class.__name__
    theirs_class = getattr(torch.optim, class_name, None)
    if theirs_class is None:
        raise ValueError(f"torch.optim has no {class_name} to compare optimizer {name!r} "
                         "with; choose one that torch also has")
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(shape) for shape in shapes]
    ours_params = [p.copy() for p in params]
    torch_params = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    ours = ours_class(ours_params, **kwargs)

    def flat(arrays) -> np.ndarray:
        return np.concatenate([np.asarray(a).ravel() for a in arrays])

    our_trace = [flat(ours_params)]
    their_trace = [flat(p.detach().numpy() for p in torch_params)]
    # torch keeps scalar state (NAdam's mu_product) in its default dtype; ours is float64
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        theirs = theirs_class(torch_params, **kwargs)
        for _ in range(steps):
            grads = [rng.standard_normal(shape) for shape in shapes]
            ours.step(grads)
            for p, g in zip(torch_params, grads):
                p.grad = torch.tensor(g.copy())
            theirs.step()
            our_trace.append(flat(ours_params))
            their_trace.append(flat(p.detach().numpy() for p in torch_params))
    finally:
        torch.set_default_dtype(previous)
    return compare_traces(our_trace, their_trace, rtol=rtol, subject=f"{class_name} vs torch")
