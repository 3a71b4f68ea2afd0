"""TLR's robustness to the initial learning rate (TLR paper; docs/methods.md §5).

The paper (its hyper-parameter exploration): MNIST with an MLP of one hidden layer of
1,000 units, 20 epochs, initial rates ``1e-1 ... 1e-5``, batch sizes 64-512, ``p = 0.20``,
``gamma = 0.33``; at batch 128 plain SGD ends at ``0.661 +- 0.774`` training loss across the
initial rates and TLR at ``0.095 +- 0.054``. A run from ``1e-9`` shows the rate adapting.
The authors' public code trains that MLP with SGD (momentum 0.8, weight decay 5e-4) and
dropout 0.5 after the hidden layer, and reports the mean training loss of the last
logging interval; TLR wraps that SGD.

Here: the same model (our ``mlp`` plus :class:`refimpl.layers.Dropout` ``p = 0.5``), SGD
momentum 0.8, weight decay 5e-4, TLR ``gamma = 0.33``, ``p = 0.2``; the 60,000 training images of
**Fashion-MNIST** stand in for MNIST's (this machine has no MNIST); final loss = the last
epoch's mean training loss (dropout active, as the authors' log). "mean +- std" is over the
initial rates of a (method, batch) cell, the quantity the claim is about. A run whose loss
turns NaN/inf is scored ``ln 10`` (a uniform guess) and counted as diverged. Each finished
run is appended to ``OUT/tlr-robustness-runs.jsonl``; a re-run skips it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from refimpl.data import load_fashion_mnist
from refimpl.experiments._records import records_for
from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.experiments.common import data_source as _source
from refimpl.layers import Dropout
from refimpl.model import Sequential, get_model
from refimpl.optim import SGD
from refimpl.schedulers.newton import NewtonLR
from refimpl.train import NonFiniteLossError, Trainer

RULES = ("fixed", "tlr")
#: the full 60,000 images keep TLR's update period K = round(0.2 x 469) = 94 steps at batch
#: 128, the paper's; epochs are cut from 20 to 10 (~50 rate updates instead of ~100) for the CPU
FULL = {"n_train": 60000, "epochs": 10, "lrs": (1e-1, 1e-2, 1e-3, 1e-4, 1e-5),
        "batches": (128,), "adapt_lr": 1e-9}
QUICK = {"n_train": 600, "epochs": 6, "lrs": (1e-1, 1e-4), "batches": (32,), "adapt_lr": None}
PAPER = {"fixed": "0.661 +- 0.774", "tlr": "0.095 +- 0.054"}  # batch 128, MNIST, 20 epochs
UNIFORM_LOSS = math.log(10.0)


def build_model(seed: int, backend: str) -> Sequential:
    """The 784-1000-10 relu MLP with dropout 0.5 after the hidden layer."""
    layers = get_model("mlp", seed=seed, backend=backend).layers  # flatten, dense, relu, dense
    return Sequential([*layers[:3], Dropout(0.5, seed=seed), *layers[3:]], backend=backend)


def train_one(rule: str, lr: float, batch: int, seed: int, train, epochs: int,
              backend: str) -> dict:
    """One run: per-epoch training loss and rate, whether it diverged."""
    model = build_model(seed, backend)
    opt = SGD(model.parameters(), lr=lr, momentum=0.8, weight_decay=5e-4)
    scheduler = NewtonLR(lr, gamma=0.33, p=0.2, backend=backend) if rule == "tlr" else None
    trainer = Trainer(model, opt, scheduler, batch_size=batch, seed=seed, progress=False)
    try:
        history = trainer.fit(train, epochs=epochs)
    except NonFiniteLossError:
        return {"loss": [], "lr": [], "diverged": True}
    loss = list(history.train_loss)
    return {"loss": loss, "lr": list(history.to_dict()["lr_epoch"]),
            "diverged": not all(math.isfinite(v) for v in loss)}


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        backend: str = "numba", results: str | Path | None = None,
        report: bool = False, **overrides) -> StudyResult:
    """Fixed rate vs TLR over SGD, per batch size and initial lr; mean +- std over the lrs."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    subset = None if cfg["n_train"] >= 60000 else cfg["n_train"]
    train = load_fashion_mnist("train", source=_source(quick), subset=subset, seed=seed,
                               flatten=True)
    result = StudyResult("tlr-robustness", quick, machine=machine())
    result.scale = (f"MLP 784-1000-10 + dropout 0.5, SGD momentum 0.8, weight decay 5e-4, "
                    f"{cfg['n_train']} Fashion-MNIST images, {cfg['epochs']} epochs, initial "
                    f"lr {list(cfg['lrs'])}, batch {list(cfg['batches'])}, seed {seed}, "
                    f"float32, backend {backend}")
    result.paper_scale = ("MNIST 60,000 images, 20 epochs, initial lr 1e-1 ... 1e-5, batch "
                          "64/128/256/512, p = 0.20, gamma = 0.33 (and a 1e-9 start)")
    records = records_for("tlr-robustness", quick, out, results, report,
                         total=len(cfg["batches"]) * len(RULES) * len(cfg["lrs"])
                         + bool(cfg["adapt_lr"]))
    runs: dict[tuple, dict] = {}

    def one(rule, lr, batch):
        settings = {"rule": rule, "lr": lr, "batch": batch, "seed": seed,
                    "n_train": cfg["n_train"], "epochs": cfg["epochs"]}
        return records.get_or_run(settings, lambda: train_one(
            rule, lr, batch, seed, train, cfg["epochs"], backend))

    with Timer() as timer:
        for batch in cfg["batches"]:
            for rule in RULES:
                for lr in cfg["lrs"]:
                    runs[rule, batch, lr] = one(rule, lr, batch)
        if cfg["adapt_lr"]:
            runs["tlr", cfg["batches"][0], cfg["adapt_lr"]] = one("tlr", cfg["adapt_lr"],
                                                                  cfg["batches"][0])
    result.wall_time = timer.seconds
    final = {k: (UNIFORM_LOSS if r["diverged"] else r["loss"][-1]) for k, r in runs.items()}
    rows = []
    for batch in cfg["batches"]:
        for rule in RULES:
            v = np.asarray([final[rule, batch, lr] for lr in cfg["lrs"]])
            rows.append([f"sgd+{rule}", batch, float(v.mean()), float(v.std()), float(v.min()),
                         float(v.max()), sum(runs[rule, batch, lr]["diverged"]
                                             for lr in cfg["lrs"]),
                         PAPER[rule] if batch == 128 else "n/a"])
    result.tables.append(Table(
        "Final training loss over the initial rates: mean, std, min, max (paper, MNIST, "
        "batch 128: SGD 0.661 +- 0.774, TLR 0.095 +- 0.054)",
        ["method", "batch", "mean", "std", "min", "max", "diverged", "paper mean +- std"],
        rows))
    result.tables.append(Table(
        "Final training loss per initial rate", ["method", "batch",
                                                 *(f"lr {lr:g}" for lr in cfg["lrs"])],
        [[f"sgd+{rule}", batch, *(final[rule, batch, lr] for lr in cfg["lrs"])]
         for batch in cfg["batches"] for rule in RULES]))
    if cfg["adapt_lr"]:
        rec = runs["tlr", cfg["batches"][0], cfg["adapt_lr"]]
        result.tables.append(Table(
            f"Adaptation from lr {cfg['adapt_lr']:g} (TLR, batch {cfg['batches'][0]})",
            ["epoch", "train loss", "lr after the epoch"],
            [[e + 1, rec["loss"][e], rec["lr"][e]] for e in range(len(rec["loss"]))
             if e in (0, 1, 2, 4, 9) or e == len(rec["loss"]) - 1]))
    result.data = {"lrs": list(cfg["lrs"]),
                   "runs": {f"{r}|{b}|{lr:g}": v for (r, b, lr), v in runs.items()}}
    _figure(cfg, runs, out, result.figures)
    return result


def _figure(cfg, runs, out, figures) -> None:
    batch = cfg["batches"][0]
    fig, (ax_loss, ax_lr) = new_figure(2)
    for (rule, b, lr), rec in runs.items():
        if b != batch or rec["diverged"]:
            continue
        style = "-" if rule == "tlr" else "--"
        ax_loss.semilogy(range(1, len(rec["loss"]) + 1), rec["loss"], style,
                         label=f"{rule} {lr:g}")
        if rule == "tlr":
            ax_lr.semilogy(range(1, len(rec["lr"]) + 1), rec["lr"], label=f"from {lr:g}")
    ax_loss.set_title(f"SGD, batch {batch}: fixed (--) vs TLR (-)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss")
    ax_loss.legend(fontsize=6, ncol=2)
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("TLR rate")
    ax_lr.legend(fontsize=6)
    save_figure(fig, out, "results_tlr_robustness", figures)
