"""Finite-sum problems whose constants are known exactly (docs/methods.md §4, Theorems A.1 and A.2).

Every problem is ``f(x) = (1/n) sum_i f_i(x)`` with each ``f_i`` convex and ``L_max``-smooth,
and carries

* ``L``        -- smoothness constant of ``f`` (largest Hessian eigenvalue, or a bound),
* ``L_max``    -- ``max_i`` smoothness constant of the ``f_i``,
* ``mu``       -- strong-convexity constant of ``f`` (smallest Hessian eigenvalue, or a bound),
* ``x_star``, ``f_star`` -- the minimiser and the minimum,
* ``sigma_star_sq`` -- gradient noise at the optimum, ``(1/n) sum_i ||grad f_i(x*)||^2``.

All evaluation methods are vectorised over a leading "run" axis so that many Monte-Carlo
seeds advance together: ``x`` has shape ``(S, d)``, ``idx`` (the sampled components) shape
``(S,)``; results have shape ``(S,)`` or ``(S, d)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _check_positive_int(value: int, name: str) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass
class LeastSquares:
    """``f_i(x) = (a_i . x - b_i)^2 / 2``, so ``f(x) = ||A x - b||^2 / (2 n)``.

    Constants (exact): ``L = lambda_max(A^T A / n)``, ``mu = lambda_min(A^T A / n)``,
    ``L_max = max_i ||a_i||^2``, ``x* = argmin`` (normal equations, solved by ``lstsq``),
    ``sigma*^2 = (1/n) sum_i r_i^2 ||a_i||^2`` with residuals ``r_i = a_i . x* - b_i``.
    """

    A: np.ndarray
    b: np.ndarray
    name: str = "least_squares"
    L: float = field(init=False)
    L_max: float = field(init=False)
    mu: float = field(init=False)
    x_star: np.ndarray = field(init=False)
    f_star: float = field(init=False)
    sigma_star_sq: float = field(init=False)

    def __post_init__(self) -> None:
        self.A = np.asarray(self.A, dtype=np.float64)
        self.b = np.asarray(self.b, dtype=np.float64)
        if self.A.ndim != 2 or self.b.shape != (self.A.shape[0],):
            raise ValueError(f"A must be (n, d) and b (n,), got {self.A.shape} and {self.b.shape}")
        n = self.A.shape[0]
        eig = np.linalg.eigvalsh(self.A.T @ self.A / n)
        self.L, self.mu = float(eig[-1]), float(eig[0])
        self.L_max = float(np.max(np.sum(self.A**2, axis=1)))
        self.x_star = np.linalg.lstsq(self.A, self.b, rcond=None)[0]
        residual = self.A @ self.x_star - self.b
        self.f_star = float(0.5 * np.mean(residual**2))
        self.sigma_star_sq = float(np.mean(residual**2 * np.sum(self.A**2, axis=1)))

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        return self.A.shape[1]

    def loss(self, x: np.ndarray) -> np.ndarray:
        """Full objective ``f(x)`` for every row of ``x`` (shape ``(S, d)`` -> ``(S,)``)."""
        residual = np.atleast_2d(x) @ self.A.T - self.b
        return 0.5 * np.mean(residual**2, axis=1)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Full gradient ``A^T (A x - b) / n`` for every row of ``x``."""
        residual = np.atleast_2d(x) @ self.A.T - self.b
        return residual @ self.A / self.n

    def component(self, x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Loss and gradient of ``f_{idx[s]}`` at ``x[s]`` for every run ``s``."""
        a = self.A[idx]
        residual = np.einsum("sd,sd->s", a, x) - self.b[idx]
        return 0.5 * residual**2, a * residual[:, None]


@dataclass
class LogisticRegression:
    """``f_i(x) = log(1 + exp(-y_i a_i . x)) + (reg/2) ||x||^2`` with labels ``y_i = +-1``.

    Constants: the Hessian of ``f_i`` is ``s(1-s) a_i a_i^T + reg I`` with ``s(1-s) <= 1/4``, so
    ``L_max = max_i ||a_i||^2 / 4 + reg`` and ``L = lambda_max(A^T A / n) / 4 + reg`` are the
    standard (attained-in-the-limit) smoothness bounds and ``mu = reg`` the strong-convexity
    bound. ``x*`` is found by Newton's method until ``||grad f(x*)|| <= 1e-12``; then
    ``f* = f(x*)`` and ``sigma*^2 = (1/n) sum_i ||grad f_i(x*)||^2`` are exact up to that tolerance.
    """

    A: np.ndarray
    y: np.ndarray
    reg: float = 1e-2
    name: str = "logistic"
    newton_tol: float = 1e-12
    L: float = field(init=False)
    L_max: float = field(init=False)
    mu: float = field(init=False)
    x_star: np.ndarray = field(init=False)
    f_star: float = field(init=False)
    sigma_star_sq: float = field(init=False)
    newton_iterations: int = field(init=False)

    def __post_init__(self) -> None:
        self.A = np.asarray(self.A, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.float64)
        if self.A.ndim != 2 or self.y.shape != (self.A.shape[0],):
            raise ValueError(f"A must be (n, d) and y (n,), got {self.A.shape} and {self.y.shape}")
        if not np.all(np.abs(self.y) == 1):
            raise ValueError("y must hold labels +1 / -1; map {0, 1} labels with 2*y - 1")
        if not self.reg > 0:
            raise ValueError(f"reg must be > 0 (it makes the minimiser exist), got {self.reg!r}")
        n = self.A.shape[0]
        self.L = float(np.linalg.eigvalsh(self.A.T @ self.A / n)[-1] / 4 + self.reg)
        self.L_max = float(np.max(np.sum(self.A**2, axis=1)) / 4 + self.reg)
        self.mu = float(self.reg)
        self.x_star, self.newton_iterations = self._newton()
        self.f_star = float(self.loss(self.x_star)[0])
        _, component_grads = self.component(
            np.repeat(self.x_star[None], n, axis=0), np.arange(n)
        )
        self.sigma_star_sq = float(np.mean(np.sum(component_grads**2, axis=1)))

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        return self.A.shape[1]

    def _newton(self, max_iter: int = 100) -> tuple[np.ndarray, int]:
        """Newton's method ``x <- x - H^{-1} g`` from 0; converges quadratically (f is strongly convex)."""
        x = np.zeros(self.d)
        for it in range(1, max_iter + 1):
            margin = self.y * (self.A @ x)
            s = 0.5 * (1 - np.tanh(margin / 2))  # sigmoid(-margin), overflow-free
            g = -(self.A.T @ (self.y * s)) / self.n + self.reg * x
            if np.linalg.norm(g) <= self.newton_tol:
                return x, it - 1
            H = (self.A.T * (s * (1 - s))) @ self.A / self.n + self.reg * np.eye(self.d)
            x = x - np.linalg.solve(H, g)
        raise RuntimeError(f"Newton did not reach ||grad|| <= {self.newton_tol} in {max_iter} steps")

    def loss(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        margin = self.y * (x @ self.A.T)
        return np.mean(np.logaddexp(0.0, -margin), axis=1) + 0.5 * self.reg * np.sum(x**2, axis=1)

    def grad(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        margin = self.y * (x @ self.A.T)
        s = 0.5 * (1 - np.tanh(margin / 2))
        return -(s * self.y) @ self.A / self.n + self.reg * x

    def component(self, x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, y = self.A[idx], self.y[idx]
        margin = y * np.einsum("sd,sd->s", a, x)
        s = 0.5 * (1 - np.tanh(margin / 2))
        loss = np.logaddexp(0.0, -margin) + 0.5 * self.reg * np.sum(x**2, axis=1)
        return loss, -(s * y)[:, None] * a + self.reg * x


@dataclass
class Quadratic:
    """``f_i(x) = (x - c_i)^T H (x - c_i) / 2`` with ``H = Q diag(spectrum) Q^T`` chosen.

    Constants (exact): ``L = L_max = max(spectrum)``, ``mu = min(spectrum)``,
    ``x* = mean_i c_i``, ``f* = (1/n) sum_i (x* - c_i)^T H (x* - c_i) / 2``,
    ``sigma*^2 = (1/n) sum_i ||H (x* - c_i)||^2``. With ``centers`` all equal there is no
    gradient noise (``sigma*^2 = 0``) and SGD is plain GD.
    """

    spectrum: np.ndarray
    centers: np.ndarray
    rotation: np.ndarray
    name: str = "quadratic"
    L: float = field(init=False)
    L_max: float = field(init=False)
    mu: float = field(init=False)
    H: np.ndarray = field(init=False)
    x_star: np.ndarray = field(init=False)
    f_star: float = field(init=False)
    sigma_star_sq: float = field(init=False)

    def __post_init__(self) -> None:
        self.spectrum = np.asarray(self.spectrum, dtype=np.float64)
        self.centers = np.atleast_2d(np.asarray(self.centers, dtype=np.float64))
        if np.any(self.spectrum <= 0):
            raise ValueError("spectrum must be > 0 (a strictly convex quadratic)")
        d = self.spectrum.size
        if self.centers.shape[1] != d or self.rotation.shape != (d, d):
            raise ValueError("centers must be (n, d) and rotation (d, d) with d = len(spectrum)")
        self.H = (self.rotation * self.spectrum) @ self.rotation.T
        self.L = self.L_max = float(self.spectrum.max())
        self.mu = float(self.spectrum.min())
        self.x_star = self.centers.mean(axis=0)
        self.f_star = float(self._mean_component_loss(self.x_star))
        offsets = (self.x_star - self.centers) @ self.H
        self.sigma_star_sq = float(np.mean(np.sum(offsets**2, axis=1)))

    @property
    def n(self) -> int:
        return self.centers.shape[0]

    @property
    def d(self) -> int:
        return self.spectrum.size

    def _mean_component_loss(self, x: np.ndarray) -> float:
        diff = x - self.centers
        return float(0.5 * np.mean(np.einsum("nd,de,ne->n", diff, self.H, diff)))

    def loss(self, x: np.ndarray) -> np.ndarray:
        # f(x) = (x - x*)^T H (x - x*) / 2 + f*  (the cross terms average out)
        diff = np.atleast_2d(x) - self.x_star
        return 0.5 * np.einsum("sd,de,se->s", diff, self.H, diff) + self.f_star

    def grad(self, x: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(x) - self.x_star) @ self.H

    def component(self, x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = x - self.centers[idx]
        g = diff @ self.H
        return 0.5 * np.einsum("sd,sd->s", diff, g), g


# ---------------------------------------------------------------------------- generators
def make_least_squares(n: int = 200, d: int = 10, noise: float = 0.5, seed: int = 0) -> LeastSquares:
    """Gaussian design, ``b = A x_true + noise * N(0, 1)``; the noise makes ``sigma*^2 > 0``."""
    n, d = _check_positive_int(n, "n"), _check_positive_int(d, "d")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d)) / np.sqrt(d)
    b = A @ rng.standard_normal(d) + noise * rng.standard_normal(n)
    return LeastSquares(A, b)


def make_logistic(n: int = 200, d: int = 10, reg: float = 1e-2, seed: int = 0) -> LogisticRegression:
    """Labels drawn from a logistic model around a random direction (not separable)."""
    n, d = _check_positive_int(n, "n"), _check_positive_int(d, "d")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d)) / np.sqrt(d)
    w = 2.0 * rng.standard_normal(d)
    p = 1.0 / (1.0 + np.exp(-(A @ w)))
    y = np.where(rng.random(n) < p, 1.0, -1.0)
    return LogisticRegression(A, y, reg=reg)


def make_quadratic(
    spectrum: np.ndarray | None = None, n: int = 50, spread: float = 1.0, seed: int = 0
) -> Quadratic:
    """Quadratic with the chosen Hessian spectrum (default ``linspace(0.1, 1, 10)``), a random
    rotation, and ``n`` centres scattered by ``spread`` (``spread=0``: no gradient noise)."""
    n = _check_positive_int(n, "n")
    spectrum = np.linspace(0.1, 1.0, 10) if spectrum is None else np.asarray(spectrum, float)
    d = spectrum.size
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    centers = rng.standard_normal(d) + spread * rng.standard_normal((n, d))
    return Quadratic(spectrum, centers, rotation)
