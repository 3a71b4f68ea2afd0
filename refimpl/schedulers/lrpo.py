"""LRPO, the learning-rate predictor optimizer (LRPO paper; docs/methods.md §7), as a four-phase plan.

1. **pretrain** ``E1`` epochs at ``lr0``, recording the per-epoch training loss ``L_1..L_E1``;
2. **fit** a tiny predictor ``x -> z`` (1 -> 8 tanh -> 1 MLP) to that trajectory, with
   ``x = e / E1`` (normalized epoch) and ``z = (log L_e - m) / s`` (standardized log-loss,
   ``m``, ``s`` its mean and standard deviation), by full-batch Adam on the MSE, at most
   ``max_steps`` steps, from a fixed seed -- with this project's own ops and optimizer;
3. **jump** ``E3`` epochs at ``lr0 * alpha`` with::

       r     = 1 - L^(E1 + 1) / L^(E1)               predicted relative drop over one epoch
       c     = max(0, 1 - RMSE_fit / s)              fit confidence (RMSE in log-loss units)
       alpha = clip(1 + c * r, 1, alpha_max)

   (``L^`` is the predictor's loss, ``exp(m + s z(x))``; interpretation, docs/methods.md §7: the paper
   gives only "confidence in the trajectory forecast and the observed loss reduction rate");
4. **fine-tune** ``E4`` epochs at ``finetune_lr``.

The plan is a scheduler, :class:`LRPOSchedule` (``interval="epoch"``,
``signal="batch_losses"``): it records each epoch's mean batch loss, fits the predictor at
the end of epoch ``E1`` and sets the rates of the later phases. Any trainer that drives
schedulers by their ``signal`` runs it; :func:`refimpl.experiments.lrpo.run_lrpo` runs the
whole plan as one :class:`refimpl.train.Trainer` run of ``E1 + E3 + E4`` epochs and reports
the phases.

Interpretation: the recorded epoch loss is the mean of the epoch's batch losses, which is
the trainer's (example-weighted) ``train_loss`` whenever the batch size divides the
training-set size.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from refimpl import ops
from refimpl.init import glorot_uniform
from refimpl.optim import Adam
from refimpl.schedulers.base import Scheduler
from refimpl.schedulers.checks import check_factor, check_int, per_group

__all__ = ["LRPOSchedule", "TrajectoryPredictor", "jump_factor"]


class TrajectoryPredictor:
    """The 1 -> 8 tanh -> 1 MLP mapping a normalized epoch to a standardized log-loss.

    Parameters
    ----------
    hidden : int
        Width of the tanh layer (the paper: a "simple perceptron"; docs/methods.md §7: 8).
    seed : int
        Seeds the Glorot-uniform weights; biases start at zero.
    """

    def __init__(self, hidden: int = 8, seed: int = 0):
        if int(hidden) != hidden or hidden < 1:
            raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}")
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": glorot_uniform(rng, (1, hidden), np.float64),
            "b1": np.zeros(hidden),
            "W2": glorot_uniform(rng, (hidden, 1), np.float64),
            "b2": np.zeros(1),
        }
        self.n_epochs = 0  # E1: x = e / E1
        self.mean = 0.0  # m: mean of the log-losses
        self.std = 1.0  # s: their standard deviation
        self.rmse = math.nan  # fit error in log-loss units
        self.steps = 0
        self.fit_time = 0.0

    # -- the network ---------------------------------------------------------------------
    def _forward(self, x: np.ndarray):
        p = self.params
        h, cache1 = ops.dense_forward(x, p["W1"], p["b1"])
        a, cache_tanh = ops.tanh_forward(h)
        z, cache2 = ops.dense_forward(a, p["W2"], p["b2"])
        return z, (cache1, cache_tanh, cache2)

    def _backward(self, dz: np.ndarray, caches) -> list[np.ndarray]:
        cache1, cache_tanh, cache2 = caches
        da, dW2, db2 = ops.dense_backward(dz, cache2)
        dh = ops.tanh_backward(da, cache_tanh)
        _, dW1, db1 = ops.dense_backward(dh, cache1)
        return [dW1, db1, dW2, db2]

    # -- fitting and predicting ----------------------------------------------------------
    def fit(self, losses, max_steps: int = 2000, lr: float = 0.01, tol: float = 1e-10):
        """Fit the per-epoch losses ``L_1..L_E`` (E >= 2); return ``self``.

        Full-batch Adam on ``mse(z(x), (log L - m) / s)``; stops after ``max_steps`` steps or
        once the MSE is below ``tol``. Records ``rmse`` (log-loss units), ``steps`` and
        ``fit_time`` (seconds).
        """
        losses = np.asarray(losses, dtype=np.float64).ravel()
        if losses.size < 2:
            raise ValueError(f"need the losses of at least 2 epochs to fit, got {losses.size}")
        if not np.all(np.isfinite(losses)) or np.any(losses <= 0):
            raise ValueError("losses must be finite and > 0 (the predictor fits log-losses)")
        start = time.perf_counter()
        log_loss = np.log(losses)
        self.n_epochs = int(losses.size)
        self.mean = float(log_loss.mean())
        self.std = float(log_loss.std())
        x = self._x(np.arange(1, losses.size + 1))
        target = ((log_loss - self.mean) / (self.std if self.std > 0 else 1.0)).reshape(-1, 1)
        names = ("W1", "b1", "W2", "b2")
        optimizer = Adam([self.params[n] for n in names], lr=lr)
        self.steps = 0
        for _ in range(int(max_steps)):
            z, caches = self._forward(x)
            mse, dz = ops.mse(z, target)
            if mse < tol:
                break
            optimizer.step(self._backward(dz, caches))
            self.steps += 1
        fitted = self.predict_log_loss(np.arange(1, losses.size + 1))
        self.rmse = float(np.sqrt(np.mean((fitted - log_loss) ** 2)))
        self.fit_time = time.perf_counter() - start
        return self

    def _x(self, epochs) -> np.ndarray:
        return (np.asarray(epochs, dtype=np.float64) / self.n_epochs).reshape(-1, 1)

    def predict_log_loss(self, epochs) -> np.ndarray:
        """``log L^(e) = m + s z(e / E1)`` for the given (1-based) epochs."""
        if self.n_epochs == 0:
            raise ValueError("the predictor is not fitted; call fit(losses) first")
        z, _ = self._forward(self._x(epochs))
        return self.mean + self.std * z.ravel()

    def predict_loss(self, epochs) -> np.ndarray:
        """The predicted training loss ``L^(e)``."""
        return np.exp(self.predict_log_loss(epochs))

    @property
    def confidence(self) -> float:
        """``c = max(0, 1 - RMSE_fit / s)``; 0 when the losses do not vary."""
        if not self.std > 0:
            return 0.0
        return max(0.0, 1.0 - self.rmse / self.std)

    def relative_drop(self) -> float:
        """``r = 1 - L^(E1 + 1) / L^(E1)``: the predicted drop over the next epoch."""
        last, following = self.predict_log_loss([self.n_epochs, self.n_epochs + 1])
        return float(1.0 - math.exp(following - last))

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable state (weights as nested lists)."""
        return {
            "params": {k: v.tolist() for k, v in self.params.items()},
            "n_epochs": self.n_epochs,
            "mean": self.mean,
            "std": self.std,
            "rmse": self.rmse,
            "steps": self.steps,
            "fit_time": self.fit_time,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"params", "n_epochs", "mean", "std", "rmse"} - set(state)
        if missing:
            raise ValueError(f"predictor state is missing keys {sorted(missing)}")
        params = {k: np.asarray(v, dtype=np.float64) for k, v in state["params"].items()}
        if params.keys() != self.params.keys() or params["W1"].shape[0] != 1:
            raise ValueError("predictor state does not hold a 1 -> hidden -> 1 network")
        hidden = params["W1"].shape[1]
        self.params = {
            "W1": params["W1"].reshape(1, hidden),
            "b1": params["b1"].reshape(hidden),
            "W2": params["W2"].reshape(hidden, 1),
            "b2": params["b2"].reshape(1),
        }
        self.n_epochs = int(state["n_epochs"])
        self.mean, self.std, self.rmse = (float(state[k]) for k in ("mean", "std", "rmse"))
        self.steps = int(state.get("steps", 0))
        self.fit_time = float(state.get("fit_time", 0.0))


def jump_factor(r: float, c: float, alpha_max: float = 1.5) -> float:
    """``alpha = clip(1 + c r, 1, alpha_max)``."""
    return float(min(max(1.0 + c * r, 1.0), alpha_max))


class LRPOSchedule(Scheduler):
    """The LRPO plan as an epoch scheduler: ``lr0`` for ``E1`` epochs, ``lr0 alpha`` for
    ``E3``, then ``finetune_lr``.

    Parameters
    ----------
    lr : float or list of float
        ``lr0`` (per group).
    pretrain_epochs, jump_epochs : int
        ``E1`` (>= 2) and ``E3``; fine-tuning lasts as long as the trainer runs after them.
    finetune_lr : float or list of float
        Rate of phase 4.
    alpha_max : float
        Upper clip of ``alpha``.
    predictor_steps : int
        At most this many full-batch Adam steps for the predictor fit.
    seed : int
        Seeds the predictor's initial weights.

    Notes
    -----
    ``step(batch_losses)`` once per epoch with that epoch's batch losses. At the end of
    epoch ``E1`` the predictor is fitted (``alpha``, ``r``, ``c`` and ``predictor`` are set);
    the state dict holds the predictor, so a run resumed mid-plan continues identically.
    """

    interval = "epoch"
    signal = "batch_losses"
    _state_keys = (
        "pretrain_epochs",
        "jump_epochs",
        "finetune_lrs",
        "alpha_max",
        "predictor_steps",
        "seed",
        "epoch",
        "losses",
        "alpha",
        "r",
        "c",
        "predictor_state",
    )

    def __init__(
        self,
        lr: float | list[float],
        pretrain_epochs: int = 10,
        jump_epochs: int = 1,
        finetune_lr: float | list[float] = 0.001,
        alpha_max: float = 1.5,
        predictor_steps: int = 2000,
        seed: int = 0,
    ):
        super().__init__(lr)
        self.pretrain_epochs = check_int(pretrain_epochs, "pretrain_epochs", 2, whole_float=True,
                                         why=" (the predictor fits a trajectory)")
        self.jump_epochs = check_int(jump_epochs, "jump_epochs", 0, whole_float=True)
        self.predictor_steps = check_int(predictor_steps, "predictor_steps", 1,
                                         whole_float=True)
        self.finetune_lrs = per_group(finetune_lr, self.n_groups, "finetune_lr")
        self.alpha_max = check_factor(alpha_max, "alpha_max", low=1.0, high=math.inf)
        self.seed = int(seed)
        self.epoch = 0
        self.losses: list[float] = []
        self.alpha = self.r = self.c = math.nan
        self.predictor: TrajectoryPredictor | None = None

    @property
    def predictor_state(self) -> dict | None:
        return None if self.predictor is None else self.predictor.state_dict()

    @predictor_state.setter
    def predictor_state(self, state: dict | None) -> None:
        if state is None:
            self.predictor = None
        else:
            self.predictor = TrajectoryPredictor(seed=self.seed)
            self.predictor.load_state_dict(state)

    def phase(self, epoch: int) -> str:
        """The phase that (0-based) ``epoch`` belongs to."""
        if epoch < self.pretrain_epochs:
            return "pretrain"
        if epoch < self.pretrain_epochs + self.jump_epochs:
            return "jump"
        return "finetune"

    def explain(self) -> dict:
        """What the last :meth:`step` did: ``rule``, ``epoch`` (epochs seen), ``phase`` (of
        the next epoch: pretrain, jump or finetune), ``alpha = clip(1 + c r, 1, alpha_max)``,
        ``r`` (predicted relative drop), ``c`` (fit confidence; ``alpha``, ``r``, ``c`` are
        NaN before the fit at the end of epoch ``E1``), ``fit_at``, ``lrs``."""
        phase = self.phase(self.epoch)
        rates = {"pretrain": "lr0", "jump": f"lr0 * alpha ({self.alpha!r})",
                 "finetune": "finetune_lr"}[phase]
        rule = (f"after epoch {self.epoch}: next epoch is in phase {phase} -> {rates}"
                + (f"; fitted at epoch {self.pretrain_epochs}: alpha = clip(1 + c r, 1, "
                   f"{self.alpha_max:g}) with r = {self.r!r}, c = {self.c!r}"
                   if self.epoch >= self.pretrain_epochs else ""))
        return {"rule": rule, "epoch": self.epoch, "phase": phase, "alpha": self.alpha,
                "r": self.r, "c": self.c, "fit_at": self.pretrain_epochs, "lrs": list(self.lrs)}

    def step(self, batch_losses) -> float:
        """Record one epoch; at the phase boundaries fit the predictor or change the rate."""
        losses = [float(v) for v in batch_losses]
        if not losses:
            raise ValueError("batch_losses is empty; pass the losses of the epoch's batches")
        self.epoch += 1
        if self.epoch <= self.pretrain_epochs:
            self.losses.append(float(np.mean(losses)))
        if self.epoch == self.pretrain_epochs:
            self.predictor = TrajectoryPredictor(seed=self.seed).fit(
                self.losses, max_steps=self.predictor_steps
            )
            self.r = self.predictor.relative_drop()
            self.c = self.predictor.confidence
            self.alpha = jump_factor(self.r, self.c, self.alpha_max)
            self.lrs = [lr * self.alpha for lr in self.base_lrs]
        if self.epoch == self.pretrain_epochs + self.jump_epochs:
            self.lrs = list(self.finetune_lrs)
        return self.lr
