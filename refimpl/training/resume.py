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

__all__ = ["CHECKPOINT_NAME", "check_same_run", "fingerprint"]

#: the file name the trainer writes inside ``checkpoint_dir``
CHECKPOINT_NAME = "last.npz"


def fingerprint(X: np.ndarray, y: np.ndarray) -> dict:
    """Size, shapes and CRC-32 of the training data: a resumed run must see the same data."""
    return {"n": len(X), "x_shape": list(X.shape), "x_dtype": X.dtype.str,
            "crc32": zlib.crc32(np.ascontiguousarray(y).tobytes(),
                                zlib.crc32(np.ascontiguousarray(X)))}


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
