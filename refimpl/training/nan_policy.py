"""What happens when a loss or a gradient is NaN or inf (``Trainer(nan_policy=...)``).

* ``"raise"``: :class:`NonFiniteLossError` at once;
* ``"skip-batch"``: no update and no scheduler step; the loss is recorded as NaN and the
  step listed in ``History.skipped``;
* ``"rollback"``: return to the last good state (the latest checkpoint, or the start of the
  run) with every rate multiplied by ``0.5 ** k`` on the ``k``-th rollback in a row, at
  most ``max_rollbacks`` times; the rates are scaled in the saved optimizer and scheduler
  state dicts (nested child schedulers' states included), which are then loaded, so no
  scheduler internals are touched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "NAN_POLICIES",
    "NonFiniteLossError",
    "Rollback",
    "all_finite",
    "rollback_scale",
    "with_scaled_rates",
]

NAN_POLICIES = ("raise", "skip-batch", "rollback")


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient became NaN/inf (``nan_policy="raise"``, or rollbacks ran out)."""


class Rollback(Exception):
    """Raised inside an epoch to send the loop back to the last good state."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def all_finite(loss: float, grads: Sequence[np.ndarray] | None,
               array_finite: Callable[[np.ndarray], bool] | None = None) -> bool:
    """True when ``loss`` and every gradient array are finite (``array_finite``: a backend's
    faster form of ``np.isfinite(a).all()``)."""
    finite = array_finite or (lambda a: bool(np.isfinite(a).all()))
    return math.isfinite(loss) and grads is not None and all(finite(g) for g in grads)


def rollback_scale(count: int) -> float:
    """``0.5 ** count``: the factor on the rates at the ``count``-th rollback in a row."""
    return 0.5 ** count


def with_scaled_rates(state: dict, scale: float) -> dict:
    """A copy of a trainer state (:meth:`Trainer.state_dict`) with every rate times ``scale``.

    Scaled: each optimizer group's ``lr``, and the ``base_lrs`` and ``lrs`` of the scheduler
    and of every scheduler state nested in it (the children of ``SequentialLR``,
    ``ChainedScheduler`` and ``LinearWarmup``), so a child that restarts from its base rates
    after the rollback restarts from the scaled ones.
    """
    state = copy.deepcopy(state)
    for group in state["optimizer"]["param_groups"]:
        group["lr"] = group["lr"] * scale
    _scale_scheduler_rates(state.get("scheduler"), scale)
    return state


def _scale_scheduler_rates(state: object, scale: float) -> None:
    """Scale, in place, ``base_lrs`` and ``lrs`` of a scheduler state and of every scheduler
    state nested in it (a scheduler state is a dict with a ``"class"`` key)."""
    if isinstance(state, dict):
        if "class" in state:
            for key in ("base_lrs", "lrs"):
                if key in state:
                    state[key] = [v * scale for v in state[key]]
        children = state.values()
    elif isinstance(state, list):
        children = state
    else:
        return
    for child in children:
        _scale_scheduler_rates(child, scale)
