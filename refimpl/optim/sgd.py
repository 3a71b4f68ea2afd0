"""Stochastic gradient descent with torch's ``SGD`` semantics (docs/methods.md §2)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .base import Optimizer, _check_flag, _check_number, _describe, _gradient_terms

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    Per parameter, with gradient ``g`` (docs/methods.md §2, torch semantics)::

        g <- -g                                  (if maximize)
        g <- g + weight_decay * w
        b <- g                                   (first step)
        b <- momentum * b + (1 - dampening) * g  (later steps)
        g <- g + momentum * b   if nesterov  else  g <- b       (when momentum != 0)
        w <- w - lr * g

    Parameters
    ----------
    params : list of arrays or list of group dicts
    lr : float, default 1e-3 (torch's default)
    momentum, dampening, weight_decay : float, default 0
    nesterov : bool, default False -- requires ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False -- ascend instead of descend (``g <- -g``).

    ``explain(param, index)`` (see :meth:`Optimizer.explain`) adds to the common entries
    ``momentum``, ``dampening``, ``nesterov``, ``weight_decay``, ``momentum_buffer`` (``b``
    after the step) and ``buffer_started`` (True at the step that set ``b <- g``) when
    ``momentum != 0``, and ``direction``, the ``g`` of the last line (``update = lr *
    direction``).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 *, maximize: bool = False):
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        group["lr"] = _check_number(group["lr"], "lr")
        group["momentum"] = _check_number(group["momentum"], "momentum")
        group["dampening"] = _check_number(group["dampening"], "dampening", low=-math.inf)
        group["weight_decay"] = _check_number(group["weight_decay"], "weight_decay")
        group["nesterov"] = _check_flag(group["nesterov"], "nesterov")
        group["maximize"] = _check_flag(group["maximize"], "maximize")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "nesterov=True requires momentum > 0 and dampening == 0; "
                "set momentum (e.g. 0.9) and dampening=0, or nesterov=False"
            )

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> dict:
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        used = {}
        if weight_decay != 0:
            used["decay_term"] = weight_decay * param
            grad = grad + used["decay_term"]
        if momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.copy()
                used["buffer_started"] = True
            else:
                buf = state["momentum_buffer"]
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            buf = state["momentum_buffer"]
            grad = grad + momentum * buf if group["nesterov"] else buf
        param -= group["lr"] * grad
        return used

    def _rule(self, hyper: dict[str, Any]) -> str:
        if hyper["momentum"] == 0:
            return _describe("sgd", hyper, "p -= lr * g")
        if hyper["nesterov"]:
            return _describe("sgd", hyper, "b = momentum * b + g; p -= lr * (g + momentum * b)",
                             f"momentum={hyper['momentum']:g}", "nesterov")
        return _describe("sgd", hyper, "b = momentum * b + (1 - dampening) * g; p -= lr * b",
                         f"momentum={hyper['momentum']:g}",
                         f"dampening={hyper['dampening']:g}" if hyper["dampening"] else "")

    def _terms(self, used: dict, state: dict, hyper: dict[str, Any]) -> dict[str, Any]:
        momentum = hyper["momentum"]
        terms, grad = _gradient_terms(used)
        terms = {"lr": hyper["lr"], "momentum": momentum, "dampening": hyper["dampening"],
                 "nesterov": hyper["nesterov"], "weight_decay": hyper["weight_decay"], **terms}
        direction = grad
        if momentum != 0:
            buf = state["momentum_buffer"]
            terms["momentum_buffer"] = buf
            terms["buffer_started"] = used.get("buffer_started", False)
            if terms["buffer_started"]:
                terms["rule"] = self._rule(hyper) + " (first step: b = g)"
            direction = grad + momentum * buf if hyper["nesterov"] else buf
        terms["direction"] = direction
        terms["update"] = hyper["lr"] * direction
        return terms
