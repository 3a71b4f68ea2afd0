"""Theorem checks: problems with known constants, the bounds, and Monte-Carlo checkers.

Modules: :mod:`.problems` (least squares, logistic regression, quadratics),
:mod:`.bounds` (Theorem A.1 bound, Theorem A.2 optimal factor), :mod:`.batched_greedy`
(GreedyLR across many seeds), :mod:`.montecarlo` (the checks), :mod:`.tlr` (TLR on
quadratics) and :mod:`.cli` (``refimpl theory a1|a2|tlr [--full]``).

The names below are loaded when first used, so that ``refimpl theory --help`` does not
import SciPy's statistics (a second of start-up) before it has anything to compute.
"""

from __future__ import annotations

import importlib

# public name -> module (relative to this package) that defines it
_NAMES = {
    "a1_bound": "bounds",
    "optimal_factor": "bounds",
    "check_a1": "montecarlo",
    "mean_ci": "montecarlo",
    "stability_sweep": "montecarlo",
    "sweep_factor": "montecarlo",
    "make_least_squares": "problems",
    "make_logistic": "problems",
    "make_quadratic": "problems",
}

__all__ = sorted(_NAMES)  # noqa: PLE0605


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
