"""The Adam family with torch's semantics (docs/methods.md §2): ``Adam``, ``AdamW``,
``Adamax``, ``NAdam``, ``RAdam``.

All keep ``exp_avg`` (the first moment ``m``) and a step count ``t`` per parameter; they
differ in the second moment and in how the step is scaled. ``maximize`` negates the gradient
before anything else; ``weight_decay`` is L2 (added to the gradient) unless decoupled, where
it shrinks the weights first: ``w <- w (1 - lr weight_decay)``.

``explain(param, index)`` (see :meth:`Optimizer.explain`) gives, besides the common entries,
the hyper-parameters the step used (``beta1``, ``beta2``, ``eps``, ...), ``t``, the state
after the step under its torch names (``exp_avg`` = ``m``, ``exp_avg_sq`` = ``v``, ...), and
the terms of each class's last line, listed in its docstring.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .base import (
    Optimizer,
    _check_betas,
    _check_flag,
    _check_number,
    _describe,
    _gradient_terms,
    _lerp_,
)

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


def _apply_weight_decay(param: np.ndarray, grad: np.ndarray, group: dict,
                        used: dict) -> np.ndarray:
    """Decoupled: ``w <- w (1 - lr wd)`` in place; else L2: return ``g + wd w``. The factor
    or the term goes into ``used`` (for ``explain``)."""
    weight_decay = group["weight_decay"]
    if weight_decay == 0:
        return grad
    if group.get("decoupled_weight_decay", False):
        used["decay_factor"] = 1 - group["lr"] * weight_decay
        param *= used["decay_factor"]
        return grad
    used["decay_term"] = weight_decay * param
    return grad + used["decay_term"]


def _first_step_state(param: np.ndarray, *names: str) -> dict[str, Any]:
    return {"step": 0, **{name: np.zeros_like(param) for name in names}}


def _update_moments(param: np.ndarray, grad: np.ndarray, state: dict, group: dict,
                    used: dict, **initial: Any) -> tuple[int, np.ndarray]:
    """The steps Adam, NAdam and RAdam share: count the step, apply the weight decay, then
    ``m <- beta1 m + (1 - beta1) g`` and ``v <- beta2 v + (1 - beta2) g^2`` in place.

    A first call creates the state (``step``, ``exp_avg``, ``exp_avg_sq``, and ``initial``).
    Returns the step count ``t`` and the gradient after weight decay (recorded in ``used``).
    """
    beta1, beta2 = group["betas"]
    if not state:
        state.update(_first_step_state(param, "exp_avg", "exp_avg_sq"), **initial)
    state["step"] += 1
    grad = _apply_weight_decay(param, grad, group, used)
    _lerp_(state["exp_avg"], grad, 1 - beta1)
    exp_avg_sq = state["exp_avg_sq"]
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    return state["step"], grad


def _common_terms(used: dict, state: dict, hyper: dict, *names: str) -> tuple[dict, np.ndarray]:
    """``explain``'s entries every member shares: ``lr``, the betas, ``eps``,
    ``weight_decay``, ``t``, the gradient terms and the state arrays ``names``; and the
    gradient the rule used."""
    beta1, beta2 = hyper["betas"]
    gradient_terms, grad = _gradient_terms(used)
    terms = {"lr": hyper["lr"], "beta1": beta1, "beta2": beta2, "eps": hyper["eps"],
             "weight_decay": hyper["weight_decay"], "t": state["step"], **gradient_terms}
    terms.update({name: state[name] for name in names})
    return terms, grad


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

    ``explain`` adds ``exp_avg`` (``m``), ``exp_avg_sq`` (``v``), ``max_exp_avg_sq``
    (amsgrad), ``bias_correction1`` (``1 - beta1^t``), ``bias_correction2``, ``m_hat``,
    ``v_hat`` (of ``v_max`` under amsgrad), ``step_size`` (``lr / bias_correction1``),
    ``denom`` (``sqrt(v)/sqrt(bias_correction2) + eps``, as computed) and ``update``.

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

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> dict:
        lr, (beta1, beta2) = group["lr"], group["betas"]
        used: dict = {}
        step, grad = _update_moments(param, grad, state, group, used)
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
        return used

    def _rule(self, hyper: dict[str, Any]) -> str:
        name = "adamw" if hyper["decoupled_weight_decay"] else "adam"
        if hyper["amsgrad"]:
            return _describe(name, hyper, "p -= lr * m_hat / (sqrt(v_hat_max) + eps)",
                             "amsgrad")
        return _describe(name, hyper, "p -= lr * m_hat / (sqrt(v_hat) + eps)")

    def _terms(self, used: dict, state: dict, hyper: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2 = hyper["betas"]
        names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if hyper["amsgrad"] else ())
        terms, _ = _common_terms(used, state, hyper, *names)
        t, exp_avg = state["step"], state["exp_avg"]
        second_moment = state["max_exp_avg_sq"] if hyper["amsgrad"] else state["exp_avg_sq"]
        bias_correction1, bias_correction2 = 1 - beta1**t, 1 - beta2**t
        denom = np.sqrt(second_moment) / bias_correction2**0.5 + hyper["eps"]
        step_size = hyper["lr"] / bias_correction1
        terms.update(bias_correction1=bias_correction1, bias_correction2=bias_correction2,
                     m_hat=exp_avg / bias_correction1,
                     v_hat=second_moment / bias_correction2, step_size=step_size,
                     denom=denom, update=step_size * (exp_avg / denom))
        return terms


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

    ``explain`` adds ``exp_avg`` (``m``), ``exp_inf`` (``u``), ``bias_correction1``,
    ``m_hat`` (``m / bias_correction1``), ``step_size`` (``lr / bias_correction1``) and
    ``update`` (``step_size * m / u``).

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

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> dict:
        beta1, beta2 = group["betas"]
        if not state:
            state.update(_first_step_state(param, "exp_avg", "exp_inf"))
        state["step"] += 1
        used: dict = {}
        grad = _apply_weight_decay(param, grad, group, used)
        _lerp_(state["exp_avg"], grad, 1 - beta1)
        exp_inf = state["exp_inf"]
        exp_inf *= beta2
        np.maximum(exp_inf, np.abs(grad) + group["eps"], out=exp_inf)
        step_size = group["lr"] / (1 - beta1 ** state["step"])
        param -= step_size * (state["exp_avg"] / exp_inf)
        return used

    def _rule(self, hyper: dict[str, Any]) -> str:
        return _describe("adamax", hyper, "u = max(beta2 * u, |g| + eps); "
                         "p -= lr * m_hat / u")

    def _terms(self, used: dict, state: dict, hyper: dict[str, Any]) -> dict[str, Any]:
        terms, _ = _common_terms(used, state, hyper, "exp_avg", "exp_inf")
        bias_correction1 = 1 - hyper["betas"][0] ** state["step"]
        step_size = hyper["lr"] / bias_correction1
        terms.update(bias_correction1=bias_correction1,
                     m_hat=state["exp_avg"] / bias_correction1, step_size=step_size,
                     update=step_size * (state["exp_avg"] / state["exp_inf"]))
        return terms


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

    ``explain`` adds ``exp_avg`` (``m``), ``exp_avg_sq`` (``v``), ``momentum_decay``,
    ``mu`` (``mu_t``), ``mu_next``, ``mu_product`` (``P_t``), ``bias_correction2``,
    ``denom`` (``d``), ``grad_coef`` and ``momentum_coef`` (the two scalar factors of the
    last line), ``grad_term`` (``grad_coef * g / d``), ``momentum_term``
    (``momentum_coef * m / d``; the step subtracts the two in that order) and ``update``
    (their sum).

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

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> dict:
        lr, (beta1, beta2), psi = group["lr"], group["betas"], group["momentum_decay"]
        used: dict = {}
        step, grad = _update_moments(param, grad, state, group, used, mu_product=1.0)
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * psi))
        state["mu_product"] *= mu
        mu_product = state["mu_product"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        denom = np.sqrt(exp_avg_sq / (1 - beta2**step)) + group["eps"]
        param -= (lr * (1.0 - mu) / (1.0 - mu_product)) * (grad / denom)
        param -= (lr * mu_next / (1.0 - mu_product * mu_next)) * (exp_avg / denom)
        return used

    def _rule(self, hyper: dict[str, Any]) -> str:
        return _describe("nadam", hyper,
                         "p -= lr (1 - mu_t)/(1 - P_t) g/d + lr mu_{t+1}/(1 - P_t mu_{t+1}) m/d, "
                         "d = sqrt(v_hat) + eps", f"momentum_decay={hyper['momentum_decay']:g}")

    def _terms(self, used: dict, state: dict, hyper: dict[str, Any]) -> dict[str, Any]:
        lr, (beta1, beta2), psi = hyper["lr"], hyper["betas"], hyper["momentum_decay"]
        terms, grad = _common_terms(used, state, hyper, "exp_avg", "exp_avg_sq", "mu_product")
        t, mu_product = state["step"], state["mu_product"]
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        bias_correction2 = 1 - beta2**t
        denom = np.sqrt(state["exp_avg_sq"] / bias_correction2) + hyper["eps"]
        grad_coef = lr * (1.0 - mu) / (1.0 - mu_product)
        momentum_coef = lr * mu_next / (1.0 - mu_product * mu_next)
        grad_term = grad_coef * (grad / denom)
        momentum_term = momentum_coef * (state["exp_avg"] / denom)
        terms.update(momentum_decay=psi, mu=mu, mu_next=mu_next,
                     bias_correction2=bias_correction2, denom=denom, grad_coef=grad_coef,
                     momentum_coef=momentum_coef, grad_term=grad_term,
                     momentum_term=momentum_term, update=grad_term + momentum_term)
        return terms


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

    ``explain`` adds ``exp_avg`` (``m``), ``exp_avg_sq`` (``v``), ``bias_correction1``,
    ``bias_correction2``, ``m_hat``, ``rho_inf``, ``rho_t``, ``rectified`` (``rho_t > 5``),
    and when rectified ``rect`` (``r_t``) and ``adaptive`` (``sqrt(1 - beta2^t) / (sqrt(v)
    + eps)``); then ``update``.

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

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> dict:
        used: dict = {}
        _update_moments(param, grad, state, group, used)
        param -= self._rectified(state, group)["update"]
        return used

    @staticmethod
    def _rectified(state: dict, hyper: dict) -> dict[str, Any]:
        """The last lines of the rule, from the moments after the update (shared by the
        step and ``explain``, so both are the same numbers)."""
        lr, (beta1, beta2), step = hyper["lr"], hyper["betas"], state["step"]
        bias_correction1, bias_correction2 = 1 - beta1**step, 1 - beta2**step
        corrected_exp_avg = state["exp_avg"] / bias_correction1
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
        terms = {"bias_correction1": bias_correction1, "bias_correction2": bias_correction2,
                 "m_hat": corrected_exp_avg, "rho_inf": rho_inf, "rho_t": rho_t,
                 "rectified": rho_t > 5.0}
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            adaptive = bias_correction2**0.5 / (np.sqrt(state["exp_avg_sq"]) + hyper["eps"])
            terms.update(rect=rect, adaptive=adaptive,
                         update=corrected_exp_avg * lr * adaptive * rect)
        else:
            terms["update"] = corrected_exp_avg * lr
        return terms

    def _rule(self, hyper: dict[str, Any], rho_t: float | None = None) -> str:
        rectified = "p -= lr * m_hat * r_t * sqrt(1 - beta2^t) / (sqrt(v) + eps)"
        if rho_t is None:
            return _describe("radam", hyper, f"{rectified} when rho_t > 5, else p -= lr * m_hat")
        if rho_t > 5.0:
            return _describe("radam", hyper, f"{rectified} (rho_t = {rho_t:.6g} > 5: rectified)")
        return _describe("radam", hyper,
                         f"p -= lr * m_hat (rho_t = {rho_t:.6g} <= 5: not rectified)")

    def _terms(self, used: dict, state: dict, hyper: dict[str, Any]) -> dict[str, Any]:
        terms, _ = _common_terms(used, state, hyper, "exp_avg", "exp_avg_sq")
        terms.update(self._rectified(state, hyper))
        terms["rule"] = self._rule(hyper, terms["rho_t"])  # the branch the step took
        return terms
