"""Training, in parts a reader can take one at a time.

=====================  ==================================================================
``loop.py``            :class:`Trainer`: the epoch loop and the step (forward, loss,
                       backward, optimizer step, scheduler step)
``history.py``         :class:`History`: what a run produced, per step and per epoch
``scheduling.py``      which signal a scheduler's ``step`` gets, and copying its rates into
                       the optimizer's parameter groups
``nan_policy.py``      NaN/inf losses and gradients: raise, skip the batch, or roll back
``resume.py``          what identifies a run; the check that a checkpoint belongs to it
``signals.py``         SIGINT/SIGTERM: finish the batch, checkpoint, stop
``checks.py``          argument and data checks
=====================  ==================================================================
"""

from __future__ import annotations

from .history import History
from .loop import Trainer
from .nan_policy import NAN_POLICIES, NonFiniteLossError
from .signals import TrainingInterrupted

__all__ = ["NAN_POLICIES", "History", "NonFiniteLossError", "Trainer", "TrainingInterrupted"]
