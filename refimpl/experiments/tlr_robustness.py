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
run is appended to ``results/tlr-robustness.jsonl`` (:mod:`refimpl.experiments._records`); a
re-run skips it, and ``--report`` trains nothing and loads no images: the tables hold the
finished runs and state ``n`` where some are missing.

Cost (NUMBA_NUM_THREADS=1, shared 2-core x86_64 at load 1.1): 240 steps at batch 128 took
1.2-1.7 s (5.0-7.1 ms a step, fixed and TLR alike), so a full run of 4,690 steps (10 epochs
of 469) is about 25-35 s, two to three times that on a machine loaded by other jobs. The
full study is 11 runs (5 initial rates x 2 rules, and the start from 1e-9): about 6 minutes
quiet, 0.1-0.3 CPU-hours loaded.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from refimpl.data import load_fashion_mnist
from refimpl.experiments._records import cell, records_for
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
    """Fixed rate vs TLR over SGD, per batch size and initial lr; mean +- std over the lrs.

    ``results``: the directory of ``tlr-robustness.jsonl``; ``report``: train nothing, build
    the tables from the runs in it."""
    cfg = {**(QUICK if quick else FULL), **overrides}
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
    data = {}

    def images():  # loaded once, on the first run that trains
        if not data:
            subset = None if cfg["n_train"] >= 60000 else cfg["n_train"]
            data["train"] = load_fashion_mnist("train", source=_source(quick), subset=subset,
                                               seed=seed, flatten=True)
        return data["train"]

    runs: dict[tuple, dict] = {}

    def one(rule, lr, batch):
        settings = {"rule": rule, "lr": lr, "batch": batch, "seed": seed,
                    "n_train": cfg["n_train"], "epochs": cfg["epochs"]}
        record = records.get_or_run(settings, lambda: train_one(
            rule, lr, batch, seed, images(), cfg["epochs"], backend))
        if record is not None:
            runs[rule, batch, lr] = record

    with Timer() as timer:
        for batch in cfg["batches"]:
            for rule in RULES:
                for lr in cfg["lrs"]:
                    one(rule, lr, batch)
        if cfg["adapt_lr"]:
            one("tlr", cfg["adapt_lr"], cfg["batches"][0])
    result.wall_time = timer.seconds
    result.records = records.summary()
    if records.missing:
        result.notes.append(f"{records.missing} of {records.total} runs have not finished; "
                            "their cells give n")
    _tables(result, cfg, runs)
    result.data = {"lrs": list(cfg["lrs"]),
                   "runs": {f"{r}|{b}|{lr:g}": v for (r, b, lr), v in runs.items()}}
    _figure(cfg, runs, out, result.figures)
    return result


def final_loss(record: dict) -> float:
    """The last epoch's training loss; ``ln 10`` for a diverged run."""
    return UNIFORM_LOSS if record["diverged"] else record["loss"][-1]


def _tables(result: StudyResult, cfg: dict, runs: dict) -> None:
    lrs, rows = cfg["lrs"], []
    for batch in cfg["batches"]:
        for rule in RULES:
            done = [runs[rule, batch, lr] for lr in lrs if (rule, batch, lr) in runs]
            v = np.asarray([final_loss(r) for r in done])
            mean, std, low, high = ([float(f(v)) for f in (np.mean, np.std, np.min, np.max)]
                                    if len(v) else [math.nan] * 4)
            rows.append([f"sgd+{rule}", batch, cell(v, len(lrs), f"{mean:.4g}"), std, low,
                         high, cell(v, len(lrs), str(sum(r["diverged"] for r in done))),
                         PAPER[rule] if batch == 128 else "n/a"])
    result.tables.append(Table(
        "Final training loss over the initial rates: mean, std, min, max (paper, MNIST, "
        "batch 128: SGD 0.661 +- 0.774, TLR 0.095 +- 0.054)",
        ["method", "batch", "mean", "std", "min", "max", "diverged", "paper mean +- std"],
        rows))
    result.tables.append(Table(
        "Final training loss per initial rate", ["method", "batch",
                                                 *(f"lr {lr:g}" for lr in lrs)],
        [[f"sgd+{rule}", batch, *(final_loss(runs[rule, batch, lr])
                                  if (rule, batch, lr) in runs else "not run yet"
                                  for lr in lrs)]
         for batch in cfg["batches"] for rule in RULES]))
    key = ("tlr", cfg["batches"][0], cfg["adapt_lr"])
    if cfg["adapt_lr"]:
        rec = runs.get(key, {"loss": []})
        title = f"Adaptation from lr {cfg['adapt_lr']:g} (TLR, batch {cfg['batches'][0]})"
        result.tables.append(Table(
            title if key in runs else title + ": not run yet",
            ["epoch", "train loss", "lr after the epoch"],
            [[e + 1, rec["loss"][e], rec["lr"][e]] for e in range(len(rec["loss"]))
             if e in (0, 1, 2, 4, 9) or e == len(rec["loss"]) - 1]))


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
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("TLR rate")
    for ax, columns in ((ax_loss, 2), (ax_lr, 1)):
        if ax.get_legend_handles_labels()[0]:  # no finished run drew a line yet
            ax.legend(fontsize=6, ncol=columns)
    save_figure(fig, out, "results_tlr_robustness", figures)
