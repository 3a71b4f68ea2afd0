"""transformers' catalogue: its GreedyLR and the ``get_*_schedule*`` functions refimpl has
an equivalent of, against refimpl (docs/methods.md §3-§4).

The schedules are ``LambdaLR``s over a torch optimizer; refimpl builds each from its own
parts: ``LinearWarmup`` followed by ``LinearLR``, ``CosineAnnealingLR``,
``CosineAnnealingWarmRestarts`` or ``PolynomialLR`` (table :data:`SCHEDULES`). GreedyLR
takes the same keyword names on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ... import schedulers
from ..frameworks import adversarial_losses, random_losses
from .common import differing_steps, generator, log_uniform, schedule_comparison, take
from .core import BY_DESIGN, Case, Comparison, Explanation, Subject

__all__ = ["HARD_RESTARTS_HOLD", "SCHEDULES", "WARMUP_FROM_ZERO", "catalogue", "version"]


def version() -> str:
    import transformers

    return transformers.__version__


WARMUP_FROM_ZERO = Explanation(
    key="transformers-warmup-from-zero",
    verdict=BY_DESIGN,
    summary=(
        "transformers' warm-ups start at rate 0 (`lr * t / W` for `t < W`); refimpl's "
        "`LinearWarmup`, like torch's `LinearLR`, needs a start factor in (0, 1] "
        "(docs/methods.md (3.12)). From its step 1 on, transformers' schedule is refimpl's "
        "`LinearWarmup(start_factor=1/W, total_iters=W - 1, after=...)` one step later: "
        "re-run so aligned (their step t against our step t - 1), the two agree."),
    reference="docs/methods.md §3 (Linear warm-up, (3.12))",
    reproduction='''\
import torch
from transformers.optimization import get_linear_schedule_with_warmup

from refimpl.schedulers import LinearLR, LinearWarmup

optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
theirs = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=4, num_training_steps=10)
rates = [optimizer.param_groups[0]["lr"]]
for _ in range(10):
    optimizer.step()
    theirs.step()
    rates.append(optimizer.param_groups[0]["lr"])
assert rates[0] == 0.0                                # starts at 0
ours = LinearWarmup(0.1, LinearLR(0.1, 1.0, 0.0, total_iters=6), start_factor=1 / 4,
                    total_iters=3)
shifted = [ours.lr] + [ours.step() for _ in range(9)]
assert max(abs(a - b) for a, b in zip(rates[1:], shifted)) < 1e-15   # one step later
''')

HARD_RESTARTS_HOLD = Explanation(
    key="transformers-hard-restarts-zero-after-training",
    verdict=BY_DESIGN,
    summary=(
        "`get_cosine_with_hard_restarts_schedule_with_warmup` gives rate 0 from "
        "`num_training_steps` on; `CosineAnnealingWarmRestarts` keeps restarting. Before "
        "`num_training_steps` the two agree."),
    reference="docs/methods.md §3 (3.11)",
    reproduction='''\
import torch
from transformers.optimization import get_cosine_with_hard_restarts_schedule_with_warmup

from refimpl.schedulers import CosineAnnealingWarmRestarts

optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
theirs = get_cosine_with_hard_restarts_schedule_with_warmup(optimizer, 0, 8, num_cycles=2)
rates = [optimizer.param_groups[0]["lr"]]
for _ in range(10):
    optimizer.step()
    theirs.step()
    rates.append(optimizer.param_groups[0]["lr"])
ours = CosineAnnealingWarmRestarts(0.1, T_0=4)
mine = [ours.lr] + [ours.step() for _ in range(10)]
assert max(abs(a - b) for a, b in zip(rates[:8], mine[:8])) < 1e-15
assert rates[8:] == [0.0, 0.0, 0.0] and mine[8] == 0.1   # zero after training; a restart
''')


# -- schedules --------------------------------------------------------------------------------
def _torch_sgd(lr: float):
    import torch

    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))], lr=lr)


def _after(kind: str, lr: float, length: int, config: dict):
    """The part after the warm-up, in refimpl, for ``length`` steps."""
    if kind == "linear":
        return schedulers.LinearLR(lr, 1.0, 0.0, total_iters=length)
    if kind == "cosine":
        return schedulers.CosineAnnealingLR(lr, T_max=length)
    if kind == "cosine_min_lr":
        return schedulers.CosineAnnealingLR(lr, T_max=length, eta_min=lr * config["min_lr_rate"])
    if kind == "hard_restarts":
        return schedulers.CosineAnnealingWarmRestarts(lr, T_0=length // config["num_cycles"])
    if kind == "polynomial":
        return schedulers.PolynomialLR(lr, total_iters=length, power=config["power"])
    if kind == "constant":
        return schedulers.ConstantLR(lr, factor=1.0, total_iters=1)
    raise ValueError(kind)


def _ours(kind: str, lr: float, warmup: int, total: int, config: dict, shifted: bool):
    """refimpl's schedule: the ``after`` part alone without a warm-up; else, ``shifted``,
    the warm-up through ``1/W .. (W-1)/W`` that matches theirs one step later, or, not
    shifted, the same built to be compared step for step (it starts at ``lr / W``)."""
    after = _after(kind, lr, max(total - warmup, 1), config)
    if warmup == 0:
        return after
    if warmup == 1:  # their warm-up is the single rate 0: ours is `after`, one step later
        return after if shifted else schedulers.LinearWarmup(lr, after, start_factor=1.0,
                                                             total_iters=1)
    return schedulers.LinearWarmup(lr, after, start_factor=1.0 / warmup,
                                   total_iters=warmup - 1)


def _theirs(name: str, lr: float, warmup: int, total: int, config: dict):
    from transformers import optimization

    optimizer = _torch_sgd(lr)
    function = getattr(optimization, name)
    if name == "get_constant_schedule":
        return function(optimizer)
    if name == "get_constant_schedule_with_warmup":
        return function(optimizer, warmup)
    extra = {key: config[key] for key in ("num_cycles", "power", "min_lr_rate")
             if key in config}
    if name == "get_polynomial_decay_schedule_with_warmup":
        extra["lr_end"] = 0.0
    return function(optimizer, warmup, total, **extra)


def _compare(name: str, kind: str, lr: float, warmup: int, total: int, config: dict,
             steps: int, shifted: bool) -> Comparison:
    theirs = _theirs(name, lr, warmup, total, config)
    ours = _ours(kind, lr, warmup, total, config, shifted)
    return schedule_comparison(theirs, ours, steps=steps, label=f"transformers {name}",
                               offset=1 if shifted else 0)


def _zero_after(total: int) -> Callable[[Comparison], bool]:
    """Every difference comes at or after ``total``, where theirs is 0."""
    def holds(comparison: Comparison) -> bool:
        steps = differing_steps(comparison)
        return bool(steps) and min(steps) >= total and all(
            d.theirs == 0.0 for d in comparison.result.differences if d.label != "rounding")
    return holds


def schedule_case(name: str, kind: str, lr: float, warmup: int, total: int, config: dict,
                  steps: int) -> Case:
    explanations = []
    if warmup > 0:
        def aligned(_: Comparison) -> bool:
            shifted = _compare(name, kind, lr, warmup, total, config, steps, shifted=True)
            # hard restarts: past num_training_steps theirs is 0 (the finding below)
            return shifted.ok or (kind == "hard_restarts" and _zero_after(total)(shifted))
        explanations.append((WARMUP_FROM_ZERO, aligned))
    if kind == "hard_restarts":
        explanations.append((HARD_RESTARTS_HOLD, _zero_after(total)))
    text = ", ".join(f"{k}={v}" for k, v in config.items())
    return Case(name, f"{name}(lr={lr:.6g}, num_warmup_steps={warmup}, num_training_steps="
                f"{total}{', ' if text else ''}{text}), {steps} steps",
                lambda: _compare(name, kind, lr, warmup, total, config, steps, shifted=False),
                explanations)


def _config(kind: str, rng: np.random.Generator, warmup: int, steps: int) -> tuple[int, dict]:
    """``(num_training_steps, extra arguments)`` for schedule ``kind``."""
    if kind == "hard_restarts":
        cycles = int(rng.integers(1, 5))
        length = cycles * int(rng.integers(2, max(3, (steps - warmup) // cycles)))
        return warmup + length, {"num_cycles": cycles}
    total = int(rng.integers(warmup + 1, steps + 1))
    if kind == "polynomial":
        return total, {"power": float(rng.uniform(0.5, 3.0))}
    if kind == "cosine_min_lr":
        return total, {"min_lr_rate": float(rng.uniform(0.0, 0.5))}
    return total, {}


#: transformers function -> (refimpl's equivalent after the warm-up, kind)
SCHEDULES: dict[str, tuple[str, str]] = {
    "get_constant_schedule": ("ConstantLR(factor=1)", "constant"),
    "get_constant_schedule_with_warmup": ("LinearWarmup(after=None)", "constant"),
    "get_linear_schedule_with_warmup": ("LinearWarmup(after=LinearLR(1, 0, T - W))", "linear"),
    "get_cosine_schedule_with_warmup": ("LinearWarmup(after=CosineAnnealingLR(T - W))",
                                        "cosine"),
    "get_cosine_with_min_lr_schedule_with_warmup": (
        "LinearWarmup(after=CosineAnnealingLR(T - W, eta_min=lr * min_lr_rate))",
        "cosine_min_lr"),
    "get_cosine_with_hard_restarts_schedule_with_warmup": (
        "LinearWarmup(after=CosineAnnealingWarmRestarts((T - W) / num_cycles))",
        "hard_restarts"),
    "get_polynomial_decay_schedule_with_warmup": (
        "LinearWarmup(after=PolynomialLR(T - W, power)), lr_end=0", "polynomial"),
}
NOT_IN_REFIMPL = {"get_inverse_sqrt_schedule": "no refimpl equivalent",
                  "get_wsd_schedule": "no refimpl equivalent",
                  "get_reduce_on_plateau_schedule": "torch's ReduceLROnPlateau: see the "
                                                    "torch report"}


def _schedule_cases(name: str, steps: int) -> Callable[[int, int], Iterable[Case]]:
    _, kind = SCHEDULES[name]
    has_warmup = name != "get_constant_schedule"

    def case(rng: np.random.Generator, warmup: int) -> Case:
        total, config = _config(kind, rng, warmup, steps)
        return schedule_case(name, kind, log_uniform(rng, 1e-4, 1.0), warmup, total, config,
                             steps)

    def cases(seed: int, configs: int) -> Iterable[Case]:
        rng = generator(seed, name)
        edges = [case(rng, warmup) for warmup in ((0, 1, 5) if has_warmup else (0,))]
        yield from take(edges, lambda _: case(rng, int(rng.integers(0, steps // 3))
                                              if has_warmup else 0), configs)
    return cases


# -- GreedyLR -----------------------------------------------------------------------------------
def _random_greedy(rng: np.random.Generator, n_groups: int) -> dict[str, Any]:
    return {"mode": str(rng.choice(["min", "max"])),
            "factor": float(rng.uniform(0.5, 0.99)), "patience": int(rng.integers(0, 10)),
            "threshold": float(rng.choice([0.0, 1e-6, 1e-3])),
            "threshold_mode": str(rng.choice(["abs", "rel"])),
            "cooldown": int(rng.integers(0, 5)), "warmup": int(rng.integers(0, 5)),
            "min_lr": [log_uniform(rng, 1e-6, 1e-4) for _ in range(n_groups)],
            "max_lr": float(rng.choice([1.0, math.inf])),
            "eps": float(rng.choice([0.0, 1e-8])), "smooth": bool(rng.random() < 0.5),
            "window_size": int(rng.integers(1, 20)), "reset_start": int(rng.integers(0, 60))}


def greedy_case(lrs: list[float], kwargs: dict, losses: list[float]) -> Case:
    def compare() -> Comparison:
        import torch
        from transformers.optimization import GreedyLR

        groups = [{"params": [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))],
                   "lr": lr} for lr in lrs]
        theirs = GreedyLR(torch.optim.SGD(groups), **kwargs)
        return schedule_comparison(theirs, schedulers.GreedyLR(lrs, **kwargs), losses)

    text = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return Case("GreedyLR", f"GreedyLR({text}), lr={lrs}, {len(losses)} losses", compare)


def _greedy_cases(steps: int) -> Callable[[int, int], Iterable[Case]]:
    def case(rng: np.random.Generator, index: int) -> Case:
        lrs = [log_uniform(rng, 1e-3, 0.5) for _ in range(int(rng.integers(1, 4)))]
        kwargs = _random_greedy(rng, len(lrs))
        seed = int(rng.integers(2**31))
        if index % 2:  # on the improvement threshold
            losses = adversarial_losses(steps, seed, mode=kwargs["mode"],
                                        threshold=kwargs["threshold"],
                                        threshold_mode=kwargs["threshold_mode"])
        else:
            losses = random_losses(steps, seed)
            losses = losses if kwargs["mode"] == "min" else [-x for x in losses]
        return greedy_case(lrs, kwargs, losses)

    def cases(seed: int, configs: int) -> Iterable[Case]:
        rng = generator(seed, "GreedyLR")
        yield from take([case(rng, 0), case(rng, 1)], lambda index: case(rng, index), configs)
    return cases


def catalogue(quick: bool = False) -> list[Subject]:
    steps = 60 if quick else 300
    subjects = [Subject("GreedyLR", "scheduler", ours="refimpl.schedulers.GreedyLR",
                        cases=_greedy_cases(steps))]
    subjects += [Subject(name, "schedule", ours=ours, cases=_schedule_cases(name, steps))
                 for name, (ours, _) in SCHEDULES.items()]
    return subjects + [Subject(name, "schedule", note=note)
                       for name, note in NOT_IN_REFIMPL.items()]
