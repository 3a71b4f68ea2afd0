"""Optimizers over lists of NumPy arrays, with the semantics of ``torch.optim`` (docs/methods.md §2).

An optimizer is built over a list of parameter arrays, or a list of *group dicts*
``{"params": [...], "lr": ..., <hyper-parameter>: ...}`` whose missing keys take the
constructor's values (as in torch). ``step(grads)`` takes the gradients in the same order as
the parameters (groups concatenated) and updates the arrays **in place**; their dtype is kept
(float32 parameters are updated in float32 arithmetic). A ``None`` gradient skips its
parameter, as torch skips parameters whose ``.grad`` is ``None``.

``lr`` reads the first group's rate; assigning a float sets every group, assigning a list
sets one rate per group. ``param_groups`` is the list of group dicts (the trainer copies a
scheduler's ``lrs`` into ``group["lr"]``).

State dicts mirror torch's layout::

    {"class": "Adam",
     "param_groups": [{"lr": ..., "betas": (...), ..., "params": [0, 1]}, ...],
     "state": {0: {"step": 3, "exp_avg": ndarray, "exp_avg_sq": ndarray}, ...}}

Parameters are referred to by their index in the flat parameter list; per-parameter state
arrays are **copies** stored as NumPy arrays (not lists), so the dict is cheap to build and
exact, but needs ``numpy.savez``/pickle rather than JSON to be written to disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["SGD", "Adam", "AdamW", "Optimizer"]


def _check_number(value: Any, name: str, *, low: float = 0.0,
                  high: float | None = None) -> float:
    """Return ``value`` as a finite float with ``low <= value`` (and ``value < high``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < low or (high is not None and number >= high):
        where = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{name} must be a finite number {where}, got {value!r}")
    return number


class Optimizer:
    """Shared machinery: parameter groups, the ``lr`` property, state dicts.

    Subclasses define ``_defaults`` (hyper-parameter names and values), ``_validate_group``
    and ``_update(param, grad, state, group)`` for one parameter.
    """

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        params = list(params)
        if not params:
            raise ValueError("params is empty; pass a list of arrays or of group dicts")
        if isinstance(params[0], dict):
            groups = [dict(group) for group in params]
        else:
            groups = [{"params": params}]
        self.param_groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for index, group in enumerate(groups):
            if "params" not in group:
                raise ValueError(f"param group {index} has no 'params' key")
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(
                    f"param group {index} has unknown keys {sorted(unknown)}; "
                    f"allowed: {sorted(defaults)}"
                )
            group["params"] = list(group["params"])
            for param in group["params"]:
                _check_param(param, index)
                if id(param) in seen:
                    raise ValueError("an array appears in more than one parameter group")
                seen.add(id(param))
            for key, value in defaults.items():
                group.setdefault(key, value)
            self._validate_group(group)
            self.param_groups.append(group)
        self.defaults = dict(defaults)
        self.state: dict[int, dict[str, Any]] = {}

    # -- the learning rate ------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The first group's learning rate (set: a float for all groups, or one per group)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float | Sequence[float]) -> None:
        if isinstance(value, (list, tuple)):
            if len(value) != len(self.param_groups):
                raise ValueError(
                    f"lr has {len(value)} entries but there are "
                    f"{len(self.param_groups)} parameter groups"
                )
            values = [_check_number(v, "lr") for v in value]
        else:
            values = [_check_number(value, "lr")] * len(self.param_groups)
        for group, lr in zip(self.param_groups, values):
            group["lr"] = lr

    # -- stepping ---------------------------------------------------------------------------
    def _flat_params(self) -> list[np.ndarray]:
        return [p for group in self.param_groups for p in group["params"]]

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        """Update every parameter in place from its gradient (same order as the params)."""
        grads = list(grads)
        n_params = sum(len(group["params"]) for group in self.param_groups)
        if len(grads) != n_params:
            raise ValueError(f"grads has {len(grads)} arrays but there are {n_params} parameters")
        index = 0
        for group in self.param_groups:
            for param in group["params"]:
                grad = grads[index]
                if grad is not None:
                    grad = np.asarray(grad)
                    if grad.shape != param.shape:
                        raise ValueError(
                            f"grads[{index}] has shape {grad.shape} but its parameter has "
                            f"shape {param.shape}"
                        )
                    grad = grad.astype(param.dtype, copy=False)
                    if group["maximize"]:
                        grad = -grad
                    self._update(param, grad, self.state.setdefault(index, {}), group)
                index += 1

    def _validate_group(self, group: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self, param, grad, state, group) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- state dicts ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return hyper-parameters and per-parameter state (arrays copied, see module doc)."""
        groups, start = [], 0
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(entry)
        state = {
            index: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for index, s in self.state.items()
        }
        return {"class": type(self).__name__, "param_groups": groups, "state": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by an optimizer of the same class/layout."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = [k for k in ("class", "param_groups", "state") if k not in state_dict]
        if missing:
            raise ValueError(f"optimizer state dict is missing keys {missing}")
        if state_dict["class"] != type(self).__name__:
            raise ValueError(
                f"state dict belongs to {state_dict['class']!r}, not {type(self).__name__!r}; "
                "load it into an optimizer of the class that saved it"
            )
        saved = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in self.param_groups]
        if [len(g["params"]) for g in saved] != sizes:
            raise ValueError(
                f"state dict has group sizes {[len(g['params']) for g in saved]}, "
                f"this optimizer has {sizes}"
            )
        params = self._flat_params()
        new_state = {}
        for index, entry in state_dict["state"].items():
            index = int(index)
            param = params[index]
            restored = {}
            for key, value in entry.items():
                if isinstance(value, (np.ndarray, list)):
                    value = np.array(value, dtype=param.dtype)
                    if value.shape != param.shape:
                        raise ValueError(
                            f"state[{index}][{key!r}] has shape {value.shape}, "
                            f"parameter has {param.shape}"
                        )
                restored[key] = value
            new_state[index] = restored
        for group, entry in zip(self.param_groups, saved):
            for key, value in entry.items():
                if key != "params":
                    group[key] = tuple(value) if key == "betas" else value
            self._validate_group(group)
        self.state = new_state


def _check_param(param: Any, group_index: int) -> None:
    if not isinstance(param, np.ndarray) or not np.issubdtype(param.dtype, np.floating):
        raise ValueError(
            f"param group {group_index}: every parameter must be a floating-point NumPy "
            f"array (updated in place), got {type(param).__name__}"
            + (f" of dtype {param.dtype}" if isinstance(param, np.ndarray) else "")
        )
    if not param.flags.writeable:
        raise ValueError(f"param group {group_index}: a parameter array is read-only")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    Per parameter, with gradient ``g`` (docs/methods.md §2, torch semantics)::

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
        group["nesterov"] = bool(group["nesterov"])
        group["maximize"] = bool(group["maximize"])
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


class Adam(Optimizer):
    """Adam (L2 weight decay added to the gradient, as torch's ``Adam``).

    Per parameter, at step ``t`` (1-based), with gradient ``g`` (docs/methods.md §2)::

        g <- g + weight_decay * w                   (if weight_decay)
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
    """

    _decoupled = False

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize}
        super().__init__(params, defaults)

    def _validate_group(self, group: dict[str, Any]) -> None:
        group["lr"] = _check_number(group["lr"], "lr")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = (_check_number(betas[0], "betas[0]", high=1.0),
                          _check_number(betas[1], "betas[1]", high=1.0))
        group["eps"] = _check_number(group["eps"], "eps")
        group["weight_decay"] = _check_number(group["weight_decay"], "weight_decay")
        group["amsgrad"] = bool(group["amsgrad"])
        group["maximize"] = bool(group["maximize"])

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        step = state["step"]
        if weight_decay != 0:
            if self._decoupled:
                param *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg *= beta1
        exp_avg += (1 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        second_moment = exp_avg_sq
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second_moment = state["max_exp_avg_sq"]
        denom = np.sqrt(second_moment) / bias_correction2_sqrt + group["eps"]
        param -= (lr / bias_correction1) * (exp_avg / denom)


class AdamW(Adam):
    """AdamW: decoupled weight decay, ``w <- w (1 - lr * weight_decay)``, then Adam with no
    weight decay (docs/methods.md §2, torch's ``AdamW``; default ``weight_decay=1e-2`` as torch).

    Parameters are those of :class:`Adam`.
    """

    _decoupled = True

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
