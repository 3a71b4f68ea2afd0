"""Newton trainable learning rate, TLR (TLR paper; docs/methods.md §5), and the hypergradient baselines.

TLR treats the rate as a parameter and takes one damped Newton step on it every ``K``
optimizer steps. With ``u_k = (w_cached - w) / lr`` the accumulated update direction of the
last ``K`` steps (any base optimizer), the paper's first and second derivatives of the loss
with respect to the rate reduce to two inner products of consecutive directions::

    a   = <u_{k-1}, u_k>
    b   = <u_{k-1}, u_{k-1}>
    den = b - a
    lr <- lr                                          if den <= 0
    lr <- lr * min(1 + gamma * a / (den + 1e-10), 100) otherwise

Hypergradient baselines (the TLR paper's comparison, first order), on consecutive gradients::

    additive:        lr <- lr + hyper_lr * <g_t, g_{t-1}>
    multiplicative:  lr <- lr * (1 + hyper_lr * cos(g_t, g_{t-1}))

All inner products run over every parameter array and accumulate in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from refimpl import kernels

from .base import Scheduler
from .checks import check_factor, check_int, check_lr

#: ``den + DEN_EPS`` guards the division, as in the paper's code.
DEN_EPS = 1e-10


def tlr_factor(a: float, b: float, gamma: float, max_factor: float = 100.0) -> float:
    """Multiplicative TLR factor from ``a = <u_{k-1}, u_k>`` and ``b = <u_{k-1}, u_{k-1}>``.

    ``1`` when ``den = b - a <= 0`` (the Newton step would not aim at a minimum), else
    ``min(1 + gamma * a / (den + 1e-10), max_factor)`` (TLR paper, Eq. 8 with its safeguards).
    """
    den = b - a
    if not den > 0.0:  # also catches NaN
        return 1.0
    return min(1.0 + gamma * a / (den + DEN_EPS), max_factor)


def _check_backend(backend: str) -> str:
    """The backend name, ``auto`` resolved; its ``sched`` functions do the inner products."""
    name = kernels.resolve(backend)
    kernels.get_backend(name)  # fail early and clearly if it cannot run here
    return name


def _flat64(array: np.ndarray) -> np.ndarray:
    """A float64 1-D copy of a parameter array (exact for float32 weights)."""
    return np.array(array, dtype=np.float64).ravel()


class NewtonLR(Scheduler):
    """TLR: a damped Newton step on the learning rate every ``K`` optimizer steps.

    Parameters
    ----------
    lr : float or list of float
        Initial rate (> 0). With several groups the same factor multiplies every group and
        ``u_k`` divides by the first group's rate (interpretation: the paper has one rate).
    gamma : float
        Newton damping in ``(0, 1]``; the paper's value 0.33 (its public code ships 0.20).
    p : float
        Update period as a fraction of an epoch: ``K = max(1, round(p * batches_per_epoch))``
        (Python's ``round``); paper 0.20 (public code 1/3).
    batches_per_epoch : int or None
        Optimizer steps per epoch. ``None`` means "set later": the trainer (or the user) calls
        :meth:`set_batches_per_epoch` before the first step.
    max_factor : float
        Clamp on the multiplicative factor (paper: 100).
    backend : {"numpy", "numba", "cuda", "auto"}
        Where the inner products run: ``kernels.get_backend(backend).sched.tlr_pass``
        (the ``numpy`` one is :func:`refimpl.ops.sched.tlr_pass`).

    Notes
    -----
    ``step(params)`` is called after every optimizer step with the list of parameter arrays.
    The first call caches the weights; updates happen on calls ``K+1, 2K+1, ...`` using the
    rate in force at that call. The first update has ``u_{k-1} = 0`` and so keeps the rate;
    the second is the first that can move it. ``interval="step"``, ``signal="params"``.
    """

    interval = "step"
    signal = "params"
    _state_keys = (
        "gamma",
        "p",
        "batches_per_epoch",
        "max_factor",
        "calls",
        "cached",
        "u_prev",
        "last_a",
        "last_b",
        "last_factor",
    )

    def __init__(
        self,
        lr: float | Sequence[float],
        gamma: float = 0.33,
        p: float = 0.2,
        batches_per_epoch: int | None = None,
        max_factor: float = 100.0,
        backend: str = "numpy",
    ):
        super().__init__(lr)
        if min(self.base_lrs) <= 0:
            raise ValueError(f"lr must be > 0 for NewtonLR (it divides by it), got {lr!r}")
        self.gamma = check_factor(gamma, "gamma", low=0, high=1, low_open=True,
                                  hint="; the paper uses 0.33")
        self.p = check_factor(p, "p", low=0.0, high=math.inf, low_open=True,
                              hint=" (a fraction of an epoch)")
        self.max_factor = check_factor(max_factor, "max_factor", low=1.0, high=math.inf)
        self.backend = _check_backend(backend)
        self.batches_per_epoch: int | None = None
        if batches_per_epoch is not None:
            self.set_batches_per_epoch(batches_per_epoch)
        self.calls = 0
        self.cached: list[np.ndarray] = []
        self.u_prev: list[np.ndarray] = []
        self.last_a = self.last_b = 0.0
        self.last_factor = 1.0

    def set_batches_per_epoch(self, n: int) -> None:
        """Fix the number of optimizer steps per epoch, which sets ``K``."""
        self.batches_per_epoch = check_int(n, "batches_per_epoch", 1, whole_float=True)

    @property
    def update_every(self) -> int:
        """``K = max(1, round(p * batches_per_epoch))``."""
        if self.batches_per_epoch is None:
            raise ValueError(
                "NewtonLR needs batches_per_epoch: pass it to the constructor or call "
                "set_batches_per_epoch(n) before the first step"
            )
        return max(1, round(self.p * self.batches_per_epoch))

    def step(self, params: Sequence[np.ndarray]) -> float:
        """Record the weights after an optimizer step; every ``K`` calls update the rate."""
        params = list(params)
        k = self.update_every
        self.calls += 1
        if self.calls == 1:
            self.cached = [_flat64(w) for w in params]
            self.u_prev = [np.zeros_like(c) for c in self.cached]
            return self.lr
        if (self.calls - 1) % k:
            return self.lr
        if len(params) != len(self.cached):
            raise ValueError(
                f"step got {len(params)} parameter arrays but the first call had "
                f"{len(self.cached)}; pass the same list every step"
            )
        a, b = self._roll_directions(params, self.lr)
        factor = tlr_factor(a, b, self.gamma, self.max_factor)
        self.last_a, self.last_b, self.last_factor = a, b, factor
        self.lrs = [lr * factor for lr in self.lrs]
        return self.lr

    def explain(self) -> dict:
        """What the last :meth:`step` did, and why.

        Returns
        -------
        dict
            ``rule`` (one sentence), ``updated`` (whether the last call was an update call,
            ``K+1, 2K+1, ...``), ``call``, ``K``, ``next_update`` (call number), and for the
            last update: ``a``, ``b``, ``den = b - a``, ``factor``, ``kept`` (``den <= 0``:
            rate kept), ``clamped`` (the factor hit ``max_factor``), ``unclamped`` (the
            factor without the clamp), ``lrs``.
        """
        a, b, factor = self.last_a, self.last_b, self.last_factor
        den = b - a
        unclamped = 1.0 + self.gamma * a / (den + DEN_EPS) if den > 0.0 else 1.0
        state = {"call": self.calls, "a": a, "b": b, "den": den, "factor": factor,
                 "kept": not den > 0.0, "clamped": unclamped > self.max_factor,
                 "unclamped": unclamped, "lrs": list(self.lrs)}
        if self.batches_per_epoch is None or self.calls == 0:
            return {"rule": "no step yet", "updated": False, **state}
        k = self.update_every
        updated = self.calls > 1 and (self.calls - 1) % k == 0
        nxt = self.calls + (k - (self.calls - 1) % k if self.calls > 1 else k)
        state.update({"updated": updated, "K": k, "next_update": nxt})
        if self.calls == 1:
            return {"rule": f"call 1: weights cached; first update at call {k + 1}", **state}
        if not updated:
            return {"rule": f"call {self.calls}: between updates (every K = {k} calls), "
                            "rate kept", **state}
        if state["kept"]:
            why = f"den = b - a = {den!r} <= 0 -> rate kept (factor 1)"
        elif state["clamped"]:
            why = (f"den = {den!r} > 0, 1 + gamma a / (den + 1e-10) = {unclamped!r} > "
                   f"max_factor {self.max_factor:g} -> clamped, lr * {factor:g}")
        else:
            why = f"den = {den!r} > 0 -> lr * (1 + gamma a / (den + 1e-10)) = lr * {factor!r}"
        return {"rule": f"update at call {self.calls}: a = {a!r}, b = {b!r}; {why}",
                **state}

    def _roll_directions(self, params: list[np.ndarray], lr: float) -> tuple[float, float]:
        """Compute ``u_k``, return ``(a, b)``, and make ``w`` and ``u_k`` the new cache."""
        tlr_pass = kernels.get_backend(self.backend).sched.tlr_pass
        a = b = 0.0
        for w, cached, u_prev in zip(params, self.cached, self.u_prev):
            da, db = tlr_pass(np.ravel(w), cached, u_prev, lr)
            a += da
            b += db
        return a, b

    def _after_load(self) -> None:
        self.cached = [np.asarray(c, dtype=np.float64) for c in self.cached]
        self.u_prev = [np.asarray(u, dtype=np.float64) for u in self.u_prev]


class _HypergradientLR(Scheduler):
    """Shared plumbing: keep the previous gradient, hand the three inner products on."""

    interval = "step"
    signal = "grads"
    _state_keys = ("hyper_lr", "min_lr", "prev")

    def __init__(self, lr, hyper_lr: float, min_lr: float, backend: str):
        super().__init__(lr)
        self.hyper_lr = check_lr(hyper_lr, "hyper_lr")
        self.min_lr = check_lr(min_lr, "min_lr")
        self.backend = _check_backend(backend)
        self.prev: list[np.ndarray] | None = None

    def _inner_products(self, grads: list[np.ndarray]) -> tuple[float, float, float] | None:
        """``(<g, g_prev>, <g, g>, <g_prev, g_prev>)``, or ``None`` on the first call."""
        if self.prev is None:
            self.prev = [_flat64(g) for g in grads]
            return None
        if len(grads) != len(self.prev):
            raise ValueError(
                f"step got {len(grads)} gradient arrays but the previous call had "
                f"{len(self.prev)}; pass the same list every step"
            )
        grad_pair_pass = kernels.get_backend(self.backend).sched.grad_pair_pass
        gp = gg = pp = 0.0
        for g, prev in zip(grads, self.prev):
            d = grad_pair_pass(np.ravel(g), prev)
            gp, gg, pp = gp + d[0], gg + d[1], pp + d[2]
        return gp, gg, pp

    def _after_load(self) -> None:
        if self.prev is not None:
            self.prev = [np.asarray(g, dtype=np.float64) for g in self.prev]
        self.__dict__.pop("_last", None)  # explain() must not describe the step before a load


class HypergradientAdditiveLR(_HypergradientLR):
    """Additive hypergradient descent on the rate: ``lr <- max(lr + hyper_lr <g_t, g_{t-1}>, min_lr)``.

    Parameters
    ----------
    lr : float or list of float
        Initial rate; the same increment is added to every group.
    hyper_lr : float
        The meta learning rate ``eta`` (the TLR paper searched ``1e-1 ... 1e-5``).
    min_lr : float
        Floor on the rate (interpretation: a safeguard so the rate never turns negative;
        the formula itself has none). Default 0.
    backend : {"numpy", "numba", "cuda", "auto"}
        Where the inner products run (``kernels.get_backend(backend).sched``).

    Notes
    -----
    ``step(grads)`` is called after every optimizer step with the gradients of that step;
    the first call only stores them. ``interval="step"``, ``signal="grads"``.
    """

    def __init__(self, lr, hyper_lr: float = 1e-3, min_lr: float = 0.0, backend: str = "numpy"):
        super().__init__(lr, hyper_lr, min_lr, backend)

    def step(self, grads: Sequence[np.ndarray]) -> float:
        products = self._inner_products(list(grads))
        self._last = {"products": products, "lrs_before": list(self.lrs)}
        if products is not None:
            delta = self.hyper_lr * products[0]
            self.lrs = [max(lr + delta, self.min_lr) for lr in self.lrs]
        return self.lr

    def explain(self) -> dict:
        """What the last :meth:`step` did: ``rule``, ``updated`` (False on the first call),
        ``dot`` (``<g_t, g_{t-1}>``), ``delta = hyper_lr * dot``, ``floored`` (per group:
        ``min_lr`` applied), ``lrs_before``, ``term_scale`` (per group, the larger of
        ``|lr|`` and ``|delta|``: the new rate is their sum), ``lrs``."""
        last = getattr(self, "_last", None)
        if last is None or last["products"] is None:
            return {"rule": "no step yet (or since a load)" if last is None
                    else "first call: gradients stored",
                    "updated": False, "lrs": list(self.lrs)}
        dot = last["products"][0]
        delta = self.hyper_lr * dot
        return {"rule": f"lr <- max(lr + hyper_lr {self.hyper_lr:g} * <g, g_prev> {dot!r}, "
                        f"min_lr {self.min_lr:g})",
                "updated": True, "dot": dot, "delta": delta,
                "floored": [lr + delta < self.min_lr for lr in last["lrs_before"]],
                "lrs_before": last["lrs_before"],
                "term_scale": [max(abs(lr), abs(delta)) for lr in last["lrs_before"]],
                "lrs": list(self.lrs)}


class HypergradientMultiplicativeLR(_HypergradientLR):
    """Multiplicative hypergradient rule: ``lr <- lr (1 + hyper_lr cos(g_t, g_{t-1}))``.

    Parameters
    ----------
    lr : float or list of float
        Initial rate; every group is multiplied by the same factor.
    hyper_lr : float
        The meta learning rate ``eta``; for ``eta < 1`` the factor stays positive.
    min_lr : float
        Floor on the rate (interpretation, as for the additive rule). Default 0.
    backend : {"numpy", "numba", "cuda", "auto"}
        Where the inner products run (``kernels.get_backend(backend).sched``).

    Notes
    -----
    ``cos`` is taken as 0 when either gradient is zero. The first call only stores the
    gradients. ``interval="step"``, ``signal="grads"``.
    """

    def __init__(self, lr, hyper_lr: float = 1e-3, min_lr: float = 0.0, backend: str = "numpy"):
        super().__init__(lr, hyper_lr, min_lr, backend)

    def step(self, grads: Sequence[np.ndarray]) -> float:
        products = self._inner_products(list(grads))
        self._last = {"products": products, "lrs_before": list(self.lrs)}
        if products is not None:
            gp, gg, pp = products
            norms = math.sqrt(gg) * math.sqrt(pp)
            cosine = gp / norms if norms > 0.0 else 0.0
            factor = 1.0 + self.hyper_lr * cosine
            self._last.update({"cosine": cosine, "factor": factor})
            self.lrs = [max(lr * factor, self.min_lr) for lr in self.lrs]
        return self.lr

    def explain(self) -> dict:
        """What the last :meth:`step` did: ``rule``, ``updated`` (False on the first call),
        ``dot``, ``norm2``, ``norm2_prev`` (the three inner products), ``cosine``,
        ``factor = 1 + hyper_lr * cosine``, ``floored`` (per group), ``lrs_before``,
        ``lrs``."""
        last = getattr(self, "_last", None)
        if last is None or last["products"] is None:
            return {"rule": "no step yet (or since a load)" if last is None
                    else "first call: gradients stored",
                    "updated": False, "lrs": list(self.lrs)}
        dot, norm2, norm2_prev = last["products"]
        return {"rule": f"lr <- max(lr * (1 + hyper_lr {self.hyper_lr:g} * cos "
                        f"{last['cosine']!r}), min_lr {self.min_lr:g})",
                "updated": True, "dot": dot, "norm2": norm2, "norm2_prev": norm2_prev,
                "cosine": last["cosine"], "factor": last["factor"],
                "floored": [lr * last["factor"] < self.min_lr for lr in last["lrs_before"]],
                "lrs_before": last["lrs_before"], "lrs": list(self.lrs)}
