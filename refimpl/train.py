"""The trainer's public names, kept here for ``from refimpl.train import Trainer, History``.

The code lives in :mod:`refimpl.training` (the loop, History, NaN policy, resume, signals,
scheduler driving), one part per module.
"""

from __future__ import annotations

from refimpl.training import (
    NAN_POLICIES,
    History,
    NonFiniteLossError,
    Trainer,
    TrainingInterrupted,
)

__all__ = ["NAN_POLICIES", "History", "NonFiniteLossError", "Trainer", "TrainingInterrupted"]
