"""Schedulers built with the natural spelling compose as torch's do; their rates and cycled
momenta reach an optimizer through ``apply_to``; callable objects keep their state; and
constructors refuse contradictions and wrong kinds of value (docs/methods.md §3, §4)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from refimpl.optim import SGD, Adam
from refimpl.schedulers import (
    ChainedScheduler,
    ConstantLR,
    CyclicLR,
    ExponentialLR,
    GreedyLR,
    LambdaLR,
    LinearLR,
    MultiplicativeLR,
    NewtonLR,
    OneCycleLR,
    ParamGroups,
    SequentialLR,
    StepLR,
    apply_to,
)

LRS = [0.1, 0.01]
STEPS = 12

# name -> (ours: lr -> scheduler, torch: (optimizer, lr_scheduler module) -> scheduler)
COMPOSITES = {
    "chained StepLR, ExponentialLR": (
        lambda lr: ChainedScheduler([StepLR(lr, step_size=3, gamma=0.5),
                                     ExponentialLR(lr, gamma=0.9)]),
        lambda o, m: m.ChainedScheduler([m.StepLR(o, step_size=3, gamma=0.5),
                                         m.ExponentialLR(o, gamma=0.9)])),
    "chained ConstantLR, LinearLR (both move the rate at construction)": (
        lambda lr: ChainedScheduler([ConstantLR(lr, factor=0.5, total_iters=3),
                                     LinearLR(lr, start_factor=0.2, total_iters=5)]),
        lambda o, m: m.ChainedScheduler([m.ConstantLR(o, factor=0.5, total_iters=3),
                                         m.LinearLR(o, start_factor=0.2, total_iters=5)])),
    "sequential LinearLR then ExponentialLR": (
        lambda lr: SequentialLR(lr, [LinearLR(lr, start_factor=0.1, total_iters=4),
                                     ExponentialLR(lr, gamma=0.9)], milestones=[4]),
        lambda o, m: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=4),
                                        m.ExponentialLR(o, gamma=0.9)], milestones=[4])),
    "sequential ExponentialLR then CyclicLR (which replaces the rates it is built on)": (
        lambda lr: SequentialLR(lr, [ExponentialLR(lr, gamma=0.9),
                                     CyclicLR(lr, base_lr=0.01, max_lr=0.1, step_size_up=3,
                                              interval="epoch")], milestones=[5]),
        lambda o, m: m.SequentialLR(o, [m.ExponentialLR(o, gamma=0.9),
                                        m.CyclicLR(o, base_lr=0.01, max_lr=0.1,
                                                   step_size_up=3)], milestones=[5])),
}


def _trace(scheduler) -> list[list[float]]:
    rates = [list(scheduler.lrs)]
    for _ in range(STEPS):
        scheduler.step()
        rates.append(list(scheduler.lrs))
    return rates


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_children_built_from_the_same_rates_compose_as_on_one_param_groups(name):
    build, _ = COMPOSITES[name]
    natural = _trace(build(list(LRS)))
    explicit = _trace(build(ParamGroups(list(LRS))))  # every child on one ParamGroups
    assert natural == explicit  # the same operations in the same order: equal bits


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_children_built_from_the_same_rates_compose_as_torch(name):
    torch = pytest.importorskip("torch", reason="compared with torch's lr_scheduler")
    build, build_torch = COMPOSITES[name]
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in LRS]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, LRS)],
                                momentum=0.9)
    theirs = build_torch(optimizer, torch.optim.lr_scheduler)
    expected = [[g["lr"] for g in optimizer.param_groups]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's warning about stepping without training
        for _ in range(STEPS):
            optimizer.step()
            theirs.step()
            expected.append([g["lr"] for g in optimizer.param_groups])
    # float64 on both sides with the same recursion: the spec's 1e-12 relative
    np.testing.assert_allclose(_trace(build(list(LRS))), expected, rtol=1e-12, atol=0)


def test_the_children_are_rebuilt_in_place_on_one_param_groups():
    warm, decay = LinearLR(LRS, start_factor=0.1, total_iters=4), ExponentialLR(LRS, gamma=0.9)
    schedule = SequentialLR(LRS, [warm, decay], milestones=[4])
    assert warm.groups is decay.groups is schedule.groups
    assert schedule._schedulers == [warm, decay]  # the caller's objects, not copies


def test_children_that_cannot_share_rates_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"schedulers\[1\].*built from lr=\[0.2\], not \[0.1\]"
                                         r".*one ParamGroups"):
        ChainedScheduler([StepLR(0.1, 2), ExponentialLR(0.2, 0.9)])
    stepped = StepLR(0.1, 2)
    stepped.step()
    with pytest.raises(ValueError, match=r"schedulers\[0\].*has been stepped"):
        ChainedScheduler([stepped, ExponentialLR(0.1, 0.9)])
    groups = ParamGroups(0.1)
    with pytest.raises(ValueError, match=r"schedulers\[1\].*built on a ParamGroups but others "
                                         r"from rates"):
        ChainedScheduler([StepLR(0.1, 2), ExponentialLR(groups, 0.9)])
    with pytest.raises(ValueError, match="pass that one as lr"):
        SequentialLR(0.1, [StepLR(groups, 2), ExponentialLR(groups, 0.9)], milestones=[2])
    with pytest.raises(ValueError, match=r"built from lr=\[0.1\], not \[0.3\]"):
        SequentialLR(0.3, [StepLR(0.1, 2), ExponentialLR(0.1, 0.9)], milestones=[2])


# ----------------------------------------------------------------------------- apply_to

@pytest.mark.torch
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_apply_to_carries_rates_and_cycled_momenta_as_torch_writes_them(kind):
    torch = pytest.importorskip("torch", reason="compared with torch's OneCycleLR")
    params = [np.zeros(3)]
    ours_opt = SGD(params, lr=0.1, momentum=0.9) if kind == "sgd" else Adam(params, lr=0.1)
    ours = OneCycleLR(0.1, max_lr=1.0, total_steps=20)
    weight = torch.nn.Parameter(torch.zeros(3))
    theirs_opt = (torch.optim.SGD([weight], lr=0.1, momentum=0.9) if kind == "sgd"
                  else torch.optim.Adam([weight], lr=0.1))
    theirs = torch.optim.lr_scheduler.OneCycleLR(theirs_opt, max_lr=1.0, total_steps=20)
    ours.apply_to(ours_opt)
    key = "momentum" if kind == "sgd" else "betas"
    for _ in range(19):
        ours.step()
        apply_to(ours, ours_opt)
        theirs_opt.step()
        theirs.step()
        mine, torch_group = ours_opt.param_groups[0], theirs_opt.param_groups[0]
        assert mine["lr"] == pytest.approx(torch_group["lr"], rel=1e-12, abs=0)
        assert np.allclose(mine[key], torch_group[key], rtol=1e-12, atol=0)


def test_apply_to_refuses_what_cannot_be_written():
    class Plain:  # an optimizer whose groups hold neither momentum nor betas
        def __init__(self):
            self.param_groups = [{"lr": 0.1}]

    with pytest.raises(ValueError, match="cycle_momentum=False"):
        CyclicLR(0.1, base_lr=0.01, max_lr=0.1).apply_to(Plain())
    with pytest.raises(ValueError, match="2 rates but the optimizer has 1"):
        StepLR(LRS, 2).apply_to(SGD([np.zeros(2)], lr=0.1))
    scheduler = StepLR(0.1, 2)
    scheduler.groups.lrs = [math.nan]
    with pytest.raises(ValueError, match=r"scheduler lr \(group 0\) must be a finite number"):
        scheduler.apply_to(SGD([np.zeros(2)], lr=0.1))


def test_a_rate_past_the_end_round_trips_through_a_state_dict():
    scheduler = OneCycleLR(0.1, max_lr=0.1, total_steps=10, anneal_strategy="linear")
    for _ in range(10):
        scheduler.step()
    state = json.loads(json.dumps(scheduler.state_dict()))
    assert state["lrs"][0] < 0
    fresh = OneCycleLR(0.1, max_lr=0.1, total_steps=10, anneal_strategy="linear")
    fresh.load_state_dict(state)
    assert fresh.lrs == scheduler.lrs and fresh.last_epoch == 10
    state["base_lrs"] = [-0.1]  # an initial rate is never negative
    with pytest.raises(ValueError, match="base_lrs"):
        fresh.load_state_dict(state)


# ----------------------------------------------------------------------------- LambdaLR state

class Scaled:
    """A callable object: torch's LambdaLRTestObject (test/optim/test_lrscheduler.py)."""

    def __init__(self, value):
        self.value = value
        self.table = np.array([1.0, 0.5])
        self.helper = len  # not plain data: left out of the state

    def __call__(self, epoch):
        return self.value * epoch


def test_lambda_lr_saves_and_restores_a_callable_objects_attributes():
    # restated from torch's test_LambdaLR_state_dict_obj / _fn: an object's attributes are
    # saved and loaded back, a lambda gives None
    scheduler = LambdaLR([0.1, 0.2], lr_lambda=[Scaled(10), lambda e: e])
    for _ in range(3):
        scheduler.step()
    state = json.loads(json.dumps(scheduler.state_dict()))
    assert state["lr_lambdas"] == [{"value": 10, "table": [1.0, 0.5]}, None]
    target = Scaled(-1)
    target.table = np.array([0.0, 0.0], dtype=np.float32)
    copy_ = LambdaLR([0.1, 0.2], lr_lambda=[target, lambda e: e])
    copy_.load_state_dict(state)
    assert target.value == 10 and copy_.lrs == scheduler.lrs
    assert isinstance(target.table, np.ndarray) and target.table.dtype == np.float32
    assert target.table.tolist() == [1.0, 0.5] and target.helper is len


@pytest.mark.torch
def test_lambda_lr_state_holds_what_torchs_holds():
    torch = pytest.importorskip("torch", reason="compared with torch's LambdaLR")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    class Plain:  # only plain data, so both states hold the same attributes
        def __init__(self):
            self.value, self.name = 3, "x"

        def __call__(self, epoch):
            return self.value

    for kind in (torch.optim.lr_scheduler.LambdaLR, torch.optim.lr_scheduler.MultiplicativeLR):
        theirs = kind(optimizer, lr_lambda=Plain()).state_dict()["lr_lambdas"]
        ours = {"LambdaLR": LambdaLR, "MultiplicativeLR": MultiplicativeLR}[kind.__name__](
            0.1, lr_lambda=Plain()).state_dict()["lr_lambdas"]
        assert ours == theirs == [{"value": 3, "name": "x"}]


def test_a_bad_lr_lambdas_entry_is_refused_and_nothing_is_loaded():
    scheduler = MultiplicativeLR(0.1, lr_lambda=Scaled(0.5))
    scheduler.step()
    state = scheduler.state_dict()
    target = Scaled(0.9)
    fresh = MultiplicativeLR(0.1, lr_lambda=target)
    before = fresh.state_dict()
    for bad in ([{"value": 1}, None], ["value"]):
        with pytest.raises(ValueError, match="lr_lambdas"):
            fresh.load_state_dict({**state, "lr_lambdas": bad})
        assert fresh.state_dict() == before and target.value == 0.9
    with pytest.raises(ValueError, match="cannot hold any"):
        MultiplicativeLR(0.1, lr_lambda=math.sqrt).load_state_dict(state)


# ----------------------------------------------------------------------------- constructors

def test_greedy_refuses_min_lr_above_max_lr_per_group():
    with pytest.raises(ValueError, match=r"min_lr=0.5 is above max_lr=0.01.*min_lr <= max_lr"):
        GreedyLR(0.1, min_lr=0.5, max_lr=0.01)
    with pytest.raises(ValueError, match=r"\(group 1\)"):
        GreedyLR([0.1, 0.1], min_lr=[1e-3, 0.3], max_lr=[1.0, 0.2])
    GreedyLR(0.1, min_lr=0.1, max_lr=0.1)  # equal bounds: a fixed rate, allowed


def _greedy_rates(lr: float, losses: list[float]) -> list[float]:
    scheduler = GreedyLR(lr, factor=0.5, patience=0, threshold=0.0, min_lr=1e-2, max_lr=1.0)
    return [scheduler.step(loss) for loss in losses]


FLAT, FALLING = [1.0] * 12, [1.0 - 0.01 * k for k in range(12)]


def test_greedy_never_raises_a_rate_above_max_lr_and_lowers_it_into_range():
    # every loss improves: each increase (min(2 / 0.5, max_lr) < 2) is skipped
    assert _greedy_rates(2.0, FALLING) == [2.0] * 12
    # the first loss improves on best = inf (skipped increase), then decreases
    assert _greedy_rates(2.0, FLAT) == [2.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625,
                                        0.01, 0.01, 0.01, 0.01]


def test_greedy_never_lowers_a_rate_below_min_lr_and_raises_it_into_range():
    # one increase at the first loss, then every decrease (max(r * 0.5, min_lr) > r) is skipped
    assert _greedy_rates(1e-4, FLAT) == [2e-4] * 12
    rates = _greedy_rates(1e-4, FALLING)
    assert rates == [1e-4 * 2 ** k for k in range(1, 13)] and 1e-2 < rates[-1] <= 1.0


@pytest.mark.parametrize(("build", "argument"), [
    (lambda: GreedyLR(0.1, smooth="no"), "smooth"),
    (lambda: GreedyLR(0.1, threshold=-1e-3), "threshold"),
    (lambda: GreedyLR(0.1, eps="tiny"), "eps"),
    (lambda: CyclicLR(0.1, base_lr=0.01, max_lr=0.1, cycle_momentum="yes"), "cycle_momentum"),
    (lambda: OneCycleLR(0.1, max_lr=0.1, total_steps=10, three_phase=1), "three_phase"),
    (lambda: NewtonLR(0.1, p="abc"), "p"),
    (lambda: NewtonLR(0.1, max_factor=math.inf), "max_factor"),
])
def test_hyper_parameters_of_the_wrong_kind_are_refused_by_name(build, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        build()
