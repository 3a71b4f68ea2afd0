"""``explain()``: the intermediates of each scheduler's last step, checked by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refimpl.schedulers import (
    DLRS,
    Adacomp,
    GreedyLR,
    HypergradientAdditiveLR,
    HypergradientMultiplicativeLR,
    NewtonLR,
)


def test_greedy_branches_by_hand():
    # F = 0.5 keeps the rates exact; patience 1, cooldown 1, threshold 0 ("strictly better")
    s = GreedyLR(0.4, factor=0.5, patience=1, cooldown=1, threshold=0.0, min_lr=0.1)
    assert s.explain()["rule"] == "no step yet (or since a load)"
    s.step(3.0)
    e = s.explain()
    assert (e["branch"], e["improved"], e["num_good"], e["best"]) == ("count", True, 1, 3.0)
    assert e["best_before"] == math.inf and e["rule"].startswith("count: value 3.0 < best inf")
    s.step(2.0)  # 2nd improvement > patience 1: increase, capped at max_lr 1.0
    e = s.explain()
    assert e["branch"] == "increase" and e["lrs_before"] == [0.4] and e["lrs"] == [0.8]
    assert "num_good 2 > patience 1" in e["rule"] and e["num_good"] == 0
    s.step(2.5)
    s.step(2.5)  # 2nd non-improvement: decrease, cooldown starts
    e = s.explain()
    assert e["branch"] == "decrease" and e["lrs"] == [0.4] and e["cooldown_counter"] == 1
    assert "does not improve on best 2.0" in e["rule"] and "num_bad 2 > patience 1" in e["rule"]
    s.step(9.0)
    e = s.explain()
    assert e["branch"] == "cooldown" and e["improved"] is None and e["lrs"] == [0.4]


def test_greedy_reset_branch_and_smoothed_value():
    s = GreedyLR(0.2, factor=0.5, patience=0, min_lr=0.1, smooth=True, window_size=2)
    s.step(1.0)  # improvement from inf: increase to 0.4
    values = [s.explain()["value"]]
    for loss in [3.0, 5.0, 7.0, 9.0]:
        s.step(loss)
        values.append(s.explain()["value"])
    assert values == [1.0, 2.0, 4.0, 6.0, 8.0]  # mean of the last two losses
    branches = []
    s = GreedyLR(0.2, factor=0.5, patience=0, min_lr=0.1, reset_start=2)
    for loss in [1.0, 1.0, 1.0, 1.0]:  # 0.4 -> 0.2 -> 0.1 (at min: 1) -> reset (at min: 2)
        s.step(loss)
        branches.append(s.explain()["branch"])
    assert branches == ["increase", "decrease", "decrease", "reset"]
    assert s.lrs == [0.2] and s.explain()["best"] == math.inf


def test_greedy_accepts_max_lr_inf_as_transformers_does():
    s = GreedyLR([0.1, 0.2], factor=0.5, patience=0, max_lr=math.inf)
    for loss in range(20, 0, -1):  # 20 improvements: no cap
        s.step(float(loss))
    assert s.lrs == [0.1 * 2**20, 0.2 * 2**20]
    mixed = GreedyLR([0.1, 0.2], max_lr=[math.inf, 0.5])
    assert mixed.max_lrs == [math.inf, 0.5]
    state = json.loads(json.dumps(s.state_dict()))  # Python's json writes inf as Infinity
    restored = GreedyLR([0.1, 0.2], factor=0.5, patience=0, max_lr=math.inf)
    restored.load_state_dict(state)
    assert restored.lrs == s.lrs and restored.max_lrs == [math.inf, math.inf]
    for bad in (-math.inf, math.nan, -1.0, "big"):
        with pytest.raises(ValueError, match="max_lr"):
            GreedyLR(0.1, max_lr=bad)


@pytest.mark.parametrize("losses, regime, delta", [
    ([1.0, 2.0, 3.0], "divergent", 0.5),       # slope (3 - 1) / 2 = 1 exactly
    ([1.0, 1.5, 1.5], "flat", 1.0),            # slope 0.5 / (4/3) = 0.375
    ([2.0, 2.0], "flat", 1.0),                 # slope 0
    ([3.0, 2.0, 1.0], "convergent", 0.1),      # slope -1
])
def test_dlrs_regime_slope_delta_granularity(losses, regime, delta):
    s = DLRS([0.05, 0.003], delta_d=0.5, delta_o=1.0, delta_i=0.1)
    s.step(losses)
    e = s.explain()
    slope = (losses[-1] - losses[0]) / np.mean(losses)
    assert (e["regime"], e["delta"], e["slope"]) == (regime, delta, slope)
    assert e["granularity"] == [0.01, 0.001] and e["lrs_before"] == [0.05, 0.003]
    assert e["lrs"] == [min(max(lr - delta * g * slope, 1e-5), 0.1)
                        for lr, g in zip([0.05, 0.003], [0.01, 0.001])]
    assert e["rule"].startswith(regime) and e["batches"] == len(losses)


def test_dlrs_clipping_is_reported():
    s = DLRS(0.05, delta_i=1.0)
    s.step([10.0, 9.0])  # slope -1/9.5: 0.05 + 0.01 / 9.5, inside [1e-5, 0.1]
    assert s.explain()["clipped"] == [False]
    s.step([10.0, 1.0])  # slope -9/5.5: 0.051 + 0.01 * 1.636... = 0.0677, inside
    s.step([10.0, 1.0])  # 0.0677 + 0.0164 = 0.0841, inside
    s.step([10.0, 1.0])  # 0.0841 + 0.0164 > 0.1: clipped
    e = s.explain()
    assert e["clipped"] == [True] and e["lrs"] == [0.1] and e["unclipped"][0] > 0.1


def test_adacomp_branches():
    s = Adacomp(0.1, beta_inc=0.1, beta_dec=1.0)
    s.step(2.0)
    assert s.explain()["branch"] == "first" and s.explain()["lrs"] == [0.1]
    s.step(1.0)  # r = 0.5 >= 0
    e = s.explain()
    assert e["branch"] == "progress" and e["r"] == 0.5
    assert e["lrs"] == [0.1 + 0.1 * math.tanh(0.5) * 0.01 / 0.2]
    s.step(1.5)  # r = -0.5 < 0
    e = s.explain()
    assert e["branch"] == "setback" and e["r"] == -0.5 and e["prev_loss"] == 1.0


def test_newton_explain_through_a_period():
    s = NewtonLR(0.1, gamma=0.33, batches_per_epoch=10, p=0.2)  # K = 2
    w = [np.array([1.0, 1.0])]
    s.step(w)
    assert s.explain()["rule"].startswith("call 1: weights cached; first update at call 3")
    for call, u in [(2, (1.0, 3.0)), (3, (1.0, 3.0)), (4, (0.5, 1.0)), (5, (0.5, 1.0))]:
        w = [w[0] - s.lr * np.array(u)]
        s.step(w)
        e = s.explain()
        assert e["call"] == call and e["updated"] == (call in (3, 5)) and e["K"] == 2
    # call 5: u_prev = (2, 6) (two steps of (1, 3)), u = (1, 2): a = 14, b = 40, den = 26
    assert (e["a"], e["b"], e["den"]) == pytest.approx((14.0, 40.0, 26.0), rel=1e-12)
    assert e["factor"] == pytest.approx(1 + 0.33 * 14 / 26, rel=1e-12) and not e["clamped"]
    assert e["next_update"] == 7 and not e["kept"]


def test_hypergradient_explain():
    add = HypergradientAdditiveLR(0.1, hyper_lr=0.01, min_lr=0.05)
    add.step([np.array([1.0, 2.0])])
    assert add.explain()["updated"] is False
    add.step([np.array([-3.0, 0.0])])  # <g, g_prev> = -3: 0.1 - 0.03 = 0.07
    e = add.explain()
    assert (e["dot"], e["delta"], e["floored"]) == (-3.0, -0.03, [False])
    assert e["lrs"] == [0.1 - 0.03]
    mul = HypergradientMultiplicativeLR(0.1, hyper_lr=0.5)
    mul.step([np.array([1.0, 0.0])])
    mul.step([np.array([0.0, 2.0])])  # orthogonal: cos 0, factor 1
    e = mul.explain()
    assert (e["dot"], e["norm2"], e["norm2_prev"], e["cosine"], e["factor"]) == (
        0.0, 4.0, 1.0, 0.0, 1.0)
    mul.step([np.array([0.0, -1.0])])  # opposite: cos -1, factor 0.5
    assert mul.explain()["cosine"] == -1.0 and mul.lrs == [0.05]


def test_lrpo_schedule_explain_names_phase_and_jump():
    from refimpl.registry import make_scheduler

    s = make_scheduler("lrpo", 0.05, pretrain_epochs=3, jump_epochs=1, finetune_lr=0.001,
                       predictor_steps=50)
    assert math.isnan(s.explain()["alpha"]) and s.explain()["phase"] == "pretrain"
    for loss in [2.0, 1.5, 1.2]:
        s.step([loss, loss])
    e = s.explain()
    assert e["epoch"] == 3 and e["phase"] == "jump" and 1.0 <= e["alpha"] <= 1.5
    assert e["lrs"] == [0.05 * e["alpha"]] and "alpha = clip(1 + c r" in e["rule"]
    s.step([1.0])
    assert s.explain()["phase"] == "finetune" and s.explain()["lrs"] == [0.001]


@pytest.mark.parametrize("make, signal", [
    (lambda: GreedyLR(0.1, patience=0), 1.0),
    (lambda: DLRS(0.01), [1.0, 2.0]),
    (lambda: Adacomp(0.1), 1.0),
    (lambda: HypergradientAdditiveLR(0.1), [np.ones(2)]),
])
def test_explain_after_a_load_does_not_describe_an_earlier_step(make, signal):
    saved, loaded = make(), make()
    for _ in range(3):
        saved.step(signal)
    loaded.step(signal)
    loaded.step(signal)
    assert loaded.explain()["rule"] != "no step yet (or since a load)"
    loaded.load_state_dict(saved.state_dict())
    assert loaded.explain()["rule"] == "no step yet (or since a load)"
    loaded.step(signal)  # and the next step is described again
    assert loaded.explain()["rule"] != "no step yet (or since a load)"
