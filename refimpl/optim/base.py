"""The machinery every optimizer shares: parameter groups, the ``lr`` property, state dicts,
and the argument checks (docs/methods.md §2).

An optimizer is built over a list of parameter arrays, or a list of *group dicts*
``{"params": [...], "lr": ..., <hyper-parameter>: ...}`` whose missing keys take the
constructor's values (as in torch); a group's ``"params"`` may also be one bare array.
``step(grads)`` takes the gradients in the same order as the parameters (groups
concatenated) and updates the arrays **in place**; their dtype is kept (float32 parameters
are updated in float32 arithmetic). A ``None`` gradient skips its parameter, as torch skips
parameters whose ``.grad`` is ``None``.

``lr`` reads the first group's rate; assigning a float sets every group, assigning a list
sets one rate per group. ``param_groups`` is the list of group dicts (the trainer copies a
scheduler's ``lrs`` into ``group["lr"]``).

State dicts mirror torch's layout::

    {"class": "Adam",
     "param_groups": [{"lr": ..., "betas": (...), ..., "params": [0, 1]}, ...],
     "state": {0: {"step": 3, "exp_avg": ndarray, "exp_avg_sq": ndarray}, ...}}

Parameters are referred to by their index in the flat parameter list; per-parameter state
arrays are **copies** stored as NumPy arrays (not lists), so the dict is cheap to build and
exact, but needs ``numpy.savez``/pickle rather than JSON to be written to disk (loading also
accepts nested lists). Loading is all or nothing: a group with a key or value its
constructor would refuse, or a state array of the wrong shape, raises ``ValueError`` and
leaves the optimizer as it was.

``explain(param, index)`` says what the last ``step()`` did to one parameter: a one-sentence
``rule`` with the flags in force, and the numbers that made the update (moments, bias
corrections, step sizes, the weight-decay term, the update itself), as arrays or, with an
element ``index``, as floats. How those numbers are obtained:

* what the update computes anyway and then overwrites or drops (the gradient after
  ``maximize``, the L2 term ``weight_decay * w``, Adadelta's ``sqrt(u + eps)``) is kept
  *by reference* during ``step()``: no extra arithmetic. The one copy is of a gradient
  array the caller owns (a later in-place change of it, such as the next backward pass
  into the same buffer, must not change the explanation); ``step(grads,
  copy_grads=False)`` skips it where the caller keeps the arrays as they are;
* the hyper-parameters the step used are kept (a scheduler may change ``lr`` after it);
* the rest (bias corrections, ``m_hat``, denominators, the update) is recomputed from the
  optimizer's state, which after ``step()`` holds the moments that step used, with the same
  expressions as the update: ``w_before - update`` (after ``decay_factor`` where decoupled;
  NAdam subtracts its ``grad_term`` and ``momentum_term`` in turn) is the new ``w`` to the
  last bit.

Between steps this keeps about one parameter-sized array per parameter alive (the
gradient, and the weight-decay term where there is one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["Optimizer"]


def _check_number(value: Any, name: str, *, low: float = 0.0, high: float | None = None,
                  high_inclusive: bool = False) -> float:
    """Return ``value`` as a finite float with ``low <= value`` and ``value < high``
    (``value <= high`` when ``high_inclusive``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    too_high = high is not None and (number > high if high_inclusive else number >= high)
    if not math.isfinite(number) or number < low or too_high:
        if high is None:
            where = f">= {low}"
        else:
            where = f"in [{low}, {high}{']' if high_inclusive else ')'}"
        raise ValueError(f"{name} must be a finite number {where}, got {value!r}")
    return number


def _check_betas(betas: Any) -> tuple[float, float]:
    """``(beta1, beta2)``, each in ``[0, 1)`` (torch's rule)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return (_check_number(betas[0], "betas[0]", high=1.0),
            _check_number(betas[1], "betas[1]", high=1.0))


def _check_flag(value: Any, name: str) -> bool:
    """A bool (NumPy bools too); anything else is refused rather than read as truthy."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")  # noqa: TRY004 - bad input is a ValueError throughout
    return bool(value)


def _lerp_(average: np.ndarray, target: np.ndarray, weight: float) -> None:
    """``average <- average + weight (target - average)`` in place, rounded as torch's
    ``lerp_`` (which uses ``target - (target - average)(1 - weight)`` when ``weight >= 0.5``)."""
    if weight < 0.5:
        average += weight * (target - average)
    else:
        average[...] = target - (target - average) * (1 - weight)


def _element(index: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``index`` (an int into the flattened array, or a tuple) as a tuple into ``shape``."""
    size = math.prod(shape)
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        if not -size <= index < size:
            raise IndexError(f"index {index} is out of range for a parameter of {size} "
                             f"elements (shape {shape})")
        return tuple(int(i) for i in np.unravel_index(int(index) % size, shape))
    if isinstance(index, (tuple, list)) and all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index):
        if len(index) != len(shape):
            raise IndexError(f"index {tuple(index)} has {len(index)} entries but the parameter "
                             f"has shape {shape}; give one per dimension")
        if not all(-n <= i < n for i, n in zip(index, shape)):
            raise IndexError(f"index {tuple(index)} is out of range for shape {shape}")
        return tuple(int(i) % n for i, n in zip(index, shape))
    raise TypeError(f"index must be an int or a tuple of ints, got {index!r}")


def _describe(name: str, hyper: dict[str, Any], formula: str, *flags: str) -> str:
    """``"name (flag, ...): formula"``, the group's weight decay and ``maximize`` added to
    ``flags`` (the rule of ``explain``)."""
    flags_in_force = [flag for flag in flags if flag]
    if hyper.get("weight_decay", 0):
        kind = "decoupled" if hyper.get("decoupled_weight_decay", False) else "L2"
        flags_in_force.append(f"{kind} weight_decay={hyper['weight_decay']:g}")
    if hyper.get("maximize", False):
        flags_in_force.append("maximize")
    return f"{name} ({', '.join(flags_in_force)}): {formula}" if flags_in_force else \
        f"{name}: {formula}"


def _gradient_terms(used: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """``explain``'s gradient and weight-decay entries, and the gradient the rule used
    (``grad + decay_term`` under L2 decay: the same sum as the update's, bit for bit)."""
    grad = used["grad"]
    terms: dict[str, Any] = {"grad": grad}
    if "decay_term" in used:
        grad = grad + used["decay_term"]
        terms.update(decay_term=used["decay_term"], grad_used=grad)
    elif "decay_factor" in used:
        terms["decay_factor"] = used["decay_factor"]
    return terms, grad


def _check_param(param: Any, group_index: int) -> None:
    if not isinstance(param, np.ndarray) or not np.issubdtype(param.dtype, np.floating):
        raise ValueError(
            f"param group {group_index}: every parameter must be a floating-point NumPy "
            f"array (updated in place), got {type(param).__name__}"
            + (f" of dtype {param.dtype}" if isinstance(param, np.ndarray) else "")
        )
    if not param.flags.writeable:
        raise ValueError(f"param group {group_index}: a parameter array is read-only")


def _group_params(params: Any) -> list:
    """A group's ``"params"``: one bare array is one parameter (as torch takes one tensor)."""
    if isinstance(params, np.ndarray):
        return [params]
    return list(params)


class Optimizer:
    """Shared machinery: parameter groups, the ``lr`` property, state dicts, ``explain``.

    Subclasses pass their hyper-parameters (names and values) as ``defaults`` and define
    ``_validate_group(group)`` (check and normalise one group's hyper-parameters, raising
    ``ValueError`` naming the argument) and ``_update(param, grad, state, group)`` for one
    parameter; ``grad`` arrives already negated when the group has ``maximize=True``.
    ``_update`` returns a dict of the arrays it computed and will not keep (for
    ``explain``), or ``None``. For ``explain`` they also define ``_rule(hyper)`` (one
    sentence) and ``_terms(used, state, hyper)`` (the numbers of the last update).
    """

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        if isinstance(params, np.ndarray):
            raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout
                "params must be a list of arrays or of group dicts, got one array; "
                "pass [array]"
            )
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
            if not isinstance(group, dict) or "params" not in group:
                raise ValueError(f"param group {index} has no 'params' key")
            self._check_keys(group, defaults, f"param group {index}")
            group["params"] = _group_params(group["params"])
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
        self._steps = 0  # step() calls since construction (explain's "step")
        self._used: dict[int, dict[str, Any]] = {}  # what the last step() used, per parameter

    @staticmethod
    def _check_keys(group: dict, defaults: dict, where: str) -> None:
        unknown = set(group) - set(defaults) - {"params"}
        if unknown:
            raise ValueError(
                f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(defaults)}"
            )

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

    def step(self, grads: Sequence[np.ndarray | None], *, copy_grads: bool = True,
             update: Callable | None = None) -> None:
        """Update every parameter in place from its gradient (same order as the params).

        ``copy_grads=False`` skips the one copy ``explain()`` takes of a gradient array the
        caller owns: ``explain()`` then reads the array as it is when it is called. The trainer
        passes False (it refills its gradient buffers only at the next backward pass, and a
        copy of every gradient is a tenth of a small MLP's step).

        ``update``: a faster form of this optimizer's per-parameter rule from a kernel
        backend (e.g. :func:`refimpl.kernels.numba.optim.update_for`), called as
        ``update(self, param, grad, state, group)`` in place of ``_update``, with the same
        result; it returns ``NotImplemented`` for a case it does not cover, and ``_update``
        runs instead.
        """
        grads = list(grads)
        n_params = sum(len(group["params"]) for group in self.param_groups)
        if len(grads) != n_params:
            raise ValueError(f"grads has {len(grads)} arrays but there are {n_params} parameters")
        self._steps += 1
        self._used = {}
        index = 0
        for group in self.param_groups:
            hyper = {key: value for key, value in group.items() if key != "params"}
            for param in group["params"]:
                original = grads[index]
                if original is not None:
                    given = np.asarray(original)
                    if given.shape != param.shape:
                        raise ValueError(
                            f"grads[{index}] has shape {given.shape} but its parameter has "
                            f"shape {param.shape}"
                        )
                    grad = given.astype(param.dtype, copy=False)
                    if group["maximize"]:
                        grad = -grad
                    if grad is given and copy_grads:  # the caller's memory: keep a copy
                        grad = grad.copy()
                    state = self.state.setdefault(index, {})
                    used = (NotImplemented if update is None
                            else update(self, param, grad, state, group))
                    if used is NotImplemented:
                        used = self._update(param, grad, state, group)
                    self._used[index] = {"grad": grad, "hyper": hyper, **(used or {})}
                index += 1

    # -- explaining the last step -----------------------------------------------------------
    def explain(self, param: int | None = None, index: int | tuple[int, ...] | None = None
                ) -> dict[str, Any]:
        """The numbers the last ``step()`` used, with a one-sentence ``rule``.

        Parameters
        ----------
        param : int, optional
            Index of a parameter in the flat parameter list (groups concatenated, as in
            ``step``). ``None``: only ``rule`` (per group when the groups differ), ``step``
            and ``lr`` (one per group).
        index : int or tuple of int, optional
            An element of that parameter (a tuple, or an int indexing the flattened array):
            every array is then replaced by its float at that element. ``None``: arrays
            (copies).

        Returns
        -------
        dict
            ``rule``, ``step`` (``step()`` calls so far), ``param``, ``group``, ``updated``
            (False when the last step had no gradient for it, or no step was taken: then
            nothing else), ``lr``, and the terms of the class's update rule (its docstring
            and ``docs/methods.md §2`` name them): always ``grad`` (after ``maximize``'s
            sign flip), ``update`` (what was subtracted from the parameter) and, with L2
            weight decay, ``decay_term`` (``weight_decay * w`` before the step) and
            ``grad_used`` (``grad + decay_term``); with decoupled weight decay,
            ``decay_factor`` (``1 - lr * weight_decay``, applied to ``w`` before ``update``).
        """
        if param is None:
            rules = [self._rule(self._hyper(group)) for group in self.param_groups]
            rule = rules[0] if len(set(rules)) == 1 else "; ".join(
                f"group {i}: {r}" for i, r in enumerate(rules))
            return {"rule": rule, "step": self._steps,
                    "lr": [group["lr"] for group in self.param_groups]}
        flat = self._flat_params()
        if isinstance(param, bool) or not isinstance(param, (int, np.integer)):
            raise TypeError(f"param must be a parameter index (int), got {param!r}")
        if not 0 <= param < len(flat):
            raise IndexError(f"param {param} is out of range: this optimizer has parameters "
                             f"0..{len(flat) - 1}")
        param = int(param)
        element = None if index is None else _element(index, flat[param].shape)
        group_index = self._group_index(param)
        used = self._used.get(param)
        hyper = used["hyper"] if used else self._hyper(self.param_groups[group_index])
        out: dict[str, Any] = {"rule": self._rule(hyper), "step": self._steps, "param": param,
                               "group": group_index, "updated": used is not None}
        if used is None:
            out["rule"] += (" (no step taken yet)" if self._steps == 0 else
                            " (no update of this parameter at the last step)")
            out["lr"] = hyper["lr"]
            return out
        out.update(self._terms(used, self.state[param], hyper))
        for key, value in out.items():
            if isinstance(value, np.ndarray):
                out[key] = value.copy() if element is None else float(value[element])
        return out

    @staticmethod
    def _hyper(group: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in group.items() if key != "params"}

    def _group_index(self, param: int) -> int:
        start = 0
        for group_index, group in enumerate(self.param_groups):
            start += len(group["params"])
            if param < start:
                return group_index
        raise IndexError(param)  # pragma: no cover - param was checked against the count

    def _rule(self, hyper: dict[str, Any]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _terms(self, used: dict[str, Any], state: dict[str, Any],
               hyper: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validate_group(self, group: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self, param, grad, state, group) -> dict | None:  # pragma: no cover - abstract
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
        """Restore hyper-parameters and state saved by an optimizer of the same class and
        layout; all or nothing (every group is checked as the constructor checks it)."""
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
        new_groups = self._loaded_groups(state_dict["param_groups"])
        new_state = self._loaded_state(state_dict["state"])
        for group, new in zip(self.param_groups, new_groups):
            group.update(new)
        self.state = new_state
        self._used = {}  # the last step's numbers belong to the state replaced

    def _loaded_groups(self, saved: Any) -> list[dict[str, Any]]:
        """The groups' hyper-parameters after a load, checked but not yet assigned."""
        if not isinstance(saved, list) or not all(
                isinstance(g, dict) and "params" in g for g in saved):
            raise ValueError("state dict 'param_groups' must be a list of dicts with 'params'")
        sizes = [len(g["params"]) for g in self.param_groups]
        if [len(g["params"]) for g in saved] != sizes:
            raise ValueError(
                f"state dict has group sizes {[len(g['params']) for g in saved]}, "
                f"this optimizer has {sizes}"
            )
        new_groups = []
        for index, (group, entry) in enumerate(zip(self.param_groups, saved)):
            self._check_keys(entry, self.defaults, f"state dict param group {index}")
            candidate = {k: v for k, v in group.items() if k != "params"}
            candidate.update({k: v for k, v in entry.items() if k != "params"})
            self._validate_group(candidate)
            new_groups.append(candidate)
        return new_groups

    def _loaded_state(self, saved: Any) -> dict[int, dict[str, Any]]:
        """Per-parameter state after a load: arrays copied in the parameter's dtype."""
        if not isinstance(saved, dict):
            raise ValueError("state dict 'state' must be a dict {param index: {name: value}}")  # noqa: TRY004 - bad input is a ValueError throughout
        params = self._flat_params()
        new_state = {}
        for index, entry in saved.items():
            index = int(index)
            if not 0 <= index < len(params) or not isinstance(entry, dict):
                raise ValueError(
                    f"state dict 'state' has an entry for parameter {index}; this optimizer "
                    f"has parameters 0..{len(params) - 1}, each with a dict of state"
                )
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
        return new_state
