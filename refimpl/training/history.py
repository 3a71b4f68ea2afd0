"""What a training run produced, step by step and epoch by epoch: :class:`History`."""

from __future__ import annotations

import copy

import numpy as np

__all__ = ["History"]


class History:
    """What a run produced, step by step and epoch by epoch.

    Per step: ``loss`` (the batch loss; NaN for a skipped batch), ``lr`` (the first
    group's rate used for that step) and ``step_time`` (wall seconds). Per epoch:
    ``train_loss`` (example-weighted mean of the epoch's batch losses), ``train_acc``,
    ``val_loss``, ``val_acc`` (NaN without a validation set or for ``mse``), ``lr_epoch``
    (the rate after the epoch's scheduler step) and ``epoch_time`` (wall seconds).
    ``skipped`` lists the steps skipped by ``nan_policy="skip-batch"``; ``events`` records
    rollbacks.

    ``==`` compares every field bit for bit (NaN equal to NaN) **except** the wall times
    ``step_time`` and ``epoch_time``: they measure the machine, not the run.
    """

    STEP_FIELDS = ("loss", "lr", "step_time")
    EPOCH_FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr_epoch", "epoch_time")
    TIMING_FIELDS = ("step_time", "epoch_time")

    def __init__(self) -> None:
        for name in self.STEP_FIELDS + self.EPOCH_FIELDS:
            setattr(self, name, [])
        self.skipped: list[int] = []
        self.events: list[dict] = []

    @property
    def n_steps(self) -> int:
        return len(self.loss)

    @property
    def n_epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict:
        """Plain lists (JSON-serialisable; floats round-trip exactly through ``json``)."""
        data = {name: [float(v) for v in getattr(self, name)]
                for name in self.STEP_FIELDS + self.EPOCH_FIELDS}
        data["skipped"] = [int(s) for s in self.skipped]
        data["events"] = copy.deepcopy(self.events)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> History:
        history = cls()
        for name in cls.STEP_FIELDS + cls.EPOCH_FIELDS:
            setattr(history, name, [float(v) for v in data.get(name, [])])
        history.skipped = [int(s) for s in data.get("skipped", [])]
        history.events = copy.deepcopy(list(data.get("events", [])))
        return history

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        for name in self.STEP_FIELDS + self.EPOCH_FIELDS:
            if name in self.TIMING_FIELDS:
                continue
            a, b = getattr(self, name), getattr(other, name)
            if len(a) != len(b) or not np.array_equal(np.asarray(a, dtype=np.float64),
                                                      np.asarray(b, dtype=np.float64),
                                                      equal_nan=True):
                return False
        return self.skipped == other.skipped and self.events == other.events

    def __repr__(self) -> str:
        last = f", val_acc={self.val_acc[-1]:.4f}" if self.val_acc else ""
        return f"History(steps={self.n_steps}, epochs={self.n_epochs}{last})"
