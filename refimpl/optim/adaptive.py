"""Per-coordinate step scalings with torch's semantics (docs/methods.md §2): ``RMSprop``,
``Adagrad``, ``Adadelta``.

Each divides the gradient by a running measure of its own size. ``maximize`` negates the
gradient first; ``weight_decay`` is L2 (``g <- g + weight_decay * w``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .base import Optimizer, _check_flag, _check_number, _lerp_

__all__ = ["Adadelta", "Adagrad", "RMSprop"]


def _l2(param: np.ndarray, grad: np.ndarray, weight_decay: float) -> np.ndarray:
    return grad + weight_decay * param if weight_decay != 0 else grad


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum (torch's ``RMSprop``).

    Per parameter, with gradient ``g`` (docs/methods.md §2, (2.7))::

        g <- -g                                    (if maximize)
        g <- g + weight_decay * w                  (if weight_decay)
        v <- alpha v + (1 - alpha) g^2
        a <- alpha a + (1 - alpha) g               (centered)
        d = sqrt(v - a^2) + eps   if centered  else  sqrt(v) + eps
        b <- momentum b + g / d;  w <- w - lr b    (momentum > 0; b starts at 0)
        w <- w - lr g / d                          (momentum = 0)

    Parameters
    ----------
    params : list of arrays or list of group dicts
    lr : float, default 1e-2
    alpha : float >= 0, default 0.99 -- smoothing constant (torch sets no upper bound).
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float >= 0, default 0
    centered : bool, default False -- divide by the estimated standard deviation instead.
    maximize : bool, default False
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False, *, maximize: bool = False):
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                    "momentum": momentum, "centered": centered, "maximize": maximize}
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        for name in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            group[name] = _check_number(group[name], name)
        group["centered"] = _check_flag(group["centered"], "centered")
        group["maximize"] = _check_flag(group["maximize"], "maximize")

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        if not state:
            state.update(step=0, square_avg=np.zeros_like(param))
        state["step"] += 1
        grad = _l2(param, grad, group["weight_decay"])
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state.setdefault("grad_avg", np.zeros_like(param))
            _lerp_(grad_avg, grad, 1 - alpha)
            denom = np.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            denom = np.sqrt(square_avg) + eps
        if momentum > 0:
            buf = state.setdefault("momentum_buffer", np.zeros_like(param))
            buf *= momentum
            buf += grad / denom
            param -= group["lr"] * buf
        else:
            param -= group["lr"] * (grad / denom)


class Adagrad(Optimizer):
    """Adagrad with learning-rate decay (torch's ``Adagrad``).

    Per parameter, at step ``t`` (1-based), with gradient ``g`` (docs/methods.md §2, (2.8))::

        g <- -g                                    (if maximize)
        g <- g + weight_decay * w                  (if weight_decay)
        lr_t = lr / (1 + (t - 1) lr_decay)
        s <- s + g^2                               (s starts at initial_accumulator_value)
        w <- w - lr_t g / (sqrt(s) + eps)

    As in torch, every parameter's accumulator is created at construction from the
    constructor's ``initial_accumulator_value``; a group dict's own value is kept in the
    group but does not change the accumulators.

    Parameters
    ----------
    params : list of arrays or list of group dicts
    lr : float, default 1e-2
    lr_decay : float >= 0, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float >= 0, default 0
    eps : float, default 1e-10
    maximize : bool, default False
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, *, maximize: bool = False):
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value,
                    "maximize": maximize}
        super().__init__(params, defaults)
        # checked here too: a value every group overrides is still the one torch uses
        self.defaults["initial_accumulator_value"] = _check_number(
            initial_accumulator_value, "initial_accumulator_value")
        for index, param in enumerate(self._flat_params()):
            self.state[index] = self._fresh_state(param)

    def _fresh_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0,
                "sum": np.full_like(param, self.defaults["initial_accumulator_value"])}

    def _validate_group(self, group: dict[str, Any]) -> None:
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            group[name] = _check_number(group[name], name)
        group["maximize"] = _check_flag(group["maximize"], "maximize")

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        if not state:  # a state dict without this parameter's entry: start it afresh
            state.update(self._fresh_state(param))
        state["step"] += 1
        grad = _l2(param, grad, group["weight_decay"])
        step_lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        accumulator = state["sum"]
        accumulator += grad * grad
        param -= step_lr * (grad / (np.sqrt(accumulator) + group["eps"]))


class Adadelta(Optimizer):
    """Adadelta (torch's ``Adadelta``).

    Per parameter, with gradient ``g`` (docs/methods.md §2, (2.9))::

        g <- -g                                    (if maximize)
        g <- g + weight_decay * w                  (if weight_decay)
        v <- rho v + (1 - rho) g^2
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u <- rho u + (1 - rho) delta^2
        w <- w - lr delta

    Parameters
    ----------
    params : list of arrays or list of group dicts
    lr : float, default 1.0
    rho : float in [0, 1], default 0.9
    eps : float, default 1e-6
    weight_decay : float, default 0
    maximize : bool, default False
    """

    def __init__(self, params: Iterable, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, *, maximize: bool = False):
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize}
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        group["lr"] = _check_number(group["lr"], "lr")
        group["rho"] = _check_number(group["rho"], "rho", high=1.0, high_inclusive=True)
        group["eps"] = _check_number(group["eps"], "eps")
        group["weight_decay"] = _check_number(group["weight_decay"], "weight_decay")
        group["maximize"] = _check_flag(group["maximize"], "maximize")

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        rho, eps = group["rho"], group["eps"]
        if not state:
            state.update(step=0, square_avg=np.zeros_like(param),
                         acc_delta=np.zeros_like(param))
        state["step"] += 1
        grad = _l2(param, grad, group["weight_decay"])
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg *= rho
        square_avg += (1 - rho) * grad * grad
        delta = np.sqrt(acc_delta + eps) / np.sqrt(square_avg + eps) * grad
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        param -= group["lr"] * delta
