"""The Adam family with torch's semantics (docs/methods.md §2): ``Adam``, ``AdamW``,
``Adamax``, ``NAdam``, ``RAdam``.

All keep ``exp_avg`` (the first moment ``m``) and a step count ``t`` per parameter; they
differ in the second moment and in how the step is scaled. ``maximize`` negates the gradient
before anything else; ``weight_decay`` is L2 (added to the gradient) unless decoupled, where
it shrinks the weights first: ``w <- w (1 - lr weight_decay)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .base import Optimizer, _check_betas, _check_flag, _check_number, _lerp_

__all__ = ["Adam", "AdamW", "Adamax", "NAdam", "RAdam"]

Betas = tuple[float, float]


def _validate_adam_like(group: dict[str, Any], *flags: str) -> None:
    """The checks every member of the family shares (torch's ranges), then the boolean
    options ``flags`` of the member."""
    group["lr"] = _check_number(group["lr"], "lr")
    group["betas"] = _check_betas(group["betas"])
    group["eps"] = _check_number(group["eps"], "eps")
    group["weight_decay"] = _check_number(group["weight_decay"], "weight_decay")
    group["maximize"] = _check_flag(group["maximize"], "maximize")
    for flag in flags:
        group[flag] = _check_flag(group[flag], flag)


def _apply_weight_decay(param: np.ndarray, grad: np.ndarray, group: dict) -> np.ndarray:
    """Decoupled: ``w <- w (1 - lr wd)`` in place; else L2: return ``g + wd w``."""
    weight_decay = group["weight_decay"]
    if weight_decay == 0:
        return grad
    if group.get("decoupled_weight_decay", False):
        param *= 1 - group["lr"] * weight_decay
        return grad
    return grad + weight_decay * param


def _first_step_state(param: np.ndarray, *names: str) -> dict[str, Any]:
    return {"step": 0, **{name: np.zeros_like(param) for name in names}}


def _update_moments(param: np.ndarray, grad: np.ndarray, state: dict, group: dict,
                    **initial: Any) -> tuple[int, np.ndarray]:
    """The steps Adam, NAdam and RAdam share: count the step, apply the weight decay, then
    ``m <- beta1 m + (1 - beta1) g`` and ``v <- beta2 v + (1 - beta2) g^2`` in place.

    A first call creates the state (``step``, ``exp_avg``, ``exp_avg_sq``, and ``initial``).
    Returns the step count ``t`` and the gradient after weight decay.
    """
    beta1, beta2 = group["betas"]
    if not state:
        state.update(_first_step_state(param, "exp_avg", "exp_avg_sq"), **initial)
    state["step"] += 1
    grad = _apply_weight_decay(param, grad, group)
    _lerp_(state["exp_avg"], grad, 1 - beta1)
    exp_avg_sq = state["exp_avg_sq"]
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    return state["step"], grad


class Adam(Optimizer):
    """Adam (L2 weight decay added to the gradient, as torch's ``Adam``).

    Per parameter, at step ``t`` (1-based), with gradient ``g`` (docs/methods.md §2)::

        g <- -g                                     (if maximize)
        g <- g + weight_decay * w                   (if weight_decay; decoupled: w <- w(1 - lr wd))
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        v_max <- max(v_max, v)                      (amsgrad; v_max replaces v below)
        w <- w - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m/(1-beta1^t), v_hat = v/(1-beta2^t)

    The last line is evaluated as torch does,
    ``w - (lr/(1-beta1^t)) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)``, which is the same
    number up to rounding.

    Parameters
    ----------
    params : list of arrays or list of group dicts
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999) -- each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0
    amsgrad : bool, default False
    maximize : bool, default False
    decoupled_weight_decay : bool, default False -- True makes this :class:`AdamW`.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Betas = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        _validate_adam_like(group, "amsgrad", "decoupled_weight_decay")

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, (beta1, beta2) = group["lr"], group["betas"]
        step, grad = _update_moments(param, grad, state, group)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        second_moment = exp_avg_sq
        if group["amsgrad"]:
            max_sq = state.setdefault("max_exp_avg_sq", np.zeros_like(param))
            np.maximum(max_sq, exp_avg_sq, out=max_sq)
            second_moment = max_sq
        denom = np.sqrt(second_moment) / bias_correction2_sqrt + group["eps"]
        param -= (lr / bias_correction1) * (exp_avg / denom)


class AdamW(Adam):
    """AdamW: decoupled weight decay, ``w <- w (1 - lr * weight_decay)``, then Adam with no
    weight decay (docs/methods.md §2, torch's ``AdamW``; default ``weight_decay=1e-2`` as torch).

    Parameters are those of :class:`Adam` (``decoupled_weight_decay`` is always True).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Betas = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)


class Adamax(Optimizer):
    """Adamax: Adam with the infinity norm in place of the second moment (torch's ``Adamax``).

    Per parameter, at step ``t`` (docs/methods.md §2, (2.4))::

        g <- -g                                  (if maximize)
        g <- g + weight_decay * w                (if weight_decay)
        m <- beta1 m + (1 - beta1) g
        u <- max(beta2 u, |g| + eps)
        w <- w - (lr / (1 - beta1^t)) m / u

    Parameters
    ----------
    params : list of arrays or list of group dicts
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999) -- each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0
    maximize : bool, default False
    """

    def __init__(self, params: Iterable, lr: float = 2e-3, betas: Betas = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, maximize: bool = False):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize}
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        _validate_adam_like(group)

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        if not state:
            state.update(_first_step_state(param, "exp_avg", "exp_inf"))
        state["step"] += 1
        grad = _apply_weight_decay(param, grad, group)
        _lerp_(state["exp_avg"], grad, 1 - beta1)
        exp_inf = state["exp_inf"]
        exp_inf *= beta2
        np.maximum(exp_inf, np.abs(grad) + group["eps"], out=exp_inf)
        step_size = group["lr"] / (1 - beta1 ** state["step"])
        param -= step_size * (state["exp_avg"] / exp_inf)


class NAdam(Optimizer):
    """NAdam: Adam with Nesterov momentum and a momentum schedule (torch's ``NAdam``).

    Per parameter, at step ``t`` (docs/methods.md §2, (2.5)), with ``psi = momentum_decay``::

        g <- -g                                   (if maximize)
        g <- g + wd w      (or, decoupled: w <- w (1 - lr wd))
        mu_t     = beta1 (1 - 0.5 * 0.96^(t psi))
        mu_{t+1} = beta1 (1 - 0.5 * 0.96^((t+1) psi))
        P_t = mu_1 mu_2 ... mu_t                  (kept in the state as mu_product)
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        d = sqrt(v / (1 - beta2^t)) + eps
        w <- w - lr (1 - mu_t) / (1 - P_t) * g / d - lr mu_{t+1} / (1 - P_t mu_{t+1}) * m / d

    ``mu_product`` is a float64 here; torch keeps it in its default scalar dtype, float32
    unless ``torch.set_default_dtype(torch.float64)``, so traces agree to 1e-12 with torch
    under float64 default dtype and to float32 rounding of ``P_t`` otherwise.

    Parameters
    ----------
    params : list of arrays or list of group dicts
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999) -- each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum_decay : float >= 0, default 4e-3
    decoupled_weight_decay : bool, default False
    maximize : bool, default False
    """

    def __init__(self, params: Iterable, lr: float = 2e-3, betas: Betas = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "momentum_decay": momentum_decay,
                    "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        _validate_adam_like(group)
        group["momentum_decay"] = _check_number(group["momentum_decay"], "momentum_decay")
        group["decoupled_weight_decay"] = _check_flag(group["decoupled_weight_decay"],
                                                      "decoupled_weight_decay")

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, (beta1, beta2), psi = group["lr"], group["betas"], group["momentum_decay"]
        step, grad = _update_moments(param, grad, state, group, mu_product=1.0)
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * psi))
        state["mu_product"] *= mu
        mu_product = state["mu_product"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        denom = np.sqrt(exp_avg_sq / (1 - beta2**step)) + group["eps"]
        param -= (lr * (1.0 - mu) / (1.0 - mu_product)) * (grad / denom)
        param -= (lr * mu_next / (1.0 - mu_product * mu_next)) * (exp_avg / denom)


class RAdam(Optimizer):
    """RAdam: Adam with the variance of the adaptive rate rectified (torch's ``RAdam``).

    Per parameter, at step ``t`` (docs/methods.md §2, (2.6))::

        g <- -g                                   (if maximize)
        g <- g + wd w      (or, decoupled: w <- w (1 - lr wd))
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        m_hat = m / (1 - beta1^t)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        if rho_t > 5:
            r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            w <- w - lr m_hat r_t sqrt(1 - beta2^t) / (sqrt(v) + eps)
        else:
            w <- w - lr m_hat                     (SGD with momentum while rho_t <= 5)

    Parameters
    ----------
    params : list of arrays or list of group dicts
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999) -- each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled_weight_decay : bool, default False
    maximize : bool, default False
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: Betas = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        _validate_adam_like(group, "decoupled_weight_decay")

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, (beta1, beta2) = group["lr"], group["betas"]
        step, _ = _update_moments(param, grad, state, group)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        bias_correction2 = 1 - beta2**step
        corrected_exp_avg = exp_avg / (1 - beta1**step)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            adaptive = bias_correction2**0.5 / (np.sqrt(exp_avg_sq) + group["eps"])
            param -= corrected_exp_avg * lr * adaptive * rect
        else:
            param -= corrected_exp_avg * lr
