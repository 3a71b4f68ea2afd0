"""Argument checks shared by every scheduler: each returns the checked value, or raises
``ValueError`` naming the argument (and, where it helps, what to pass instead)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["check_choice", "check_factor", "check_flag", "check_int", "check_interval",
           "check_lr", "per_group"]


def check_lr(value: Any, name: str = "lr") -> float:
    """``value`` as a finite float >= 0 (a rate or a rate-like bound)."""
    try:
        lr = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(lr) or lr < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return lr


def check_int(value: Any, name: str, minimum: int, *, whole_float: bool = False,
              why: str = "") -> int:
    """``value`` as an int >= ``minimum``.

    ``whole_float=True`` also takes a float holding a whole number (``10.0``), as the
    schedulers of the papers do (their configs may come from JSON). ``why`` follows the
    bound in the message, e.g. ``" (the predictor fits a trajectory)"``.
    """
    if whole_float:
        whole = (isinstance(value, numbers.Real) and not isinstance(value, bool)
                 and math.isfinite(value) and int(value) == value)
    else:
        whole = not isinstance(value, bool) and hasattr(value, "__index__")
    if not whole or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{why}, got {value!r}")
    return int(value)


def check_factor(value: Any, name: str, *, low: float, high: float,
                 low_open: bool = False, high_open: bool = False, hint: str = "") -> float:
    """``value`` as a float in the stated interval; ``hint`` ends the message (``"; use
    e.g. 0.95"``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if not math.isfinite(number) or below or above:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}{hint}")
    return number


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_flag(value: Any, name: str) -> bool:
    """``value`` as a bool: ``True`` or ``False`` (NumPy's too). Anything else is refused
    rather than read as truthy (``smooth="no"`` would otherwise switch smoothing on)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")  # noqa: TRY004 - bad input is a ValueError throughout
    return bool(value)


def check_interval(value: Any) -> str:
    """``"epoch"`` or ``"step"``: when a trainer calls the scheduler."""
    return check_choice(value, "interval", ("epoch", "step"))


def per_group(value: Any, n_groups: int, name: str,
              check: Callable[[Any, str], Any] = check_lr) -> list:
    """Broadcast one value to every group, or check a list has one entry per group; each
    entry goes through ``check``."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_groups:
            raise ValueError(
                f"{name} has {len(value)} entries but there are {n_groups} parameter groups; "
                "give one value, or one per group")
        return [check(v, name) for v in value]
    return [check(value, name)] * n_groups
