"""Pieces every framework's catalogue uses: seeded generators, and the comparisons of a
scheduler, an optimizer and an op that end in a :class:`~.core.Comparison`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..compare import CheckResult, check
from .core import Case, Comparison

__all__ = ["differing_steps", "generator", "log_uniform", "random_lrs", "schedule_comparison",
           "take"]


def generator(seed: int, name: str) -> np.random.Generator:
    """The random generator of one subject (see :func:`~.subject_seed`)."""
    from . import subject_seed

    return np.random.default_rng(subject_seed(seed, name))


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """``10 ** uniform(log10 low, log10 high)``."""
    return float(10 ** rng.uniform(np.log10(low), np.log10(high)))


def random_lrs(rng: np.random.Generator, most: int = 3) -> list[float]:
    """One to ``most`` parameter groups with log-uniform rates in [1e-4, 1]."""
    return [log_uniform(rng, 1e-4, 1.0) for _ in range(int(rng.integers(1, most + 1)))]


def take(edges: Iterable[Case], random_case: Callable[[int], Case], configs: int
         ) -> Iterable[Case]:
    """The edge cases, then ``configs`` random ones (``random_case(index)``)."""
    yield from edges
    for index in range(configs):
        yield random_case(index)


def schedule_comparison(theirs: Any, ours: Any, signals: Sequence[Any] | None = None, *,
                        steps: int | None = None, read_lr: Callable | None = None,
                        feed: Callable | None = None, rtol: float | None = None,
                        atol: float = 0.0, label: str | None = None,
                        offset: int = 0) -> Comparison:
    """:func:`~refimpl.crosscheck.check` over every step (``until="end"``).

    Equal when no step differs, or when every difference is labelled ``"rounding"`` (at
    most 4 ulps of the largest term of our formula: two correct evaluations of the same
    closed form may differ by that much). ``label`` names theirs in the report; ``offset``
    compares their step t with our step t - offset.
    """
    result = check(theirs, ours, signals, steps=steps, read_lr=read_lr, feed=feed, rtol=rtol,
                   atol=atol, label=label, until="end", offset=offset)
    rounding = not result.ok and all(d.label == "rounding" for d in result.differences)
    detail = str(result)
    if rounding:
        detail = (f"{result.subject}: equal to rounding over {result.steps} steps "
                  f"({len(result.differences)} steps within 4 ulps of our largest term)")
    return Comparison(result.ok or rounding, detail, result)


def differing_steps(comparison: Comparison) -> list[int]:
    """The steps (their count) a schedule comparison found differing (rounding excluded)."""
    result = comparison.result
    if not isinstance(result, CheckResult):
        return []
    return [d.step for d in result.differences if d.label != "rounding"]
