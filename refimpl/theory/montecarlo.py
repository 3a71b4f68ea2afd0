"""Monte-Carlo checks of Theorems A.1 and A.2 (docs/methods.md §4), vectorised across seeds.

Every run of a check is one row of a NumPy array: SGD iterates ``x`` have shape ``(S, d)``
and the learning rates come from :class:`~refimpl.theory.batched_greedy.BatchedGreedyLR`
(same rule as :class:`refimpl.schedulers.GreedyLR`, tested trace-for-trace). Estimates
are reported with a two-sided 95% Student-t confidence interval over the ``S`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .batched_greedy import BatchedGreedyLR
from .bounds import a1_assumption_holds, a1_bound, optimal_factor


def mean_ci(samples: np.ndarray, axis: int = -1, level: float = 0.95) -> tuple[np.ndarray, ...]:
    """Mean and two-sided Student-t confidence interval ``mean +- t_{n-1} s / sqrt(n)``."""
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[axis]
    if n < 2:
        raise ValueError(f"need at least 2 runs for a confidence interval, got {n}")
    finite = np.all(np.isfinite(samples), axis=axis)
    clean = np.where(np.isfinite(samples), samples, 0.0)
    mean = clean.mean(axis=axis)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * clean.std(axis=axis, ddof=1) / np.sqrt(n)
    # a diverged run makes the estimate infinite: no interval can be claimed
    mean, half = np.where(finite, mean, np.inf), np.where(finite, half, np.inf)
    with np.errstate(invalid="ignore"):
        low = np.where(finite, mean - half, np.nan)
    return mean, low, mean + half


def log_grid(t_max: int, per_decade: int = 2) -> np.ndarray:
    """Integers ``10^k`` on a log grid from 10 to ``t_max`` (``per_decade`` points per decade)."""
    if t_max < 10:
        raise ValueError(f"t_max must be >= 10, got {t_max}")
    exps = np.arange(1.0, np.log10(t_max) + 1e-9, 1.0 / per_decade)
    return np.unique(np.round(10.0**exps).astype(np.int64))


# ------------------------------------------------------------------------------ Theorem A.1
@dataclass
class A1Check:
    """Outcome of one Theorem A.1 check on one problem and one ``(eta_min, eta_max)`` pair."""

    problem: str
    eta_min: float
    eta_max: float
    L_max: float
    T: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    bound: np.ndarray
    lr_mean: float
    assumption_holds: bool
    holds: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        # the bound "holds" at T when the whole confidence interval lies under it
        self.holds = np.asarray(self.ci_high < self.bound)

    @property
    def all_hold(self) -> bool:
        return bool(np.all(self.holds))


def sgd_greedy_gaps(
    problem,
    eta_min: float,
    eta_max: float,
    T_grid: np.ndarray,
    n_seeds: int = 200,
    seed: int = 0,
    x0: np.ndarray | None = None,
    lr0: float | None = None,
    loss_signal: str = "sample",
    **greedy_options,
) -> tuple[np.ndarray, np.ndarray]:
    """Run SGD (one sampled component per step) with GreedyLR clipped to ``[eta_min, eta_max]``.

    Order per step (as a training loop): loss and gradient of ``f_{i_t}`` at ``x_t``; update
    ``x_{t+1} = x_t - eta_t g_t``; ``eta_{t+1} = GreedyLR.step(loss_t)``. So ``eta_t`` is fixed
    before ``i_t`` is drawn, as the theorem requires. ``loss_signal="sample"`` feeds the
    sampled loss ``f_{i_t}(x_t)`` (what a trainer sees); ``"full"`` feeds ``f(x_t)``, a
    noise-free signal with which the rate really travels through ``[eta_min, eta_max]``.

    Returns ``gaps`` of shape ``(len(T_grid), n_seeds)`` with ``f(x_bar_T) - f*`` where
    ``x_bar_T = (1/T) sum_{t<T} x_t``, and the mean learning rate of every run.
    """
    T_grid = np.asarray(T_grid, dtype=np.int64)
    if np.any(np.diff(T_grid) <= 0) or T_grid[0] < 1:
        raise ValueError("T_grid must be increasing integers >= 1")
    if loss_signal not in ("sample", "full"):
        raise ValueError(f"loss_signal must be 'sample' or 'full', got {loss_signal!r}")
    rng = np.random.default_rng(seed)
    x = np.zeros((n_seeds, problem.d)) if x0 is None else np.tile(x0, (n_seeds, 1)).astype(float)
    x_sum = np.zeros_like(x)
    lr_sum = np.zeros(n_seeds)
    options = {"min_lr": eta_min, "max_lr": eta_max, **greedy_options}
    scheduler = BatchedGreedyLR(eta_max if lr0 is None else lr0, n_seeds, **options)
    lr = scheduler.lr.copy()
    gaps = np.empty((T_grid.size, n_seeds))
    chunk, k = 4096, 0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(int(T_grid[-1])):
            if t % chunk == 0:
                indices = rng.integers(problem.n, size=(chunk, n_seeds))
            loss, g = problem.component(x, indices[t % chunk])
            if loss_signal == "full":
                loss = problem.loss(x)
            x_sum += x
            lr_sum += lr
            x = x - lr[:, None] * g
            lr = scheduler.step(loss)
            if t + 1 == T_grid[k]:
                gaps[k] = problem.loss(x_sum / (t + 1)) - problem.f_star
                k += 1
    gaps[~np.isfinite(gaps)] = np.inf
    return gaps, lr_sum / T_grid[-1]


def check_a1(
    problem,
    eta_min: float,
    eta_max: float,
    T_grid: np.ndarray,
    n_seeds: int = 200,
    seed: int = 0,
    **greedy_options,
) -> A1Check:
    """Monte-Carlo check of Theorem A.1: is the 95% CI of ``E[f(x_bar_T)] - f*`` under the bound?"""
    gaps, lr_mean = sgd_greedy_gaps(problem, eta_min, eta_max, T_grid, n_seeds, seed,
                                    **greedy_options)
    x0_dist_sq = float(np.sum(problem.x_star**2))  # runs start at x_0 = 0
    mean, low, high = mean_ci(gaps, axis=1)
    return A1Check(
        problem=problem.name, eta_min=eta_min, eta_max=eta_max, L_max=problem.L_max,
        T=np.asarray(T_grid), mean=mean, ci_low=low, ci_high=high,
        bound=a1_bound(T_grid, x0_dist_sq, eta_min, eta_max, problem.sigma_star_sq),
        lr_mean=float(np.mean(lr_mean)),
        assumption_holds=a1_assumption_holds(eta_max, problem.L_max),
    )


# ------------------------------------------------------------------------------ Theorem A.2
@dataclass
class FactorSweep:
    """Steps of GD + bare GreedyLR to reach ``f - f* < tol`` for each factor F and seed."""

    factors: np.ndarray
    steps: np.ndarray  # (len(factors), n_seeds); inf where the run failed
    L: float
    mu: float
    eta_max: float
    tol: float
    max_steps: int

    @property
    def failure_rate(self) -> np.ndarray:
        return np.mean(~np.isfinite(self.steps), axis=1)

    @property
    def median_steps(self) -> np.ndarray:
        return np.median(self.steps, axis=1)

    @property
    def empirical_best(self) -> float:
        """F with the fewest median steps (the smallest such F on ties)."""
        return float(self.factors[int(np.argmin(self.median_steps))])

    @property
    def formula(self) -> float:
        return optimal_factor(self.L, self.eta_max)

    @property
    def stability_threshold(self) -> float:
        """Smallest grid F from which every larger grid F converged in every seed (nan if none)."""
        ok = self.failure_rate == 0
        if not ok[-1]:
            return float("nan")
        first_bad_from_top = np.flatnonzero(~ok)
        start = 0 if first_bad_from_top.size == 0 else first_bad_from_top[-1] + 1
        return float(self.factors[start])


def sweep_factor(
    spectrum: np.ndarray,
    factors: np.ndarray,
    eta_max: float,
    eta_min: float | None = None,
    lr0: float | None = None,
    n_seeds: int = 20,
    tol: float = 1e-8,
    max_steps: int = 5000,
    seed: int = 0,
    patience: int = 0,
) -> FactorSweep:
    """Sweep the GreedyLR factor for GD on ``f(x) = sum_i lambda_i x_i^2 / 2`` (eigenbasis).

    GD is rotation-invariant, so working in the Hessian's eigenbasis loses nothing. Every
    ``(F, seed)`` pair is one row; starts ``x_0`` are random unit vectors (``f(x_0) <= L/2``).
    The rule is the paper's bare one (``patience=0``, ``threshold=0``). A run fails when
    ``f`` becomes non-finite or exceeds ``1e30`` (divergence) or ``max_steps`` pass (stall).
    """
    spectrum = np.asarray(spectrum, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.float64)
    L, mu = float(spectrum.max()), float(spectrum.min())
    eta_min = 1e-4 / L if eta_min is None else eta_min
    lr0 = 1e-2 / L if lr0 is None else lr0
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_seeds, spectrum.size))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = np.tile(x, (factors.size, 1))  # row r: factor r // n_seeds, seed r % n_seeds
    runs = x.shape[0]
    scheduler = BatchedGreedyLR(lr0, runs, factor=np.repeat(factors, n_seeds), patience=patience,
                                threshold=0.0, min_lr=eta_min, max_lr=eta_max, eps=0.0,
                                reset_start=max_steps + 1)
    lr = scheduler.lr.copy()
    steps = np.full(runs, np.inf)
    active = np.ones(runs, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(max_steps):
            f = 0.5 * np.sum(spectrum * x * x, axis=1)
            reached = active & (f < tol)
            steps[reached] = t
            active &= ~reached & np.isfinite(f) & (f < 1e30)
            if not active.any():
                break
            x = x - lr[:, None] * spectrum * x
            lr = scheduler.step(np.where(active, f, 0.0))
    return FactorSweep(factors, steps.reshape(factors.size, n_seeds), L, mu, float(eta_max),
                       tol, max_steps)


# --------------------------------------------------------------------- stability threshold
@dataclass
class StabilitySweep:
    """Final loss of a fixed-length SGD + GreedyLR training run for each factor F."""

    factors: np.ndarray
    final_loss: np.ndarray  # (len(factors), n_seeds)
    initial_loss: float

    @property
    def median_final(self) -> np.ndarray:
        return np.median(self.final_loss, axis=1)

    @property
    def diverged(self) -> np.ndarray:
        """A factor diverges when the median final loss exceeds the initial loss."""
        return ~(self.median_final < self.initial_loss)

    @property
    def threshold(self) -> float:
        """Smallest grid F from which no larger grid F diverged (nan if the largest did)."""
        if self.diverged[-1]:
            return float("nan")
        bad = np.flatnonzero(self.diverged)
        return float(self.factors[0 if bad.size == 0 else bad[-1] + 1])

    def spread_above(self, threshold: float | None = None) -> float:
        """``(max - min) / min`` of the median final loss over the factors ``>= threshold``."""
        threshold = self.threshold if threshold is None else threshold
        values = self.median_final[self.factors >= threshold]
        return float((values.max() - values.min()) / values.min())

    def flat_from(self, tolerance: float = 0.015) -> float:
        """Smallest grid F from which the final loss varies by less than ``tolerance`` (relative)."""
        for F in self.factors:
            if self.spread_above(F) < tolerance:
                return float(F)
        return float("nan")


def stability_sweep(
    problem,
    factors: np.ndarray,
    lr0: float,
    max_lr: float,
    min_lr: float = 1e-5,
    n_steps: int = 250,
    batch_size: int = 8,
    n_seeds: int = 20,
    seed: int = 0,
    patience: int = 0,
    last: int = 10,
) -> StabilitySweep:
    """Minibatch SGD with GreedyLR for ``n_steps`` steps, every factor and seed at once.

    The loss fed to GreedyLR is the minibatch loss; the reported final loss is the mean
    full loss over the ``last`` steps (the robustness study's "final loss", docs/methods.md §8).
    """
    factors = np.asarray(factors, dtype=np.float64)
    runs = factors.size * n_seeds
    rng = np.random.default_rng(seed)
    x = np.zeros((runs, problem.d))
    scheduler = BatchedGreedyLR(lr0, runs, factor=np.repeat(factors, n_seeds), patience=patience,
                                min_lr=min_lr, max_lr=max_lr, reset_start=n_steps + 1)
    lr = scheduler.lr.copy()
    tail = np.zeros(runs)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(n_steps):
            idx = rng.integers(problem.n, size=(batch_size, runs))
            losses, grads = zip(*(problem.component(x, idx[j]) for j in range(batch_size)))
            loss, g = np.mean(losses, axis=0), np.mean(grads, axis=0)
            x = x - lr[:, None] * g
            lr = scheduler.step(np.nan_to_num(loss, nan=np.inf))
            if t >= n_steps - last:
                tail += problem.loss(x)
    final = np.nan_to_num(tail / last, nan=np.inf).reshape(factors.size, n_seeds)
    return StabilitySweep(factors, final, float(problem.loss(np.zeros(problem.d))[0]))
