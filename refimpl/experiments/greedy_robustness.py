"""GreedyLR's robustness to noise on 2-D test functions (GreedyLR paper §4.4 / A.6; docs/methods.md §8).

Plain gradient descent ``x <- x - lr_t g_t`` for 200 steps on four functions (minimum value
0), under five noise types, with four schedulers stepping once per optimizer step, over many
seeds. The seed draws the start point and the noise; every scheduler of a (function, noise,
seed) cell sees the same start and the same noise stream (common random numbers).

Noise (interpretation, docs/methods.md §8; the paper gives only the kinds, not the constants):

* ``none``      -- observed loss ``l = f(x)``, gradient ``g = grad f(x)``;
* ``gaussian``  -- ``l = f (1 + 0.05 xi)``, ``g = grad f + 0.05 |grad f| zeta / sqrt(2)``,
  ``xi``, ``zeta`` standard normal (stochastic loss and gradient estimates);
* ``periodic``  -- every ``P`` steps (``P`` drawn from 50..100 per seed) the observed loss gets
  a spike ``+ 2 f(x_0)``; the gradient is untouched (a scalar added to the loss has zero
  gradient, paper A.6);
* ``spike``     -- the same spike with probability 0.02 at each step;
* ``adversarial`` -- bursts of 5 steps, each starting with probability 0.02 per step, in which
  the gradient's sign is flipped (the step climbs); the observed loss is the true one.

Metrics (docs/methods.md §8): final loss = mean of the last 10 *true* losses ``f(x_t)``; recovery =
max observed loss / final loss. A run whose iterate overflows (``f > 1e12`` or NaN) is
stopped and scored ``inf`` (medians are taken with ``inf`` included, so divergence counts as
worst).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.schedulers.greedy import GreedyLR
from refimpl.schedulers.standard import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
)

STEPS = 200
NOISES = ("none", "gaussian", "periodic", "spike", "adversarial")
SCHEDULERS = ("greedy", "cosine", "cosine-restarts", "exponential", "greedy-cap2")
PAPER_FINAL = {"greedy": 0.148, "cosine": 0.232, "cosine-restarts": 0.226, "exponential": 0.249,
               "greedy-cap2": "n/a"}
PAPER_RECOVERY = {"greedy": 134, "cosine": 132.3, "cosine-restarts": 35.7, "exponential": 4.9,
                  "greedy-cap2": "n/a"}
DIVERGED = 1e12


@dataclass(frozen=True)
class TestFunction:
    """A 2-D function with minimum value 0, its gradient, start box and initial rate."""

    name: str
    f: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    low: tuple[float, float]
    high: tuple[float, float]
    lr: float


def _quadratic(x):
    return 0.5 * (x[0] ** 2 + 10.0 * x[1] ** 2)


def _quadratic_grad(x):
    return np.array([x[0], 10.0 * x[1]])


def _rosenbrock(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


def _rosenbrock_grad(x):
    return np.array([-2.0 * (1.0 - x[0]) - 400.0 * x[0] * (x[1] - x[0] ** 2),
                     200.0 * (x[1] - x[0] ** 2)])


def _rastrigin(x):
    return float(20.0 + np.sum(x ** 2 - 10.0 * np.cos(2.0 * np.pi * x)))


def _rastrigin_grad(x):
    return 2.0 * x + 20.0 * np.pi * np.sin(2.0 * np.pi * x)


def _ackley(x):
    r = math.sqrt(0.5 * float(x @ x))
    return (-20.0 * math.exp(-0.2 * r) - math.exp(0.5 * float(np.sum(np.cos(2 * np.pi * x))))
            + math.e + 20.0)


def _ackley_grad(x):
    r = math.sqrt(0.5 * float(x @ x))
    cos_mean = math.exp(0.5 * float(np.sum(np.cos(2 * np.pi * x))))
    radial = 2.0 * math.exp(-0.2 * r) * x / r if r > 0 else np.zeros(2)
    return radial + cos_mean * np.pi * np.sin(2 * np.pi * x)


#: Start boxes and initial rates: each rate is stable at the start for plain GD (quadratic
#: L = 10; Rosenbrock's curvature near the valley ~ 1e3; Rastrigin's L = 2 + 40 pi^2).
FUNCTIONS = (
    TestFunction("quadratic", _quadratic, _quadratic_grad, (-3, -3), (3, 3), 0.05),
    TestFunction("rosenbrock", _rosenbrock, _rosenbrock_grad, (-2, -1), (2, 3), 1e-3),
    TestFunction("rastrigin", _rastrigin, _rastrigin_grad, (-1, -1), (1, 1), 2e-3),
    TestFunction("ackley", _ackley, _ackley_grad, (-2, -2), (2, 2), 0.05),
)


def make_scheduler(name: str, lr: float):
    """The four schedulers, stepping once per optimizer step over 200 steps.

    GreedyLR: F = 0.9, patience 2, min_lr = lr/100, max_lr = 10 lr, no smoothing (our
    choice, fixed before any run; the paper gives patience 10 / window 50 for its 1000-5000
    step runs, too slow to act within 200 steps). Cosine: T_max = 200. Restarts: T_0 = 50.
    Exponential: gamma = 0.99 (lr falls to 13% by step 200). ``greedy-cap2`` is GreedyLR with
    ``max_lr = 2 lr`` (a sensitivity row, added after the first runs showed GreedyLR
    overflowing on Rosenbrock when its rate climbs to 10 lr).
    """
    if name == "greedy":
        return GreedyLR(lr, factor=0.9, patience=2, min_lr=lr / 100, max_lr=10 * lr)
    if name == "greedy-cap2":
        return GreedyLR(lr, factor=0.9, patience=2, min_lr=lr / 100, max_lr=2 * lr)
    if name == "cosine":
        return CosineAnnealingLR(lr, T_max=STEPS, interval="step")
    if name == "cosine-restarts":
        return CosineAnnealingWarmRestarts(lr, T_0=50, interval="step")
    if name == "exponential":
        return ExponentialLR(lr, gamma=0.99, interval="step")
    raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {name!r}")


def noise_plan(noise: str, seed: int) -> dict[str, np.ndarray]:
    """All random draws of one run, made up front so every scheduler sees the same ones."""
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    rng = np.random.default_rng([seed, NOISES.index(noise)])
    plan = {"xi": np.zeros(STEPS), "zeta": np.zeros((STEPS, 2)),
            "spike": np.zeros(STEPS, dtype=bool), "flip": np.zeros(STEPS, dtype=bool)}
    if noise == "gaussian":
        plan["xi"] = rng.standard_normal(STEPS)
        plan["zeta"] = rng.standard_normal((STEPS, 2))
    elif noise == "periodic":
        period = int(rng.integers(50, 101))
        plan["spike"][period - 1::period] = True
    elif noise == "spike":
        plan["spike"] = rng.random(STEPS) < 0.02
    elif noise == "adversarial":
        for start in np.flatnonzero(rng.random(STEPS) < 0.02):
            plan["flip"][start:start + 5] = True
    return plan


def run_one(fn: TestFunction, scheduler: str, noise: str, seed: int) -> dict[str, np.ndarray]:
    """One 200-step GD run; returns the true and observed losses and the rates."""
    x0_rng = np.random.default_rng([seed, FUNCTIONS.index(fn)])
    x = x0_rng.uniform(fn.low, fn.high)
    plan = noise_plan(noise, seed)
    spike = 2.0 * fn.f(x)
    sched = make_scheduler(scheduler, fn.lr)
    true = np.full(STEPS, np.inf)
    observed = np.full(STEPS, np.inf)
    lrs = np.zeros(STEPS)
    for t in range(STEPS):
        loss = fn.f(x)
        if not loss < DIVERGED:  # also catches NaN
            break
        g = fn.grad(x)
        if noise == "gaussian":
            g = g + 0.05 * np.linalg.norm(g) * plan["zeta"][t] / math.sqrt(2.0)
        if plan["flip"][t]:
            g = -g
        seen = loss * (1.0 + 0.05 * plan["xi"][t]) + (spike if plan["spike"][t] else 0.0)
        true[t], observed[t], lrs[t] = loss, seen, sched.lr
        x = x - sched.lr * g
        if isinstance(sched, GreedyLR):
            sched.step(seen)
        else:
            sched.step()
    return {"true": true, "observed": observed, "lr": lrs}


def final_loss(true: np.ndarray) -> float:
    """Mean of the last 10 true losses (inf when the run diverged)."""
    return float(np.mean(true[-10:]))


def recovery(observed: np.ndarray, final: float) -> float:
    """max observed loss / final loss (inf for a diverged run or a final loss of 0)."""
    if not np.isfinite(final):
        return math.inf
    return float(np.max(observed) / final) if final > 0 else math.inf


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        n_seeds: int | None = None) -> StudyResult:
    """The grid 4 functions x 5 noises x 4 schedulers x seeds; median tables and a figure."""
    n_seeds = n_seeds or (4 if quick else 50)
    result = StudyResult("greedy-robustness", quick, machine=machine())
    result.scale = (f"4 functions x 5 noise types x 4 schedulers x {n_seeds} seeds x {STEPS} "
                    "steps of plain GD in 2-D")
    result.paper_scale = ("8,100 runs on 12 neural architectures plus the four functions, "
                          "200 steps each (GreedyLR given more runs than the baselines)")
    final = np.zeros((len(FUNCTIONS), len(NOISES), len(SCHEDULERS), n_seeds))
    recov = np.zeros_like(final)
    curves = {s: [] for s in SCHEDULERS}
    with Timer() as timer:
        for i, fn in enumerate(FUNCTIONS):
            for j, noise in enumerate(NOISES):
                for k, sched in enumerate(SCHEDULERS):
                    for s in range(n_seeds):
                        trace = run_one(fn, sched, noise, seed + s)
                        final[i, j, k, s] = final_loss(trace["true"])
                        recov[i, j, k, s] = recovery(trace["observed"], final[i, j, k, s])
                        if noise == "none" and fn.name == "rosenbrock":
                            curves[sched].append(trace["true"])
    result.wall_time = timer.seconds
    med = lambda a: float(np.median(a))
    result.tables.append(Table(
        "Median over all runs, per scheduler",
        ["scheduler", "median final loss", "paper final loss", "median recovery",
         "paper recovery", "diverged runs", "runs"],
        [[name, med(final[:, :, k]), PAPER_FINAL[name], med(recov[:, :, k]),
          PAPER_RECOVERY[name], int(np.sum(~np.isfinite(final[:, :, k]))),
          final[:, :, k].size] for k, name in enumerate(SCHEDULERS)]))
    result.tables.append(Table(
        "Median final loss per noise type (all functions)", ["noise", *SCHEDULERS],
        [[noise, *(med(final[:, j, k]) for k in range(len(SCHEDULERS)))]
         for j, noise in enumerate(NOISES)]))
    result.tables.append(Table(
        "Median recovery per noise type (all functions)", ["noise", *SCHEDULERS],
        [[noise, *(med(recov[:, j, k]) for k in range(len(SCHEDULERS)))]
         for j, noise in enumerate(NOISES)]))
    result.tables.append(Table(
        "Median final loss per function (all noise types)", ["function", *SCHEDULERS],
        [[fn.name, *(med(final[i, :, k]) for k in range(len(SCHEDULERS)))]
         for i, fn in enumerate(FUNCTIONS)]))
    greedy = final[:, :, 0]
    rows = []
    for k in (1, 2, 3):
        other = final[:, :, k]
        tie = (greedy == other) | np.isclose(greedy, other, rtol=1e-9, atol=0.0)
        rows.append([SCHEDULERS[k], float(np.mean(~tie & (greedy < other))), float(np.mean(tie)),
                     float(np.mean(~tie & (greedy > other)))])
    result.tables.append(Table(
        "Paired comparison per (function, noise, seed) cell: share where GreedyLR's final loss "
        "is lower / equal (rel. 1e-9) / higher", ["baseline", "lower", "equal", "higher"], rows))
    result.data = {"final": final, "recovery": recov, "functions": [f.name for f in FUNCTIONS],
                   "noises": NOISES, "schedulers": SCHEDULERS}
    _figure(final, curves, out, result.figures)
    return result


def _figure(final, curves, out, figures) -> None:
    fig, (ax_heat, ax_curve) = new_figure(2, width=5.5)
    med = np.log10(np.median(final, axis=(0, 3)) + 1e-16)
    image = ax_heat.imshow(med.T, cmap="viridis_r", aspect="auto")
    ax_heat.set_xticks(range(len(NOISES)), NOISES, rotation=30)
    ax_heat.set_yticks(range(len(SCHEDULERS)), SCHEDULERS)
    ax_heat.set_title("log10 median final loss")
    fig.colorbar(image, ax=ax_heat)
    steps = np.arange(STEPS)
    for name, traces in curves.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(np.clip(np.asarray(traces), 1e-16, DIVERGED))
        lo, mid, hi = np.nanpercentile(logs, [10, 50, 90], axis=0)
        ax_curve.plot(steps, mid, label=name)
        ax_curve.fill_between(steps, lo, hi, alpha=0.15)
    ax_curve.set_xlabel("step")
    ax_curve.set_ylabel("log10 loss, Rosenbrock, clean (median, 10-90%)")
    ax_curve.legend()
    save_figure(fig, out, "results_greedy_robustness", figures)
