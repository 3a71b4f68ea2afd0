"""Adam with and without DLRS, and with Adacomp, over batch sizes (DLRS paper §5.2, §5.6;
docs/methods.md §6).

The paper trains a DLA CNN on MNIST (60,000 images, 10 epochs, Adam lr 0.01) and CIFAR-10
(100 epochs) at batch sizes 64-512, and reports that DLRS's gain over Adam is marginal at
batch 64 and larger at larger batches, and that DLRS beats Adacomp. Neither data set is on
this machine: Fashion-MNIST's full 60,000 training and 10,000 test images stand in for
MNIST, and a small CNN (two 3x3 conv + relu + 2x2 pool blocks of 8 and 16 channels, then a
dense layer) for the DLA network. Adam lr 0.01; DLRS with its defaults
(``delta_d, delta_o, delta_i = 0.5, 1, 0.1``, clip ``[1e-5, 0.1]``). The Adacomp runs
carry the name of :class:`refimpl.schedulers.dlrs.Adacomp`'s rule in their settings
(``Adacomp.rule``), so a changed rule is a new run, never an old record. Runs of a
(batch, seed) start from the same weights and shuffle identically; the table gives the mean
and the spread (max - min) over the seeds, and ``n`` where not every seed has finished.
Each finished run is appended to ``results/dlrs-batch.jsonl``
(:mod:`refimpl.experiments._records`); a re-run skips it, ``--report`` trains nothing.
Adam and DLRS runs go first, seed by seed, the Adacomp runs after them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from refimpl.data import load_fashion_mnist
from refimpl.experiments._records import cell, records_for
from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.experiments.common import data_source as _source
from refimpl.model import build
from refimpl.optim import Adam
from refimpl.plotting import moving_average
from refimpl.schedulers.dlrs import DLRS, Adacomp
from refimpl.train import Trainer

METHODS = ("adam", "adam+dlrs", "adam+adacomp")
CNN = "conv:8x3,relu,pool2,conv:16x3,relu,pool2,flatten,dense:10"
FULL = {"n_train": 60_000, "n_test": 10_000, "epochs": 10, "batch_sizes": (64, 128, 256, 512),
        "seeds": 3}
QUICK = {"n_train": 1_000, "n_test": 500, "epochs": 2, "batch_sizes": (64, 256), "seeds": 2}
PAPER_NOTE = ("paper (MNIST, DLA CNN, 10 epochs): DLRS's gain is marginal at batch 64 and "
              "grows with the batch size; DLRS reaches a higher accuracy than Adacomp")


def _scheduler(method: str, lr: float):
    if method == "adam+dlrs":
        return DLRS(lr)
    if method == "adam+adacomp":
        return Adacomp(lr)
    return None


def train_one(method: str, batch: int, seed: int, train, test, epochs: int,
              backend: str) -> dict:
    """One run: per-step loss, per-epoch train loss, test accuracy and rate."""
    model = build(CNN, (1, 28, 28), seed=seed, backend=backend)
    trainer = Trainer(model, Adam(model.parameters(), lr=0.01), _scheduler(method, 0.01),
                      batch_size=batch, seed=seed, progress=False, eval_batch_size=1000)
    h = trainer.fit(train, test, epochs=epochs)
    return {"loss": h.loss, "train_loss": h.train_loss, "val_acc": h.val_acc,
            "lr": h.to_dict()["lr_epoch"]}


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        backend: str = "numba", results: str | Path | None = None, report: bool = False,
        **overrides) -> StudyResult:
    """Every (batch size, method, seed); mean and spread of final loss and test accuracy.

    ``results``: the directory of ``dlrs-batch.jsonl``; ``report``: train nothing, build
    the tables from the runs in it."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    result = StudyResult("dlrs-batch", quick, machine=machine())
    result.scale = (f"Fashion-MNIST {cfg['n_train']} train / {cfg['n_test']} test images, CNN "
                    f"{CNN}, Adam lr 0.01, {cfg['epochs']} epochs, batch sizes "
                    f"{list(cfg['batch_sizes'])}, seeds {seed}..{seed + cfg['seeds'] - 1}, "
                    f"float32, backend {backend}")
    result.paper_scale = ("MNIST 60,000/10,000 (10 epochs) and CIFAR-10 50,000/10,000 "
                          "(100 epochs), DLA CNN, Adam lr 0.01 / 0.005, batch 64-512")
    records = records_for("dlrs-batch", quick, out, results, report,
                          total=cfg["seeds"] * len(cfg["batch_sizes"]) * len(METHODS))
    seeds = range(seed, seed + cfg["seeds"])
    data = {}

    def images():  # loaded once, on the first run that trains
        if not data:
            sub = lambda n, full: None if n >= full else n
            data["train"] = load_fashion_mnist("train", source=_source(quick),
                                               subset=sub(cfg["n_train"], 60000), seed=seed)
            data["test"] = load_fashion_mnist("test", source=_source(quick),
                                              subset=sub(cfg["n_test"], 10000), seed=seed)
        return data["train"], data["test"]

    def one(method, batch, s):
        return train_one(method, batch, s, *images(), cfg["epochs"], backend)

    runs: dict[tuple, dict] = {}
    with Timer() as timer:
        for methods in (METHODS[:2], METHODS[2:]):
            for s in seeds:
                for batch in cfg["batch_sizes"]:
                    for method in methods:
                        settings = {"method": method, "batch": batch, "seed": s, "cnn": CNN,
                                    **{k: cfg[k] for k in ("n_train", "n_test", "epochs")}}
                        if method == "adam+adacomp":
                            settings["adacomp"] = Adacomp.rule
                        record = records.get_or_run(settings, partial(one, method, batch, s))
                        if record is not None:
                            runs[batch, method, s] = record
    result.wall_time = timer.seconds
    result.records = records.summary()
    if records.missing:
        result.notes.append(f"{records.missing} of {records.total} runs have not finished; "
                            "their cells give n")

    def stat(batch, method, key):
        values = [runs[batch, method, s][key][-1] for s in seeds if (batch, method, s) in runs]
        text = (f"{np.mean(values):.4f} ± {np.max(values) - np.min(values):.4f}"
                if values else "")
        return cell(values, len(seeds), text)

    rows = []
    for batch in cfg["batch_sizes"]:
        row = [batch, *(stat(batch, method, key) for key in ("train_loss", "val_acc")
                        for method in METHODS)]
        lrs = [runs[batch, "adam+dlrs", s]["lr"][-1] for s in seeds
               if (batch, "adam+dlrs", s) in runs]
        row.append(cell(lrs, len(seeds), f"{np.mean(lrs):.4g}" if lrs else ""))
        rows.append(row)
    result.tables.append(Table(
        f"Final train loss and test accuracy after {cfg['epochs']} epochs, mean ± spread over "
        f"{cfg['seeds']} seeds ({PAPER_NOTE})",
        ["batch", *(f"loss {m}" for m in METHODS), *(f"acc {m}" for m in METHODS),
         "DLRS final lr (mean)"], rows))
    result.data = {"runs": {f"{b}|{m}|{s}": r for (b, m, s), r in runs.items()},
                   "final": {f"{b}|{m}": {key: [runs[b, m, s][key][-1] for s in seeds
                                                if (b, m, s) in runs]
                                          for key in ("train_loss", "val_acc")}
                             for b in cfg["batch_sizes"] for m in METHODS}}
    _figure(runs, cfg, seed, out, result.figures)
    return result


def _figure(runs, cfg, seed, out, figures) -> None:
    batches = cfg["batch_sizes"]
    fig, axes = new_figure(len(batches), width=3.6, height=3.0)
    for ax, batch in zip(axes, batches):
        for method in METHODS:
            if (batch, method, seed) not in runs:
                continue
            loss = runs[batch, method, seed]["loss"]
            steps = np.arange(1, len(loss) + 1) * cfg["epochs"] / len(loss)
            ax.semilogy(steps, moving_average(loss, 10), lw=0.8, label=method)
        ax.set_title(f"batch {batch}, seed {seed}")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("train loss (10-step mean)")
    axes[0].legend(fontsize=7)
    save_figure(fig, out, "results_dlrs_batch_loss", figures)
    fig, axes = new_figure(len(batches), width=3.6, height=3.0)
    for ax, batch in zip(axes, batches):
        for method in METHODS:
            acc = np.asarray([runs[batch, method, s]["val_acc"]
                              for s in range(seed, seed + cfg["seeds"])
                              if (batch, method, s) in runs])
            if not len(acc):
                continue
            epochs = np.arange(1, acc.shape[1] + 1)
            ax.errorbar(epochs, acc.mean(axis=0), yerr=[acc.mean(0) - acc.min(0),
                                                        acc.max(0) - acc.mean(0)],
                        marker=".", capsize=3, label=method)
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("test accuracy (mean, min-max)")
    axes[0].legend(fontsize=7)
    save_figure(fig, out, "results_dlrs_batch_acc", figures)
