"""The training loop: :class:`Trainer`.

One epoch visits every training example once, in mini-batches of ``batch_size`` (the last
batch may be smaller), in the order of ``default_rng([seed, epoch]).permutation(N)``.
Deriving each epoch's order from ``(seed, epoch)`` alone means a resumed run needs no
random-number state to shuffle exactly as the uninterrupted one.

Per step (:meth:`Trainer.train_step`): forward, loss, backward, ``optimizer.step``, then the
step-interval scheduler and the ``on_batch_end`` callbacks. A backend with a device-resident
step (``cuda``: :mod:`refimpl.kernels.cuda.train`) runs the first four on the device; the
host arrays are refreshed from it before anything here reads them. Per epoch: validation, the
epoch-interval scheduler, ``on_epoch_end`` callbacks, and a checkpoint.

The parts live beside this module: :mod:`~refimpl.training.history` (the record),
:mod:`~refimpl.training.scheduling` (which signal a scheduler gets, and copying its rates
into the optimizer), :mod:`~refimpl.training.nan_policy` (NaN/inf losses and gradients),
:mod:`~refimpl.training.resume` (checkpoints) and :mod:`~refimpl.training.signals`
(SIGINT/SIGTERM).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refimpl import kernels
from refimpl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from refimpl.schedulers.checks import check_int, check_lr

from .checks import check_callbacks, check_data, check_model, check_optimizer
from .history import History
from .nan_policy import (
    NAN_POLICIES,
    NonFiniteLossError,
    Rollback,
    all_finite,
    rollback_scale,
    with_scaled_rates,
)
from .resume import CHECKPOINT_NAME, check_position, check_same_run, fingerprint
from .scheduling import check_scheduler, copy_rates, step_scheduler, unusable_rate
from .signals import SignalCatcher, TrainingInterrupted

__all__ = ["LOSSES", "Trainer"]

LOSSES = ("cross_entropy", "mse")


class Trainer:
    """Mini-batch training of a ``Sequential`` with an optimizer and an optional scheduler.

    Parameters
    ----------
    model : refimpl.model.Sequential
        Anything with ``forward``, ``backward``, ``parameters``, ``gradients``,
        ``state_dict``/``load_state_dict``, ``layers``, ``set_backend`` and a ``backend``
        name (``refimpl.model.build(spec, input_shape)``, ``refimpl.registry.get_model``).
    optimizer : refimpl.optim.Optimizer
        Built over ``model.parameters()`` (the same arrays, in the same order), e.g.
        ``SGD(model.parameters(), lr=0.1)`` or ``refimpl.registry.make_optimizer("sgd",
        model.parameters(), lr=0.1)``.
    scheduler : refimpl.schedulers.Scheduler, optional
        A scheduler object (``refimpl.registry.make_scheduler`` builds one by name), driven
        through ``interval`` and ``signal``; its rates are copied into the optimizer at the
        start of a fresh run and after each of its steps. A rate is checked when a step is
        about to use it, so a schedule's rate past the run's last step (which no step uses)
        is never refused (:mod:`refimpl.training.scheduling`).
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
        On a NaN/inf loss or gradient (:mod:`refimpl.training.nan_policy`): raise
        :class:`NonFiniteLossError`; skip the batch; or return to the last good state with
        every rate halved, at most ``max_rollbacks`` times in a row.
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
    metadata : dict, optional
        Stored as is in every checkpoint (``state["metadata"]``), e.g. the settings of the
        command that started the run; the trainer itself never reads it.
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
        metadata: dict | None = None,
    ):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
        check_int(batch_size, "batch_size", 1)
        check_int(eval_batch_size, "eval_batch_size", 1)
        check_int(max_rollbacks, "max_rollbacks", 0)
        if checkpoint_every is not None:
            check_int(checkpoint_every, "checkpoint_every", 1)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        check_model(model)
        check_optimizer(optimizer, model)
        callbacks = check_callbacks(callbacks)
        if progress is not None and not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be True, False or None (a bar only on a terminal), "
                            f"got {progress!r}")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict (stored in every checkpoint), got "
                            f"{type(metadata).__name__}")
        if scheduler is not None:
            check_scheduler(scheduler)
            n_rates, n_groups = len(scheduler.lrs), len(optimizer.param_groups)
            if n_rates not in (1, n_groups):
                raise ValueError(f"scheduler has {n_rates} rates but the optimizer has "
                                 f"{n_groups} parameter groups; build the scheduler with one "
                                 "rate, or one per group")
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
        self.callbacks = callbacks
        self.checkpoint_every = checkpoint_every
        self.eval_batch_size = int(eval_batch_size)
        self.max_rollbacks = int(max_rollbacks)
        self.metadata = dict(metadata or {})
        self.history = History()
        self.stop_training = False
        self._unusable_rate: str | None = None  # set when the scheduler's rate cannot be used
        self._device = None  # the backend's device-resident step, made at the first step
        self._data = None  # the training data of the current fit, and its fingerprint once taken
        self._data_fingerprint: dict | None = None
        self._reset_position()

    # -- position in the run ------------------------------------------------------------
    def _reset_position(self) -> None:
        self.epoch = 0          # completed epochs
        self.batch = 0          # batches done in the current epoch
        self.global_step = 0    # batches done in the run (skipped ones included)
        self._acc = _fresh_accumulators()
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
        check_int(epochs, "epochs", 1)
        X, y = check_data(self.model, train, self.loss, "train")
        if val is not None:
            val = check_data(self.model, val, self.loss, "val")
        n_batches = math.ceil(len(X) / self.batch_size)
        if hasattr(self.scheduler, "set_batches_per_epoch"):
            self.scheduler.set_batches_per_epoch(n_batches)
        # The CRC-32 of the data (tens of ms for Fashion-MNIST) is taken when a checkpoint
        # needs it (a write, a resume, state_dict), not on every call of fit.
        self._data, self._data_fingerprint = (X, y), None
        if resume:
            self._resume(resume, n_batches)
        else:
            self._start()
        for i, group in enumerate(self.optimizer.param_groups):
            check_lr(group["lr"], f"optimizer.param_groups[{i}]['lr']")
        self._last_good = copy.deepcopy(self._state(with_data=False))
        if self._device is not None:
            self._device.invalidate()  # the run starts from the host arrays as they are now
        self.stop_training = False
        with SignalCatcher() as catcher:
            self._catcher = catcher
            try:
                while self.epoch < epochs and not self.stop_training:
                    try:
                        self._run_epoch(X, y, val, n_batches, epochs)
                    except Rollback as rollback:
                        self._rollback(rollback.reason)
            finally:
                self._pull()
        return self.history

    def _start(self) -> None:
        self.history = History()
        self._reset_position()
        if self.scheduler is not None:
            self._unusable_rate = copy_rates(self.scheduler, self.optimizer)

    def _run_epoch(self, X, y, val, n_batches: int, epochs: int) -> None:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(X))
        start = time.perf_counter() - self._acc["elapsed"]
        bar = _progress_bar(self.progress, n_batches, self.batch,
                            f"epoch {self.epoch + 1}/{epochs}")
        try:
            while self.batch < n_batches:
                index = order[self.batch * self.batch_size:(self.batch + 1) * self.batch_size]
                loss = self.train_step(X[index], y[index])
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

    def train_step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        """One optimizer step on the batch ``(xb, yb)``; returns the batch loss.

        Raises ``ValueError`` first when the scheduler's last step gave a rate this step
        cannot use (not a finite number >= 0); the optimizer then still holds the last
        usable rate, which no step takes silently in its place.
        """
        if self._unusable_rate is not None:
            raise ValueError(self._unusable_rate)
        started = time.perf_counter()
        lr = float(self.optimizer.param_groups[0]["lr"])
        device = self._device_step()
        if device is not None:  # forward to update on the device; one batch in, one result out
            loss, correct, finite = device.step(xb, yb)
            if not finite:
                return self._non_finite(loss, lr, started)
            logits = None
        else:
            logits = self.model.forward(xb)
            loss, dlogits = self._loss_fn(logits, yb)
            grads = self._backward(dlogits) if math.isfinite(loss) else None
            backend = kernels.get_backend(getattr(self.model, "backend", "numpy"))
            fast = getattr(backend, "optim", None)  # one-pass updates and checks, where it has them
            if not all_finite(loss, grads, fast and fast.array_finite):
                return self._non_finite(loss, lr, started)
            # copy_grads=False: the gradient buffers stay unchanged until the next backward
            self.optimizer.step(grads, copy_grads=False,
                                update=fast and fast.update_for(self.optimizer))
            correct = None
        self._record_step(float(loss), lr, started)
        self._accumulate(float(loss), logits, yb, correct)
        if self.scheduler is not None and self.scheduler.interval == "step":
            self._step_scheduler(loss)
        self._end_step(loss, lr, skipped=False)
        return float(loss)

    def _backward(self, dlogits: np.ndarray) -> list[np.ndarray]:
        self.model.backward(dlogits, input_grad=False)  # no one reads d loss / d x
        return self.model.gradients()

    def _accumulate(self, loss: float, logits: np.ndarray | None, yb: np.ndarray,
                    correct: int | None = None) -> None:
        """Add the batch to the epoch's running sums (train loss and accuracy); ``correct``,
        when given, is the batch's count of right predictions (counted on the device)."""
        acc = self._acc
        acc["loss_sum"] += loss * len(yb)
        acc["seen"] += len(yb)
        acc["batch_losses"].append(loss)
        if self.loss == "cross_entropy":
            acc["correct"] += (correct if correct is not None
                               else int((logits.argmax(axis=1) == yb).sum()))

    def _end_step(self, loss: float, lr: float, skipped: bool) -> None:
        self.batch += 1
        self.global_step += 1
        if self.checkpoint_every and self.global_step % self.checkpoint_every == 0:
            self._checkpoint()
        self._call("on_batch_end", {"epoch": self.epoch, "batch": self.batch - 1,
                                    "step": self.global_step - 1, "loss": float(loss),
                                    "lr": lr, "skipped": skipped})

    def _record_step(self, loss: float, lr: float, started: float) -> None:
        self.history.loss.append(loss)
        self.history.lr.append(lr)
        self.history.step_time.append(time.perf_counter() - started)

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
        self._acc = _fresh_accumulators()
        self._call("on_epoch_end", {"epoch": self.epoch - 1, "train_loss": train_loss,
                                    "train_acc": train_acc, "val_loss": val_loss,
                                    "val_acc": val_acc, "lr": h.lr_epoch[-1], "time": elapsed})
        self._checkpoint()

    # -- evaluation and loss ------------------------------------------------------------
    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy (NaN for ``mse``) over ``(X, y)``, in eval batches.

        Layers with a ``training`` flag (dropout) run in evaluation mode meanwhile."""
        self._pull("params")
        modal = [layer for layer in self.model.layers if hasattr(layer, "training")]
        for layer in modal:
            layer.training = False
        try:
            return self._evaluate(X, y)
        finally:
            for layer in modal:
                layer.training = True

    def _evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
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

    # -- the scheduler ------------------------------------------------------------------
    def _step_scheduler(self, loss: float) -> None:
        if self.scheduler.signal in ("params", "grads"):
            self._pull(self.scheduler.signal)
        step_scheduler(self.scheduler, self.model, loss, self._acc["batch_losses"])
        self._unusable_rate = copy_rates(self.scheduler, self.optimizer)

    # -- NaN/inf ------------------------------------------------------------------------
    def _non_finite(self, loss: float, lr: float, started: float) -> float:
        where = (f"loss={loss} at epoch {self.epoch}, batch {self.batch} (step "
                 f"{self.global_step}, lr={lr:g})")
        if self.nan_policy == "raise":
            raise NonFiniteLossError(
                f"non-finite {where}; lower the learning rate, or pass "
                "nan_policy='skip-batch' or 'rollback'"
            )
        if self.nan_policy == "rollback":
            raise Rollback(where)
        self._record_step(float("nan"), lr, started)
        self.history.skipped.append(self.global_step)
        self._end_step(loss, lr, skipped=True)
        return float("nan")

    def _rollback(self, reason: str) -> None:
        """Back to the last good state with every rate halved once more."""
        if self._rollbacks >= self.max_rollbacks:
            raise NonFiniteLossError(f"non-finite {reason}; gave up after "
                                     f"{self._rollbacks} rollbacks with halved rates")
        count = self._rollbacks + 1
        scale = rollback_scale(count)
        self._load_state(with_scaled_rates(self._last_good, scale))
        self._rollbacks = count
        self.history.events.append({"event": "rollback", "reason": f"non-finite {reason}",
                                    "to_step": self.global_step, "lr_scale": scale})

    # -- state, checkpoints, signals -----------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs (arrays copied). ``trainer["data"]`` is the
        fingerprint of the data of the last :meth:`fit` (None before the first)."""
        return self._state(with_data=True)

    def _fingerprint(self) -> dict | None:
        if self._data_fingerprint is None and self._data is not None:
            self._data_fingerprint = fingerprint(*self._data)
        return self._data_fingerprint

    def _state(self, with_data: bool) -> dict:
        """:meth:`state_dict`; without ``with_data`` the data fingerprint is None (the copy
        kept for a rollback, which does not read it)."""
        self._pull()
        data = self._fingerprint() if with_data else None
        return {
            "trainer": {
                "epoch": self.epoch, "batch": self.batch, "global_step": self.global_step,
                "seed": self.seed, "batch_size": self.batch_size, "loss": self.loss,
                "accumulators": copy.deepcopy(self._acc),
                "data": dict(data) if data is not None else None,
            },
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "history": self.history.to_dict(),
            "metadata": copy.deepcopy(self.metadata),
        }

    def _load_state(self, state: dict) -> None:
        t = state["trainer"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            self._unusable_rate = unusable_rate(self.scheduler)
        self.history = History.from_dict(state["history"])
        self.epoch, self.batch, self.global_step = t["epoch"], t["batch"], t["global_step"]
        self._acc = copy.deepcopy(t["accumulators"])
        if self._device is not None:
            self._device.invalidate()  # the device copies are older than what was loaded

    def _resume(self, resume: str | Path | bool, n_batches: int) -> None:
        path = self.checkpoint_path if resume is True else Path(resume)
        if path is None:
            raise ValueError("resume=True needs checkpoint_dir; or pass the checkpoint path")
        state = load_checkpoint(path)
        check_position(state, n_batches, path)
        settings = {"seed": self.seed, "batch_size": self.batch_size, "loss": self.loss}
        check_same_run(state, settings, self._fingerprint(), self.scheduler is not None, path)
        try:
            self._load_state(state)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"checkpoint {path} does not fit this run ({type(exc).__name__}: {exc}); "
                "resume from another checkpoint or start afresh") from None

    def _checkpoint(self) -> Path | None:
        """Remember the current state as the last good one; write it when configured."""
        self._rollbacks = 0
        self._last_good = copy.deepcopy(self._state(with_data=self.checkpoint_path is not None))
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

    def _call(self, hook: str, logs: dict) -> None:
        methods = [getattr(callback, hook) for callback in self.callbacks
                   if getattr(callback, hook, None) is not None]
        if methods:
            self._pull("params")  # a callback may read the model's parameters
        for method in methods:
            method(self, logs)

    # -- the device-resident step ---------------------------------------------------------
    def _device_step(self):
        """The backend's device-resident step for this model, optimizer and loss
        (:mod:`refimpl.kernels.cuda.train`), or None: the step then runs op by op."""
        backend = kernels.get_backend(getattr(self.model, "backend", "numpy"))
        train = getattr(backend, "train", None)
        if train is not None:
            self._device = train.resident_step(self.model, self.optimizer, self.loss,
                                               self._device)
        elif self._device is not None:
            self._pull()
            self._device = None
        return self._device

    def _pull(self, *parts: str) -> None:
        """Refresh the host arrays from the device step, if there is one (``parts``: see
        :meth:`refimpl.kernels.cuda.train.DeviceStep.pull`)."""
        if self._device is not None:
            self._device.pull(*parts)


def _fresh_accumulators() -> dict:
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "batch_losses": [], "elapsed": 0.0}


def _progress_bar(progress: bool | None, total: int, initial: int, desc: str):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)
