"""The training loop: :class:`Trainer` and the record it keeps, :class:`History`.

One epoch visits every training example once, in mini-batches of ``batch_size`` (the last
batch may be smaller), in the order of ``default_rng([seed, epoch]).permutation(N)``. Deriving
each epoch's order from ``(seed, epoch)`` alone means a resumed run needs no random-number
state to shuffle exactly as the uninterrupted one.

Per step: forward, loss, non-finite check (``nan_policy``), backward, ``optimizer.step``,
then the step-interval scheduler and the ``on_batch_end`` callbacks. Per epoch: validation,
the epoch-interval scheduler, ``on_epoch_end`` callbacks, and a checkpoint.

Schedulers are driven only through their ``interval`` and ``signal`` attributes
(:mod:`refimpl.schedulers.base`); after each scheduler step ``scheduler.lrs`` is copied into
the optimizer's groups. For an epoch-interval scheduler whose signal is ``"loss"`` the
validation loss is used, or the training loss when there is no validation set.

Checkpoints (:mod:`refimpl.checkpoint`: ``.npz`` + JSON, atomic, no pickle) hold the model,
optimizer, scheduler, History and the position in the run, so that a resumed run produces a
History equal (``==``, bit for bit) to the uninterrupted one. SIGTERM and SIGINT during
:meth:`Trainer.fit` finish the current batch, write a checkpoint (when ``checkpoint_dir`` is
set) and raise :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import copy
import inspect
import math
import signal
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import kernels
from refimpl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from refimpl.data import check_classification_data
from refimpl.schedulers.base import check_lr

__all__ = [
    "NAN_POLICIES",
    "History",
    "NonFiniteLossError",
    "Trainer",
    "TrainingInterrupted",
    "build_scheduler",
]

NAN_POLICIES = ("raise", "skip-batch", "rollback")
LOSSES = ("cross_entropy", "mse")
CHECKPOINT_NAME = "last.npz"


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient became NaN/inf (``nan_policy="raise"``, or rollbacks ran out)."""


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


# ----------------------------------------------------------------------------- History

class History:
    """What a run produced, step by step and epoch by epoch.

    Per step: ``loss`` (the batch loss; NaN for a skipped batch), ``lr`` (the first
    group's rate used for that step) and ``step_time`` (wall seconds). Per epoch: ``train_loss`` (example-weighted mean of
    the epoch's batch losses), ``train_acc``, ``val_loss``, ``val_acc`` (NaN without a
    validation set or for ``mse``), ``lr_epoch`` (the rate after the epoch's scheduler step)
    and ``epoch_time`` (wall seconds). ``skipped`` lists the steps skipped by
    ``nan_policy="skip-batch"``; ``events`` records rollbacks.

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


# ----------------------------------------------------------------------------- Trainer

class Trainer:
    """Mini-batch training of a ``Sequential`` with an optimizer and an optional scheduler.

    Parameters
    ----------
    model : refimpl.layers.Sequential
        Anything with ``forward``, ``backward``, ``parameters``, ``gradients``,
        ``state_dict``/``load_state_dict``, ``set_backend`` and a ``backend`` name.
    optimizer : refimpl.optim.Optimizer
        Built over ``model.parameters()``.
    scheduler : refimpl.schedulers.Scheduler, optional
        Driven through ``interval`` and ``signal``; its rates are copied into the optimizer
        at the start of a fresh run and after each of its steps.
    loss : {"cross_entropy", "mse"}
    batch_size : int
    seed : int
        Seeds the shuffle (epoch ``e`` uses ``default_rng([seed, e])``).
    progress : bool, optional
        tqdm progress bar; ``None`` shows it only when stderr is a terminal.
    checkpoint_dir : str or Path, optional
        Where ``last.npz`` (+ ``last.json``) is written after every epoch, every
        ``checkpoint_every`` steps, and on SIGINT/SIGTERM. Nothing is written without it.
    nan_policy : {"raise", "skip-batch", "rollback"}
        On a NaN/inf loss or gradient: raise :class:`NonFiniteLossError`; skip the batch (no
        update, no scheduler step, loss recorded as NaN, step listed in
        ``History.skipped``); or return to the last good state (the latest checkpoint, or
        the start of the run) with every rate halved, at most ``max_rollbacks`` times in a
        row.
    callbacks : sequence of objects
        Each may define ``on_batch_end(trainer, logs)`` and ``on_epoch_end(trainer, logs)``
        (``logs`` is a dict); setting ``trainer.stop_training = True`` ends ``fit`` after
        the current epoch.
    checkpoint_every : int, optional
        Also checkpoint every this many optimizer steps.
    backend : str, optional
        When given, ``model.set_backend(backend)``; losses run on the model's backend.
    eval_batch_size : int
        Batch size of the validation passes.
    max_rollbacks : int
        Consecutive rollbacks allowed before giving up (``nan_policy="rollback"``).
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        scheduler: Any = None,
        loss: str = "cross_entropy",
        batch_size: int = 64,
        seed: int = 0,
        progress: bool | None = None,
        checkpoint_dir: str | Path | None = None,
        nan_policy: str = "raise",
        callbacks: Sequence[Any] = (),
        checkpoint_every: int | None = None,
        backend: str | None = None,
        eval_batch_size: int = 256,
        max_rollbacks: int = 3,
    ):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
        _check_int(batch_size, "batch_size")
        _check_int(eval_batch_size, "eval_batch_size")
        _check_int(max_rollbacks, "max_rollbacks", low=0)
        if checkpoint_every is not None:
            _check_int(checkpoint_every, "checkpoint_every")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if scheduler is not None:
            for attr, allowed in (("interval", ("step", "epoch")),
                                  ("signal", ("none", "loss", "params", "grads", "batch_losses"))):
                if getattr(scheduler, attr, None) not in allowed:
                    raise ValueError(f"scheduler.{attr} must be one of {allowed}, got "
                                     f"{getattr(scheduler, attr, None)!r}")
        if backend is not None:
            model.set_backend(backend)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss = loss
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.progress = progress
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.nan_policy = nan_policy
        self.callbacks = list(callbacks)
        self.checkpoint_every = checkpoint_every
        self.eval_batch_size = int(eval_batch_size)
        self.max_rollbacks = int(max_rollbacks)
        self.history = History()
        self.stop_training = False
        self._reset_position()

    # -- position in the run ------------------------------------------------------------
    def _reset_position(self) -> None:
        self.epoch = 0          # completed epochs
        self.batch = 0          # batches done in the current epoch
        self.global_step = 0    # batches done in the run (skipped ones included)
        self._acc = {"loss_sum": 0.0, "correct": 0, "seen": 0, "batch_losses": [],
                     "elapsed": 0.0}
        self._rollbacks = 0

    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / CHECKPOINT_NAME if self.checkpoint_dir else None

    # -- the loop -----------------------------------------------------------------------
    def fit(self, train: tuple[np.ndarray, np.ndarray],
            val: tuple[np.ndarray, np.ndarray] | None = None, epochs: int = 1,
            resume: str | Path | bool | None = None) -> History:
        """Train until ``epochs`` epochs are complete; return the :class:`History`.

        Parameters
        ----------
        train, val : tuple (X, y)
            ``X`` float of the model's dtype, ``y`` int64 labels (``cross_entropy``) or
            float targets shaped like the model output (``mse``).
        epochs : int
            Total epochs of the run (a resumed run continues up to this count).
        resume : path or True, optional
            A checkpoint to continue from (``True``: ``checkpoint_dir/last.npz``).

        Raises
        ------
        ValueError
            Bad data, shapes, dtypes, labels or rates (before anything is written).
        NonFiniteLossError, TrainingInterrupted, refimpl.checkpoint.CheckpointError
        """
        _check_int(epochs, "epochs")
        X, y = self._check_data(train, "train")
        if val is not None:
            val = self._check_data(val, "val")
        n_batches = math.ceil(len(X) / self.batch_size)
        if hasattr(self.scheduler, "set_batches_per_epoch"):
            self.scheduler.set_batches_per_epoch(n_batches)
        fingerprint = _fingerprint(X, y)
        if resume:
            path = self.checkpoint_path if resume is True else Path(resume)
            if path is None:
                raise ValueError("resume=True needs checkpoint_dir; or pass the checkpoint path")
            self._load_run(load_checkpoint(path), fingerprint, path)
        else:
            self.history = History()
            self._reset_position()
            if self.scheduler is not None:
                self._copy_scheduler_lrs()
        self._check_optimizer_lrs()
        self._fingerprint = fingerprint
        self._last_good = copy.deepcopy(self.state_dict())
        self.stop_training = False
        with _SignalCatcher() as catcher:
            self._catcher = catcher
            while self.epoch < epochs and not self.stop_training:
                try:
                    self._run_epoch(X, y, val, n_batches, epochs)
                except _Rollback as rollback:
                    self._rollback(rollback.reason)
        return self.history

    def _run_epoch(self, X, y, val, n_batches: int, epochs: int) -> None:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(X))
        start = time.perf_counter() - self._acc["elapsed"]
        bar = _progress_bar(self.progress, n_batches, self.batch,
                            f"epoch {self.epoch + 1}/{epochs}")
        try:
            while self.batch < n_batches:
                index = order[self.batch * self.batch_size:(self.batch + 1) * self.batch_size]
                loss = self._train_step(X[index], y[index])
                self._acc["elapsed"] = time.perf_counter() - start
                if bar is not None:
                    bar.update(1)
                    if self.batch % 10 == 0 or self.batch == n_batches:
                        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.history.lr[-1]:.3g}")
                if self._catcher.signum is not None and self.batch < n_batches:
                    self._interrupt()
        finally:
            if bar is not None:
                bar.close()
        self._end_epoch(val, time.perf_counter() - start)
        if self._catcher.signum is not None:
            self._interrupt()

    def _train_step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        started = time.perf_counter()
        lr = float(self.optimizer.param_groups[0]["lr"])
        logits = self.model.forward(xb)
        loss, dlogits = self._loss_fn(logits, yb)
        finite = math.isfinite(loss)
        if finite:
            self.model.backward(dlogits, input_grad=False)  # no one reads d loss / d x
            grads = self.model.gradients()
            finite = all(np.isfinite(g).all() for g in grads)
        if not finite:
            return self._non_finite(loss, lr, started)
        self.optimizer.step(grads)
        self._record_step(float(loss), lr, started)
        acc = self._acc
        acc["loss_sum"] += float(loss) * len(yb)
        acc["seen"] += len(yb)
        acc["batch_losses"].append(float(loss))
        if self.loss == "cross_entropy":
            acc["correct"] += int((logits.argmax(axis=1) == yb).sum())
        if self.scheduler is not None and self.scheduler.interval == "step":
            self._step_scheduler(loss)
        self._advance()
        self._call("on_batch_end", {"epoch": self.epoch, "batch": self.batch - 1,
                                    "step": self.global_step - 1, "loss": float(loss),
                                    "lr": lr, "skipped": False})
        return float(loss)

    def _advance(self) -> None:
        self.batch += 1
        self.global_step += 1
        if self.checkpoint_every and self.global_step % self.checkpoint_every == 0:
            self._checkpoint()

    def _record_step(self, loss: float, lr: float, started: float) -> None:
        self.history.loss.append(loss)
        self.history.lr.append(lr)
        self.history.step_time.append(time.perf_counter() - started)

    def _non_finite(self, loss: float, lr: float, started: float) -> float:
        where = (f"loss={loss} at epoch {self.epoch}, batch {self.batch} (step "
                 f"{self.global_step}, lr={lr:g})")
        if self.nan_policy == "raise":
            raise NonFiniteLossError(
                f"non-finite {where}; lower the learning rate, or pass "
                "nan_policy='skip-batch' or 'rollback'"
            )
        if self.nan_policy == "rollback":
            raise _Rollback(where)
        self._record_step(float("nan"), lr, started)
        self.history.skipped.append(self.global_step)
        self._advance()
        self._call("on_batch_end", {"epoch": self.epoch, "batch": self.batch - 1,
                                    "step": self.global_step - 1, "loss": float(loss),
                                    "lr": lr, "skipped": True})
        return float("nan")

    def _end_epoch(self, val, elapsed: float) -> None:
        acc = self._acc
        seen = acc["seen"]
        train_loss = acc["loss_sum"] / seen if seen else float("nan")
        train_acc = (acc["correct"] / seen if seen and self.loss == "cross_entropy"
                     else float("nan"))
        val_loss, val_acc = self.evaluate(*val) if val is not None else (float("nan"),) * 2
        if self.scheduler is not None and self.scheduler.interval == "epoch":
            self._step_scheduler(val_loss if val is not None else train_loss)
        h = self.history
        h.train_loss.append(train_loss)
        h.train_acc.append(train_acc)
        h.val_loss.append(val_loss)
        h.val_acc.append(val_acc)
        h.lr_epoch.append(float(self.optimizer.param_groups[0]["lr"]))
        h.epoch_time.append(float(elapsed))
        self.epoch += 1
        self.batch = 0
        self._acc = {"loss_sum": 0.0, "correct": 0, "seen": 0, "batch_losses": [],
                     "elapsed": 0.0}
        self._call("on_epoch_end", {"epoch": self.epoch - 1, "train_loss": train_loss,
                                    "train_acc": train_acc, "val_loss": val_loss,
                                    "val_acc": val_acc, "lr": h.lr_epoch[-1], "time": elapsed})
        self._checkpoint()

    # -- evaluation and loss ------------------------------------------------------------
    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy (NaN for ``mse``) over ``(X, y)``, in eval batches."""
        loss_sum, correct = 0.0, 0
        for start in range(0, len(X), self.eval_batch_size):
            xb, yb = X[start:start + self.eval_batch_size], y[start:start + self.eval_batch_size]
            logits = self.model.forward(xb)
            loss, _ = self._loss_fn(logits, yb)
            loss_sum += float(loss) * len(yb)
            if self.loss == "cross_entropy":
                correct += int((logits.argmax(axis=1) == yb).sum())
        accuracy = correct / len(X) if self.loss == "cross_entropy" else float("nan")
        return loss_sum / len(X), accuracy

    def _loss_fn(self, logits: np.ndarray, target: np.ndarray):
        backend = kernels.get_backend(getattr(self.model, "backend", "numpy"))
        fn = backend.softmax_cross_entropy if self.loss == "cross_entropy" else backend.mse
        return fn(logits, target)

    # -- schedulers -----------------------------------------------------------------------
    def _step_scheduler(self, loss: float) -> None:
        kind = self.scheduler.signal
        if kind == "none":
            self.scheduler.step()
        elif kind == "loss":
            self.scheduler.step(float(loss))
        elif kind == "params":
            self.scheduler.step(self.model.parameters())
        elif kind == "grads":
            self.scheduler.step(self.model.gradients())
        else:  # "batch_losses": the current epoch's batch losses so far
            self.scheduler.step(list(self._acc["batch_losses"]))
        self._copy_scheduler_lrs()

    def _copy_scheduler_lrs(self) -> None:
        groups = self.optimizer.param_groups
        lrs = list(self.scheduler.lrs)
        if len(lrs) == 1:
            lrs = lrs * len(groups)
        if len(lrs) != len(groups):
            raise ValueError(f"the scheduler has {len(lrs)} rates but the optimizer has "
                             f"{len(groups)} parameter groups; build them with the same groups")
        for group, lr in zip(groups, lrs):
            group["lr"] = check_lr(lr, "scheduler lr")

    def _check_optimizer_lrs(self) -> None:
        for i, group in enumerate(self.optimizer.param_groups):
            check_lr(group["lr"], f"optimizer.param_groups[{i}]['lr']")

    # -- NaN rollback ---------------------------------------------------------------------
    def _rollback(self, reason: str) -> None:
        if self._rollbacks >= self.max_rollbacks:
            raise NonFiniteLossError(f"non-finite {reason}; gave up after "
                                     f"{self._rollbacks} rollbacks with halved rates")
        count = self._rollbacks + 1
        self._load_state(copy.deepcopy(self._last_good))
        scale = 0.5 ** count
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * scale
        if self.scheduler is not None:
            for attr in ("base_lrs", "lrs"):
                if hasattr(self.scheduler, attr):
                    scaled = [v * scale for v in getattr(self.scheduler, attr)]
                    setattr(self.scheduler, attr, scaled)
        self._rollbacks = count
        self.history.events.append({"event": "rollback", "reason": f"non-finite {reason}",
                                    "to_step": self.global_step, "lr_scale": scale})

    # -- state and checkpoints ------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs (arrays copied)."""
        return {
            "trainer": {
                "epoch": self.epoch, "batch": self.batch, "global_step": self.global_step,
                "seed": self.seed, "batch_size": self.batch_size, "loss": self.loss,
                "accumulators": copy.deepcopy(self._acc), "data": dict(self._fingerprint),
            },
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "history": self.history.to_dict(),
        }

    def _load_state(self, state: dict) -> None:
        t = state["trainer"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.history = History.from_dict(state["history"])
        self.epoch, self.batch, self.global_step = t["epoch"], t["batch"], t["global_step"]
        self._acc = copy.deepcopy(t["accumulators"])

    def _load_run(self, state: dict, fingerprint: dict, path: Path) -> None:
        try:
            t = state["trainer"]
            mismatch = [f"{k}: checkpoint {t[k]!r}, trainer {v!r}"
                        for k, v in (("seed", self.seed), ("batch_size", self.batch_size),
                                     ("loss", self.loss)) if t[k] != v]
            if t["data"] != fingerprint:
                mismatch.append("training data differ (size or contents)")
            if (state["scheduler"] is None) != (self.scheduler is None):
                mismatch.append("one of the checkpoint and the trainer has a scheduler")
        except (KeyError, TypeError) as exc:
            raise CheckpointError(
                f"checkpoint {path} is not a trainer checkpoint ({exc})") from None
        if mismatch:
            raise ValueError(f"checkpoint {path} belongs to a different run: "
                             + "; ".join(mismatch) + ". Resume with the same settings and data.")
        self._load_state(state)

    def _checkpoint(self) -> Path | None:
        """Remember the current state as the last good one; write it when configured."""
        self._rollbacks = 0
        self._last_good = copy.deepcopy(self.state_dict())
        if self.checkpoint_path is None:
            return None
        return save_checkpoint(self.checkpoint_path, self._last_good)

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the current training state to ``path`` (atomic, pickle-free)."""
        return save_checkpoint(path, self.state_dict())

    def _interrupt(self) -> None:
        signum = self._catcher.signum
        path = self._checkpoint() if self.checkpoint_dir is not None else None
        raise TrainingInterrupted(signum, path)

    # -- input checks and callbacks -------------------------------------------------------
    def _check_data(self, data: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(f"{name} must be a tuple (X, y), got {type(data).__name__}")
        X, y = data
        dtype = getattr(self.model, "dtype", None)
        if self.loss == "cross_entropy":
            check_classification_data(X, y, dtype=dtype, name=name)
        else:
            _check_regression_data(X, y, dtype, name)
        try:
            out = self.model.forward(X[:1])
        except Exception as exc:  # noqa: BLE001 - any layer's complaint is about X's shape
            raise ValueError(f"{name} X has per-example shape {X.shape[1:]}, which the model "
                             f"cannot take ({exc})") from None
        if self.loss == "cross_entropy":
            check_classification_data(X, y, n_classes=out.shape[1], name=name)
        elif y.shape[1:] != out.shape[1:]:
            raise ValueError(f"{name} targets have per-example shape {y.shape[1:]} but the "
                             f"model outputs {out.shape[1:]}")
        return X, y

    def _call(self, hook: str, logs: dict) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(self, logs)


# ----------------------------------------------------------------------------- helpers

def build_scheduler(name: str, lr: float, epochs: int, batches_per_epoch: int, **kwargs: Any):
    """Build a scheduler by short or class name (``refimpl.schedulers.NAMES``) for a run.

    ``T_max`` and ``total_steps``, when the class takes them and they are not given, are set
    to the run length in the scheduler's own interval: ``epochs`` for ``interval="epoch"``,
    ``epochs * batches_per_epoch`` for ``interval="step"``.

    Raises
    ------
    ValueError
        Unknown name, or a scheduler family that is not available in this installation.
    """
    from refimpl import schedulers

    class_name = schedulers.NAMES.get(name, name)
    if class_name not in schedulers.NAMES.values():
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(schedulers.NAMES)}")
    try:
        cls = getattr(schedulers, class_name)
    except (AttributeError, ImportError) as exc:
        raise ValueError(
            f"scheduler {name!r} is not available in this installation ({exc})") from None
    params = inspect.signature(cls).parameters
    interval = kwargs.get("interval", getattr(cls, "interval", "epoch"))
    length = epochs * batches_per_epoch if interval == "step" else epochs
    for key in ("T_max", "total_steps"):
        if key in params and key not in kwargs:
            kwargs[key] = length
    return cls(lr, **kwargs)


class _Rollback(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _SignalCatcher:
    """Turn SIGINT/SIGTERM into a flag checked between batches (main thread only).

    A second signal while the first is pending raises ``KeyboardInterrupt`` at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"second signal {signum}")
        self.signum = signum

    def __enter__(self) -> _SignalCatcher:  # noqa: PYI034
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _progress_bar(progress: bool | None, total: int, initial: int, desc: str):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def _fingerprint(X: np.ndarray, y: np.ndarray) -> dict:
    """Size, shapes and CRC-32 of the training data: a resumed run must see the same data."""
    return {"n": len(X), "x_shape": list(X.shape), "x_dtype": X.dtype.str,
            "crc32": zlib.crc32(np.ascontiguousarray(y).tobytes(),
                                zlib.crc32(np.ascontiguousarray(X)))}


def _check_int(value: Any, name: str, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_regression_data(X: Any, y: Any, dtype: Any, name: str) -> None:
    if not isinstance(X, np.ndarray) or not isinstance(y, np.ndarray):
        raise ValueError(f"{name} must be a tuple (X, y) of NumPy arrays")  # noqa: TRY004
    for label, array in (("X", X), ("y", y)):
        if dtype is not None and array.dtype != np.dtype(dtype):
            raise ValueError(f"{name} {label} has dtype {array.dtype} but the model is "
                             f"{np.dtype(dtype)}; cast with .astype(np.{np.dtype(dtype)})")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} {label} contains NaN or inf")
    if y.ndim < 2 or len(y) != len(X) or len(X) == 0:
        raise ValueError(f"{name} y must have shape (N, outputs) with N = {len(X)} >= 1, got "
                         f"{y.shape}")
