"""Running the LRPO plan (LRPO paper; docs/methods.md §7) and reporting its phases.

:func:`run_lrpo` trains a model with :class:`refimpl.schedulers.LRPOSchedule` in one
:class:`refimpl.train.Trainer` run of ``E1 + E3 + E4`` epochs, so the History is one
continuous run, the trainer's checkpoint/resume covers the whole plan, and every epoch has
its own shuffle. :class:`LRPOResult` holds the History, one :class:`PhaseReport` per phase,
``alpha`` with its ``r`` and ``c``, and the fitted predictor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refimpl.registry import make_optimizer, optimizer_class
from refimpl.schedulers.checks import check_int, check_lr
from refimpl.schedulers.lrpo import LRPOSchedule, TrajectoryPredictor
from refimpl.train import History, Trainer

__all__ = ["LRPOResult", "PhaseReport", "run_lrpo"]


@dataclass
class PhaseReport:
    """One phase of the plan: its name, epochs, rate, wall seconds and optimizer steps."""

    name: str
    epochs: int
    lr: float
    seconds: float
    steps: int = 0


@dataclass
class LRPOResult:
    """What :func:`run_lrpo` returns.

    ``history`` concatenates the training phases (pretrain, jump, fine-tune) in order;
    ``phases`` has one report per phase, the predictor fit included (0 epochs).
    """

    history: History
    phases: list[PhaseReport]
    alpha: float
    r: float
    c: float
    fit_time: float
    predictor: TrajectoryPredictor
    pretrain_losses: list[float] = field(default_factory=list)

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    @property
    def total_time(self) -> float:
        return sum(p.seconds for p in self.phases)

    def summary(self) -> str:
        """A short table of the phases, alpha and the final validation metrics."""
        lines = [f"{'phase':<10}{'epochs':>7}{'lr':>12}{'seconds':>10}"]
        lines += [f"{p.name:<10}{p.epochs:>7}{p.lr:>12.6g}{p.seconds:>10.2f}" for p in self.phases]
        lines.append(
            f"alpha={self.alpha:.4f} (r={self.r:.4f}, c={self.c:.4f}), "
            f"predictor fit {self.fit_time:.3f} s, total {self.total_epochs} epochs "
            f"{self.total_time:.1f} s"
        )
        if self.history.val_acc:
            lines.append(
                f"final val_loss={self.history.val_loss[-1]:.4f} "
                f"val_acc={self.history.val_acc[-1]:.4f}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": self.history.to_dict(),
            "phases": [vars(p).copy() for p in self.phases],
            "alpha": self.alpha,
            "r": self.r,
            "c": self.c,
            "fit_time": self.fit_time,
            "predictor": self.predictor.state_dict(),
            "pretrain_losses": list(self.pretrain_losses),
        }



def run_lrpo(
    model: Any,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    lr: float = 0.05,
    pretrain_epochs: int = 10,
    jump_epochs: int = 1,
    finetune_epochs: int = 5,
    finetune_lr: float = 0.001,
    alpha_max: float = 1.5,
    batch_size: int = 64,
    seed: int = 0,
    backend: str | None = None,
    progress: bool | None = None,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    predictor_steps: int = 2000,
    checkpoint_dir: str | None = None,
    resume: str | bool | None = None,
    metadata: dict | None = None,
) -> LRPOResult:
    """Train ``model`` with the four LRPO phases; return the phases, alpha and the History.

    Parameters
    ----------
    model : refimpl.model.Sequential
        Trained in place.
    train, val : tuple (X, y)
        Classification data (cross-entropy loss).
    lr : float
        ``lr0``, the pretraining rate (paper 0.05).
    pretrain_epochs, jump_epochs, finetune_epochs : int
        ``E1`` (>= 2), ``E3``, ``E4`` (paper 10, 1, 5).
    finetune_lr : float
        Rate of phase 4 (paper 0.001).
    alpha_max : float
        Upper clip of the jump factor (>= 1).
    batch_size, seed : int
        As for :class:`refimpl.train.Trainer` (``seed`` also seeds the predictor).
    backend : str, optional
        Backend of the model's ops (``numpy``, ``numba``, ``cuda``, ``auto``); ``None`` keeps
        the model's.
    progress : bool, optional
        Progress bars (see Trainer).
    optimizer : str
        The base optimizer, any of :func:`refimpl.registry.optimizer_names` (the paper does
        not name one; plain SGD by default).
    momentum : float
        SGD momentum; an optimizer without momentum refuses a non-zero value.
    predictor_steps : int
        At most this many full-batch Adam steps fit the predictor (docs/methods.md §7: at most 2000).
    checkpoint_dir : str, optional
        Passed to the Trainer (checkpoint after every epoch).
    resume : str or True, optional
        Continue from this checkpoint (``True``: ``checkpoint_dir/last.npz``), with the same
        plan and settings: the phases already done are not run again.
    metadata : dict, optional
        Stored in every checkpoint (see :class:`refimpl.training.Trainer`).
    """
    finetune_epochs = check_int(finetune_epochs, "finetune_epochs", 0, whole_float=True)
    optimizer_class(optimizer)  # an unknown name fails here, before the predictor is built
    check_lr(finetune_lr, "finetune_lr")
    schedule = LRPOSchedule(
        lr,
        pretrain_epochs=pretrain_epochs,
        jump_epochs=jump_epochs,
        finetune_lr=finetune_lr,
        alpha_max=alpha_max,
        predictor_steps=predictor_steps,
        seed=seed,
    )
    options = {"lr": lr, "momentum": momentum} if momentum else {"lr": lr}
    opt = make_optimizer(optimizer, model.parameters(), **options)
    trainer = Trainer(
        model,
        opt,
        schedule,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        backend=backend,
        checkpoint_dir=checkpoint_dir,
        metadata=metadata,
    )
    epochs = schedule.pretrain_epochs + schedule.jump_epochs + finetune_epochs
    history = trainer.fit(train, val, epochs=epochs, resume=resume)
    return LRPOResult(
        history=history,
        phases=_phase_reports(schedule, history, epochs),
        alpha=schedule.alpha,
        r=schedule.r,
        c=schedule.c,
        fit_time=schedule.predictor.fit_time,
        predictor=schedule.predictor,
        pretrain_losses=list(schedule.losses),
    )


def _phase_reports(schedule: LRPOSchedule, history: History, epochs: int) -> list[PhaseReport]:
    """Per-phase epochs, rate (of the phase's first step), wall time and optimizer steps."""
    steps_per_epoch = history.n_steps // max(history.n_epochs, 1)
    reports = []
    for name in ("pretrain", "predictor", "jump", "finetune"):
        if name == "predictor":
            p = schedule.predictor
            reports.append(PhaseReport(name, 0, 0.0, p.fit_time, p.steps))
            continue
        index = [e for e in range(epochs) if schedule.phase(e) == name]
        first_lr = history.lr[index[0] * steps_per_epoch] if index else 0.0
        seconds = float(sum(history.epoch_time[e] for e in index))
        reports.append(
            PhaseReport(name, len(index), first_lr, seconds, len(index) * steps_per_epoch)
        )
    return reports
