"""Assertions for a user's test suite, in the spirit of ``numpy.testing``.

    from refimpl.schedulers import GreedyLR
    from refimpl.testing import assert_scheduler_close

    def test_my_greedy_matches_the_reference():
        mine = MyGreedyLR(optimizer, patience=2)
        assert_scheduler_close(mine, GreedyLR(0.1, patience=2), losses)

On a mismatch the ``AssertionError`` carries the report of
:func:`refimpl.crosscheck.check`: the first differing step, both rates, the rule of ours
that fired there with its numbers, and the state one step before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .crosscheck.compare import CheckResult, check
from .schedulers.base import Scheduler

__all__ = ["assert_scheduler_close"]


def assert_scheduler_close(theirs: Any, ours: Scheduler, signals: Sequence[Any] | None = None,
                           *, steps: int | None = None,
                           read_lr: Callable[[Any], Any] | None = None,
                           feed: Callable[[Any, Any], None] | None = None,
                           rtol: float | None = None, atol: float = 0.0,
                           msg: str = "") -> CheckResult:
    """Raise ``AssertionError`` unless ``theirs`` and ``ours`` give the same rates.

    The arguments are those of :func:`refimpl.crosscheck.check` (``theirs``: a torch
    scheduler, anything with ``.optimizer.param_groups``, a schedule function ``t -> lr``,
    or any object with ``read_lr``/``feed``; ``ours``: a fresh refimpl scheduler; one signal
    per step, or ``steps=N``); ``msg`` is put before the report.

    Returns
    -------
    CheckResult
        The (passing) result, e.g. to look at ``max_rel_diff``.

    Raises
    ------
    AssertionError
        At the first step where a rate differs beyond ``atol + rtol * |theirs|``; the
        message names the step, both values, the failed bound and the rule that fired.
    """
    __tracebackhide__ = True  # pytest shows the caller's line
    result = check(theirs, ours, signals, steps=steps, read_lr=read_lr, feed=feed, rtol=rtol,
                   atol=atol)
    if not result.ok:
        raise AssertionError(f"{msg}\n{result}" if msg else str(result))
    return result
