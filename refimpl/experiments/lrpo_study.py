"""LRPO vs a traditional fixed-rate run on Fashion-MNIST (LRPO paper; docs/methods.md §7).

Traditional: SGD at ``lr0 = 0.05`` for ``E_trad`` epochs. LRPO: the four phases of
:func:`refimpl.experiments.lrpo.run_lrpo` (``E1 = 10`` pretrain at 0.05, predictor fit,
``E3 = 1`` jump at ``0.05 alpha``, ``E4 = 5`` fine-tune at 0.001). Both train ``lrpo_cnn``
(245,290 parameters), batch 64, validating every epoch. The runs of one seed start from the
same weights and shuffle identically; every run sees the same images.

The full size is the paper's: 20,000 training / 4,000 validation images, the traditional run
100 epochs, LRPO 10+1+5, three seeds of each. A run's best and final accuracy are single
draws from a validation accuracy that swings by points from one epoch to the next, so the
tables give the mean and spread (max - min) over the seeds, and for the traditional run also
the best and the mean of its last 10 epochs and its mean epoch-to-epoch change.

Records (:mod:`refimpl.experiments._records`): each finished (method, seed) run is one line
of ``results/lrpo.jsonl`` with its per-epoch train loss, validation loss and accuracy, rate
and training seconds, its wall seconds (validation included), and for LRPO the predictor's
fit time, ``alpha`` (with ``r``, ``c``) and the phases. The LRPO runs train first (cheap),
then the traditional run seed by seed, so a part of the study already gives a table.
``--report`` trains nothing (no data loaded, no kernels compiled) and states ``n`` per cell.

Cost, measured with ``NUMBA_NUM_THREADS=1`` on a shared 2-core x86_64 machine (other work
running): one training epoch of 2,000 images takes 3.1 s of CPU (3.6 s wall), validating 500
images 0.5 s. Scaled to the full size: ~31 s + ~4 s of validation per epoch, so one
100-epoch traditional run ~1 CPU-hour, one LRPO run ~10 minutes, and the study (3 x 100 +
3 x 16 = 348 epochs) ~3.4 CPU-hours.

Resuming a long run: a traditional run writes a checkpoint after every epoch to
``OUT/checkpoints/lrpo/KEY/last.npz`` (``OUT`` is ``--out``, never ``results/``, which is
committed; ``KEY`` is the first 16 hex digits of the SHA-256 of the run's settings). Started
again with the same ``--out``, a stopped run continues from its last checkpoint, with the same
history as an uninterrupted run (:mod:`refimpl.training.resume`); its wall time sums the
sittings up to that checkpoint. Ctrl-C (SIGINT) or SIGTERM writes a checkpoint before the
run stops. The checkpoint is deleted once the run's record is written; only finished runs
enter the JSONL. LRPO runs (16 epochs) are not checkpointed.

Interpretation: the paper's 20,000 / 4,000 split is drawn from the training set; we draw the
training images (stratified) from the training split and the validation images from the
test split, so the two are disjoint by construction.
"""

from __future__ import annotations

import hashlib
import time
from functools import partial
from pathlib import Path

import numpy as np

from refimpl.checkpoint import CheckpointError, load_checkpoint
from refimpl.data import load_fashion_mnist
from refimpl.experiments._records import cell, progress, records_for
from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.experiments.common import data_source as _source
from refimpl.experiments.lrpo import run_lrpo
from refimpl.model import get_model
from refimpl.optim import SGD
from refimpl.train import Trainer
from refimpl.training.resume import CHECKPOINT_FILES, CHECKPOINT_NAME

#: the methods in the order their runs train: the cheap LRPO runs first
METHODS = ("lrpo", "traditional")
NAMES = {"lrpo": "LRPO", "traditional": "traditional"}
MODEL, LR, FINETUNE_LR, BATCH = "lrpo_cnn", 0.05, 0.001, 64
#: the paper's table; its accuracy row is the *best* validation accuracy of each run
PAPER = {"time": (477.15, 76.30), "epochs": (100, 16), "val_acc": (0.8845, 0.8645),
         "val_loss": (0.5215, 0.3791), "fit_time": 0.12, "alpha": 1.09}
FULL = {"n_train": 20_000, "n_val": 4_000, "trad_epochs": 100, "pretrain": 10, "jump": 1,
        "finetune": 5, "seeds": 3}
QUICK = {"n_train": 128, "n_val": 256, "trad_epochs": 8, "pretrain": 3, "jump": 1,
         "finetune": 1, "seeds": 2}
#: the traditional run's last epochs summarised (how far best and final accuracy swing)
LAST = 10


def run_settings(method: str, seed: int, cfg: dict, data_seed: int, source: str) -> dict:
    """The settings that identify one run: its record's key."""
    settings = {"method": method, "seed": seed, "model": MODEL, "lr": LR, "batch": BATCH,
                "data": source, "data_seed": data_seed, "n_train": cfg["n_train"],
                "n_val": cfg["n_val"]}
    if method == "traditional":
        return {**settings, "epochs": cfg["trad_epochs"]}
    return {**settings, "pretrain": cfg["pretrain"], "jump": cfg["jump"],
            "finetune": cfg["finetune"], "finetune_lr": FINETUNE_LR}


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        backend: str = "numba", results: str | Path | None = None,
        report: bool = False, **overrides) -> StudyResult:
    """Every (method, seed) run; the comparison table (paper beside ours), per run, phases.

    ``results``: the directory of ``lrpo.jsonl``; ``report``: train nothing, build the
    tables from the runs in it; ``out``: figures, and the checkpoints of unfinished runs."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    seeds = range(seed, seed + cfg["seeds"])
    result = StudyResult("lrpo", quick, machine=machine())
    result.scale = (f"{cfg['n_train']:,} train / {cfg['n_val']:,} val images, traditional "
                    f"{cfg['trad_epochs']} epochs, LRPO {cfg['pretrain']}+{cfg['jump']}+"
                    f"{cfg['finetune']} epochs, seeds {seeds[0]}..{seeds[-1]} (the same images "
                    f"for every run), batch 64, SGD, float32, backend {backend}")
    result.paper_scale = ("20,000 train / 4,000 val, traditional 100 epochs, LRPO 10+1+5 "
                          "epochs, one run each (GPU not stated)")
    records = records_for("lrpo", quick, out, results, report, total=len(METHODS) * len(seeds))
    checkpoints = None if out is None else Path(out) / "checkpoints" / records.name
    data: dict = {}

    def images():  # loaded, and the kernels compiled, by the first run that trains
        if not data:
            data["train"] = load_fashion_mnist("train", source=_source(quick),
                                               subset=cfg["n_train"], seed=seed)
            data["val"] = load_fashion_mnist("test", source=_source(quick),
                                             subset=cfg["n_val"], seed=seed)
            _warm_up(data["train"], backend)
        return data["train"], data["val"]

    runs: dict[tuple, dict] = {}
    stopped: dict[tuple, int] = {}  # unfinished runs with a checkpoint: the epochs done
    with Timer() as timer:
        for method in METHODS:
            for s in seeds:
                settings = run_settings(method, s, cfg, seed, _source(quick))
                key = records.key(settings)
                where = None if checkpoints is None else checkpoints / _digest(key)
                train = partial(_train, method, s, images, cfg, backend, where, key)
                record = records.get_or_run(settings, train)
                if record is not None:
                    runs[method, s] = record
                    if not report:
                        _remove_checkpoint(where)
                elif (done := _checkpoint_epoch(where, key)) is not None:
                    stopped[method, s] = done
    result.wall_time = timer.seconds
    result.records = records.summary()
    summary = _summary(runs)
    result.tables.append(_comparison(runs, summary, seeds))
    result.tables.append(_per_run(runs, stopped, seeds, cfg))
    if any(method == "lrpo" for method, _ in runs):
        result.tables.append(_phases(runs, seeds))
    _notes(result, records, stopped)
    result.data = {"runs": {f"{m}|{s}": r for (m, s), r in runs.items()}, "summary": summary}
    _figure(runs, cfg, out, result.figures)
    return result


# ----------------------------------------------------------------------------- training

def train_traditional(train, val, seed: int, epochs: int, backend: str = "numba",
                      checkpoint_dir: str | Path | None = None, key: str = "") -> dict:
    """One fixed-rate run (SGD at ``LR``); its per-epoch record.

    With ``checkpoint_dir`` a checkpoint is written after every epoch, and a checkpoint
    already there for the same ``key`` (the run's settings) is continued from."""
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    clock = _WallClock(key, checkpoint_dir)
    if clock.resume is not None:
        progress("lrpo", f"traditional seed {seed}: resuming after epoch {clock.resumed_from} "
                         f"from {clock.resume}")
    model = get_model(MODEL, seed=seed, backend=backend)
    trainer = Trainer(model, SGD(model.parameters(), lr=LR), batch_size=BATCH, seed=seed,
                      progress=False, checkpoint_dir=checkpoint_dir, callbacks=[clock],
                      metadata=clock.metadata)
    history = trainer.fit(train, val, epochs=epochs, resume=clock.resume)
    return {**_per_epoch(history), "wall_s": trainer.metadata["wall_s"],
            "sittings": trainer.metadata["sittings"], "resumed_from": clock.resumed_from}


def train_lrpo(train, val, seed: int, cfg: dict, backend: str = "numba") -> dict:
    """One LRPO run (``cfg``'s ``pretrain``, ``jump``, ``finetune`` epochs); its record."""
    model = get_model(MODEL, seed=seed, backend=backend)
    started = time.perf_counter()
    lrpo = run_lrpo(model, train, val, lr=LR, pretrain_epochs=cfg["pretrain"],
                    jump_epochs=cfg["jump"], finetune_epochs=cfg["finetune"],
                    finetune_lr=FINETUNE_LR, batch_size=BATCH, seed=seed, progress=False)
    return {**_per_epoch(lrpo.history), "wall_s": time.perf_counter() - started,
            "sittings": 1, "fit_time": lrpo.fit_time, "alpha": lrpo.alpha, "r": lrpo.r,
            "c": lrpo.c, "phases": [vars(p).copy() for p in lrpo.phases]}


def _train(method, seed, images, cfg, backend, checkpoint_dir, key) -> dict:
    train, val = images()
    if method == "lrpo":
        return train_lrpo(train, val, seed, cfg, backend)
    return train_traditional(train, val, seed, cfg["trad_epochs"], backend, checkpoint_dir,
                             key)


def _per_epoch(history) -> dict:
    """A History's per-epoch lists; ``lr`` is the rate of each epoch's first step."""
    steps = history.n_steps // max(history.n_epochs, 1)
    return {"train_loss": history.train_loss, "train_acc": history.train_acc,
            "val_loss": history.val_loss, "val_acc": history.val_acc,
            "lr": history.lr[::steps] if steps else [], "epoch_time": history.epoch_time}


def _warm_up(train, backend: str) -> None:
    """Compile (or load) the kernels on one batch, so no run's time includes it."""
    model = get_model(MODEL, seed=0, backend=backend)
    Trainer(model, SGD(model.parameters(), lr=LR), batch_size=BATCH, progress=False).fit(
        (train[0][:BATCH], train[1][:BATCH]), epochs=1)


class _WallClock:
    """A run's wall seconds summed over its sittings, kept in the trainer's checkpoints.

    ``metadata`` goes to the Trainer; ``on_epoch_end`` updates the trainer's copy before the
    epoch's checkpoint is written, so a resumed run starts from the time its checkpoint
    holds. ``resume`` is the checkpoint to continue from (``None``: start afresh)."""

    def __init__(self, key: str, checkpoint_dir: Path | None):
        self.metadata = {"key": key, "wall_s": 0.0, "sittings": 1}
        self.resume, self.resumed_from = None, 0
        saved = _read_checkpoint(checkpoint_dir, key)
        if saved is not None:
            self.metadata.update(wall_s=float(saved["metadata"]["wall_s"]),
                                 sittings=int(saved["metadata"]["sittings"]) + 1)
            self.resume = checkpoint_dir / CHECKPOINT_NAME
            self.resumed_from = int(saved["trainer"]["epoch"])
        self.before, self.start = self.metadata["wall_s"], time.perf_counter()

    def on_epoch_end(self, trainer, logs: dict) -> None:
        trainer.metadata["wall_s"] = self.before + time.perf_counter() - self.start


def _read_checkpoint(directory: Path | None, key: str) -> dict | None:
    """The checkpoint in ``directory`` when it is readable and belongs to ``key``."""
    if directory is None or not (directory / CHECKPOINT_NAME).is_file():
        return None
    try:
        state = load_checkpoint(directory / CHECKPOINT_NAME)
    except CheckpointError as exc:
        progress("lrpo", f"{exc}; not resuming from it")
        return None
    metadata = state.get("metadata") or {}
    return state if metadata.get("key") == key and "wall_s" in metadata else None


def _checkpoint_epoch(directory: Path | None, key: str) -> int | None:
    saved = _read_checkpoint(directory, key)
    return None if saved is None else int(saved["trainer"]["epoch"])


def _remove_checkpoint(directory: Path | None) -> None:
    """Delete a finished run's checkpoint (its record is in the file by now)."""
    if directory is None or not directory.is_dir():
        return
    for name in CHECKPOINT_FILES:
        (directory / name).unlink(missing_ok=True)
    try:
        directory.rmdir()
    except OSError:  # something else lives there: leave it
        pass


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- tables

def _swing(acc: list[float]) -> float:
    """Mean absolute change of validation accuracy between the last ``LAST`` epochs."""
    tail = np.asarray(acc[-(LAST + 1):])
    return float(np.mean(np.abs(np.diff(tail)))) if len(tail) > 1 else float("nan")


#: (row, per-run value, decimals, the paper's (traditional, LRPO), methods it applies to)
ROWS = (
    ("best val acc", lambda r: max(r["val_acc"]), 4, PAPER["val_acc"], METHODS),
    ("epoch of best val acc", lambda r: int(np.argmax(r["val_acc"])) + 1, 1, ("n/a", "n/a"),
     METHODS),
    ("final val acc", lambda r: r["val_acc"][-1], 4, ("n/a", "n/a"), METHODS),
    (f"best val acc, last {LAST} epochs", lambda r: max(r["val_acc"][-LAST:]), 4,
     ("n/a", "-"), ("traditional",)),
    (f"mean val acc, last {LAST} epochs", lambda r: float(np.mean(r["val_acc"][-LAST:])), 4,
     ("n/a", "-"), ("traditional",)),
    (f"mean change of val acc between epochs, last {LAST}", lambda r: _swing(r["val_acc"]),
     4, ("n/a", "-"), ("traditional",)),
    ("lowest val loss", lambda r: min(r["val_loss"]), 4, ("n/a", "n/a"), METHODS),
    ("final val loss", lambda r: r["val_loss"][-1], 4, PAPER["val_loss"], METHODS),
    ("epochs", lambda r: len(r["val_acc"]), 0, PAPER["epochs"], METHODS),
    ("wall time per run (s)", lambda r: r["wall_s"], 1, PAPER["time"], METHODS),
    ("predictor fit (s)", lambda r: r["fit_time"], 3, ("-", PAPER["fit_time"]), ("lrpo",)),
    ("alpha", lambda r: r["alpha"], 4, ("-", PAPER["alpha"]), ("lrpo",)),
)


def _summary(runs: dict) -> dict:
    """``{method: {row: [value of each finished seed, in seed order]}}``."""
    return {method: {name: [value(runs[m, s]) for (m, s) in sorted(runs) if m == method]
                     for name, value, _, _, applies in ROWS if method in applies}
            for method in METHODS}


def _stat(values: list, asked: int, decimals: int) -> str:
    """``mean ± spread`` (max - min) of the finished seeds' values, with n (:func:`cell`);
    the value alone when the seeds agree."""
    if not values:
        return cell(values, asked, "")
    text = f"{np.mean(values):.{decimals}f}"
    if len(set(values)) > 1:  # all seeds alike (epochs): the value alone
        text += f" ± {np.ptp(values):.{decimals}f}"
    return cell(values, asked, text)


def _comparison(runs: dict, summary: dict, seeds) -> Table:
    rows = []
    for name, _, decimals, paper, applies in ROWS:
        ours = [_stat(summary[m][name], len(seeds), decimals) if m in applies else "-"
                for m in ("traditional", "lrpo")]
        rows.append([name, *ours, *paper])
    rows.append(["trad. epochs to LRPO's final val acc", _catch_up(runs, seeds), "-", "-",
                 "-"])
    return Table(f"LRPO vs traditional: mean ± spread (max - min) over {len(seeds)} seeds, "
                 "paper's single run beside",
                 ["metric", "traditional", "LRPO", "paper traditional", "paper LRPO"], rows)


def _catch_up(runs: dict, seeds) -> str:
    """Per seed with both runs finished: the first epoch at which the traditional run's
    validation accuracy reaches the LRPO run's final one."""
    firsts = []
    for s in seeds:
        if ("traditional", s) in runs and ("lrpo", s) in runs:
            target = runs["lrpo", s]["val_acc"][-1]
            reached = np.flatnonzero(np.asarray(runs["traditional", s]["val_acc"]) >= target)
            firsts.append(str(int(reached[0]) + 1) if reached.size else "never")
    return cell(firsts, len(seeds), ", ".join(firsts))


def _per_run(runs: dict, stopped: dict, seeds, cfg: dict) -> Table:
    rows = []
    for method in METHODS:
        for s in seeds:
            name = f"{NAMES[method]} seed {s}"
            if (method, s) not in runs:
                status = (f"stopped after epoch {stopped[method, s]} of {cfg['trad_epochs']} "
                          "(checkpoint in --out)" if (method, s) in stopped else "not run yet")
                rows.append([name, status, *["-"] * 6])
                continue
            r = runs[method, s]
            best = int(np.argmax(r["val_acc"]))
            rows.append([name, "finished" if r["sittings"] == 1
                         else f"finished in {r['sittings']} sittings", len(r["val_acc"]),
                         f"{r['val_acc'][best]:.4f} (epoch {best + 1})", r["val_acc"][-1],
                         min(r["val_loss"]), r["val_loss"][-1], r["wall_s"]])
    return Table("Per run", ["run", "status", "epochs", "best val acc (epoch)",
                             "final val acc", "lowest val loss", "final val loss",
                             "wall time (s)"], rows)


def _phases(runs: dict, seeds) -> Table:
    """LRPO's phases: epochs, the rate of each phase's first step, seconds (mean, n)."""
    finished = [runs["lrpo", s]["phases"] for s in seeds if ("lrpo", s) in runs]
    rows = []
    for i, phase in enumerate(finished[0]):
        lrs = [phases[i]["lr"] for phases in finished]
        seconds = [phases[i]["seconds"] for phases in finished]
        lr = "-" if phase["name"] == "predictor" else _stat(lrs, len(seeds), 5)
        rows.append([phase["name"], phase["epochs"], lr, _stat(seconds, len(seeds), 2)])
    return Table("LRPO phases (mean ± spread over seeds)",
                 ["phase", "epochs", "lr", "seconds"], rows)


def _notes(result: StudyResult, records, stopped: dict) -> None:
    if records.missing:
        result.notes.append(f"{records.missing} of {records.total} runs have not finished; "
                            "their cells give n")
    if stopped:
        result.notes.append(f"{len(stopped)} unfinished run(s) have a checkpoint; run the "
                            "study again with the same --out to continue them")
    result.notes.append("best val acc: the highest validation accuracy over a run's epochs "
                        "(the paper's \"Best Accuracy\"); the paper's loss stands beside our "
                        "final validation loss")


def _figure(runs: dict, cfg: dict, out, figures: list[str]) -> None:
    if not runs:  # nothing finished: no figure
        return
    fig, (ax_loss, ax_acc) = new_figure(2)
    style = {"traditional": {"color": "C0", "lw": 0.8},
             "lrpo": {"color": "C1", "lw": 0.8, "marker": "."}}
    for ax, key, label in ((ax_loss, "val_loss", "validation loss"),
                           (ax_acc, "val_acc", "validation accuracy")):
        labelled = set()
        for (method, _), record in sorted(runs.items()):
            values = record[key]
            ax.plot(np.arange(1, len(values) + 1), values, **style[method],
                    label=None if method in labelled else f"{NAMES[method]} (one line a seed)")
            labelled.add(method)
        if "lrpo" in labelled:
            ax.axvline(cfg["pretrain"] + 0.5, color="grey", lw=0.5, ls="--")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    ax_loss.set_title(f"LRPO vs SGD 0.05, {cfg['n_train']} train images")
    save_figure(fig, out, "results_lrpo", figures)
