"""NewtonLR (TLR) and the hypergradient baselines (docs/methods.md §5)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refimpl.registry import make_scheduler
from refimpl.schedulers import (
    HypergradientAdditiveLR,
    HypergradientMultiplicativeLR,
    NewtonLR,
)
from refimpl.schedulers.newton import tlr_factor

GAMMA = 0.33


def _gd_on_quadratic(sched: NewtonLR, H: np.ndarray, w0: np.ndarray, steps: int) -> list[float]:
    """Plain GD on f(w) = 1/2 w^T H w, calling the scheduler as a trainer would."""
    w = w0.copy()
    lrs = []
    sched.step([w])  # the first call caches the initial weights
    for _ in range(steps):
        w -= sched.lr * (H @ w)  # gradient of the quadratic is H w
        lrs.append(sched.step([w]))
    return lrs


def test_lr_after_each_update_equals_hand_computed_values_on_a_quadratic():
    # H = diag(1, 3), w0 = (1, 1), lr = 0.1, K = round(0.2 * 5) = 1 (update on every call).
    # u1 = H w0 = (1, 3); w1 = (0.9, 0.7); update 1 has u_prev = 0 -> lr stays 0.1.
    # u2 = H w1 = (0.9, 2.1): a = 0.9 + 6.3 = 7.2, b = 1 + 9 = 10, den = 2.8.
    # w2 = w1 - 0.1 H w1 = (0.81, 0.49); u3 = H w2 = (0.81, 1.47) (divided by the new lr):
    # a = 0.9*0.81 + 2.1*1.47 = 3.816, b = 0.81 + 4.41 = 5.22, den = 1.404.
    sched = NewtonLR(0.1, gamma=GAMMA, p=0.2, batches_per_epoch=5)
    assert sched.update_every == 1
    lrs = _gd_on_quadratic(sched, np.diag([1.0, 3.0]), np.array([1.0, 1.0]), steps=3)
    lr2 = 0.1 * (1 + GAMMA * 7.2 / (2.8 + 1e-10))
    lr3 = lr2 * (1 + GAMMA * 3.816 / (1.404 + 1e-10))
    # float64 arithmetic along two different (but equivalent) paths: 1e-12 relative
    np.testing.assert_allclose(lrs, [0.1, lr2, lr3], rtol=1e-12)
    assert lrs[0] == 0.1 and 0.18 < lrs[1] < lrs[2]


def test_updates_happen_on_calls_k_plus_1_2k_plus_1():
    sched = NewtonLR(0.1, p=0.25, batches_per_epoch=12)  # K = 3
    assert sched.update_every == 3
    H = np.diag([1.0, 2.0])
    w = np.array([1.0, -1.0])
    moved_at = []
    sched.step([w])
    for call in range(2, 15):
        before = sched.lr
        w = w - before * (H @ w)
        sched.step([w])
        if sched.lr != before:
            moved_at.append(call)
    # call 4 is the first update (u_prev = 0, no move); calls 7, 10, 13 can move it
    assert moved_at == [7, 10, 13]
    assert sched.calls == 14


def test_factor_keeps_lr_for_nonpositive_denominator_and_clamps_at_100():
    assert tlr_factor(a=2.0, b=1.0, gamma=GAMMA) == 1.0  # den < 0
    assert tlr_factor(a=1.0, b=1.0, gamma=GAMMA) == 1.0  # den = 0
    assert tlr_factor(a=0.9999, b=1.0, gamma=GAMMA) == 100.0  # 1 + 0.33*0.9999/1e-4 = 3300
    assert tlr_factor(a=-1.0, b=1.0, gamma=GAMMA) == 1 + GAMMA * -1.0 / (2.0 + 1e-10)


def _reference_code_trace(weights: list[np.ndarray], lr: float, gamma: float, p: float = 1.0,
                          batches_per_epoch: int = 1) -> list[float]:
    """The TLR authors' code (georgeretsi/NTLR, tlr_src/tlr_wrapper.py) for one parameter
    group, modelled from its description (test-local). ``weights[i]`` are the weights after
    call ``i + 1`` (the same list our scheduler is fed); returns the rate after each call.

    ``K = int(p * N)``; a counter makes calls K+1, 2K+1, ... updates; the first update only
    caches the weights (its direction is 0), so the first change can come at call 3K+1; it
    keeps the rate only when ``b < 0`` (never true for a squared norm) and has no x100 clamp.
    """
    k = int(p * batches_per_epoch)
    lrs, count, cached, u_prev = [], 0, None, None
    for w in weights:
        if count == k:
            count = 0
            if cached is None:
                cached, u_prev = w, np.zeros_like(w)
            u = (cached - w) / lr
            a, b = float(u_prev @ u), float(u_prev @ u_prev)
            if not b < 0:
                lr = lr * (1 + gamma * a / (b - a + 1e-10))
            cached, u_prev = w, u
        count += 1
        lrs.append(lr)
    return lrs


def _weights_from(directions, lr: float) -> list[np.ndarray]:
    """Weights after each step ``w <- w - lr u`` from (5, 5), for the given directions."""
    w, weights = np.array([5.0, 5.0]), []
    for u in directions:
        w = w - lr * np.asarray(u, dtype=float)
        weights.append(w.copy())
    return weights


def test_reference_code_first_changes_the_rate_at_call_3k_plus_1():
    # plain GD on a quadratic, K = 3 for both (int(0.25 * 12) = round(0.25 * 12) = 3)
    H = np.diag([1.0, 4.0])
    w, weights = np.array([1.0, 1.0]), []
    for _ in range(20):
        w = w - 0.05 * (H @ w)
        weights.append(w.copy())
    ref = _reference_code_trace(weights, 0.05, GAMMA, p=0.25, batches_per_epoch=12)
    ours = NewtonLR(0.05, gamma=GAMMA, p=0.25, batches_per_epoch=12)
    ours_lrs = [ours.step([w]) for w in weights]
    first_change = [next(i + 1 for i, lr in enumerate(t) if lr != 0.05) for t in (ref, ours_lrs)]
    assert first_change == [10, 7]  # 3K+1 for the authors' code, 2K+1 for ours
    # it takes K = int(p N); ours rounds
    assert int(1 / 3 * 5) == 1 and NewtonLR(0.1, p=1 / 3, batches_per_epoch=5).update_every == 2


def test_paper_rule_differs_from_reference_code_where_den_is_negative_or_factor_huge():
    # K = 1. Ours caches at call 1, the authors' code at call 2, so at call 3 only ours has
    # a previous direction; the directions of calls 2 and 3 are orthogonal (a = 0, factor 1),
    # so both rates stay put, and at call 4 both compare the directions of calls 3 and 4.
    lr = 0.01
    # (1.2, 0) then (1.1999, 0): a = 1.43988, b = 1.44, den = 1.2e-4: the factor
    # 1 + 0.33 * 1.43988 / 1.2e-4 ~ 3960, which ours clamps to 100
    weights = _weights_from([(0, 1), (0, 1), (1.2, 0), (1.1999, 0)], lr)
    ours = NewtonLR(lr, gamma=GAMMA, batches_per_epoch=1)
    ours_lrs = [ours.step([w]) for w in weights]
    np.testing.assert_allclose(ours_lrs, [lr, lr, lr, 100 * lr], rtol=1e-12)
    ref = _reference_code_trace(weights, lr, GAMMA)
    assert ref[:3] == [lr, lr, lr]
    # den comes from a difference of two numbers near 1.44 built from weights near 5:
    # ~1e-9 relative rounding, hence rel=1e-6
    assert ref[3] == pytest.approx(lr * (1 + GAMMA * 1.43988 / (1.2e-4 + 1e-10)), rel=1e-6)
    assert ref[3] > 3900 * lr  # fed the same weights: a huge factor, not a negative rate
    # (1, 0) then (1.2, 0): a = 1.2 > b = 1, den = -0.2. Ours keeps the rate; the authors'
    # `b < 0` test lets 1 + 0.33 * 1.2 / (-0.2) = -0.98 through: a negative rate
    weights = _weights_from([(0, 1), (0, 1), (1, 0), (1.2, 0)], lr)
    ours = NewtonLR(lr, gamma=GAMMA, batches_per_epoch=1)
    assert [ours.step([w]) for w in weights] == [lr, lr, lr, lr]
    assert ours.explain()["kept"] and ours.explain()["den"] < 0
    ref = _reference_code_trace(weights, lr, GAMMA)
    assert ref[3] == pytest.approx(lr * (1 + GAMMA * 1.2 / (1 - 1.2 + 1e-10)), rel=1e-9)
    assert ref[3] < 0


def test_batches_per_epoch_can_be_set_later_and_missing_value_is_a_clear_error():
    sched = make_scheduler("newton", 0.05)
    assert (sched.interval, sched.signal) == ("step", "params")
    with pytest.raises(ValueError, match="set_batches_per_epoch"):
        sched.step([np.zeros(3)])
    sched.set_batches_per_epoch(100)
    assert sched.update_every == 20
    with pytest.raises(ValueError, match="lr must be > 0"):
        NewtonLR(0.0, batches_per_epoch=10)
    with pytest.raises(ValueError, match="gamma"):
        NewtonLR(0.1, gamma=1.5)


def test_works_over_adam_and_several_float32_arrays():
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    m = [np.zeros_like(p) for p in params]
    sched = NewtonLR(1e-2, batches_per_epoch=10)  # K = 2
    sched.step(params)
    for _ in range(20):  # sign-like (Adam-ish) steps on a convex bowl: the rule stays finite
        for p, mi in zip(params, m):
            mi[...] = 0.9 * mi + 0.1 * p
            p -= np.float32(sched.lr) * np.sign(mi)
        sched.step(params)
    assert math.isfinite(sched.lr) and sched.lr > 0
    assert sched.last_factor != 1.0  # at least one update moved the rate


def test_state_dict_resume_equals_uninterrupted_run():
    H = np.diag([0.5, 1.0, 4.0])
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=3)

    def run(sched, w, steps):
        out = []
        for _ in range(steps):
            w = w - sched.lr * (H @ w + 0.01 * rng_noise.normal(size=3))
            out.append(sched.step([w]))
        return out, w

    rng_noise = np.random.default_rng(1)
    full = NewtonLR(0.05, batches_per_epoch=10)
    full.step([w0])
    trace_full, _ = run(full, w0, 40)

    rng_noise = np.random.default_rng(1)
    first = NewtonLR(0.05, batches_per_epoch=10)
    first.step([w0])
    trace, w = run(first, w0, 19)
    state = json.loads(json.dumps(first.state_dict()))
    second = NewtonLR(1.0, batches_per_epoch=3)
    second.load_state_dict(state)
    rest, _ = run(second, w, 21)
    assert trace + rest == trace_full
    assert len(set(trace_full)) > 2  # the rate actually moved


def test_hypergradient_additive_and_multiplicative_hand_computed():
    g1 = [np.array([1.0, 2.0]), np.array([2.0])]
    g2 = [np.array([3.0, -1.0]), np.array([1.0])]  # <g2, g1> = 3 - 2 + 2 = 3
    add = HypergradientAdditiveLR(0.1, hyper_lr=0.01)
    assert (add.interval, add.signal) == ("step", "grads")
    assert add.step(g1) == 0.1  # first call only stores
    assert add.step(g2) == pytest.approx(0.1 + 0.01 * 3.0, rel=1e-15)
    mul = HypergradientMultiplicativeLR(0.1, hyper_lr=0.5)
    mul.step(g1)
    cos = 3.0 / (math.sqrt(9.0) * math.sqrt(11.0))  # |g1| = 3, |g2| = sqrt(11)
    assert mul.step(g2) == pytest.approx(0.1 * (1 + 0.5 * cos), rel=1e-15)
    # the additive rule is floored at min_lr (default 0)
    neg = HypergradientAdditiveLR(0.01, hyper_lr=1.0)
    neg.step(g1)
    assert neg.step([-g for g in g1]) == 0.0


@pytest.mark.parametrize("cls", [HypergradientAdditiveLR, HypergradientMultiplicativeLR])
def test_hypergradient_state_dict_resume(cls):
    rng = np.random.default_rng(5)
    grads = [[rng.normal(size=(2, 2)), rng.normal(size=2)] for _ in range(30)]
    full = cls(0.1, hyper_lr=0.01)
    trace_full = [full.step(g) for g in grads]
    first = cls(0.1, hyper_lr=0.01)
    trace = [first.step(g) for g in grads[:15]]
    second = cls(0.5)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    trace += [second.step(g) for g in grads[15:]]
    assert trace == trace_full


def test_driven_by_the_trainer_updates_every_k_steps():
    from refimpl.data import make_blobs
    from refimpl.model import build
    from refimpl.optim import SGD
    from refimpl.train import Trainer

    X, y = make_blobs(n=256, n_classes=3, n_features=2, seed=0)
    model = build("dense:16,relu,dense:3", (2,), seed=0, dtype=X.dtype)
    sched = NewtonLR(0.05, p=0.25)  # batches_per_epoch comes from the trainer: 8 -> K = 2
    history = Trainer(
        model, SGD(model.parameters(), lr=0.05), sched, batch_size=32, progress=False
    ).fit((X, y), epochs=3)
    assert sched.update_every == 2
    lrs = history.lr  # the rate used by optimizer steps 1, 2, ...
    # call 1 (after step 1) caches; call K+1 = 3 cannot move lr; calls 5, 7, ... can,
    # so the rate may change only before steps 6, 8, 10, ...
    changed = [s for s in range(2, len(lrs) + 1) if lrs[s - 1] != lrs[s - 2]]
    assert changed and all(s >= 6 and s % 2 == 0 for s in changed)
    assert lrs[:5] == [0.05] * 5
