"""Adam with and without DLRS, and with Adacomp, over batch sizes (DLRS paper §5.2, §5.6;
docs/methods.md §6).

The paper trains a DLA CNN on MNIST (10 epochs) and CIFAR-10 (100 epochs); neither data
set is on this machine, so we use Fashion-MNIST and the 784-1000-10 MLP (``mlp``), which
our CPU can train 120 times in minutes. Adam at lr 0.01 (the paper's MNIST rate) is the
base; DLRS uses its defaults (``delta_d, delta_o, delta_i = 0.5, 1, 0.1``, clip
``[1e-5, 0.1]``), Adacomp our stated interpretation (:class:`refimpl.schedulers.dlrs.Adacomp`).
Every run of a batch size starts from the same weights and shuffles identically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refimpl.data import load_fashion_mnist
from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.experiments.common import data_source as _source
from refimpl.model import get_model
from refimpl.optim import Adam
from refimpl.plotting import moving_average
from refimpl.schedulers.dlrs import DLRS, Adacomp
from refimpl.train import Trainer

METHODS = ("adam", "adam+dlrs", "adam+adacomp")
FULL = {"n_train": 6_000, "n_test": 1_000, "epochs": 10, "batch_sizes": (64, 128, 256, 512)}
QUICK = {"n_train": 1_000, "n_test": 500, "epochs": 3, "batch_sizes": (64, 256)}
PAPER_NOTE = ("paper (MNIST, DLA CNN): DLRS's gain is marginal at batch 64 and grows with "
              "the batch size; DLRS reaches a higher accuracy than Adacomp")


def _scheduler(method: str, lr: float):
    if method == "adam+dlrs":
        return DLRS(lr)
    if method == "adam+adacomp":
        return Adacomp(lr)
    return None


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        backend: str = "numba", **overrides) -> StudyResult:
    """Train every (batch size, method); table of final loss and test accuracy."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    train = load_fashion_mnist("train", source=_source(quick), subset=cfg["n_train"], seed=seed, flatten=True)
    test = load_fashion_mnist("test", source=_source(quick), subset=cfg["n_test"], seed=seed, flatten=True)
    result = StudyResult("dlrs-batch", quick, machine=machine())
    result.scale = (f"Fashion-MNIST {cfg['n_train']} train / {cfg['n_test']} test images, "
                    f"MLP 784-1000-10, Adam lr 0.01, {cfg['epochs']} epochs, batch sizes "
                    f"{list(cfg['batch_sizes'])}, float32, backend {backend}, seed {seed}")
    result.paper_scale = ("MNIST 60,000/10,000 (10 epochs) and CIFAR-10 50,000/10,000 "
                          "(100 epochs), DLA CNN, Adam lr 0.01 / 0.005, batch 64-512")
    histories: dict[int, dict[str, object]] = {}
    rows = []
    with Timer() as timer:
        for batch in cfg["batch_sizes"]:
            histories[batch] = {}
            for method in METHODS:
                model = get_model("mlp", seed=seed, backend=backend)
                trainer = Trainer(model, Adam(model.parameters(), lr=0.01),
                                  _scheduler(method, 0.01), batch_size=batch, seed=seed,
                                  progress=False, eval_batch_size=1000)
                histories[batch][method] = trainer.fit(train, test, epochs=cfg["epochs"])
            h = histories[batch]
            rows.append([batch, *(h[m].train_loss[-1] for m in METHODS),
                         *(h[m].val_acc[-1] for m in METHODS), h["adam+dlrs"].lr[-1]])
    result.wall_time = timer.seconds
    result.tables.append(Table(
        f"Final train loss and test accuracy after {cfg['epochs']} epochs ({PAPER_NOTE})",
        ["batch", *(f"loss {m}" for m in METHODS), *(f"acc {m}" for m in METHODS),
         "DLRS final lr"], rows))
    result.data = {str(b): {m: h.to_dict() for m, h in d.items()} for b, d in histories.items()}
    _figure(histories, out, result.figures)
    return result


def _figure(histories, out, figures) -> None:
    batches = list(histories)
    fig, axes = new_figure(len(batches), width=3.6, height=3.0)
    for ax, batch in zip(axes, batches):
        for method in METHODS:
            h = histories[batch][method]
            steps = np.arange(1, h.n_steps + 1) / (h.n_steps / h.n_epochs)
            ax.semilogy(steps, moving_average(h.loss, 10), lw=0.8, label=method)
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("train loss (10-step mean)")
    axes[0].legend(fontsize=7)
    save_figure(fig, out, "results_dlrs_batch_loss", figures)
    fig, axes = new_figure(len(batches), width=3.6, height=3.0)
    for ax, batch in zip(axes, batches):
        for method in METHODS:
            h = histories[batch][method]
            ax.plot(np.arange(1, h.n_epochs + 1), h.val_acc, marker=".", label=method)
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=7)
    save_figure(fig, out, "results_dlrs_batch_acc", figures)
