"""Per-step scheduler math on the device: GreedyLR, Newton TLR and the DLRS slope rule.

Each class keeps its state in device arrays and writes the learning rates into a float64
device array ``lrs`` (one entry per parameter group) that :class:`kernels.cuda.optim.SGD`
reads, so a whole training step -- loss, scheduler, update -- runs without copying
weights (or even the loss) to the host. The rules are those of ``refimpl.schedulers``
(docs/methods.md §4, §5, §6); :meth:`lr` copies one rate out for inspection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import cuda, float64

from ._common import (
    REDUCE_THREADS,
    block_sum,
    check_device_float,
    is_device_array,
    launch_1d,
    reduce_sum,
)


def _rates(lr, n_groups: int | None = None) -> np.ndarray:
    values = np.atleast_1d(np.asarray(lr, dtype=np.float64))
    if n_groups is not None and values.size == 1:
        values = np.full(n_groups, values[0])
    if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"lr must be a finite float >= 0 or a list of them, got {lr!r}")
    return values


# --- GreedyLR (docs/methods.md §4; semantics of transformers.optimization.GreedyLR) ----------------
# istate slots
_BAD, _GOOD, _COOLDOWN, _WARMUP, _RESET, _COUNT, _HEAD = range(7)
# fstate slots
_BEST, _SUM = range(2)


@cuda.jit
def _greedy_step_kernel(
    loss,
    index,
    ring,
    fstate,
    istate,
    lrs,
    init_lrs,
    min_lrs,
    max_lrs,
    maximize,
    relative,
    factor,
    patience,
    threshold,
    cooldown,
    warmup,
    eps,
    smooth,
    reset_start,
):
    """One GreedyLR step, run by a single thread (the rule is sequential and tiny)."""
    if cuda.grid(1) != 0:
        return
    current = np.float64(loss[index])
    if smooth:  # rolling mean over the last ring.size values, as a running sum
        fstate[_SUM] += current
        if istate[_COUNT] < ring.size:
            ring[(istate[_HEAD] + istate[_COUNT]) % ring.size] = current
            istate[_COUNT] += 1
        else:
            fstate[_SUM] -= ring[istate[_HEAD]]
            ring[istate[_HEAD]] = current
            istate[_HEAD] = (istate[_HEAD] + 1) % ring.size
        current = fstate[_SUM] / istate[_COUNT]
    if istate[_COOLDOWN] > 0:
        istate[_COOLDOWN] -= 1
        istate[_BAD] = 0
        istate[_GOOD] = 0
        return
    if istate[_WARMUP] > 0:
        istate[_WARMUP] -= 1
        istate[_BAD] = 0
        istate[_GOOD] = 0
        return
    best = fstate[_BEST]
    if maximize:
        better = current > (best * (1.0 + threshold) if relative else best + threshold)
    else:
        better = current < (best * (1.0 - threshold) if relative else best - threshold)
    if better:
        fstate[_BEST] = current
        istate[_BAD] = 0
        istate[_GOOD] += 1
    else:
        istate[_BAD] += 1
        istate[_GOOD] = 0
    if istate[_GOOD] > patience:  # raise: lr ← min(lr / F, max_lr)
        for g in range(lrs.size):
            new_lr = min(lrs[g] / factor, max_lrs[g])
            if new_lr - lrs[g] > eps:
                lrs[g] = new_lr
        istate[_RESET] = reset_start
        istate[_WARMUP] = warmup
        istate[_GOOD] = 0
    elif istate[_BAD] > patience:  # lower: lr ← max(lr · F, min_lr)
        all_at_min = True
        for g in range(lrs.size):
            new_lr = max(lrs[g] * factor, min_lrs[g])
            if lrs[g] - new_lr > eps:
                lrs[g] = new_lr
            if lrs[g] > min_lrs[g]:
                all_at_min = False
        if all_at_min:
            istate[_RESET] -= 1
            if istate[_RESET] <= 0:  # back to the initial rates, state cleared
                for g in range(lrs.size):
                    lrs[g] = init_lrs[g]
                fstate[_BEST] = -math.inf if maximize else math.inf
                fstate[_SUM] = 0.0
                for slot in range(7):
                    istate[slot] = 0
                istate[_RESET] = reset_start
        # Set after a possible reset, as transformers does: a reset still starts a cooldown.
        istate[_COOLDOWN] = cooldown
        istate[_BAD] = 0


class GreedyLR:
    """GreedyLR on the device (docs/methods.md §4), step for step the rule of ``refimpl.schedulers``.

    After each step the rates in ``lrs`` obey: ``lr ← min(lr / F, max_lr)`` once the loss
    has improved on the best by more than ``threshold`` for more than ``patience`` steps,
    ``lr ← max(lr · F, min_lr)`` once it has not for more than ``patience`` steps; with
    cooldown/warmup pauses, rolling-mean smoothing, an ``eps`` floor on changes and the
    reset after ``reset_start`` decreases at ``min_lr`` -- the semantics of
    ``transformers.optimization.GreedyLR``.

    Parameters
    ----------
    lr : float or list of floats (one per group)
    mode, factor, patience, threshold, threshold_mode, cooldown, warmup, min_lr, max_lr,
    eps, smooth, window_size, reset_start : as ``refimpl.schedulers.GreedyLR`` (same
        order and defaults as there and in ``transformers``)
    """

    def __init__(
        self,
        lr,
        mode: str = "min",
        factor: float = 0.95,
        patience: int = 10,
        threshold: float = 1e-6,
        threshold_mode: str = "abs",
        cooldown: int = 0,
        warmup: int = 0,
        min_lr=1e-3,
        max_lr=1.0,
        eps: float = 1e-8,
        smooth: bool = False,
        window_size: int = 50,
        reset_start: int = 500,
    ):
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor!r}; use e.g. 0.95")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        for name, value, least in (
            ("patience", patience, 0),
            ("cooldown", cooldown, 0),
            ("warmup", warmup, 0),
            ("reset_start", reset_start, 0),
            ("window_size", window_size, 1),
        ):
            if int(value) != value or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        init = _rates(lr)
        self.lrs = cuda.to_device(init)
        self._init_lrs = cuda.to_device(init)
        self._min_lrs = cuda.to_device(_rates(min_lr, init.size))
        self._max_lrs = cuda.to_device(_rates(max_lr, init.size))
        if self._min_lrs.size != init.size or self._max_lrs.size != init.size:
            raise ValueError("min_lr and max_lr need one value per group of lr")
        self._ring = cuda.device_array(window_size, dtype=np.float64)
        self._fstate = cuda.to_device(np.array([math.inf if mode == "min" else -math.inf, 0.0]))
        self._istate = cuda.to_device(np.array([0, 0, 0, 0, reset_start, 0, 0], dtype=np.int64))
        self._args = (
            mode == "max",
            threshold_mode == "rel",
            float(factor),
            int(patience),
            float(threshold),
            int(cooldown),
            int(warmup),
            float(eps),
            bool(smooth),
            int(reset_start),
        )

    def step(self, loss, index: int = 0) -> None:
        """Consume one loss: a float, or ``loss[index]`` of a device array (no host copy)."""
        if not is_device_array(loss):
            loss, index = cuda.to_device(np.array([float(loss)])), 0
        _greedy_step_kernel[1, 1](
            loss,
            index,
            self._ring,
            self._fstate,
            self._istate,
            self.lrs,
            self._init_lrs,
            self._min_lrs,
            self._max_lrs,
            *self._args,
        )

    @property
    def lr(self) -> float:
        """The first group's rate, copied to the host."""
        return float(self.lrs.copy_to_host()[0])


# --- Newton trainable learning rate, TLR (docs/methods.md §5) -------------------------------------


@cuda.jit
def _direction_kernel(cached, w, lrs, direction):
    """direction = (w_cached − w) / lr in float64 (lr: the first group's rate in force)."""
    i = cuda.grid(1)
    if i < w.size:
        direction[i] = (cached[i] - np.float64(w[i])) / lrs[0]


@cuda.jit
def _cache_kernel(w, cached):
    """cached = w, widened to float64 (exact for float32 weights)."""
    i = cuda.grid(1)
    if i < w.size:
        cached[i] = np.float64(w[i])


@cuda.jit
def _newton_lr_kernel(products, lrs, gamma, max_factor):
    """den = b − a; if den > 0 every rate is multiplied by min(1 + γ a / (den + 1e-10), max)."""
    if cuda.grid(1) != 0:
        return
    a = products[0]
    b = products[1]
    den = b - a
    if den > 0:
        factor = min(1.0 + gamma * a / (den + 1e-10), max_factor)
        for g in range(lrs.size):
            lrs[g] *= factor


class NewtonLR:
    """Newton trainable learning rate (TLR, docs/methods.md §5) over device-resident parameters.

    Every ``K`` optimizer steps: ``u_k = (w_cached − w) / lr``, ``a = Σ ⟨u_{k−1}, u_k⟩``,
    ``b = Σ ⟨u_{k−1}, u_{k−1}⟩`` (sums over all parameter arrays), ``den = b − a``; if
    ``den > 0``, ``lr ← lr · min(1 + γ a / (den + 1e-10), 100)``; then cache ``w``, ``u_k``.
    The first call caches the weights; updates happen on calls ``K+1, 2K+1, …``. As in
    ``refimpl.schedulers.NewtonLR``, ``w_cached`` and ``u`` are kept in float64, ``u``
    divides by the first group's rate and the factor multiplies every group.

    Parameters
    ----------
    params : list of device arrays (the optimizer's parameters)
    lrs : float64 device array of group rates (e.g. ``SGD.lrs``), updated in place
    K : int >= 1, steps between updates (``max(1, round(p × batches_per_epoch))``)
    gamma : float, the paper's γ (0.33)
    max_factor : float, clamp on the factor (paper: 100)
    """

    def __init__(
        self, params: Sequence, lrs, K: int, gamma: float = 0.33, max_factor: float = 100.0
    ):
        for k, p in enumerate(params):
            check_device_float(f"params[{k}]", p)
        if not is_device_array(lrs) or np.dtype(lrs.dtype) != np.float64:
            raise ValueError("lrs must be a float64 device array of group rates (e.g. SGD.lrs)")
        if int(K) != K or K < 1:
            raise ValueError(f"K must be an integer >= 1, got {K!r}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must lie in (0, 1], got {gamma!r}; the paper uses 0.33")
        self.params = list(params)
        self.lrs, self.K = lrs, int(K)
        self.gamma, self.max_factor = float(gamma), float(max_factor)
        self._cached = [cuda.device_array(p.size, dtype=np.float64) for p in self.params]
        self._previous = [cuda.to_device(np.zeros(p.size)) for p in self.params]
        self._current = [cuda.device_array(p.size, dtype=np.float64) for p in self.params]
        self._products = cuda.to_device(np.zeros(2))
        self.calls = 0

    def step(self) -> None:
        """Call after every optimizer step; reads the parameters where they live."""
        self.calls += 1
        flat = [p.reshape(p.size) for p in self.params]
        if self.calls > 1 and (self.calls - 1) % self.K:
            return
        if self.calls > 1:
            for k, w in enumerate(flat):
                _direction_kernel[launch_1d(w.size)](self._cached[k], w, self.lrs, self._current[k])
                reduce_sum(
                    self._previous[k], self._products, 0, y=self._current[k], accumulate=k > 0
                )
                reduce_sum(
                    self._previous[k], self._products, 1, y=self._previous[k], accumulate=k > 0
                )
            _newton_lr_kernel[1, 1](self._products, self.lrs, self.gamma, self.max_factor)
            self._previous, self._current = self._current, self._previous
        for w, cached in zip(flat, self._cached):
            _cache_kernel[launch_1d(w.size)](w, cached)


# --- DLRS (docs/methods.md §6) ---------------------------------------------------------------------


@cuda.jit
def _dlrs_kernel(losses, n_losses, lrs, delta_d, delta_o, delta_i, min_lr, max_lr):
    """Mean of the epoch's losses (block reduction), then the DLRS rule on one thread."""
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    i = tid
    while i < n_losses:
        acc += losses[i]
        i += REDUCE_THREADS
    block_sum(shared, tid, acc)
    if tid != 0:
        return
    change = losses[n_losses - 1] - losses[0]
    slope = 0.0  # no change: no evidence of a trend (also avoids 0/0)
    if change != 0:
        slope = change / (shared[0] / n_losses)
    if not math.isfinite(slope):  # NaN/inf losses or a zero mean: keep the rates
        return
    if slope >= 1:
        delta = delta_d
    elif slope >= 0:
        delta = delta_o
    else:
        delta = delta_i
    for g in range(lrs.size):
        lr = lrs[g]
        granularity = 10.0 ** math.floor(math.log10(lr))
        lrs[g] = min(max(lr - delta * granularity * slope, min_lr), max_lr)


class DLRS:
    """DLRS (docs/methods.md §6): one learning-rate update per epoch from the epoch's batch losses.

    ``ℓ̄ = mean(ℓ)``, ``ΔL = (ℓ_B − ℓ_1)/ℓ̄`` (0 when ``ℓ_B = ℓ_1``), per group
    ``G = 10^⌊log10 lr⌋``; ``δ = δ_d`` if ``ΔL ≥ 1``, ``δ_o`` if ``0 ≤ ΔL < 1``, ``δ_i`` if
    ``ΔL < 0``; ``lr ← clip(lr − δ · G · ΔL, min_lr, max_lr)``. No rounding of lr (docs/methods.md §6).
    Losses given as a host sequence are checked as the oracle does (finite, non-empty);
    losses already on the device are not copied back for a check: a non-finite slope
    (NaN/inf loss, or a zero mean) leaves the rates unchanged.

    Parameters
    ----------
    lrs : float64 device array of group rates (e.g. ``SGD.lrs``), or a float (> 0)
    delta_d, delta_o, delta_i : the regime step sizes (paper's PINN values 0.5, 1, 0.1)
    min_lr, max_lr : clip range (1e-5, 0.1)
    """

    def __init__(
        self,
        lrs,
        delta_d: float = 0.5,
        delta_o: float = 1.0,
        delta_i: float = 0.1,
        min_lr: float = 1e-5,
        max_lr: float = 0.1,
    ):
        if not 0 < min_lr <= max_lr:
            raise ValueError(f"need 0 < min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
        if not is_device_array(lrs):
            rates = _rates(lrs)
            if np.any(rates <= 0):
                raise ValueError(f"lr must be > 0 for DLRS (it takes log10 of it), got {lrs!r}")
            lrs = cuda.to_device(rates)
        self.lrs = lrs
        self.args = (float(delta_d), float(delta_o), float(delta_i), float(min_lr), float(max_lr))

    def step(self, batch_losses, n_losses: int | None = None) -> None:
        """Update the rates from the epoch's losses: a float64 device array (e.g. the
        ``loss_out`` buffer the loss kernels filled; its first ``n_losses`` entries), or a
        sequence of floats."""
        if not is_device_array(batch_losses):
            host = np.asarray(batch_losses, dtype=np.float64).ravel()
            if host.size == 0 or not np.all(np.isfinite(host)):
                raise ValueError("batch_losses must be a non-empty list of finite losses")
            batch_losses = cuda.to_device(host)
        n = batch_losses.size if n_losses is None else int(n_losses)
        if not 1 <= n <= batch_losses.size:
            raise ValueError(f"n_losses must be in [1, {batch_losses.size}], got {n}")
        _dlrs_kernel[1, REDUCE_THREADS](batch_losses, n, self.lrs, *self.args)

    @property
    def lr(self) -> float:
        """The first group's rate, copied to the host."""
        return float(self.lrs.copy_to_host()[0])
