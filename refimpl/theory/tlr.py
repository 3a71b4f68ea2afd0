"""TLR on quadratics (docs/methods.md §5): the Newton rate update aims at the 1-D line-search optimum.

GD on ``f(x) = sum_i lambda_i x_i^2 / 2`` (the Hessian's eigenbasis; GD is rotation-invariant),
driven by :class:`refimpl.schedulers.NewtonLR` or by the hypergradient baselines
:class:`refimpl.schedulers.HypergradientAdditiveLR` / ``HypergradientMultiplicativeLR``.

Why TLR chases the line search (K = 1): TLR's directions are then the gradients,
``u_{k-1} = g``, ``u_k = g' = g - eta_prev H g`` (``eta_prev`` the rate of the step between
them), so ``b - a = <g, g - g'> = eta_prev g^T H g`` and

    ``lr_new = lr (1 + gamma (eta*_ls / eta_prev - 1))``,  ``eta*_ls = ||g||^2 / (g^T H g)``,

the exact minimiser of ``f(x - s g)`` over ``s`` (the Cauchy step). Once the rate settles
(``eta_prev = lr``) this is ``lr_new = lr + gamma (eta*_ls - lr)``: a damped move toward the
line-search optimum. For ``K > 1`` the same holds approximately with ``g`` replaced by the
averaged direction of the window (see :func:`line_search_lr`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_RULES = ("constant", "newton", "hypergrad-add", "hypergrad-mul")


def line_search_lr(spectrum: np.ndarray, w_start: np.ndarray, u_sum: np.ndarray, K: int) -> float:
    """Per-step rate that reaches the line-search minimum along a window's mean direction.

    With ``d = u_sum / K`` the mean gradient of the window and ``g`` the gradient at the
    window start, ``min_s f(w_start - s d)`` is at ``s* = <g, d> / (d^T H d)``; K steps at
    rate ``eta`` move ``eta K d``, so the matching per-step rate is ``s* / K``.
    For ``K = 1`` this is the Cauchy step ``||g||^2 / (g^T H g)``.
    """
    d = u_sum / K
    curvature = float(d @ (spectrum * d))
    if curvature <= 0.0:
        return float("nan")
    return float((spectrum * w_start) @ d) / curvature / K


@dataclass
class QuadraticRun:
    """Trace of one GD run on a quadratic under one learning-rate rule."""

    rule: str
    loss: np.ndarray  # f(x_t) - f*, t = 0..n_steps
    lr: np.ndarray  # rate used by step t
    update_steps: list[int] = field(default_factory=list)  # TLR only: step index of each update
    lr_after: list[float] = field(default_factory=list)  # TLR only: rate right after the update
    line_search: list[float] = field(default_factory=list)  # TLR only: eta*_ls of that update

    def steps_to(self, tol: float = 1e-8) -> float:
        """First step at which ``f - f* < tol`` (``inf`` if never)."""
        hit = np.flatnonzero(self.loss < tol)
        return float(hit[0]) if hit.size else float("inf")


def run_quadratic(
    rule: str,
    spectrum: np.ndarray,
    lr0: float,
    n_steps: int = 300,
    seed: int = 0,
    K: int = 1,
    gamma: float = 0.33,
    hyper_lr: float = 1e-3,
) -> QuadraticRun:
    """GD from a random unit start under ``rule`` in ``constant | newton | hypergrad-add | hypergrad-mul``."""
    if rule not in _RULES:
        raise ValueError(f"rule must be one of {_RULES}, got {rule!r}")
    from refimpl import schedulers

    spectrum = np.asarray(spectrum, dtype=np.float64)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(spectrum.size)
    x /= np.linalg.norm(x)
    if rule == "newton":
        scheduler = schedulers.NewtonLR(lr0, gamma=gamma, p=1.0, batches_per_epoch=K)
    elif rule == "hypergrad-add":
        scheduler = schedulers.HypergradientAdditiveLR(lr0, hyper_lr=hyper_lr)
    elif rule == "hypergrad-mul":
        scheduler = schedulers.HypergradientMultiplicativeLR(lr0, hyper_lr=hyper_lr)
    else:
        scheduler = None
    run = QuadraticRun(rule, np.empty(n_steps + 1), np.empty(n_steps))
    lr, w_start, calls = float(lr0), None, 0
    for t in range(n_steps):
        run.loss[t] = 0.5 * float(spectrum @ (x * x))
        g = spectrum * x
        x = x - lr * g
        run.lr[t] = lr
        if rule == "newton":
            calls += 1
            is_update = calls > 1 and (calls - 1) % K == 0
            if is_update:
                eta_ls = line_search_lr(spectrum, w_start, (w_start - x) / lr, K)
            lr = scheduler.step([x])
            if calls == 1 or is_update:
                w_start = x.copy()
            if is_update:
                run.update_steps.append(t)
                run.lr_after.append(lr)
                run.line_search.append(eta_ls)
        elif scheduler is not None:
            lr = scheduler.step([g])
    run.loss[n_steps] = 0.5 * float(spectrum @ (x * x))
    return run


def compare_rules(
    spectrum: np.ndarray,
    lr0: float,
    n_steps: int = 300,
    seed: int = 0,
    K: int = 1,
    gamma: float = 0.33,
    hyper_lr: float = 1e-3,
) -> dict[str, QuadraticRun]:
    """Run every rule from the same start and initial rate."""
    return {rule: run_quadratic(rule, spectrum, lr0, n_steps, seed, K, gamma, hyper_lr)
            for rule in _RULES}
