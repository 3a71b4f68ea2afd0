"""Checkpoint and resume: what identifies a run, and the check that a checkpoint fits it.

A trainer's state (:meth:`Trainer.state_dict`) holds the model, optimizer, scheduler,
History and the position in the run; :mod:`refimpl.checkpoint` writes it (``.npz`` + JSON,
atomic, no pickle). A resumed run produces a History equal (``==``, bit for bit) to the
uninterrupted one, because each epoch's shuffle comes from ``(seed, epoch)`` alone.
Resuming is refused when the checkpoint belongs to another run: another seed, batch size,
loss, training data (size, shapes, CRC-32), or with/without a scheduler.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from refimpl.checkpoint import CheckpointError

__all__ = ["CHECKPOINT_FILES", "CHECKPOINT_NAME", "check_position", "check_same_run",
           "fingerprint"]

#: the file name the trainer writes inside ``checkpoint_dir``
CHECKPOINT_NAME = "last.npz"
#: every file the trainer leaves in ``checkpoint_dir``: the checkpoint and the readable JSON
#: copy that :func:`refimpl.checkpoint.save_checkpoint` writes beside it (suffix ``.json``)
CHECKPOINT_FILES = (CHECKPOINT_NAME, Path(CHECKPOINT_NAME).with_suffix(".json").name)


def fingerprint(X: np.ndarray, y: np.ndarray) -> dict:
    """Size, shapes and CRC-32 of the training data: a resumed run must see the same data."""
    return {"n": len(X), "x_shape": list(X.shape), "x_dtype": X.dtype.str,
            "crc32": zlib.crc32(np.ascontiguousarray(y).tobytes(),
                                zlib.crc32(np.ascontiguousarray(X)))}


#: the entries of a trainer checkpoint (``Trainer.state_dict``); ``metadata`` is optional
ENTRIES = ("trainer", "model", "optimizer", "scheduler", "history")


def check_position(state: dict, n_batches: int, path: Path) -> None:
    """Refuse a checkpoint that is incomplete or whose position lies outside the run.

    The position must be whole: ``epoch``, ``batch`` and ``global_step`` are integers >= 0,
    ``batch <= n_batches`` (equal when a step checkpoint was written after an epoch's last
    batch, before its end: validation, epoch scheduler, epoch record), the History holds ``epoch`` epochs, and ``global_step = epoch *
    n_batches + batch`` (every batch of an epoch is a step, skipped ones included).

    Raises
    ------
    CheckpointError
        Naming the missing entry or the field and its value.
    """
    for entry in ENTRIES:
        if entry not in state:
            raise CheckpointError(f"checkpoint {path} has no {entry!r} entry; it is not a "
                                  "complete trainer checkpoint")
    trainer = state["trainer"]
    if not isinstance(trainer, dict):
        raise CheckpointError(f"checkpoint {path}: 'trainer' is not a dict")
    for key in ("epoch", "batch", "global_step"):
        value = trainer.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise CheckpointError(f"checkpoint {path}: trainer {key}={value!r} is not an "
                                  "integer >= 0")
    epoch, batch, step = (int(trainer[k]) for k in ("epoch", "batch", "global_step"))
    history = state["history"]
    done = len(history.get("train_loss", ())) if isinstance(history, dict) else None
    problems = []
    if batch > n_batches:  # batch == n_batches: every batch done, the epoch's end pending
        problems.append(f"batch={batch} but an epoch has {n_batches} batches")
    if done != epoch:
        problems.append(f"epoch={epoch} but its history holds {done} epochs")
    if step != epoch * n_batches + batch:
        problems.append(f"global_step={step} but epoch {epoch}, batch {batch} make "
                        f"{epoch * n_batches + batch}")
    if problems:
        raise CheckpointError(f"checkpoint {path}: position outside this run ("
                              + "; ".join(problems) + "); resume from another checkpoint or "
                              "start afresh")


def check_same_run(state: dict, settings: dict, data: dict, has_scheduler: bool,
                   path: Path) -> None:
    """Refuse a checkpoint of another run.

    Parameters
    ----------
    state : dict
        The loaded checkpoint.
    settings : dict
        The trainer's ``seed``, ``batch_size`` and ``loss``.
    data : dict
        :func:`fingerprint` of the training data.
    has_scheduler : bool
    path : Path
        For the messages.

    Raises
    ------
    CheckpointError
        Not a trainer checkpoint.
    ValueError
        A checkpoint of a different run (the message lists every difference).
    """
    try:
        saved = state["trainer"]
        mismatch = [f"{k}: checkpoint {saved[k]!r}, trainer {v!r}"
                    for k, v in settings.items() if saved[k] != v]
        if saved["data"] != data:
            mismatch.append("training data differ (size or contents)")
        if (state["scheduler"] is not None) != has_scheduler:
            mismatch.append("one of the checkpoint and the trainer has a scheduler")
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a trainer checkpoint ({exc})") from None
    if mismatch:
        raise ValueError(f"checkpoint {path} belongs to a different run: "
                         + "; ".join(mismatch) + ". Resume with the same settings and data.")
