"""LRPO vs a traditional fixed-rate run on Fashion-MNIST (LRPO paper; docs/methods.md §7).

Traditional: SGD at ``lr0 = 0.05`` for ``E_trad`` epochs. LRPO: the four phases of
:func:`refimpl.experiments.lrpo.run_lrpo` (``E1 = 10`` pretrain at 0.05, predictor fit,
``E3 = 1`` jump at ``0.05 alpha``, ``E4 = 5`` fine-tune at 0.001). Both train ``lrpo_cnn``
(245,290 parameters) from the same seed on the same images, batch 64, validating every epoch.

Interpretation: the paper's 20,000 / 4,000 split is drawn from the training set; we draw the
training images (stratified) from the training split and the validation images from the
test split, so the two are disjoint by construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refimpl.data import load_fashion_mnist
from refimpl.experiments._records import progress
from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.experiments.common import data_source as _source
from refimpl.experiments.lrpo import run_lrpo
from refimpl.model import get_model
from refimpl.optim import SGD
from refimpl.train import Trainer

#: the paper's table; its accuracy row is the *best* validation accuracy of each run
PAPER = {"time": (477.15, 76.30), "epochs": (100, 16), "val_acc": (0.8845, 0.8645),
         "val_loss": (0.5215, 0.3791), "fit_time": 0.12, "alpha": 1.09}
FULL = {"n_train": 2000, "n_val": 500, "trad_epochs": 30, "pretrain": 10, "jump": 1, "finetune": 5}
QUICK = {"n_train": 128, "n_val": 256, "trad_epochs": 8, "pretrain": 3, "jump": 1, "finetune": 1}


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        backend: str = "numba", results: str | Path | None = None,
        report: bool = False, **overrides) -> StudyResult:
    """Run both trainings; return the comparison table (paper beside ours)."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    train = load_fashion_mnist("train", source=_source(quick), subset=cfg["n_train"], seed=seed)
    val = load_fashion_mnist("test", source=_source(quick), subset=cfg["n_val"], seed=seed)
    result = StudyResult("lrpo", quick, machine=machine())
    result.scale = (f"{cfg['n_train']} train / {cfg['n_val']} val images, traditional "
                    f"{cfg['trad_epochs']} epochs, LRPO {cfg['pretrain']}+{cfg['jump']}+"
                    f"{cfg['finetune']} epochs, batch 64, float32, backend {backend}, seed {seed}")
    result.paper_scale = ("20,000 train / 4,000 val, traditional 100 epochs, LRPO 10+1+5 "
                          "epochs (GPU not stated)")
    # Warm-up: load/compile the kernels before anything is timed, so neither run pays for it.
    warm = get_model("lrpo_cnn", seed=seed, backend=backend)
    Trainer(warm, SGD(warm.parameters(), lr=0.05), batch_size=64, progress=False).fit(
        (train[0][:64], train[1][:64]), epochs=1)
    with Timer() as total:
        model = get_model("lrpo_cnn", seed=seed, backend=backend)
        trainer = Trainer(model, SGD(model.parameters(), lr=0.05), batch_size=64, seed=seed,
                          progress=False)
        with Timer() as trad_time:
            trad = trainer.fit(train, val, epochs=cfg["trad_epochs"])
        progress("lrpo", f"run 1/2 (traditional, {cfg['trad_epochs']} epochs) done in "
                         f"{trad_time.seconds:.1f} s")
        model = get_model("lrpo_cnn", seed=seed, backend=backend)
        lrpo = run_lrpo(model, train, val, lr=0.05, pretrain_epochs=cfg["pretrain"],
                        jump_epochs=cfg["jump"], finetune_epochs=cfg["finetune"],
                        finetune_lr=0.001, batch_size=64, seed=seed, progress=False)
        progress("lrpo", f"run 2/2 (LRPO, {lrpo.total_epochs} epochs) done in "
                         f"{lrpo.total_time:.1f} s")
    result.wall_time = total.seconds
    hist = lrpo.history
    # First epoch at which the traditional run reaches LRPO's final validation accuracy.
    reached = np.flatnonzero(np.asarray(trad.val_acc) >= hist.val_acc[-1])
    catch_up = int(reached[0]) + 1 if reached.size else None
    result.tables.append(Table(
        "LRPO vs traditional (paper's value in brackets)",
        ["metric", "traditional", "LRPO", "paper traditional", "paper LRPO"],
        [
            ["total time (s)", trad_time.seconds, lrpo.total_time, *PAPER["time"]],
            ["epochs", trad.n_epochs, lrpo.total_epochs, *PAPER["epochs"]],
            ["best val acc", max(trad.val_acc), max(hist.val_acc), *PAPER["val_acc"]],
            ["final val acc", trad.val_acc[-1], hist.val_acc[-1], "n/a", "n/a"],
            ["final val loss", trad.val_loss[-1], hist.val_loss[-1], *PAPER["val_loss"]],
            ["min val loss", min(trad.val_loss), min(hist.val_loss), "n/a", "n/a"],
            ["predictor fit (s)", "-", lrpo.fit_time, "-", PAPER["fit_time"]],
            ["alpha (r, c)", "-", f"{lrpo.alpha:.4f} ({lrpo.r:.4f}, {lrpo.c:.4f})", "-",
             PAPER["alpha"]],
            ["trad. epochs to LRPO's val acc", catch_up if catch_up else "never", "-", "-", "-"],
        ],
    ))
    result.tables.append(Table(
        "LRPO phases", ["phase", "epochs", "lr", "seconds"],
        [[p.name, p.epochs, p.lr, p.seconds] for p in lrpo.phases]))
    result.data = {"traditional": trad.to_dict(), "lrpo": lrpo.to_dict()}
    _figure(trad, hist, cfg, out, result.figures)
    return result


def _figure(trad, hist, cfg, out, figures) -> None:
    fig, (ax_loss, ax_acc) = new_figure(2)
    epochs_t = np.arange(1, trad.n_epochs + 1)
    epochs_l = np.arange(1, hist.n_epochs + 1)
    for ax, key, label in ((ax_loss, "val_loss", "validation loss"),
                           (ax_acc, "val_acc", "validation accuracy")):
        ax.plot(epochs_t, getattr(trad, key), label="traditional (SGD 0.05)")
        ax.plot(epochs_l, getattr(hist, key), label="LRPO", marker=".")
        ax.axvline(cfg["pretrain"] + 0.5, color="grey", lw=0.5, ls="--")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    ax_loss.set_title(f"LRPO, {cfg['n_train']} train images")
    save_figure(fig, out, "results_lrpo", figures)
