"""A physics-informed network for the 1-D Helmholtz equation, with hand-derived derivatives
(DLRS paper §5.1; docs/methods.md §9). No autodiff: input derivatives go forward, parameter
gradients come back, both written out below.

Problem: ``u'' + k^2 u = 0`` on ``[0, 1]``, ``k = 2 pi f / c``, ``u(0) = A``, ``u(1) = B``.
Exact solution ``u = A cos(kx) + C sin(kx)``, ``C = (B - A cos k) / sin k``.

Trial solution (Lagaris et al. 1998), which meets both boundary values for any network N::

    u~   = A (1 - x) + B x + x (1 - x) N
    u~'  = B - A + (1 - 2x) N + x (1 - x) N'
    u~'' = -2 N + 2 (1 - 2x) N' + x (1 - x) N''

Loss: ``L = mean_i R_i^2`` with the residual ``R = u~'' + k^2 u~`` at the collocation points.

Forward mode through one layer (``a``, ``a'``, ``a''`` the layer input and its first and
second derivatives in ``x``; the network input is ``x`` with ``x' = 1``, ``x'' = 0``)::

    dense:       z = a W + b,   z' = a' W,   z'' = a'' W
    activation:  h = s(z),      h' = s'(z) z',   h'' = s''(z) z'^2 + s'(z) z''

Backward (``g_v`` = dL/dv for each stream). With ``g_R = 2 R / M``::

    g_N = g_R (k^2 x (1 - x) - 2),  g_N' = g_R 2 (1 - 2x),  g_N'' = g_R x (1 - x)
    activation:  g_z   = g_h s'(z) + g_h' s''(z) z' + g_h'' (s'''(z) z'^2 + s''(z) z'')
                 g_z'  = g_h' s'(z) + 2 g_h'' s''(z) z'
                 g_z'' = g_h'' s'(z)
    dense:       dW = a^T g_z + a'^T g_z' + a''^T g_z'',  db = sum g_z,
                 g_a = g_z W^T, g_a' = g_z' W^T, g_a'' = g_z'' W^T

How it is computed. The three streams of a layer are stacked into one ``(3M, width)``
array ``[a; a'; a'']``, so that each dense rule above is *one* matrix product: ``[z; z'; z'']
= [a; a'; a''] W``, ``dW = [a; a'; a'']^T [g_z; g_z'; g_z'']``, ``[g_a; g_a'; g_a''] = [g_z;
g_z'; g_z''] W^T``. The activation rules are linear in the streams, with the coefficients

    d1 = s'(z),   d2 = s''(z) z',   d3 = s'''(z) z'^2 + s''(z) z''

(the stream Jacobian of the layer): forward ``h' = d1 z'``, ``h'' = d2 z' + d1 z''``, and
backward its transpose ``g_z = d1 g_h + d2 g_h' + d3 g_h''``, ``g_z' = d1 g_h' + 2 d2 g_h''``,
``g_z'' = d1 g_h''``. The forward computes ``s, s', s'', s'''`` once per layer
(:data:`DERIVATIVES`: one ``sin`` and one ``cos`` for the sin and cos layers) and keeps ``d1,
d2, d3`` for the backward, which evaluates no activation function again.

Backends: ``"numpy"`` is the code below; ``"numba"`` (:mod:`refimpl.kernels.numba.pinn`)
computes the same, for sin and cos layers, with one fused loop per layer between the BLAS
products; ``"auto"`` (the default) takes it where it applies. Both run in float64 or in
float32 (``dtype``; the authors' TensorFlow code ran in float32).

Network (docs/methods.md §9): 1 -> 100 -> 100 -> 100 -> 1, activations sin, cos, sin, linear
output, Glorot-uniform weights from ``seed`` (drawn in float64, then cast), zero biases.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import DTypeLike

from refimpl.init import glorot_uniform
from refimpl.optim import Adam

__all__ = ["ACTIVATIONS", "BACKENDS", "DERIVATIVES", "DTYPES", "HelmholtzPINN", "PINNHistory",
           "train_pinn", "wavenumber"]

#: name -> (s, s', s'', s''') as functions of the pre-activation z
ACTIVATIONS = {
    "sin": (np.sin, np.cos, lambda z: -np.sin(z), lambda z: -np.cos(z)),
    "cos": (np.cos, lambda z: -np.sin(z), lambda z: -np.cos(z), np.sin),
    "tanh": (np.tanh,
             lambda z: 1 - np.tanh(z) ** 2,
             lambda z: -2 * np.tanh(z) * (1 - np.tanh(z) ** 2),
             lambda z: (1 - np.tanh(z) ** 2) * (6 * np.tanh(z) ** 2 - 2)),
}


def _sin_derivatives(z):
    s, c = np.sin(z), np.cos(z)
    return s, c, -s, -c


def _cos_derivatives(z):
    s, c = np.sin(z), np.cos(z)
    return c, -s, -c, s


def _tanh_derivatives(z):
    t = np.tanh(z)
    d = 1 - t * t
    return t, d, -2 * t * d, d * (6 * t * t - 2)


#: name -> ``z -> (s(z), s'(z), s''(z), s'''(z))``, the four from one evaluation of the
#: underlying functions (the same values as :data:`ACTIVATIONS`)
DERIVATIVES = {"sin": _sin_derivatives, "cos": _cos_derivatives, "tanh": _tanh_derivatives}
#: ``backend`` values of :class:`HelmholtzPINN`
BACKENDS = ("auto", "numpy", "numba")
#: ``dtype`` values of :class:`HelmholtzPINN`
DTYPES = (np.float32, np.float64)
_NUMBA_ACTIVATIONS = ("sin", "cos")  # what refimpl.kernels.numba.pinn implements


def wavenumber(frequency: float, c: float = 340.0) -> float:
    """``k = 2 pi f / c``."""
    return 2.0 * math.pi * frequency / c


class HelmholtzPINN:
    """The trial-solution network for one frequency.

    Parameters
    ----------
    frequency : float
        ``f`` in Hz (> 0).
    c : float
        Speed of sound (m/s), default 340.
    A, B : float
        Boundary values ``u(0)``, ``u(1)``.
    widths : sequence of int
        Hidden widths (default three layers of 100).
    activations : sequence of str
        One per hidden layer, from :data:`ACTIVATIONS` (default sin, cos, sin).
    seed : int
        Seeds the Glorot-uniform weights.
    dtype : numpy float type
        ``np.float64`` (default) or ``np.float32``: the parameters, the points and every
        array of the forward and backward pass.
    backend : str
        ``"auto"`` (default: ``"numba"`` when every activation is sin or cos, else
        ``"numpy"``), ``"numpy"`` or ``"numba"`` -- how :meth:`loss_and_grads` computes.
    """

    def __init__(self, frequency: float, c: float = 340.0, A: float = 1.0, B: float = 0.0,
                 widths: Sequence[int] = (100, 100, 100),
                 activations: Sequence[str] = ("sin", "cos", "sin"), seed: int = 0,
                 dtype: DTypeLike = np.float64, backend: str = "auto"):
        if not frequency > 0 or not c > 0:
            raise ValueError(f"frequency and c must be > 0, got {frequency!r}, {c!r}")
        if len(widths) != len(activations) or not widths:
            raise ValueError("give one activation per hidden width (and at least one layer), "
                             f"got widths={widths!r}, activations={activations!r}")
        unknown = [a for a in activations if a not in ACTIVATIONS]
        if unknown:
            raise ValueError(f"activations {unknown} unknown; choose from {sorted(ACTIVATIONS)}")
        if np.dtype(dtype) not in [np.dtype(t) for t in DTYPES]:
            raise ValueError(f"dtype must be np.float32 or np.float64, got {dtype!r}")
        self.k = wavenumber(frequency, c)
        if abs(math.sin(self.k)) < 1e-8:
            raise ValueError(f"frequency {frequency} Hz puts k = n pi (resonance): the boundary "
                             "problem has no unique solution; pick another frequency")
        self.frequency, self.c, self.A, self.B = float(frequency), float(c), float(A), float(B)
        self.activations = list(activations)
        self.dtype = np.dtype(dtype)
        self.backend = self._choose_backend(backend)
        rng = np.random.default_rng(seed)
        sizes = [1, *widths, 1]
        self.params: list[np.ndarray] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            self.params += [glorot_uniform(rng, (fan_in, fan_out), self.dtype),
                            np.zeros(fan_out, self.dtype)]
        self._buffers: dict = {}  # the numba backend's work arrays, kept between calls

    def _choose_backend(self, backend: str) -> str:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        fits = all(a in _NUMBA_ACTIVATIONS for a in self.activations)
        if backend == "numba" and not fits:
            raise ValueError(f"backend 'numba' computes sin and cos layers only, got "
                             f"activations {self.activations}; use backend='numpy'")
        if backend == "numba" and importlib.util.find_spec("numba") is None:
            raise ValueError("backend 'numba' needs the numba package (pip install numba)")
        if backend == "auto":
            return "numba" if fits and importlib.util.find_spec("numba") else "numpy"
        return backend

    def _points(self, x) -> np.ndarray:
        return np.asarray(x, dtype=self.dtype).ravel()

    # -- the network and its input derivatives ------------------------------------------
    def network(self, x: np.ndarray):
        """``N, N', N''`` at points ``x`` (shape (M,)), and the cache for :meth:`backward`:
        per layer its input streams ``[a; a'; a'']`` (3M, fan_in) and, for a hidden layer,
        its stream Jacobian ``(d1, d2, d3)`` (each (M, width))."""
        x = self._points(x)
        n = x.size
        streams = np.zeros((3 * n, 1), self.dtype)
        streams[:n, 0], streams[n:2 * n, 0] = x, 1.0  # a = x, a' = 1, a'' = 0
        cache = []
        n_hidden = len(self.activations)
        for layer in range(n_hidden + 1):
            W, b = self.params[2 * layer], self.params[2 * layer + 1]
            z = streams @ W  # [z; z'; z''], one product
            z[:n] += b
            if layer == n_hidden:
                cache.append((streams, None))
                return z[:n, 0], z[n:2 * n, 0], z[2 * n:, 0], cache
            s0, s1, s2, s3 = DERIVATIVES[self.activations[layer]](z[:n])
            z1, z2 = z[n:2 * n], z[2 * n:]
            d1, d2, d3 = s1, s2 * z1, s3 * z1 * z1 + s2 * z2
            cache.append((streams, (d1, d2, d3)))
            streams = np.concatenate([s0, d1 * z1, d2 * z1 + d1 * z2])  # [h; h'; h'']
        raise AssertionError("unreachable")  # pragma: no cover

    def trial(self, x: np.ndarray):
        """``u~, u~', u~''`` at ``x`` (the trial solution and its derivatives)."""
        x = self._points(x)
        N, N1, N2, _ = self.network(x)
        return self._trial(x, N, N1, N2)

    def _trial(self, x, N, N1, N2):
        w = x * (1.0 - x)
        u = self.A * (1.0 - x) + self.B * x + w * N
        u1 = self.B - self.A + (1.0 - 2.0 * x) * N + w * N1
        u2 = -2.0 * N + 2.0 * (1.0 - 2.0 * x) * N1 + w * N2
        return u, u1, u2

    def residual(self, x: np.ndarray) -> np.ndarray:
        """``R = u~'' + k^2 u~``."""
        u, _, u2 = self.trial(x)
        return u2 + self.k ** 2 * u

    # -- loss and hand-derived gradients ------------------------------------------------
    def loss_and_grads(self, x: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """``L = mean R^2`` at points ``x`` and ``dL/dparams`` (same order as ``params``)."""
        x = self._points(x)
        if self.backend == "numba":
            from refimpl.kernels.numba import pinn as kernels

            return kernels.loss_and_grads(self.params, self.activations, x, self.A, self.B,
                                          self.k, self._buffers)
        N, N1, N2, cache = self.network(x)
        u, _, u2 = self._trial(x, N, N1, N2)
        R = u2 + self.k ** 2 * u
        g_R = (2.0 / R.size) * R
        w = x * (1.0 - x)
        grads = self.backward(g_R * (self.k ** 2 * w - 2.0), g_R * 2.0 * (1.0 - 2.0 * x),
                              g_R * w, cache)
        return float(np.mean(R * R)), grads

    def backward(self, g_N, g_N1, g_N2, cache) -> list[np.ndarray]:
        """Gradients of every parameter from ``dL/dN, dL/dN', dL/dN''`` (each (M,) or (M, 1))
        and the cache of :meth:`network`."""
        grad = np.concatenate([np.ravel(g_N), np.ravel(g_N1), np.ravel(g_N2)]).reshape(-1, 1)
        n = grad.shape[0] // 3
        grads: list[np.ndarray] = [None] * len(self.params)  # type: ignore[list-item]
        for layer in range(len(cache) - 1, -1, -1):
            streams, jacobian = cache[layer]
            if jacobian is not None:  # [g_h; g_h'; g_h''] -> [g_z; g_z'; g_z'']
                d1, d2, d3 = jacobian
                g, g1, g2 = grad[:n], grad[n:2 * n], grad[2 * n:]
                grad = np.concatenate([d1 * g + d2 * g1 + d3 * g2, d1 * g1 + 2.0 * d2 * g2,
                                       d1 * g2])
            grads[2 * layer] = streams.T @ grad  # dW = a^T g_z + a'^T g_z' + a''^T g_z''
            grads[2 * layer + 1] = grad[:n].sum(axis=0)
            if layer > 0:
                grad = grad @ self.params[2 * layer].T  # [g_a; g_a'; g_a'']
        return grads

    # -- the exact solution and the error -----------------------------------------------
    def exact(self, x: np.ndarray) -> np.ndarray:
        """``u = A cos(kx) + C sin(kx)``, ``C = (B - A cos k) / sin k``."""
        x = np.asarray(x, dtype=np.float64)
        C = (self.B - self.A * math.cos(self.k)) / math.sin(self.k)
        return self.A * np.cos(self.k * x) + C * np.sin(self.k * x)

    def relative_error(self, n_points: int = 1001) -> float:
        """``||u~ - u|| / ||u||`` on ``n_points`` equally spaced points of ``[0, 1]``."""
        x = np.linspace(0.0, 1.0, n_points)
        u = self.exact(x)
        return float(np.linalg.norm(self.trial(x)[0] - u) / np.linalg.norm(u))


@dataclass
class PINNHistory:
    """Per-epoch mean loss, rate and (every ``error_every`` epochs) relative L2 error; the
    epoch an early stop (``stop_below``) ended training, else ``None``."""

    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    error_epochs: list[int] = field(default_factory=list)
    error: list[float] = field(default_factory=list)
    stopped_at: int | None = None


def train_pinn(pinn: HelmholtzPINN, epochs: int, n_points: int = 10_000, batch_size: int = 1000,
               lr: float = 1e-3, scheduler=None, seed: int = 0,
               error_every: int = 100, shuffle: bool = True, stop_below: float | None = None,
               stop_after: int = 100) -> PINNHistory:
    """Adam on mini-batches of fixed random collocation points in ``[0, 1]``.

    ``scheduler``: ``None`` (fixed rate) or an epoch-interval scheduler whose signal is
    ``"batch_losses"`` (DLRS), stepped after every epoch; its rate is copied into Adam.
    The points are drawn once from ``default_rng(seed)`` (in float64, then cast to the
    network's dtype). With ``shuffle`` (default) epoch
    ``e`` visits them in the order ``default_rng([seed, e]).permutation``; without it the
    mini-batches are fixed (points ``[0, batch_size)``, ``[batch_size, 2 batch_size)``, ...)
    and visited in the same order every epoch, as Keras' ``fit(shuffle=False)``.

    ``stop_below``: stop once the relative L2 error (checked every ``error_every`` epochs,
    from epoch ``stop_after`` on) is below this value; ``history.stopped_at`` is that epoch
    (``None`` when training ran all ``epochs``).
    """
    for name, value in (("epochs", epochs), ("n_points", n_points), ("batch_size", batch_size),
                        ("error_every", error_every), ("stop_after", stop_after)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if stop_below is not None and not stop_below > 0:
        raise ValueError(f"stop_below must be > 0 (a relative error) or None, got {stop_below!r}")
    if scheduler is not None and getattr(scheduler, "signal", None) != "batch_losses":
        raise ValueError("scheduler must take the epoch's batch losses (signal "
                         "'batch_losses', e.g. DLRS), or be None for a fixed rate")
    points = np.random.default_rng(seed).uniform(0.0, 1.0, n_points).astype(pinn.dtype)
    optimizer = Adam(pinn.params, lr=scheduler.lr if scheduler is not None else lr)
    history = PINNHistory()
    fixed_order = np.arange(n_points)
    for epoch in range(epochs):
        order = (np.random.default_rng([seed, epoch]).permutation(n_points) if shuffle
                 else fixed_order)
        batch_losses = []
        history.lr.append(optimizer.lr)
        for start in range(0, n_points, batch_size):
            loss, grads = pinn.loss_and_grads(points[order[start:start + batch_size]])
            if not math.isfinite(loss):
                raise FloatingPointError(f"PINN loss became {loss} at epoch {epoch}; lower lr")
            optimizer.step(grads)
            batch_losses.append(loss)
        history.loss.append(float(np.mean(batch_losses)))
        if scheduler is not None:
            optimizer.lr = scheduler.step(batch_losses)
        if (epoch + 1) % error_every == 0 or epoch + 1 == epochs:
            history.error_epochs.append(epoch + 1)
            history.error.append(pinn.relative_error())
            if (stop_below is not None and epoch + 1 >= stop_after
                    and history.error[-1] < stop_below):
                history.stopped_at = epoch + 1
                break
    return history
