"""Per-coordinate step scalings with torch's semantics (docs/methods.md §2): ``RMSprop``,
``Adagrad``, ``Adadelta``.

Each divides the gradient by a running measure of its own size. ``maximize`` negates the
gradient first; ``weight_decay`` is L2 (``g <- g + weight_decay * w``).

``explain(param, index)`` (see :meth:`Optimizer.explain`) gives, besides the common entries,
the hyper-parameters the step used, the state after the step under its torch names, and the
terms of each class's last lines, listed in its docstring.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .base import Optimizer, _check_flag, _check_number, _describe, _gradient_terms, _lerp_

__all__ = ["Adadelta", "Adagrad", "RMSprop"]


def _l2(param: np.ndarray, grad: np.ndarray, weight_decay: float, used: dict) -> np.ndarray:
    """``g + weight_decay * w`` (the term kept in ``used`` for ``explain``)."""
    if weight_decay == 0:
        return grad
    used["decay_term"] = weight_decay * param
    return grad + used["decay_term"]


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

    ``explain`` adds ``alpha``, ``eps``, ``momentum``, ``centered``, ``weight_decay``,
    ``square_avg`` (``v``), ``grad_avg`` (``a``, centered), ``denom`` (``d``),
    ``momentum_buffer`` (``b``, momentum > 0) and ``update`` (``lr b`` or ``lr g / d``).

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

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> dict:
        alpha, momentum = group["alpha"], group["momentum"]
        if not state:
            state.update(step=0, square_avg=np.zeros_like(param))
        state["step"] += 1
        used: dict = {}
        grad = _l2(param, grad, group["weight_decay"], used)
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state.setdefault("grad_avg", np.zeros_like(param))
            _lerp_(grad_avg, grad, 1 - alpha)
        denom = self._denom(state, group)
        if momentum > 0:
            buf = state.setdefault("momentum_buffer", np.zeros_like(param))
            buf *= momentum
            buf += grad / denom
            param -= group["lr"] * buf
        else:
            param -= group["lr"] * (grad / denom)
        return used

    @staticmethod
    def _denom(state: dict, hyper: dict) -> np.ndarray:
        """``d``, from the averages after the update (the step's and ``explain``'s)."""
        square_avg = state["square_avg"]
        if hyper["centered"]:
            grad_avg = state["grad_avg"]
            return np.sqrt(square_avg - grad_avg * grad_avg) + hyper["eps"]
        return np.sqrt(square_avg) + hyper["eps"]

    def _rule(self, hyper: dict[str, Any]) -> str:
        flags = ("centered" if hyper["centered"] else "",
                 f"momentum={hyper['momentum']:g}" if hyper["momentum"] > 0 else "")
        d = "sqrt(v - a^2) + eps" if hyper["centered"] else "sqrt(v) + eps"
        if hyper["momentum"] > 0:
            return _describe("rmsprop", hyper, f"b = momentum * b + g / d; p -= lr * b, "
                             f"d = {d}", *flags)
        return _describe("rmsprop", hyper, f"p -= lr * g / d, d = {d}", *flags)

    def _terms(self, used: dict, state: dict, hyper: dict[str, Any]) -> dict[str, Any]:
        gradient_terms, grad = _gradient_terms(used)
        terms = {"lr": hyper["lr"], "alpha": hyper["alpha"], "eps": hyper["eps"],
                 "momentum": hyper["momentum"], "centered": hyper["centered"],
                 "weight_decay": hyper["weight_decay"], "t": state["step"], **gradient_terms,
                 "square_avg": state["square_avg"]}
        if hyper["centered"]:
            terms["grad_avg"] = state["grad_avg"]
        terms["denom"] = denom = self._denom(state, hyper)
        if hyper["momentum"] > 0:
            terms["momentum_buffer"] = state["momentum_buffer"]
            terms["update"] = hyper["lr"] * state["momentum_buffer"]
        else:
            terms["update"] = hyper["lr"] * (grad / denom)
        return terms


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

    ``explain`` adds ``lr_decay``, ``eps``, ``weight_decay``, ``clr`` (``lr_t``), ``sum``
    (``s``), ``denom`` (``sqrt(s) + eps``) and ``update`` (``lr_t g / denom``).

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

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> dict:
        if not state:  # a state dict without this parameter's entry: start it afresh
            state.update(self._fresh_state(param))
        state["step"] += 1
        used: dict = {}
        grad = _l2(param, grad, group["weight_decay"], used)
        step_lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        accumulator = state["sum"]
        accumulator += grad * grad
        param -= step_lr * (grad / (np.sqrt(accumulator) + group["eps"]))
        return used

    def _rule(self, hyper: dict[str, Any]) -> str:
        return _describe("adagrad", hyper, "s += g^2; p -= lr / (1 + (t - 1) lr_decay) * g / "
                         "(sqrt(s) + eps)",
                         f"lr_decay={hyper['lr_decay']:g}" if hyper["lr_decay"] else "")

    def _terms(self, used: dict, state: dict, hyper: dict[str, Any]) -> dict[str, Any]:
        gradient_terms, grad = _gradient_terms(used)
        step_lr = hyper["lr"] / (1 + (state["step"] - 1) * hyper["lr_decay"])
        denom = np.sqrt(state["sum"]) + hyper["eps"]
        return {"lr": hyper["lr"], "lr_decay": hyper["lr_decay"], "eps": hyper["eps"],
                "weight_decay": hyper["weight_decay"], "t": state["step"], **gradient_terms,
                "clr": step_lr, "sum": state["sum"], "denom": denom,
                "update": step_lr * (grad / denom)}


class Adadelta(Optimizer):
    """Adadelta (torch's ``Adadelta``).

    Per parameter, with gradient ``g`` (docs/methods.md §2, (2.9))::

        g <- -g                                    (if maximize)
        g <- g + weight_decay * w                  (if weight_decay)
        v <- rho v + (1 - rho) g^2
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u <- rho u + (1 - rho) delta^2
        w <- w - lr delta

    ``explain`` adds ``rho``, ``eps``, ``weight_decay``, ``square_avg`` (``v``),
    ``std_delta`` (``sqrt(u + eps)`` with ``u`` before the step, kept from it), ``std``
    (``sqrt(v + eps)``), ``delta``, ``acc_delta`` (``u`` after the step) and ``update``
    (``lr delta``).

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

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> dict:
        rho, eps = group["rho"], group["eps"]
        if not state:
            state.update(step=0, square_avg=np.zeros_like(param),
                         acc_delta=np.zeros_like(param))
        state["step"] += 1
        used: dict = {}
        grad = _l2(param, grad, group["weight_decay"], used)
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg *= rho
        square_avg += (1 - rho) * grad * grad
        used["std_delta"] = np.sqrt(acc_delta + eps)  # u is overwritten below
        delta = used["std_delta"] / np.sqrt(square_avg + eps) * grad
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        param -= group["lr"] * delta
        return used

    def _rule(self, hyper: dict[str, Any]) -> str:
        return _describe("adadelta", hyper, "v = rho v + (1 - rho) g^2; delta = sqrt(u + eps) "
                         "/ sqrt(v + eps) * g; u = rho u + (1 - rho) delta^2; p -= lr * delta",
                         f"rho={hyper['rho']:g}")

    def _terms(self, used: dict, state: dict, hyper: dict[str, Any]) -> dict[str, Any]:
        gradient_terms, grad = _gradient_terms(used)
        std = np.sqrt(state["square_avg"] + hyper["eps"])
        delta = used["std_delta"] / std * grad
        return {"lr": hyper["lr"], "rho": hyper["rho"], "eps": hyper["eps"],
                "weight_decay": hyper["weight_decay"], "t": state["step"], **gradient_terms,
                "square_avg": state["square_avg"], "std_delta": used["std_delta"], "std": std,
                "delta": delta, "acc_delta": state["acc_delta"],
                "update": hyper["lr"] * delta}
