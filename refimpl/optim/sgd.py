"""Stochastic gradient descent with torch's ``SGD`` semantics (docs/methods.md §2)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .base import Optimizer, _check_flag, _check_number

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

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grad = grad + weight_decay * param
        if momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.copy()
            else:
                buf = state["momentum_buffer"]
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            buf = state["momentum_buffer"]
            grad = grad + momentum * buf if group["nesterov"] else buf
        param -= group["lr"] * grad
