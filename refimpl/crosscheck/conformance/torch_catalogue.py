"""torch's catalogue: every ``lr_scheduler`` class (and ``swa_utils.SWALR``), every
optimizer over every flag, and the ops, against refimpl (docs/methods.md §1-§3).

Schedules are built by torch's class name on both sides with the same keyword arguments
(ours on :class:`~refimpl.schedulers.ParamGroups`, torch's on a float64 SGD), stepped
together, and compared by :func:`~refimpl.crosscheck.check` at every step (and momenta for
the cycling schedules). ``CosineAnnealingWarmRestarts`` is also jumped with ``step(epoch)``
to and around its restarts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ... import schedulers
from ..frameworks import adversarial_losses, random_losses
from .common import generator, log_uniform, random_lrs, schedule_comparison
from .core import BUG, Case, Comparison, Explanation, Subject

__all__ = ["WARM_RESTARTS_STEP_EPOCH", "catalogue", "version"]


def version() -> str:
    import torch

    return torch.__version__


# -- the finding: step(epoch) of CosineAnnealingWarmRestarts -------------------------------
WARM_RESTARTS_STEP_EPOCH = Explanation(
    key="torch-warm-restarts-step-epoch",
    verdict=BUG,
    summary=(
        "`CosineAnnealingWarmRestarts.step(epoch)` places an epoch in its cycle with a "
        "floating-point logarithm, `n = int(log(epoch (T_mult - 1) / T_0 + 1, T_mult))`. "
        "At or next to a restart the logarithm rounds to the wrong cycle: the state ends "
        "with `T_cur == T_i` (the end of the previous cycle, rate `eta_min`) where as many "
        "`step()` calls reach the restart (rate `base`), or with `T_cur < 0` (rate `base`) "
        "an instant before a restart, where the rate is near `eta_min`. refimpl counts the "
        "cycles."),
    reference="docs/methods.md §3 (Deliberate differences from torch)",
    reproduction='''\
import math
import warnings

import torch

from refimpl.schedulers import CosineAnnealingWarmRestarts


def torch_warm_restarts(T_0, T_mult):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0, T_mult)
    return optimizer, scheduler


assert math.log(243, 3) == 4.999999999999999        # the cycle count, one ulp short of 5

# epoch 484 = 4 + 12 + 36 + 108 + 324 is the 5th restart of T_0=4, T_mult=3
optimizer, jumped = torch_warm_restarts(4, 3)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")                  # torch deprecates step(epoch)
    jumped.step(484)
assert (jumped.T_cur, jumped.T_i) == (324, 324)      # T_cur == T_i: outside its cycle
assert optimizer.param_groups[0]["lr"] == 0.0        # eta_min

optimizer, walked = torch_warm_restarts(4, 3)
for _ in range(484):
    optimizer.step()
    walked.step()
assert (walked.T_cur, walked.T_i) == (0, 972)
assert optimizer.param_groups[0]["lr"] == 1.0        # the restart: base

ours = CosineAnnealingWarmRestarts(1.0, T_0=4, T_mult=3)
ours.step(484)
assert ours.lr == 1.0

# the other way: an instant before the restart at 683592 of T_0=7, T_mult=5
optimizer, jumped = torch_warm_restarts(7, 5)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    jumped.step(683591.999999999)
assert jumped.T_cur < 0                              # placed in the next cycle
assert optimizer.param_groups[0]["lr"] == 1.0        # base, at the end of a cycle
ours = CosineAnnealingWarmRestarts(1.0, T_0=7, T_mult=5)
ours.step(683591.999999999)
assert ours.lr < 1e-20                               # near eta_min = 0
''')


# -- building both sides ------------------------------------------------------------------
#: torch's lr_scheduler classes refimpl has (same names), and the recipes' children
SCHEDULERS = ["LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
              "ExponentialLR", "PolynomialLR", "CosineAnnealingLR",
              "CosineAnnealingWarmRestarts", "CyclicLR", "OneCycleLR", "ReduceLROnPlateau",
              "SequentialLR", "ChainedScheduler", "SWALR"]
_CHILDREN = ["LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR",
             "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR",
             "CosineAnnealingWarmRestarts"]

Recipe = tuple[str, dict]


def _torch_class(name: str):
    import torch

    if name == "SWALR":
        return torch.optim.swa_utils.SWALR
    return getattr(torch.optim.lr_scheduler, name)


def _torch_sgd(lrs: list[float]):
    """A float64 SGD with one group per rate (momentum present, for the cycling schedules)."""
    import torch

    groups = [{"params": [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))], "lr": lr}
              for lr in lrs]
    return torch.optim.SGD(groups, momentum=0.9)


def build_pair(recipe: Recipe, groups, optimizer) -> tuple[Any, Any]:
    """(ours, theirs) of ``recipe`` on shared ``groups`` and torch's ``optimizer``."""
    name, kwargs = recipe
    if name in ("SequentialLR", "ChainedScheduler"):
        pairs = [build_pair(child, groups, optimizer) for child in kwargs["children"]]
        ours_children, their_children = [p[0] for p in pairs], [p[1] for p in pairs]
        if name == "ChainedScheduler":
            return (schedulers.ChainedScheduler(ours_children),
                    _torch_class(name)(their_children))
        return (schedulers.SequentialLR(groups, ours_children, kwargs["milestones"]),
                _torch_class(name)(optimizer, their_children, kwargs["milestones"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's scheduler-before-step note
        return getattr(schedulers, name)(groups, **kwargs), _torch_class(name)(optimizer,
                                                                               **kwargs)


def _lambda(rng: np.random.Generator) -> Callable[[int], float]:
    kind, a = int(rng.integers(3)), float(rng.uniform(0.9, 1.0))
    if kind == 0:
        return lambda e: a**e
    if kind == 1:
        return lambda e: 1.0 / (1.0 + (1.0 - a) * e)
    return lambda e: a if e % 5 else 1.0 / a


def random_recipe(name: str, rng: np.random.Generator, n_groups: int, steps: int) -> Recipe:
    """A random valid configuration of torch class ``name`` (torch's keyword names)."""
    uniform, integer = rng.uniform, rng.integers
    if name == "LambdaLR":
        one = rng.random() < 0.5
        return name, {"lr_lambda": _lambda(rng) if one else [_lambda(rng)
                                                               for _ in range(n_groups)]}
    if name == "MultiplicativeLR":
        return name, {"lr_lambda": _lambda(rng)}
    if name == "StepLR":
        return name, {"step_size": int(integer(1, 60)), "gamma": float(uniform(0.1, 1.0))}
    if name == "MultiStepLR":
        milestones = integer(0, steps + 20, size=int(integer(0, 7))).tolist()
        return name, {"milestones": milestones, "gamma": float(uniform(0.1, 1.0))}
    if name == "ConstantLR":
        return name, {"factor": float(uniform(0.01, 1.0)), "total_iters": int(integer(1, steps))}
    if name == "LinearLR":
        return name, {"start_factor": float(uniform(0.01, 1.0)),
                      "end_factor": float(uniform(0.0, 1.0)),
                      "total_iters": int(integer(1, steps))}
    if name == "ExponentialLR":
        return name, {"gamma": float(uniform(0.9, 1.0))}
    if name == "PolynomialLR":
        return name, {"total_iters": int(integer(1, steps)), "power": float(uniform(0.0, 3.0))}
    if name == "CosineAnnealingLR":
        return name, {"T_max": int(integer(1, steps)),
                      "eta_min": float(rng.choice([0.0, 1e-5, 1e-3]))}
    if name == "CosineAnnealingWarmRestarts":
        return name, {"T_0": int(integer(1, 40)), "T_mult": int(integer(1, 4)),
                      "eta_min": float(rng.choice([0.0, 1e-5, 1e-3]))}
    if name == "CyclicLR":
        return name, {"base_lr": [log_uniform(rng, 1e-5, 1e-2) for _ in range(n_groups)],
                      "max_lr": log_uniform(rng, 1e-2, 1.0),
                      "step_size_up": int(integer(1, 60)),
                      "step_size_down": None if rng.random() < 0.3 else int(integer(1, 60)),
                      "mode": str(rng.choice(["triangular", "triangular2", "exp_range"])),
                      "gamma": float(uniform(0.99, 1.0)),
                      "cycle_momentum": bool(rng.random() < 0.7),
                      "base_momentum": float(uniform(0.5, 0.85)),
                      "max_momentum": float(uniform(0.85, 0.99))}
    if name == "OneCycleLR":
        total = int(integer(steps, 2 * steps))
        pct = float(uniform(0.05, 0.6))
        while pct * total == int(pct * total):  # a zero-length phase: both refuse (see §3)
            pct = float(uniform(0.05, 0.6))
        return name, {"max_lr": [log_uniform(rng, 1e-3, 1.0) for _ in range(n_groups)],
                      "total_steps": total, "pct_start": pct,
                      "anneal_strategy": str(rng.choice(["cos", "linear"])),
                      "cycle_momentum": bool(rng.random() < 0.7),
                      "base_momentum": float(uniform(0.5, 0.85)),
                      "max_momentum": float(uniform(0.85, 0.99)),
                      "div_factor": float(uniform(2, 50)),
                      "final_div_factor": log_uniform(rng, 10, 1e5),
                      "three_phase": bool(rng.random() < 0.5)}
    if name == "SWALR":
        return name, {"swa_lr": log_uniform(rng, 1e-4, 0.1),
                      "anneal_epochs": int(integer(0, 40)),
                      "anneal_strategy": str(rng.choice(["cos", "linear"]))}
    if name == "ReduceLROnPlateau":
        return name, {"mode": str(rng.choice(["min", "max"])),
                      "factor": float(uniform(0.0, 0.99)), "patience": int(integer(0, 12)),
                      "threshold": float(rng.choice([0.0, 1e-4, 0.05])),
                      "threshold_mode": str(rng.choice(["rel", "abs"])),
                      "cooldown": int(integer(0, 5)),
                      "min_lr": float(rng.choice([0.0, 1e-6, 1e-4])),
                      "eps": float(rng.choice([0.0, 1e-8, 1e-3]))}
    if name in ("SequentialLR", "ChainedScheduler"):
        kinds = _CHILDREN + (["SWALR"] if name == "ChainedScheduler" else [])
        children = [random_recipe(str(rng.choice(kinds)), rng, n_groups, steps)
                    for _ in range(int(integer(1, 4)))]
        if name == "ChainedScheduler":
            return name, {"children": children}
        milestones = sorted(int(m) for m in integer(1, steps, size=len(children) - 1))
        return name, {"children": children, "milestones": milestones}
    raise ValueError(f"no recipe for {name!r}")


def describe(recipe: Recipe, lrs: list[float]) -> str:
    """One line naming the configuration (callables by their kind)."""
    def value(v: Any) -> str:
        if callable(v):
            return "<lambda>"
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    name, kwargs = recipe
    if "children" in kwargs:
        inner = ", ".join(describe(child, []) for child in kwargs["children"])
        rest = f", milestones={kwargs['milestones']}" if "milestones" in kwargs else ""
        text = f"{name}([{inner}]{rest})"
    else:
        text = f"{name}({', '.join(f'{k}={value(v)}' for k, v in kwargs.items())})"
    return f"{text}, lr={value(lrs)}" if lrs else text


# -- cases -------------------------------------------------------------------------------------
def _losses(kwargs: dict, steps: int, seed: int, adversarial: bool) -> list[float]:
    if adversarial:
        return adversarial_losses(steps, seed, mode=kwargs["mode"],
                                  threshold=kwargs["threshold"],
                                  threshold_mode=kwargs["threshold_mode"])
    losses = random_losses(steps, seed)
    return losses if kwargs["mode"] == "min" else [-loss for loss in losses]


def _momenta(optimizer) -> list[float]:
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in optimizer.param_groups]


def trace_case(recipe: Recipe, lrs: list[float], steps: int, seed: int) -> Case:
    """Step both ``steps`` times; rates at every step (momenta too when they cycle)."""
    name, kwargs = recipe
    adversarial = seed % 2 == 1

    def compare() -> Comparison:
        groups = schedulers.ParamGroups(lrs)
        optimizer = _torch_sgd(lrs)
        ours, theirs = build_pair(recipe, groups, optimizer)
        momentum_diffs: list[str] = []

        def read(_):
            return [g["lr"] for g in optimizer.param_groups]

        def feed(_, signal):
            optimizer.step()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                if signal is None:
                    theirs.step()
                else:
                    theirs.step(signal)
            if getattr(ours, "momentums", None) is not None and not momentum_diffs:
                mine, yours = np.asarray(ours.momentums), np.asarray(_momenta(optimizer))
                if np.any(np.abs(mine - yours) > 1e-12 * np.abs(yours)):
                    momentum_diffs.append(f"momenta differ: ours {mine.tolist()}, theirs "
                                          f"{yours.tolist()}")

        signals = _losses(kwargs, steps, seed, adversarial) if name == "ReduceLROnPlateau" \
            else None
        comparison = schedule_comparison(theirs, ours, signals, steps=steps, read_lr=read,
                                         feed=feed)
        if momentum_diffs:
            return Comparison(False, "\n".join([comparison.detail, *momentum_diffs]),
                              comparison.result)
        return comparison

    losses = ", adversarial losses" if name == "ReduceLROnPlateau" and adversarial else ""
    return Case(name, f"{describe(recipe, lrs)}, {steps} steps{losses}", compare)


# -- CosineAnnealingWarmRestarts.step(epoch) at its restarts -------------------------------
def restart_epochs(T_0: int, T_mult: int, last: float = 1e7) -> list[float]:
    """Every restart up to ``last`` and the epochs around it: one before and after, a half
    before and after, 1e-9 before and the float just below."""
    epochs: list[float] = []
    start, length = 0, T_0
    while start + length <= last:
        start, length = start + length, length * T_mult
        for epoch in (start - 1, start - 0.5, start - 1e-9, math.nextafter(start, 0.0), start,
                      start + 0.5, start + 1):
            epochs.append(float(epoch))
    return epochs


def _epoch_jumps(T_0: int, T_mult: int, eta_min: float, lrs: list[float],
                 theirs_class: type | None = None) -> list[dict]:
    """Jump both to every epoch of :func:`restart_epochs`; the epochs where they differ.

    ``theirs_class`` (default torch's) is built as ``theirs_class(optimizer, T_0=...,
    T_mult=..., eta_min=...)`` and must keep torch's ``T_cur`` and ``T_i``."""
    ours = schedulers.CosineAnnealingWarmRestarts(list(lrs), T_0=T_0, T_mult=T_mult,
                                                  eta_min=eta_min)
    optimizer = _torch_sgd(lrs)
    cls = theirs_class or _torch_class("CosineAnnealingWarmRestarts")
    theirs = cls(optimizer, T_0=T_0, T_mult=T_mult, eta_min=eta_min)
    found = []
    for epoch in restart_epochs(T_0, T_mult):
        ours.step(epoch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # step(epoch) is deprecated
            theirs.step(epoch)
        mine = np.asarray(ours.lrs)
        yours = np.asarray([g["lr"] for g in optimizer.param_groups])
        if np.any(np.abs(mine - yours) > 1e-12 * np.abs(yours)):
            found.append({"epoch": epoch, "ours": mine.tolist(), "theirs": yours.tolist(),
                          "ours_T_cur": ours.T_cur, "ours_T_i": ours.T_i,
                          "theirs_T_cur": float(theirs.T_cur), "theirs_T_i": theirs.T_i})
    return found


def _walked_rates(T_0: int, T_mult: int, eta_min: float, lrs: list[float], epoch: int
                  ) -> list[float]:
    """torch's rates after ``epoch`` calls of ``step()``."""
    optimizer = _torch_sgd(lrs)
    theirs = _torch_class("CosineAnnealingWarmRestarts")(optimizer, T_0=T_0, T_mult=T_mult,
                                                         eta_min=eta_min)
    for _ in range(epoch):
        optimizer.step()
        theirs.step()
    return [g["lr"] for g in optimizer.param_groups]


#: integer epochs up to this many are also walked with step() to show torch against itself
WALK_LIMIT = 5000


def _contradicts_itself(T_0: int, T_mult: int, eta_min: float, lrs: list[float]
                        ) -> Callable[[Comparison], bool]:
    """The bug's check: at every differing epoch torch's own invariant 0 <= T_cur < T_i
    is broken, ours holds it, and at integer epochs within :data:`WALK_LIMIT` torch's
    ``step()`` calls give our rates."""
    def holds(comparison: Comparison) -> bool:
        for found in comparison.result:
            if 0 <= found["theirs_T_cur"] < found["theirs_T_i"]:
                return False
            if not 0 <= found["ours_T_cur"] < found["ours_T_i"]:
                return False
            epoch = found["epoch"]
            if epoch == int(epoch) and epoch <= WALK_LIMIT:
                walked = _walked_rates(T_0, T_mult, eta_min, lrs, int(epoch))
                if not np.allclose(walked, found["ours"], rtol=1e-12, atol=0.0):
                    return False
        return bool(comparison.result)
    return holds


def epoch_case(T_0: int, T_mult: int, eta_min: float, lrs: list[float],
               theirs_class: type | None = None) -> Case:
    """``step(epoch)`` at and around every restart; ``theirs_class`` replaces torch's class
    (to plant a difference in a test)."""
    def compare() -> Comparison:
        found = _epoch_jumps(T_0, T_mult, eta_min, lrs, theirs_class)
        if not found:
            return Comparison(True, "equal at every restart epoch", found)
        lines = [f"step(epoch) differs at {len(found)} epochs:"]
        for item in found[:6]:
            lines.append(f"  epoch {item['epoch']!r}: ours {item['ours'][0]!r} (T_cur "
                         f"{item['ours_T_cur']!r}, T_i {item['ours_T_i']}), theirs "
                         f"{item['theirs'][0]!r} (T_cur {item['theirs_T_cur']!r}, T_i "
                         f"{item['theirs_T_i']})")
        return Comparison(False, "\n".join(lines), found)

    config = (f"step(epoch) at and around every restart up to 1e7: T_0={T_0}, "
              f"T_mult={T_mult}, eta_min={eta_min:g}, lr={lrs}")
    return Case("CosineAnnealingWarmRestarts", config, compare,
                [(WARM_RESTARTS_STEP_EPOCH, _contradicts_itself(T_0, T_mult, eta_min, lrs))])


#: edge configurations of step(epoch): the two documented cases and T_0=1, T_mult=3
EPOCH_EDGES = [(4, 3, 0.0, [1.0]), (7, 5, 0.0, [1.0]), (1, 3, 0.0, [1.0])]


# -- the catalogue ------------------------------------------------------------------------------
def _scheduler_cases(name: str, steps: int) -> Callable[[int, int], Iterable[Case]]:
    def cases(seed: int, configs: int) -> Iterable[Case]:
        rng = generator(seed, name)
        if name == "CosineAnnealingWarmRestarts":
            for edge in EPOCH_EDGES:
                yield epoch_case(*edge)
        for index in range(configs):
            lrs = random_lrs(rng)
            yield trace_case(random_recipe(name, rng, len(lrs), steps), lrs, steps,
                             int(rng.integers(2**31)) * 2 + index % 2)
            if name == "CosineAnnealingWarmRestarts":
                kwargs = random_recipe(name, rng, len(lrs), steps)[1]
                yield epoch_case(kwargs["T_0"], max(2, kwargs["T_mult"]), kwargs["eta_min"],
                                 lrs)
    return cases


def catalogue(quick: bool = False) -> list[Subject]:
    """Every subject of the torch run, schedules first."""
    from . import torch_numeric

    steps = 60 if quick else 200
    subjects = [Subject(name, "scheduler", ours=f"refimpl.schedulers.{name}",
                        cases=_scheduler_cases(name, steps)) for name in SCHEDULERS]
    return subjects + torch_numeric.optimizer_subjects(quick) + torch_numeric.op_subjects(quick)


