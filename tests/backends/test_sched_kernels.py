"""Numba scheduler kernels (refimpl/kernels/numba/sched.py) agree with the NumPy oracle, and the
schedulers reach them through the backend registry."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import kernels
from refimpl.schedulers import (
    HypergradientAdditiveLR,
    HypergradientMultiplicativeLR,
    NewtonLR,
)

pytest.importorskip("numba", reason="the scheduler kernels need numba")
sched = kernels.get_backend("numba").sched
tlr_pass, grad_pair_pass = sched.tlr_pass, sched.grad_pair_pass


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tlr_pass_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    n, lr = 10_001, 0.037
    w = rng.normal(size=n).astype(dtype)
    cached = rng.normal(size=n)
    u_prev = rng.normal(size=n)
    u_expected = (cached - w.astype(np.float64)) / lr
    a_expected = float(u_prev @ u_expected)
    b_expected = float(u_prev @ u_prev)
    scale = np.linalg.norm(u_prev) * np.linalg.norm(u_expected)  # Cauchy-Schwarz bound on |a|
    a, b = tlr_pass(w, cached, u_prev, lr)
    # both sides accumulate in float64 (different order): 1e-12 of the natural scale
    assert abs(a - a_expected) <= 1e-12 * scale
    assert b == pytest.approx(b_expected, rel=1e-12)
    np.testing.assert_array_equal(cached, w.astype(np.float64))  # state rolled forward
    np.testing.assert_allclose(u_prev, u_expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_pair_pass_matches_numpy(dtype):
    rng = np.random.default_rng(1)
    g = rng.normal(size=5_003).astype(dtype)
    prev = rng.normal(size=5_003)
    g64, prev0 = g.astype(np.float64), prev.copy()
    gp, gg, pp = grad_pair_pass(g, prev)
    assert abs(gp - g64 @ prev0) <= 1e-12 * np.linalg.norm(g64) * np.linalg.norm(prev0)
    assert gg == pytest.approx(g64 @ g64, rel=1e-12)
    assert pp == pytest.approx(prev0 @ prev0, rel=1e-12)
    np.testing.assert_array_equal(prev, g64)


def _noisy_descent(sched, dtype, steps=60, signal="params"):
    rng = np.random.default_rng(2)
    params = [rng.normal(size=(30, 20)).astype(dtype), rng.normal(size=20).astype(dtype)]
    scales = [np.linspace(0.5, 2.0, p.size).reshape(p.shape).astype(dtype) for p in params]
    lrs = []
    if signal == "params":
        sched.step(params)
    for _ in range(steps):
        grads = [
            s * p + dtype(0.1) * rng.normal(size=p.shape).astype(dtype)
            for s, p in zip(scales, params)
        ]
        for p, g in zip(params, grads):
            p -= dtype(sched.lr) * g
        lrs.append(sched.step(params if signal == "params" else grads))
    return np.array(lrs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_newton_lr_numba_backend_trace_matches_numpy_backend(dtype):
    ours = _noisy_descent(NewtonLR(0.05, batches_per_epoch=10), dtype)
    fast = _noisy_descent(NewtonLR(0.05, batches_per_epoch=10, backend="numba"), dtype)
    assert len(set(ours.tolist())) > 3  # the rate moved several times
    # float64 accumulation in both; only the summation order differs
    np.testing.assert_allclose(fast, ours, rtol=1e-12)


@pytest.mark.parametrize("cls", [HypergradientAdditiveLR, HypergradientMultiplicativeLR])
def test_hypergradient_numba_backend_trace_matches_numpy_backend(cls):
    ours = _noisy_descent(cls(0.05, hyper_lr=1e-3), np.float64, signal="grads")
    fast = _noisy_descent(cls(0.05, hyper_lr=1e-3, backend="numba"), np.float64, signal="grads")
    assert len(set(ours.tolist())) > 3
    np.testing.assert_allclose(fast, ours, rtol=1e-12)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="^backend must be one of"):
        NewtonLR(0.1, batches_per_epoch=5, backend="tpu")
    with pytest.raises(ValueError, match="^backend must be one of"):
        HypergradientAdditiveLR(0.1, backend="tpu")


def test_schedulers_use_the_registry_backend_module(monkeypatch):
    """The rate rules call ``kernels.get_backend(name).sched``, not an import path of their own."""
    calls = []
    real = kernels.get_backend("numba").sched.tlr_pass

    def counting(*args):
        calls.append(len(args[0]))
        return real(*args)

    monkeypatch.setattr(kernels.get_backend("numba").sched, "tlr_pass", counting)
    scheduler = NewtonLR(0.05, batches_per_epoch=1, backend="numba")
    params = [np.ones((2, 3)), np.ones(4)]
    scheduler.step(params)
    scheduler.step(params)
    assert calls == [6, 4]
    assert NewtonLR(0.05, batches_per_epoch=1, backend="auto").backend in kernels.available()
