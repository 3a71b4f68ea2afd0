"""Theorem checks: problems with known constants, the bounds, and Monte-Carlo checkers.

Modules: :mod:`.problems` (least squares, logistic regression, quadratics),
:mod:`.bounds` (Theorem A.1 bound, Theorem A.2 optimal factor), :mod:`.batched_greedy`
(GreedyLR across many seeds), :mod:`.montecarlo` (the checks), :mod:`.tlr` (TLR on
quadratics) and :mod:`.cli` (``refimpl theory a1|a2|tlr [--full]``).
"""

from .bounds import a1_bound, optimal_factor
from .montecarlo import check_a1, mean_ci, stability_sweep, sweep_factor
from .problems import make_least_squares, make_logistic, make_quadratic

__all__ = [
    "a1_bound",
    "check_a1",
    "make_least_squares",
    "make_logistic",
    "make_quadratic",
    "mean_ci",
    "optimal_factor",
    "stability_sweep",
    "sweep_factor",
]
