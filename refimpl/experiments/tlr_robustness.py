"""TLR's robustness to the initial learning rate (TLR paper; docs/methods.md §5).

The paper trains the 784-1000-10 MLP on Fashion-MNIST from initial rates ``1e-4 ... 1`` and
batch sizes 32, 128, 512, and reports mean +- std of the final loss for a fixed rate, the
additive and multiplicative hypergradient rules and TLR, over SGD and Adam. Claim: TLR's
final loss hardly depends on the initial rate.

Here (scaled down): a stratified subset of the images, a few epochs, one seed per cell.
"mean +- std" is over the initial rates of a (method, batch) cell, which is the quantity
the claim is about: a small std means the result does not depend on the initial rate.
Hypergradient rules use ``hyper_lr = 1e-3`` (inside the paper's search range 1e-1...1e-5).
A run whose loss turns NaN/inf is scored with the loss of a uniform guess, ``ln 10``, and
counted as diverged (its std contribution is then real, not hidden).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from refimpl.data import load_fashion_mnist
from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.experiments.common import data_source as _source
from refimpl.model import get_model
from refimpl.optim import SGD, Adam
from refimpl.schedulers.newton import (
    HypergradientAdditiveLR,
    HypergradientMultiplicativeLR,
    NewtonLR,
)
from refimpl.train import NonFiniteLossError, Trainer

RULES = ("fixed", "hyper-add", "hyper-mul", "tlr")
FULL = {"n_train": 2000, "epochs": 8, "lrs": (1e-4, 1e-3, 1e-2, 1e-1, 1.0), "batches": (32, 128, 512),
            "optimizers": ("sgd", "adam")}
QUICK = {
    "n_train": 600, "epochs": 6, "lrs": (1e-4, 1e-1), "batches": (32,), "optimizers": ("sgd",),
    "rules": ("fixed", "tlr"),
}
UNIFORM_LOSS = math.log(10.0)


def _scheduler(rule: str, lr: float):
    if rule == "hyper-add":
        return HypergradientAdditiveLR(lr, hyper_lr=1e-3, backend="numba")
    if rule == "hyper-mul":
        return HypergradientMultiplicativeLR(lr, hyper_lr=1e-3, backend="numba")
    if rule == "tlr":
        return NewtonLR(lr, backend="numba")
    return None


def train_one(rule, optimizer, lr, batch, seed, train, cfg, backend) -> tuple[float, bool]:
    """Final training loss (last epoch's mean) and whether the run diverged."""
    model = get_model("mlp", seed=seed, backend=backend)
    opt = (SGD if optimizer == "sgd" else Adam)(model.parameters(), lr=lr)
    trainer = Trainer(model, opt, _scheduler(rule, lr), batch_size=batch, seed=seed,
                      progress=False)
    try:
        history = trainer.fit(train, epochs=cfg["epochs"])
    except NonFiniteLossError:
        return UNIFORM_LOSS, True
    final = history.train_loss[-1]
    return (final, False) if math.isfinite(final) else (UNIFORM_LOSS, True)


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        backend: str = "numba", **overrides) -> StudyResult:
    """Grid over rule x optimizer x batch x initial lr; mean +- std over the initial lrs."""
    cfg = {"rules": RULES, **(QUICK if quick else FULL), **overrides}
    train = load_fashion_mnist("train", source=_source(quick), subset=cfg["n_train"], seed=seed, flatten=True)
    result = StudyResult("tlr-robustness", quick, machine=machine())
    result.scale = (f"MLP 784-1000-10, {cfg['n_train']} Fashion-MNIST images, {cfg['epochs']} "
                    f"epochs, initial lr {list(cfg['lrs'])}, batch {list(cfg['batches'])}, "
                    f"one seed ({seed}), float32, backend {backend}")
    result.paper_scale = ("60,000 images, full training (epochs not in the extracted text), "
                          "initial lr 1e-4...1, batch 32/128/512, several seeds")
    finals: dict[tuple, list[float]] = {}
    diverged: dict[tuple, int] = {}
    with Timer() as timer:
        for optimizer in cfg["optimizers"]:
            for rule in cfg["rules"]:
                for batch in cfg["batches"]:
                    key = (optimizer, rule, batch)
                    finals[key], diverged[key] = [], 0
                    for lr in cfg["lrs"]:
                        loss, bad = train_one(rule, optimizer, lr, batch, seed, train, cfg,
                                              backend)
                        finals[key].append(loss)
                        diverged[key] += bad
    result.wall_time = timer.seconds
    rows = []
    for (optimizer, rule, batch), values in finals.items():
        v = np.asarray(values)
        rows.append([f"{optimizer}+{rule}", batch, float(v.mean()), float(v.std()),
                     float(v.min()), float(v.max()), diverged[(optimizer, rule, batch)]])
    result.tables.append(Table(
        "Final training loss over the initial rates: mean, std, min, max "
        "(paper: TLR's std across initial rates is small, the others' large)",
        ["method", "batch", "mean", "std", "min", "max", "diverged"], rows))
    per_lr = [[f"{o}+{r}", b, *finals[(o, r, b)]] for (o, r, b) in finals]
    result.tables.append(Table("Final training loss per initial rate",
                               ["method", "batch", *(f"lr {lr:g}" for lr in cfg["lrs"])],
                               per_lr))
    result.data = {"lrs": list(cfg["lrs"]),
                   "finals": {f"{o}|{r}|{b}": v for (o, r, b), v in finals.items()}}
    _figure(cfg, finals, out, result.figures)
    return result


def _figure(cfg, finals, out, figures) -> None:
    fig, axes = new_figure(len(cfg["optimizers"]))
    for ax, optimizer in zip(axes, cfg["optimizers"]):
        for rule in cfg["rules"]:
            batch = cfg["batches"][len(cfg["batches"]) // 2]
            ax.loglog(cfg["lrs"], finals[(optimizer, rule, batch)], marker="o", label=rule)
        ax.set_title(f"{optimizer}, batch {batch}")
        ax.set_xlabel("initial lr")
        ax.set_ylabel("final train loss")
        ax.legend()
    save_figure(fig, out, "results_tlr_robustness", figures)
