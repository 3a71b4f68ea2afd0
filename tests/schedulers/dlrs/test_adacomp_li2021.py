"""Adacomp, Li et al. (2021) Eq. (9) (docs/methods.md §6), on traces computed by hand.

The expected rates below were evaluated from Eq. (9) with the paper's beta = 0.6 in 50-digit
arithmetic (mpmath) and rounded to 20 digits; float64 must meet them to 1e-12 relative.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.registry import make_scheduler
from refimpl.schedulers import Adacomp
from refimpl.schedulers.dlrs import adacomp_rate

REL = 1e-12

# lr0 = 0.1, losses 2.0 (stored), 1.5 (fell 0.5), 1.8 (rose 0.3), 1.8 (flat), 1.800004 (a
# rise of 4e-6, inside the 1e-5 dead band):
#   g1 = 0.1/2 + 0.1 (1/2 + atan(0.5 + 10) / (5 pi))
#   g2 = g1/2 + g1 (1/4 - atan(g1) / (0.6 pi) + 1/4 - atan(1/g1 + 0.3) / (5.5 pi))
#   g3 = g2 / 2,  g4 = g3 / 2
G1 = 0.10939551866322161042
G2 = 0.09379483293663132816
G3 = 0.04689741646831566408
G4 = 0.02344870823415783204


def test_the_rule_is_named_for_the_paper():
    assert Adacomp.rule == "li2021"
    assert (Adacomp.interval, Adacomp.signal) == ("step", "loss")
    s = Adacomp(0.1)
    assert (s.beta, s.tolerance, s.min_lr, s.max_lr) == (0.6, 1e-5, 0.0, None)


def test_worked_trace_by_hand():
    s = Adacomp(0.1)
    assert s.step(2.0) == 0.1  # the first loss is only stored
    assert s.explain()["branch"] == "first"
    expected = [(1.5, G1, "progress"), (1.8, G2, "setback"), (1.8, G3, "flat"),
                (1.800004, G4, "flat")]
    for loss, rate, branch in expected:
        assert s.step(loss) == pytest.approx(rate, rel=REL)
        assert s.explain()["branch"] == branch
    e = s.explain()
    assert e["prev_loss"] == 1.8 and e["loss"] == 1.800004
    assert e["decrease"] == pytest.approx(-4e-6, rel=1e-9) and e["clipped"] == [False]


def test_large_rates_are_penalized_small_ones_compensated():
    # lr = 10, loss rises 0.2: 10/2 + 10 (1/4 - atan(10)/(0.6 pi) + 1/4 - atan(0.1 + 0.2)/(5.5 pi))
    big = Adacomp(10.0)
    big.step(1.0)
    assert big.step(1.2) == pytest.approx(2.0267460558224218976, rel=REL)
    # the same rise cuts 0.001 by less than 10%, 10 by about 80%
    small = Adacomp(0.001)
    small.step(1.0)
    assert small.step(1.2) / 0.001 > 0.9
    assert big.lr / 10.0 < 0.21
    # the same fall raises 0.001 by ~10% and 10 by ~3%
    assert adacomp_rate(0.001, 0.5) / 0.001 > 1.09
    assert adacomp_rate(10.0, 0.5) / 10.0 < 1.04


def test_beta_of_the_cifar_scripts():
    # beta = 5 (the authors' CIFAR-10 setting) penalizes the same setback far less
    s = Adacomp(10.0, beta=5.0)
    s.step(1.0)
    assert s.step(1.2) == pytest.approx(8.894771800174302878, rel=REL)


def test_each_group_moves_its_own_rate():
    s = Adacomp([0.1, 0.001])
    s.step(2.0)
    s.step(1.5)
    assert s.lrs == pytest.approx([G1, 0.0010999363698590331669], rel=REL)


def test_tolerance_zero_makes_any_rise_a_setback():
    strict = Adacomp(0.1, tolerance=0.0)
    strict.step(1.8)
    strict.step(1.800004)
    assert strict.explain()["branch"] == "setback" and 0.05 < strict.lr < 0.1
    strict.step(1.800004)  # an unchanged loss still halves the rate
    assert strict.explain()["branch"] == "flat"


@given(lr=st.floats(1e-8, 1e8), decrease=st.floats(-1e3, 1e3),
       beta=st.floats(0.55, 50.0))
def test_closed_forms_and_bounds(lr, decrease, beta):
    new = adacomp_rate(lr, decrease, beta)
    if decrease > 1e-5:  # factor 1 + atan(decrease + 1/lr)/(5 pi), in (1, 1.1)
        factor = 1 + math.atan(decrease + 1 / lr) / (5 * math.pi)
        assert 1.0 < new / lr <= 1.1
    elif decrease < -1e-5:  # factor 1 - atan(lr)/(beta pi) - atan(1/lr - decrease)/(5.5 pi)
        factor = 1 - math.atan(lr) / (beta * math.pi) - math.atan(1 / lr - decrease) / (
            5.5 * math.pi)
        assert 1 - 1 / (2 * beta) - 1 / 11 - 1e-12 <= new / lr < 1.0 and new >= 0.0
    else:
        factor = 0.5
    assert new == pytest.approx(lr * factor, rel=1e-12, abs=1e-300)


def test_clip_and_a_zero_rate():
    s = Adacomp(0.1, min_lr=0.08, max_lr=0.105)
    s.step(2.0)
    s.step(1.5)  # 0.1094 -> 0.105
    assert s.lr == 0.105 and s.explain()["clipped"] == [True]
    s.step(1.5)  # halved to 0.0525 -> 0.08
    assert s.lr == 0.08 and s.explain()["unclipped"] == [0.0525]
    assert adacomp_rate(0.0, 1.0) == 0.0 and adacomp_rate(0.0, -1.0) == 0.0


def _rates(scheduler: Adacomp, losses: list[float]) -> list[list[float]]:
    trace = []
    for loss in losses:
        scheduler.step(loss)
        trace.append(list(scheduler.lrs))
    return trace


def test_state_dict_round_trip():
    losses = [2.0, 1.5, 1.8, 1.8, 1.2, 1.25, 0.9, 0.95, 0.95, 0.7, 0.8, 0.6]
    full = Adacomp([0.1, 0.03], beta=0.9, tolerance=1e-3)
    trace_full = _rates(full, losses)
    first = Adacomp([0.1, 0.03], beta=0.9, tolerance=1e-3)
    trace = _rates(first, losses[:5])
    state = json.loads(json.dumps(first.state_dict()))
    assert state["beta"] == 0.9 and state["tolerance"] == 1e-3 and state["prev_loss"] == 1.2
    second = Adacomp(1.0)  # other rates and hyper-parameters: the state replaces them all
    second.load_state_dict(state)
    assert (second.beta, second.tolerance, second.lrs) == (0.9, 1e-3, first.lrs)
    assert second.explain()["rule"] == "no step yet (or since a load)"
    trace += _rates(second, losses[5:])
    assert trace == trace_full
    assert second.state_dict() == full.state_dict()


def test_a_loaded_state_is_checked_like_the_constructor():
    s = Adacomp(0.1)
    s.step(1.0)
    state = s.state_dict()
    with pytest.raises(ValueError, match="beta"):
        s.load_state_dict({**state, "beta": 0.5})
    assert s.beta == 0.6  # a refused load changes nothing


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0.0}, "lr must be > 0"),
    ({"lr": 0.1, "beta": 0.5}, "beta"),
    ({"lr": 0.1, "tolerance": -1e-5}, "tolerance"),
    ({"lr": 0.1, "min_lr": 0.2, "max_lr": 0.1}, "min_lr <= max_lr"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adacomp(**kwargs)


def test_a_non_finite_loss_is_refused():
    s = Adacomp(0.1)
    with pytest.raises(ValueError, match="finite"):
        s.step(float("nan"))


def test_registry_builds_it():
    s = make_scheduler("adacomp", 0.1, beta=0.8)
    assert isinstance(s, Adacomp) and s.beta == 0.8
