"""DLRS (docs/methods.md §6) on hand-computed traces, and the Adacomp baseline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refimpl.registry import make_scheduler
from refimpl.schedulers import DLRS, Adacomp
from refimpl.schedulers.dlrs import granularity, normalized_slope

# Hand computations below are decimal; float64 evaluates them within a few ulps: 1e-12 rel.
REL = 1e-12


@pytest.mark.parametrize(
    ("lr", "losses", "expected", "regime"),
    [
        # mean 2, slope (3-1)/2 = 1 -> divergent, delta_d = 0.5, G = 0.01
        (0.05, [1.0, 2.0, 3.0], 0.05 - 0.5 * 0.01 * 1.0, "divergent"),
        # mean 4/3, slope 0.5/(4/3) = 0.375 -> flat, delta_o = 1, G = 0.001
        (0.005, [1.0, 1.5, 1.5], 0.005 - 1.0 * 0.001 * 0.375, "flat"),
        # mean 2.5, slope -3/2.5 = -1.2 -> convergent, delta_i = 0.1, G = 1e-4 (raises lr)
        (0.0005, [4.0, 3.0, 2.0, 1.0], 0.0005 + 0.1 * 1e-4 * 1.2, "convergent"),
    ],
)
def test_each_regime_by_hand(lr, losses, expected, regime):
    sched = DLRS(lr)
    assert sched.step(losses) == pytest.approx(expected, rel=REL)
    assert {"divergent": 0.5, "flat": 1.0, "convergent": 0.1}[regime] == sched.delta(
        sched.last_slope
    )


def test_regime_boundaries():
    sched = DLRS(0.01)
    assert sched.delta(1.0) == 0.5  # exactly a 100% increase is divergent
    assert sched.delta(0.999) == 1.0
    assert sched.delta(0.0) == 1.0  # no change counts as flat (and moves nothing)
    assert sched.delta(-1e-9) == 0.1


def test_granularity_across_decades_scales_the_step():
    # the same epoch (slope 1, divergent) moves each rate by half its own decade
    for lr, expected in [(0.05, 0.045), (0.005, 0.0045), (0.0005, 0.00045)]:
        assert DLRS(lr).step([1.0, 2.0, 3.0]) == pytest.approx(expected, rel=REL)
    assert granularity(0.05) == 0.01
    assert granularity(0.005) == 0.001
    assert granularity(0.0005) == pytest.approx(1e-4, rel=REL)
    assert granularity(0.01) == 0.01  # a power of ten is its own decade


def test_multi_epoch_trace_crossing_decades_by_hand():
    sched = DLRS(0.012)
    # divergent slope 1: 0.012 - 0.5*0.01 = 0.007; now G = 0.001: 0.007 - 0.0005 = 0.0065
    assert sched.step([1.0, 3.0]) == pytest.approx(0.007, rel=REL)
    assert sched.step([1.0, 3.0]) == pytest.approx(0.0065, rel=REL)
    sched = DLRS(0.0099)
    # convergent slope (0-10)/5 = -2: 0.0099 + 0.1*0.001*2 = 0.0101; now G = 0.01: +0.002
    assert sched.step([10.0, 0.0]) == pytest.approx(0.0101, rel=REL)
    assert sched.step([10.0, 0.0]) == pytest.approx(0.0121, rel=REL)


def test_clipping_to_min_and_max():
    sched = DLRS(0.1)
    assert sched.step([4.0, 3.0, 2.0, 1.0]) == 0.1  # would rise above max_lr
    sched = DLRS(2e-5)
    trace = [sched.step([1.0, 3.0]) for _ in range(3)]
    np.testing.assert_allclose(trace, [1.5e-5, 1e-5, 1e-5], rtol=REL)


def test_no_rounding_keeps_tiny_rates_alive():
    # the public code rounds to 8 decimals, which would turn this rate into 0.0
    sched = DLRS(3e-9, min_lr=1e-12)
    lr = sched.step([4.0, 3.0, 2.0, 1.0])
    assert lr == pytest.approx(3e-9 + 0.1 * 1e-9 * 1.2, rel=REL)
    assert round(lr, 8) == 0.0


def test_slope_edge_cases_and_errors():
    assert normalized_slope([2.0]) == 0.0
    assert normalized_slope([0.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="empty"):
        normalized_slope([])
    with pytest.raises(ValueError, match="NaN"):
        normalized_slope([1.0, float("nan")])
    with pytest.raises(ValueError, match="min_lr"):
        DLRS(0.01, min_lr=0.0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        DLRS(0.0)


def test_make_builds_dlrs_with_defaults():
    sched = make_scheduler("dlrs", 0.05)
    assert (sched.interval, sched.signal) == ("epoch", "batch_losses")
    assert (sched.delta_d, sched.delta_o, sched.delta_i) == (0.5, 1.0, 0.1)
    assert (sched.min_lr, sched.max_lr) == (1e-5, 0.1)


def _epochs(seed: int, n: int = 20) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(np.exp(rng.normal(0, 0.5, 8)) + rng.random()) for _ in range(n)]


def test_dlrs_state_dict_resume_equals_uninterrupted_run():
    epochs = _epochs(0)
    full = DLRS([0.05, 0.002])
    trace_full = [full.step(e) for e in epochs]
    first = DLRS([0.05, 0.002])
    trace = [first.step(e) for e in epochs[:10]]
    second = DLRS(0.01, delta_d=0.9)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    trace += [second.step(e) for e in epochs[10:]]
    assert trace == trace_full
    assert len(set(trace_full)) > 5


def test_adacomp_hand_computed_and_bounded():
    # Li et al. (2021) Eq. (9), beta = 0.6; the full worked trace is in test_adacomp_li2021.py
    sched = Adacomp(0.1)
    assert (sched.interval, sched.signal, sched.rule) == ("step", "loss", "li2021")
    assert sched.step(2.0) == 0.1  # first loss only stored
    # fell 0.5: 0.1/2 + 0.1 (1/2 + atan(0.5 + 1/0.1) / (5 pi))
    up = 0.05 + 0.1 * (0.5 + math.atan(10.5) / (5 * math.pi))
    assert sched.step(1.5) == pytest.approx(up, rel=1e-15)
    # rose 0.3: up/2 + up (1/4 - atan(up) / (0.6 pi) + 1/4 - atan(1/up + 0.3) / (5.5 pi))
    down = up / 2 + up * (0.5 - math.atan(up) / (0.6 * math.pi)
                          - math.atan(1 / up + 0.3) / (5.5 * math.pi))
    assert sched.step(1.8) == pytest.approx(down, rel=1e-15)
    # the increase is bounded however good the step: at most 10%
    big = Adacomp(0.1)
    big.step(1e6)
    assert 0.1 < big.step(0.0) < 0.11


def test_adacomp_state_dict_resume():
    losses = [x for e in _epochs(1, 5) for x in e]
    full = Adacomp(0.05)
    trace_full = [full.step(v) for v in losses]
    first = Adacomp(0.05)
    trace = [first.step(v) for v in losses[:17]]
    second = Adacomp(1.0)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    trace += [second.step(v) for v in losses[17:]]
    assert trace == trace_full
