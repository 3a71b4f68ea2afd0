"""The theorem bounds of docs/methods.md §4 as plain functions (GreedyLR paper, appendix A.1).

Theorem A.1 (interpretation, docs/methods.md §4) -- derivation sketch
----------------------------------------------------------
SGD ``x_{t+1} = x_t - eta_t grad f_{i_t}(x_t)``, ``i_t`` uniform, ``eta_t`` chosen before
``i_t`` is drawn and kept in ``[eta_min, eta_max]`` (GreedyLR clipped by ``min_lr``/``max_lr``).

1. Expand the square: ``||x_{t+1} - x*||^2 = ||x_t - x*||^2 - 2 eta_t <g_t, x_t - x*> + eta_t^2 ||g_t||^2``.
2. Take ``E_t`` over ``i_t``; convexity gives ``<grad f(x_t), x_t - x*> >= f(x_t) - f*``.
3. Variance transfer (each ``f_i`` convex and ``L_max``-smooth):
   ``E_t ||g_t||^2 <= 4 L_max (f(x_t) - f*) + 2 sigma*^2``.
4. Hence ``E_t ||x_{t+1} - x*||^2 <= ||x_t - x*||^2 - 2 eta_t (1 - 2 eta_t L_max)(f(x_t) - f*) + 2 eta_t^2 sigma*^2``.
5. ``eta_t <= eta_max <= 1/(4 L_max)`` makes ``2 (1 - 2 eta_t L_max) >= 1``; with
   ``eta_min <= eta_t <= eta_max``:
   ``eta_min E[f(x_t) - f*] <= E||x_t - x*||^2 - E||x_{t+1} - x*||^2 + 2 eta_max^2 sigma*^2``.
6. Sum over ``t = 0..T-1`` (telescoping), divide by ``eta_min T``, and apply Jensen to the
   average iterate ``x_bar_T = (1/T) sum_{t<T} x_t``:

   ``E[f(x_bar_T)] - f* <= ||x_0 - x*||^2 / (eta_min T) + 2 eta_max^2 sigma*^2 / eta_min``.

Theorem A.2 (our derivation, see docs/theory.md)
------------------------------------------------
GD on a quadratic with Hessian spectrum in ``[mu, L]``: by the descent lemma and
``||grad f||^2 >= 2 mu (f - f*)`` one step with rate ``eta`` contracts ``f - f*`` by

    ``rho(eta) = 1 - mu eta (2 - L eta)``     (< 1 iff 0 < eta < 2/L, smallest at eta = 1/L).

If ``eta_max >= 2/L`` the greedy rule climbs until a step fails, at some rate
``eta in [2/L, eta_max]``, and then multiplies it by ``F``. The worst contraction after that
decrease, ``max_{eta in [2/L, eta_max]} rho(F eta)``, is smallest when the two ends are
equally good, ``rho(2F/L) = rho(F eta_max)``, i.e. ``2F/L + F eta_max = 2/L``:

    ``F* = 2 / (2 + L eta_max)``,   guaranteed factor ``rho* = 1 - 4 (mu/L) F* (1 - F*)``.

If ``eta_max < 2/L`` every step improves, the rule never decreases, and the rate only sets
the climb time ``log(eta_max/eta_0) / log(1/F)``: no interior optimum (smaller F is faster).
"""

from __future__ import annotations

import numpy as np


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def a1_bound(
    T: np.ndarray | int,
    initial_distance_sq: float,
    eta_min: float,
    eta_max: float,
    sigma_star_sq: float,
) -> np.ndarray:
    """Right side of Theorem A.1 for each horizon ``T``.

    ``B(T) = ||x_0 - x*||^2 / (eta_min T) + 2 eta_max^2 sigma*^2 / eta_min``
    (valid when ``eta_max <= 1/(4 L_max)``; see the module docstring for the derivation).
    """
    eta_min, eta_max = _positive(eta_min, "eta_min"), _positive(eta_max, "eta_max")
    if eta_min > eta_max:
        raise ValueError(f"eta_min ({eta_min}) must not exceed eta_max ({eta_max})")
    T = np.asarray(T, dtype=np.float64)
    if np.any(T < 1):
        raise ValueError("T must be >= 1")
    return initial_distance_sq / (eta_min * T) + 2.0 * eta_max**2 * sigma_star_sq / eta_min


def a1_assumption_holds(eta_max: float, L_max: float) -> bool:
    """Whether ``eta_max <= 1/(4 L_max)``, the step-size condition of Theorem A.1."""
    return float(eta_max) <= 1.0 / (4.0 * _positive(L_max, "L_max"))


def gd_contraction(lr: np.ndarray | float, L: float, mu: float) -> np.ndarray:
    """Guaranteed one-step factor of ``f - f*`` for GD: ``rho(lr) = 1 - mu lr (2 - L lr)``."""
    lr = np.asarray(lr, dtype=np.float64)
    return 1.0 - mu * lr * (2.0 - L * lr)


def optimal_factor(L: float, eta_max: float) -> float:
    """Theorem A.2 (our derivation): ``F* = 2 / (2 + L eta_max)`` when ``eta_max >= 2/L``.

    Returns ``nan`` when ``eta_max < 2/L``: there the greedy rule never decreases the rate on
    a noiseless quadratic and the convergence speed increases monotonically as F decreases
    (no interior optimum).
    """
    L, eta_max = _positive(L, "L"), _positive(eta_max, "eta_max")
    if L * eta_max < 2.0:
        return float("nan")
    return 2.0 / (2.0 + L * eta_max)


def optimal_contraction(L: float, mu: float, eta_max: float) -> float:
    """Guaranteed one-step factor of ``f - f*`` at ``F*`` (a contraction factor, not a rate):
    ``rho* = rho(2 F*/L) = 1 - 4 (mu/L) F* (1 - F*)``; ``nan`` where ``F*`` is."""
    F = optimal_factor(L, eta_max)
    return 1.0 - 4.0 * (mu / L) * F * (1.0 - F)
