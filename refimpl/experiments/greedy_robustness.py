"""GreedyLR's robustness to noise (GreedyLR paper §4.4 and A.6; docs/methods.md §8).

The paper: 8,100 runs of 200 optimization steps, mostly neural networks (12 architectures)
trained by a standard optimizer, four schedulers (GreedyLR, cosine, cosine with restarts,
exponential), five noise types "applied as additive perturbations to the loss function"
(A.6, which argues that such noise has about zero gradient): Gaussian, periodic spikes
(every 50-100 steps), random spikes (2% per step), adversarial noise that "opposes
optimization progress, scaling proportionally to recent loss improvements", and none.

Here: four 2-D functions (quadratic, Rosenbrock, Rastrigin, Ackley) and two small networks
on a Fashion-MNIST subset (the project's ``mlp`` and a small CNN), 200 steps, base optimizer
Adam or SGD with momentum 0.9. The noise is added to the loss the scheduler sees; the
gradient is the true one (functions) or the mini-batch one (networks), so cosine, restarts
and exponential follow the same trajectory under every noise, and only GreedyLR reacts.
The seed draws the start point (the weights) and the noise; every scheduler of a cell sees
the same ones.

Noise on the observed loss ``l_t`` of the true loss ``f_t`` (strengths are our choice; the
paper parameterises each type by a strength it does not state):

* ``none``      -- ``l = f``;
* ``gaussian``  -- ``l = f (1 + 0.05 xi)``, ``xi`` standard normal;
* ``periodic``  -- ``l = f + 2 f_0`` every ``P`` steps (``P`` from 50..100 per seed);
* ``spike``     -- the same spike with probability 0.02 per step;
* ``adversarial`` -- ``l = f + 2 max(0, f_{t-5} - f_t)``: the observed loss rises as fast
  as the true loss falls over the last 5 steps.

Metrics: final loss = mean of the last 10 true losses; recovery = max observed loss / final
loss. A run whose loss passes 1e12 or turns NaN is scored ``inf`` (diverged).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from refimpl.experiments._records import progress, records_for
from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.model import MODELS
from refimpl.schedulers import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
)
from refimpl.schedulers.greedy import GreedyLR

STEPS = 200
NOISES = ("none", "gaussian", "periodic", "spike", "adversarial")
SCHEDULERS = ("greedy", "cosine", "cosine-restarts", "exponential")
OPTIMIZERS = ("adam", "sgd-momentum")
#: network -> (spec, per-example input shape); ``mlp`` is refimpl.model's named 784-1000-10 MLP
NETWORKS = {"mlp": MODELS["mlp"],
            "cnn": ("conv:8x3,relu,pool2,conv:16x3,relu,pool2,flatten,dense:10", (1, 28, 28))}
#: base rates of the networks per optimizer
NET_LR = {"adam": 1e-3, "sgd-momentum": 0.01}
PAPER_FINAL = {"greedy": 0.148, "cosine": 0.232, "cosine-restarts": 0.226, "exponential": 0.249}
PAPER_RECOVERY = {"greedy": 134, "cosine": 132.3, "cosine-restarts": 35.7, "exponential": 4.9}
DIVERGED = 1e12
FULL = {"n_seeds": 20, "net_seeds": 2, "n_train": 2000, "networks": tuple(NETWORKS)}
QUICK = {"n_seeds": 4, "net_seeds": 1, "n_train": 600, "networks": ()}


@dataclass(frozen=True)
class TestFunction:
    """A 2-D function with minimum value 0, its gradient, start box and base rates."""

    name: str
    f: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    low: tuple[float, float]
    high: tuple[float, float]
    lr: dict[str, float]


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


#: Start boxes and base rates (Adam, SGD with momentum 0.9) per function.
FUNCTIONS = (
    TestFunction("quadratic", _quadratic, _quadratic_grad, (-3, -3), (3, 3),
                 {"adam": 0.1, "sgd-momentum": 0.01}),
    TestFunction("rosenbrock", _rosenbrock, _rosenbrock_grad, (-2, -1), (2, 3),
                 {"adam": 0.02, "sgd-momentum": 1e-4}),
    TestFunction("rastrigin", _rastrigin, _rastrigin_grad, (-1, -1), (1, 1),
                 {"adam": 0.01, "sgd-momentum": 2e-4}),
    TestFunction("ackley", _ackley, _ackley_grad, (-2, -2), (2, 2),
                 {"adam": 0.05, "sgd-momentum": 0.005}),
)


def make_scheduler(name: str, lr: float):
    """The four schedulers, stepping once per optimizer step over 200 steps.

    GreedyLR: F = 0.9, patience 2, min_lr = lr/100, max_lr = 10 lr, no smoothing (our
    choice; the paper's patience 10 / window 50 were for its 1,000-5,000 step runs).
    Cosine: T_max = 200. Restarts: T_0 = 50. Exponential: gamma = 0.99.
    """
    if name == "greedy":
        return GreedyLR(lr, factor=0.9, patience=2, min_lr=lr / 100, max_lr=10 * lr)
    if name == "cosine":
        return CosineAnnealingLR(lr, T_max=STEPS, interval="step")
    if name == "cosine-restarts":
        return CosineAnnealingWarmRestarts(lr, T_0=50, interval="step")
    if name == "exponential":
        return ExponentialLR(lr, gamma=0.99, interval="step")
    raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {name!r}")


def make_optimizer(name: str, params: list, lr: float):
    """Adam or SGD with momentum 0.9 over ``params``."""
    from refimpl.optim import SGD, Adam

    if name == "adam":
        return Adam(params, lr=lr)
    if name == "sgd-momentum":
        return SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def noise_plan(noise: str, seed: int) -> dict[str, np.ndarray]:
    """All random draws of one run, made up front so every scheduler sees the same ones."""
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    rng = np.random.default_rng([seed, NOISES.index(noise)])
    plan = {"xi": np.zeros(STEPS), "spike": np.zeros(STEPS, dtype=bool),
            "adversarial": noise == "adversarial"}
    if noise == "gaussian":
        plan["xi"] = rng.standard_normal(STEPS)
    elif noise == "periodic":
        period = int(rng.integers(50, 101))
        plan["spike"][period - 1::period] = True
    elif noise == "spike":
        plan["spike"] = rng.random(STEPS) < 0.02
    return plan


class LossNoise:
    """The observed loss: the true loss plus one run's noise (added to the loss only)."""

    def __init__(self, noise: str, seed: int):
        self.plan = noise_plan(noise, seed)
        self.true: list[float] = []
        self.observed: list[float] = []

    def observe(self, loss: float) -> float:
        """Record the true loss of the next step and return what the scheduler sees."""
        t = len(self.true)
        if not self.true:
            self.spike = 2.0 * abs(loss)
        self.true.append(loss)
        seen = loss * (1.0 + 0.05 * self.plan["xi"][t])
        if self.plan["spike"][t]:
            seen += self.spike
        if self.plan["adversarial"] and t >= 5:
            seen += 2.0 * max(0.0, self.true[t - 5] - loss)
        self.observed.append(seen)
        return seen


class NoisyLossScheduler:
    """A per-step scheduler as the Trainer sees it, whose loss signal passes through
    :class:`LossNoise` first; schedulers without a loss signal are stepped plainly."""

    interval = "step"
    signal = "loss"

    def __init__(self, inner, noise: LossNoise):
        self.inner, self.noise = inner, noise

    @property
    def lrs(self):
        return self.inner.lrs

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def step(self, loss: float) -> None:
        seen = self.noise.observe(float(loss))
        if isinstance(self.inner, GreedyLR):
            self.inner.step(seen)
        else:
            self.inner.step()


def run_one(fn: TestFunction, scheduler: str, noise: str, seed: int,
            optimizer: str = "adam") -> dict[str, np.ndarray]:
    """One 200-step run on a 2-D function; the true and observed losses and the rates."""
    x = np.random.default_rng([seed, FUNCTIONS.index(fn)]).uniform(fn.low, fn.high)
    lr = fn.lr[optimizer]
    sched = make_scheduler(scheduler, lr)
    opt = make_optimizer(optimizer, [x], lr)
    observe = LossNoise(noise, seed)
    lrs = []
    for _ in range(STEPS):
        loss = fn.f(x)
        if not loss < DIVERGED:  # also catches NaN
            break
        lrs.append(opt.lr)
        seen = observe.observe(loss)
        opt.step([fn.grad(x)])
        opt.lr = sched.step(seen) if isinstance(sched, GreedyLR) else sched.step()
    true = np.full(STEPS, np.inf)
    observed = np.full(STEPS, np.inf)
    true[:len(observe.true)], observed[:len(observe.observed)] = observe.true, observe.observed
    return {"true": true, "observed": observed, "lr": np.asarray(lrs)}


def run_network(net: str, scheduler: str, noise: str, seed: int, optimizer: str,
                train) -> dict:
    """200 steps (batch 32) of a network on ``train``; true and observed batch losses."""
    from refimpl.model import build
    from refimpl.train import NonFiniteLossError, Trainer

    spec, shape = NETWORKS[net]
    X = train[0].reshape(len(train[0]), *shape)
    model = build(spec, shape, seed=seed, backend="numba")
    lr = NET_LR[optimizer]
    noise_ = LossNoise(noise, seed)
    trainer = Trainer(model, make_optimizer(optimizer, model.parameters(), lr),
                      NoisyLossScheduler(make_scheduler(scheduler, lr), noise_),
                      batch_size=32, seed=seed, progress=False)
    # the fewest epochs (a divisor of 200) whose full batches fit the images: 200 steps exactly
    epochs = min(e for e in range(1, STEPS + 1) if STEPS % e == 0 and STEPS // e * 32 <= len(X))
    n = STEPS // epochs * 32
    try:
        history = trainer.fit((X[:n], train[1][:n]), epochs=epochs)
        ok = all(math.isfinite(v) and v < DIVERGED for v in history.loss)
    except NonFiniteLossError:
        ok = False
    true = noise_.true[:STEPS]
    return {"true": true, "observed": noise_.observed[:STEPS], "diverged": not ok}


def final_loss(true) -> float:
    """Mean of the last 10 true losses (inf when the run diverged)."""
    true = np.asarray(true, dtype=np.float64)
    return float(np.mean(true[-10:])) if len(true) == STEPS else math.inf


def recovery(observed, final: float) -> float:
    """max observed loss / final loss (inf for a diverged run or a final loss of 0)."""
    if not np.isfinite(final):
        return math.inf
    return float(np.max(observed) / final) if final > 0 else math.inf


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        results: str | Path | None = None,
        report: bool = False, **overrides) -> StudyResult:
    """Functions and networks x noises x schedulers x seeds, over Adam and SGD-momentum."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    result = StudyResult("greedy-robustness", quick, machine=machine())
    result.scale = (f"{len(FUNCTIONS)} 2-D functions x {cfg['n_seeds']} seeds and networks "
                    f"{list(cfg['networks'])} on {cfg['n_train']} Fashion-MNIST images x "
                    f"{cfg['net_seeds']} seeds; x 5 noise types x 4 schedulers x 2 base "
                    f"optimizers (Adam, SGD momentum 0.9); {STEPS} steps; noise on the loss only")
    result.paper_scale = ("8,100 runs on 12 neural architectures (LeNet ... DenseNet, MLPs) "
                          "plus test functions, 200 steps, GreedyLR given more runs than the "
                          "baselines; noise added to the loss (A.6)")
    problems = [fn.name for fn in FUNCTIONS] + list(cfg["networks"])
    runs: dict[tuple, tuple[float, float]] = {}
    with Timer() as timer:
        for opt in OPTIMIZERS:
            for fn in FUNCTIONS:
                for noise in NOISES:
                    for sched in SCHEDULERS:
                        for s in range(cfg["n_seeds"]):
                            trace = run_one(fn, sched, noise, seed + s, opt)
                            final = final_loss(trace["true"][np.isfinite(trace["true"])])
                            runs[opt, fn.name, noise, sched, s] = (
                                final, recovery(trace["observed"], final))
            count = len(FUNCTIONS) * len(NOISES) * len(SCHEDULERS) * cfg["n_seeds"]
            progress("greedy-robustness", f"{opt}: {count} test-function runs done")
        if cfg["networks"]:
            from refimpl.data import load_fashion_mnist
            from refimpl.experiments.common import data_source
            train = load_fashion_mnist("train", source=data_source(quick),
                                       subset=cfg["n_train"], seed=seed, flatten=True)
            records = records_for("greedy-robustness", quick, out, results, report,
                                 total=len(OPTIMIZERS) * len(cfg["networks"]) * len(NOISES)
                                 * len(SCHEDULERS) * cfg["net_seeds"])
            for opt in OPTIMIZERS:
                for net in cfg["networks"]:
                    for noise in NOISES:
                        for sched in SCHEDULERS:
                            for s in range(cfg["net_seeds"]):
                                settings = {"net": net, "opt": opt, "noise": noise,
                                            "sched": sched, "seed": seed + s,
                                            "n_train": cfg["n_train"]}
                                rec = records.get_or_run(settings, partial(
                                    run_network, net, sched, noise, seed + s, opt, train))
                                final = math.inf if rec["diverged"] else final_loss(rec["true"])
                                runs[opt, net, noise, sched, s] = (
                                    final, recovery(rec["observed"], final))
    result.wall_time = timer.seconds
    _tables(result, runs, problems)
    result.data = {"runs": {"|".join(map(str, k)): v for k, v in runs.items()},
                   "problems": problems}
    _figure(runs, problems, out, result.figures)
    return result


def _select(runs, **fixed) -> np.ndarray:
    names = ("opt", "problem", "noise", "sched", "seed")
    keep = [v for k, v in runs.items()
            if all(k[names.index(n)] in (want if isinstance(want, (list, tuple)) else (want,))
                   for n, want in fixed.items())]
    return np.asarray(keep, dtype=np.float64).reshape(-1, 2)


def _tables(result, runs, problems) -> None:
    med = lambda a: float(np.median(a)) if len(a) else float("nan")
    nets = [p for p in problems if p in NETWORKS]
    funcs = [fn.name for fn in FUNCTIONS]
    rows = []
    for opt in OPTIMIZERS:
        for sched in SCHEDULERS:
            every = _select(runs, opt=opt, sched=sched)
            rows.append([opt, sched, med(every[:, 0]),
                         med(_select(runs, opt=opt, sched=sched, problem=nets)[:, 0]),
                         med(_select(runs, opt=opt, sched=sched,
                                     problem=("quadratic", "rosenbrock") + tuple(nets))[:, 0]),
                         PAPER_FINAL[sched], med(every[:, 1]), PAPER_RECOVERY[sched],
                         int(np.sum(~np.isfinite(every[:, 0]))), len(every)])
    result.tables.append(Table(
        "Pooled median final loss per base optimizer and scheduler (paper: GreedyLR lowest, "
        "0.148 vs 0.232 / 0.226 / 0.249)",
        ["optimizer", "scheduler", "median (all)", "median (networks)",
         "median (without Rastrigin, Ackley)", "paper median", "median recovery",
         "paper recovery", "diverged", "runs"], rows))
    rows = []
    for opt in OPTIMIZERS:
        for problem in problems:
            rows.append([opt, problem, *(med(_select(runs, opt=opt, problem=problem,
                                                     sched=sched)[:, 0]) for sched in SCHEDULERS)])
    result.tables.append(Table("Median final loss per problem (all noise types)",
                               ["optimizer", "problem", *SCHEDULERS], rows))
    rows = []
    for opt in OPTIMIZERS:
        for noise in NOISES:
            rows.append([opt, noise, *(med(_select(runs, opt=opt, noise=noise,
                                                   sched=sched)[:, 0]) for sched in SCHEDULERS)])
    result.tables.append(Table("Median final loss per noise type (all problems)",
                               ["optimizer", "noise", *SCHEDULERS], rows))
    rows = []
    for opt in OPTIMIZERS:
        for group, members in (("functions", funcs), ("networks", nets)):
            if not members:
                continue
            for baseline in SCHEDULERS[1:]:
                g, b = [], []
                for (o, p, n, sch, s), (final, _) in runs.items():
                    if o == opt and p in members and sch == "greedy":
                        g.append(final)
                        b.append(runs[o, p, n, baseline, s][0])
                g, b = np.asarray(g), np.asarray(b)
                tie = (g == b) | np.isclose(g, b, rtol=1e-9, atol=0.0)
                rows.append([opt, group, baseline, float(np.mean(~tie & (g < b))),
                             float(np.mean(tie)), float(np.mean(~tie & (g > b))), len(g)])
    result.tables.append(Table(
        "Paired comparison per (problem, noise, seed) cell: share where GreedyLR's final loss "
        "is lower / equal (rel. 1e-9) / higher", ["optimizer", "problems", "baseline", "lower",
                                                  "equal", "higher", "cells"], rows))


def _figure(runs, problems, out, figures) -> None:
    """Per problem, each scheduler's median final loss over the best scheduler's (1 = best)."""
    fig, axes = new_figure(len(OPTIMIZERS), width=5.5)
    for ax, opt in zip(axes, OPTIMIZERS):
        med = np.array([[np.median(_select(runs, opt=opt, problem=p, sched=s)[:, 0])
                         for p in problems] for s in SCHEDULERS])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = med / med.min(axis=0)
        image = ax.imshow(np.log10(ratio), cmap="viridis", aspect="auto", vmin=0)
        for (i, j), value in np.ndenumerate(ratio):
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(len(problems)), problems, rotation=30)
        ax.set_yticks(range(len(SCHEDULERS)), SCHEDULERS)
        ax.set_title(f"{opt}: median final loss / best median")
        fig.colorbar(image, ax=ax, label="log10 ratio")
    save_figure(fig, out, "results_greedy_robustness", figures)
