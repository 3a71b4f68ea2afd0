"""refimpl.theory: known constants, the bounds, the seed-vectorised GreedyLR, and the checks.

Tolerances: float64 throughout; constants and identities at 1e-12 relative (round-off of a
few dozen operations on O(1) numbers), finite-difference gradients at 1e-6 relative
(central differences with h = 1e-6 have O(h^2) truncation and O(eps/h) round-off).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.theory import bounds, cli
from refimpl.theory.batched_greedy import BatchedGreedyLR
from refimpl.theory.montecarlo import check_a1, log_grid, mean_ci, sgd_greedy_gaps, sweep_factor
from refimpl.theory.problems import make_least_squares, make_logistic, make_quadratic
from refimpl.theory.tlr import run_quadratic

PROBLEMS = {
    "least_squares": lambda: make_least_squares(n=60, d=5, seed=1),
    "logistic": lambda: make_logistic(n=60, d=5, seed=1),
    "quadratic": lambda: make_quadratic(np.linspace(0.2, 2.0, 5), n=30, seed=1),
}


# ------------------------------------------------------------------------------ problems
@pytest.mark.parametrize("name", PROBLEMS)
def test_optimum_is_stationary_and_constants_are_consistent(name):
    p = PROBLEMS[name]()
    assert np.linalg.norm(p.grad(p.x_star)) <= 1e-11
    # f* is the minimum: random perturbations never go below it
    rng = np.random.default_rng(0)
    assert np.all(p.loss(p.x_star + 1e-2 * rng.standard_normal((50, p.d))) > p.f_star)
    # sigma*^2 by a plain loop over components
    sq = [np.sum(p.component(p.x_star[None], np.array([i]))[1] ** 2) for i in range(p.n)]
    assert math.isclose(p.sigma_star_sq, np.mean(sq), rel_tol=1e-12)
    assert 0 < p.mu <= p.L <= p.L_max


@pytest.mark.parametrize("name", PROBLEMS)
def test_component_gradients_match_finite_differences_and_average_to_the_full_gradient(name):
    p = PROBLEMS[name]()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((p.n, p.d))
    idx = np.arange(p.n)
    _, g = p.component(x, idx)
    h, numeric = 1e-6, np.empty_like(g)
    for j in range(p.d):
        e = np.zeros(p.d)
        e[j] = h
        numeric[:, j] = (p.component(x + e, idx)[0] - p.component(x - e, idx)[0]) / (2 * h)
    np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8)
    x0 = np.tile(x[0], (p.n, 1))
    np.testing.assert_allclose(p.component(x0, idx)[1].mean(0), p.grad(x[0])[0], rtol=1e-12)
    np.testing.assert_allclose(p.component(x0, idx)[0].mean(), p.loss(x[0])[0], rtol=1e-12)


def test_least_squares_constants_are_exact():
    p = PROBLEMS["least_squares"]()
    hessian = p.A.T @ p.A / p.n
    eig = np.linalg.eigvalsh(hessian)
    assert math.isclose(p.L, eig[-1], rel_tol=1e-12) and math.isclose(p.mu, eig[0], rel_tol=1e-12)
    # L_max is attained: the component Hessian a_i a_i^T has eigenvalue ||a_i||^2
    assert math.isclose(p.L_max, max(np.linalg.eigvalsh(np.outer(a, a))[-1] for a in p.A),
                        rel_tol=1e-12)


def test_logistic_newton_reaches_1e_12_and_bad_labels_are_rejected():
    p = make_logistic(n=80, d=6, seed=3)
    assert np.linalg.norm(p.grad(p.x_star)) <= 1e-12
    with pytest.raises(ValueError, match="labels"):
        type(p)(p.A, (p.y + 1) / 2)
    with pytest.raises(ValueError, match="reg"):
        type(p)(p.A, p.y, reg=0.0)


# ------------------------------------------------------------------------------ bounds
def test_a1_bound_formula_and_validation():
    b = bounds.a1_bound(np.array([1, 10]), 4.0, 0.1, 0.2, 3.0)
    np.testing.assert_allclose(b, 4.0 / (0.1 * np.array([1, 10])) + 2 * 0.04 * 3.0 / 0.1,
                               rtol=1e-12)
    with pytest.raises(ValueError, match="eta_min"):
        bounds.a1_bound(10, 1.0, 0.3, 0.2, 1.0)
    assert bounds.a1_assumption_holds(0.25, 1.0) and not bounds.a1_assumption_holds(0.26, 1.0)


@pytest.mark.parametrize("eta_max", [2.0, 2.5, 4.0, 10.0])
def test_optimal_factor_minimises_the_worst_contraction_after_a_decrease(eta_max):
    L, mu = 1.0, 0.1
    F = np.linspace(0.01, 0.99, 9801)
    worst = np.maximum(bounds.gd_contraction(2 * F / L, L, mu), bounds.gd_contraction(F * eta_max, L, mu))
    F_star = bounds.optimal_factor(L, eta_max)
    assert abs(F[np.argmin(worst)] - F_star) <= 1e-4  # grid spacing
    # the grid minimum lies within one spacing (1e-4) of F*, where |d worst / dF| < 1
    assert abs(bounds.optimal_contraction(L, mu, eta_max) - worst.min()) <= 1e-4


def test_optimal_factor_has_no_interior_optimum_below_the_edge_of_stability():
    assert math.isnan(bounds.optimal_factor(1.0, 1.9))


# ------------------------------------------------------------- seed-vectorised GreedyLR
GREEDY_OPTIONS = [
    {"factor": 0.5, "patience": 0, "threshold": 0.0, "min_lr": 1e-3, "max_lr": 10.0},
    {"factor": 0.9, "patience": 2, "threshold": 1e-2, "threshold_mode": "rel", "min_lr": 0.05, "max_lr": 0.3},
    {"factor": 0.8, "patience": 1, "cooldown": 2, "warmup": 3, "min_lr": 0.01, "max_lr": 2.0, "eps": 1e-3},
    {"factor": 0.7, "patience": 0, "min_lr": 0.2, "max_lr": 1.0, "reset_start": 3},
]


@pytest.mark.parametrize("options", GREEDY_OPTIONS)
def test_batched_greedy_gives_the_identical_trace_to_refimpl_greedy(options):
    from refimpl.schedulers import GreedyLR

    rng = np.random.default_rng(4)
    n_runs, n_steps = 6, 300
    # random walks with jumps: plenty of improvements, plateaus and setbacks
    losses = np.abs(1 + np.cumsum(rng.standard_normal((n_steps, n_runs)) * 0.05, axis=0))
    losses[rng.random((n_steps, n_runs)) < 0.05] *= 3
    batched = BatchedGreedyLR(0.5, n_runs, **options)
    singles = [GreedyLR(0.5, **options) for _ in range(n_runs)]
    for t in range(n_steps):
        got = batched.step(losses[t])
        expected = [s.step(losses[t, r]) for r, s in enumerate(singles)]
        assert got.tolist() == expected, f"first difference at step {t}"


def test_batched_greedy_per_run_factors_and_unsupported_options():
    from refimpl.schedulers import GreedyLR

    losses = np.linspace(1, 0, 20)
    batched = BatchedGreedyLR(0.1, 2, factor=np.array([0.5, 0.9]), patience=0, max_lr=5.0)
    singles = [GreedyLR(0.1, factor=F, patience=0, max_lr=5.0) for F in (0.5, 0.9)]
    for loss in losses:
        assert batched.step(np.array([loss, loss])).tolist() == [s.step(loss) for s in singles]
    with pytest.raises(ValueError, match="smooth"):
        BatchedGreedyLR(0.1, 2, smooth=True)
    with pytest.raises(ValueError, match="mode"):
        BatchedGreedyLR(0.1, 2, mode="max")
    with pytest.raises(ValueError, match="factor"):
        BatchedGreedyLR(0.1, 2, factor=1.0)


# ------------------------------------------------------------------------ Monte Carlo
def test_mean_ci_covers_the_true_mean_at_about_95_percent():
    rng = np.random.default_rng(5)
    samples = rng.exponential(size=(2000, 40))
    _, low, high = mean_ci(samples, axis=1)
    coverage = np.mean((low < 1.0) & (1.0 < high))
    assert 0.91 < coverage < 0.97  # t-interval on skewed data, n = 40
    mean, low, high = mean_ci(np.array([[1.0, np.inf, 2.0]]), axis=1)
    assert np.isinf(mean[0]) and np.isinf(high[0])


PAIRS = [(1 / 16, 1 / 4), (1 / 80, 1 / 8), (1 / 32, 1 / 16)]


@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("pair", PAIRS)
def test_theorem_a1_holds_upper_ci_below_bound(name, pair):
    p = PROBLEMS[name]()
    check = check_a1(p, pair[0] / p.L_max, pair[1] / p.L_max, log_grid(1000, 1), n_seeds=40)
    assert check.assumption_holds
    assert check.all_hold, (check.ci_high, check.bound)
    # the rates really stayed inside the clipped range
    assert pair[0] / p.L_max <= check.lr_mean <= pair[1] / p.L_max


@pytest.mark.parametrize("name", ["least_squares", "quadratic"])
def test_theorem_a1_violated_assumption_is_detected(name):
    p = PROBLEMS[name]()
    check = check_a1(p, 4 / p.L_max, 8 / p.L_max, log_grid(1000, 1), n_seeds=20)
    assert not check.assumption_holds
    assert not check.all_hold


def test_factor_sweep_finds_a_threshold_and_an_optimum_near_the_formula():
    sweep = sweep_factor(np.linspace(0.1, 1.0, 20), np.round(np.arange(0.1, 0.99, 0.05), 3),
                         eta_max=2.5, n_seeds=8, max_steps=2000)
    # F = 0.1 overshoots far past 2/L and the rate collapses: failed or >10x slower
    assert sweep.median_steps[0] > 10 * sweep.median_steps.min()
    assert sweep.failure_rate[-1] == 0.0
    assert 0.1 < sweep.stability_threshold < 0.5
    assert abs(sweep.empirical_best - sweep.formula) <= 0.1  # grid step 0.05, flat optimum


# ---------------------------------------------------------------------------- TLR
def test_tlr_update_is_a_damped_step_toward_the_line_search_optimum():
    # Exact up to NewtonLR's guard den + 1e-10: over these first updates den = eta g^T H g
    # stays above 1e-4, so the guard perturbs the factor by < 1e-6 relative.
    gamma = 0.33
    run = run_quadratic("newton", np.linspace(0.1, 1.0, 10), lr0=0.05, n_steps=8, gamma=gamma)
    for j in range(1, len(run.update_steps)):
        t = run.update_steps[j]
        expected = run.lr[t] * (1 + gamma * (run.line_search[j - 1] / run.lr[t - 1] - 1))
        assert math.isclose(run.lr_after[j], expected, rel_tol=1e-6)
    assert run.lr_after[0] == 0.05  # the first update has u_{k-1} = 0


def test_tlr_beats_a_small_constant_rate_on_a_quadratic():
    steps = {rule: run_quadratic(rule, np.linspace(0.1, 1.0, 10), 0.05, 300, hyper_lr=0.05).steps_to()
             for rule in ("constant", "newton")}
    assert steps["newton"] < steps["constant"]


# ---------------------------------------------------------------------------- CLI
def test_cli_prints_a_table(capsys):
    assert cli.main(["tlr"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| K | lr0 |") and out.count("\n") == 8
    with pytest.raises(SystemExit):
        cli.main(["nope"])


def test_theorem_a1_with_the_noise_free_signal_the_rate_travels_and_the_bound_holds():
    p = PROBLEMS["least_squares"]()
    lo, hi = (1 / 80) / p.L_max, (1 / 8) / p.L_max
    early = {signal: sgd_greedy_gaps(p, lo, hi, [100], n_seeds=10, lr0=lo, loss_signal=signal,
                                     patience=0)[1].mean() for signal in ("sample", "full")}
    # GreedyLR climbs while the full loss falls; on sampled losses it hardly leaves eta_min
    assert early["full"] > 2 * lo and early["full"] > 1.5 * early["sample"], early
    check = check_a1(p, lo, hi, log_grid(1000, 1), n_seeds=20, loss_signal="full", patience=0)
    assert check.all_hold
    with pytest.raises(ValueError, match="loss_signal"):
        sgd_greedy_gaps(p, lo, hi, [10], loss_signal="batch")
