"""SIGINT/SIGTERM during training: finish the batch, checkpoint, stop.

:class:`SignalCatcher` turns the signals into a flag the loop checks between batches;
the loop then writes a checkpoint and raises :class:`TrainingInterrupted`. A second signal
before that is done raises :class:`InterruptedAgain` at once.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

__all__ = ["InterruptedAgain", "SignalCatcher", "TrainingInterrupted"]


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped :meth:`Trainer.fit` after a checkpoint was written.

    Attributes: ``signum`` (the signal), ``checkpoint`` (the file written, or ``None`` when
    the trainer has no ``checkpoint_dir``). Resume with ``fit(..., resume=checkpoint)``.
    """

    def __init__(self, signum: int, checkpoint: Path | None):
        where = f"checkpoint written to {checkpoint}" if checkpoint else "no checkpoint_dir set"
        super().__init__(f"training stopped by signal {signum}; {where}")
        self.signum = signum
        self.checkpoint = checkpoint


class InterruptedAgain(KeyboardInterrupt):
    """A second SIGINT/SIGTERM arrived while the trainer was stopping after the first.

    Raised at once from wherever the loop was (the batch, or the checkpoint being written);
    the checkpoint file is written atomically, so the last complete one is kept. Attributes:
    ``signum`` (the second signal) and ``first`` (the signal that asked for the stop).
    """

    def __init__(self, signum: int, first: int):
        super().__init__(f"signal {signum} while stopping after signal {first}: stopping now")
        self.signum = signum
        self.first = first


class SignalCatcher:
    """Turn SIGINT/SIGTERM into a flag (``signum``) checked between batches.

    Installs its handlers only in the main thread (elsewhere Python forbids it) and
    restores the previous ones on exit. A second signal while the first is pending raises
    :class:`InterruptedAgain` (a ``KeyboardInterrupt``) at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise InterruptedAgain(signum, self.signum)
        self.signum = signum

    def __enter__(self) -> SignalCatcher:  # noqa: PYI034
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
