"""GreedyLR against transformers' GreedyLR: loading its state dicts (full, partial, legacy),
and the expected values of transformers' own GreedyLR tests, restated for refimpl.

The ported cases come from huggingface/transformers ``tests/optimization/test_optimization.py``
(the GreedyLR tests); their configurations and expected numbers are kept, the code is ours.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.schedulers import GreedyLR

KWARGS = {"patience": 2, "smooth": True, "window_size": 5, "min_lr": 1e-3, "cooldown": 1, "warmup": 2,
              "reset_start": 3}


def _transformers_greedy(lrs, **kwargs):
    torch = pytest.importorskip("torch", reason="the transformers GreedyLR needs torch")
    optimization = pytest.importorskip("transformers.optimization",
                                       reason="the cross-check needs transformers")
    if not hasattr(optimization, "GreedyLR"):
        pytest.skip("this transformers has no GreedyLR")
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    optimizer = torch.optim.SGD(groups)
    return optimization.GreedyLR(optimizer, **kwargs), optimizer


def _losses(n, seed=0):
    return [float(x) for x in np.random.default_rng(seed).random(n)]


@pytest.mark.parametrize("smooth", [True, False])
def test_loads_a_transformers_state_and_continues_identically(smooth):
    kwargs = {**KWARGS, "smooth": smooth}
    theirs, optimizer = _transformers_greedy([0.1, 0.05], **kwargs)
    losses = _losses(300)
    for loss in losses[:120]:
        theirs.step(loss)
    ours = GreedyLR([0.7, 0.7], **kwargs)  # rates and counters all come from the state
    ours.load_state_dict(theirs.state_dict())
    assert ours.lrs == [g["lr"] for g in optimizer.param_groups]
    for loss in losses[120:]:
        theirs.step(loss)
        ours.step(loss)
        assert ours.lrs == [g["lr"] for g in optimizer.param_groups]  # bit for bit


def test_partial_transformers_state_keeps_what_it_lacks():
    theirs, _ = _transformers_greedy([0.1], **KWARGS)
    for loss in _losses(30):
        theirs.step(loss)
    full = theirs.state_dict()
    legacy = {k: full[k] for k in ("factor", "best", "num_bad_epochs", "_last_lr")}
    ours = GreedyLR(0.1, **KWARGS)
    ours.step(5.0)
    before = ours.state_dict()
    ours.load_state_dict(legacy)
    after = ours.state_dict()
    assert after["best"] == full["best"] and after["num_bad"] == full["num_bad_epochs"]
    assert after["lrs"] == full["_last_lr"]
    kept = {k for k in before if k not in ("best", "num_bad", "lrs", "factor")}
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}


def test_transformers_key_names_map_to_ours():
    ours = GreedyLR([0.2, 0.1], smooth=True, window_size=3, reset_start=9)
    ours.load_state_dict({"num_good_epochs": 2, "num_bad_epochs": 1, "last_epoch": 17,
                          "reset_start": 4, "reset_start_original": 9,
                          "_init_lrs": [0.3, 0.2], "_last_lr": [0.05, 0.04],
                          "verbose": False,
                          "_streaming_avg": {"window_size": 3, "values": [1.0, 2.0],
                                             "sum": 3.0}})
    assert (ours.num_good, ours.num_bad, ours.last_step) == (2, 1, 17)
    assert (ours.reset_countdown, ours.reset_start) == (4, 9)
    assert ours.base_lrs == [0.3, 0.2] and ours.lrs == [0.05, 0.04]
    assert ours.window == [1.0, 2.0] and ours.window_sum == 3.0


def test_own_state_stays_all_or_nothing():
    ours = GreedyLR(0.1)
    state = ours.state_dict()
    del state["num_good"]
    with pytest.raises(ValueError, match="missing keys"):
        ours.load_state_dict(state)


def test_bad_transformers_state_leaves_the_scheduler_unchanged():
    ours = GreedyLR(0.1, patience=1)
    for loss in [1.0, 0.5, 0.6]:
        ours.step(loss)
    before = ours.state_dict()
    with pytest.raises(ValueError):
        ours.load_state_dict({"factor": 1.5, "best": 0.1})  # factor must lie in (0, 1)
    with pytest.raises(ValueError, match="neither"):
        ours.load_state_dict({"best": 0.1, "no_such_key": 1})
    assert ours.state_dict() == before
    assert not math.isnan(ours.best)


# -- transformers' GreedyLR tests, restated ----------------------------------------------------
# Source: huggingface/transformers tests/optimization/test_greedy_lr.py. Its 30 cases: 26 are
# restated below (the optimizer's group rates read as ``.lrs``; an argument transformers
# refuses with TypeError for not being an optimizer is, here, a rate refused with ValueError).
# Not portable (4): get_scheduler("greedy") (transformers' own name table; refimpl's is
# exercised by the make_scheduler() cases), StreamingAverage's own state round trip (refimpl
# keeps the window inside GreedyLR; its round trip is the state round trip below), and the two
# BackwardCompatibility cases (TrainingArguments' default and transformers' other schedules).
def _greedy(lr=0.1, **kwargs):
    """The source's fixture: SGD at 0.1, factor 0.9, patience 3, min_lr 1e-6, max_lr 1."""
    settings = {"mode": "min", "factor": 0.9, "patience": 3, "min_lr": 1e-6, "max_lr": 1.0, "cooldown": 0,
                    "warmup": 0}
    settings.update(kwargs)
    return GreedyLR(lr, **settings)


def test_hf_initialization_valid_params():
    scheduler = _greedy()
    assert (scheduler.mode, scheduler.factor, scheduler.patience) == ("min", 0.9, 3)
    assert len(scheduler.min_lrs) == len(scheduler.max_lrs) == 1 and scheduler.lrs == [0.1]


def test_hf_initialization_max_mode():
    assert _greedy(mode="max").best == -math.inf


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_hf_initialization_invalid_factor(factor):
    with pytest.raises(ValueError, match="factor"):
        _greedy(factor=factor)


@pytest.mark.parametrize("argument", ["mode", "threshold_mode"])
def test_hf_initialization_invalid_choice(argument):
    with pytest.raises(ValueError, match=argument):
        _greedy(**{argument: "unknown"})


def test_hf_initialization_not_a_rate():
    with pytest.raises(ValueError, match="lr"):
        GreedyLR("not_an_optimizer")


def test_hf_decrease_on_plateau():
    scheduler = _greedy(patience=3)
    scheduler.step(5.0)
    for _ in range(4):
        scheduler.step(10.0)
    assert scheduler.lr == pytest.approx(0.1 * 0.9, abs=1e-7)


def test_hf_increase_on_improvement():
    scheduler, metric = _greedy(patience=3), 10.0
    for _ in range(4):
        metric *= 0.8
        scheduler.step(metric)
    assert scheduler.lr == pytest.approx(0.1 / 0.9, abs=1e-7)


def test_hf_never_below_min_lr():
    scheduler = _greedy(patience=1, min_lr=0.01, factor=0.5)
    scheduler.step(1.0)
    for _ in range(50):
        scheduler.step(10.0)
        assert scheduler.lr >= 0.01 - 1e-10


def test_hf_never_above_max_lr():
    scheduler, metric = _greedy(patience=1, max_lr=0.2, factor=0.5), 10.0
    for _ in range(50):
        metric *= 0.8
        scheduler.step(metric)
        assert scheduler.lr <= 0.2 + 1e-10


def test_hf_cooldown_prevents_further_reduction():
    scheduler = _greedy(patience=2, cooldown=3)
    scheduler.step(5.0)
    for _ in range(3):
        scheduler.step(10.0)
    reduced = scheduler.lr
    assert reduced < 0.1
    for _ in range(3):
        scheduler.step(10.0)
        assert scheduler.lr == pytest.approx(reduced, abs=1e-7)


def test_hf_warmup_prevents_further_increase():
    scheduler, metric = _greedy(patience=2, warmup=3), 10.0
    for _ in range(3):
        metric *= 0.8
        scheduler.step(metric)
    raised = scheduler.lr
    assert raised > 0.1
    for _ in range(3):
        metric *= 0.8
        scheduler.step(metric)
        assert scheduler.lr == pytest.approx(raised, abs=1e-7)


def test_hf_smoothing_uses_a_window_of_three():
    scheduler = _greedy(smooth=True, window_size=3, patience=10)
    for loss in [10.0, 8.0, 6.0, 4.0]:
        scheduler.step(loss)
    assert scheduler.window == [8.0, 6.0, 4.0]
    assert scheduler.window_sum / len(scheduler.window) == pytest.approx(6.0, abs=1e-5)


def test_hf_no_smoothing_by_default():
    scheduler = _greedy()
    scheduler.step(3.0)
    assert scheduler.smooth is False and scheduler.window == []


def test_hf_state_dict_round_trip():
    first = _greedy(smooth=True, window_size=5)
    for loss in [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 6.0, 7.0]:
        first.step(loss)
    second = _greedy(smooth=True, window_size=5)
    second.load_state_dict(first.state_dict())
    for key in ("best", "num_bad", "num_good", "last_step", "cooldown_counter",
                "warmup_counter", "lrs"):
        assert getattr(second, key) == getattr(first, key), key
    for loss in [5.0, 4.0, 3.0]:
        assert first.step(loss) == pytest.approx(second.step(loss), abs=1e-7)


def test_hf_state_dict_has_every_counterpart_key():
    from refimpl.schedulers.greedy import _FROM_TRANSFORMERS

    scheduler = _greedy(smooth=True)
    scheduler.step(10.0)
    state = scheduler.state_dict()
    # transformers' keys (its list in the source, less "verbose": refimpl prints nothing)
    theirs = ["factor", "min_lrs", "max_lrs", "patience", "cooldown", "warmup",
              "cooldown_counter", "warmup_counter", "mode", "threshold", "threshold_mode",
              "best", "num_bad_epochs", "num_good_epochs", "eps", "last_epoch", "smooth",
              "window_size", "reset_start", "reset_start_original", "_last_lr", "_init_lrs"]
    assert all(_FROM_TRANSFORMERS[key] in state for key in theirs)
    assert "window" in state and "window_sum" in state  # transformers' "_streaming_avg"


def test_hf_partial_state_keeps_the_rest():
    scheduler = _greedy()
    scheduler.load_state_dict({"factor": 0.8, "patience": 5, "best": 5.0,
                               "num_bad_epochs": 3})
    assert (scheduler.factor, scheduler.patience, scheduler.best) == (0.8, 5, 5.0)
    assert scheduler.num_bad == 3 and scheduler.cooldown_counter == 0


def test_hf_factory_by_name():
    from refimpl.registry import make_scheduler

    scheduler = make_scheduler("greedy", 0.1, patience=5, min_lr=1e-5, factor=0.95)
    assert isinstance(scheduler, GreedyLR)
    assert (scheduler.patience, scheduler.factor) == (5, 0.95)
    smoothed = make_scheduler("greedy", 0.1, mode="max", smooth=True, window_size=10)
    assert (smoothed.mode, smoothed.smooth, smoothed.window_size) == ("max", True, 10)


def test_hf_last_lrs_one_per_group():
    scheduler = _greedy()
    scheduler.step(10.0)
    assert isinstance(scheduler.lrs, list) and len(scheduler.lrs) == 1


def test_hf_reset_at_min_lr():
    scheduler = _greedy(patience=1, min_lr=0.01, factor=0.5, reset_start=2)
    scheduler.step(1.0)
    for _ in range(100):
        scheduler.step(10.0)
    assert scheduler.lr == pytest.approx(0.1, abs=1e-7)


def test_hf_max_mode_decrease_and_increase():
    falling = _greedy(mode="max", patience=2)
    falling.step(10.0)
    for _ in range(3):
        falling.step(1.0)
    assert falling.lr < 0.1
    rising, metric = _greedy(mode="max", patience=2), 1.0
    for _ in range(3):
        metric *= 1.5
        rising.step(metric)
    assert rising.lr > 0.1


def test_hf_relative_threshold_mode():
    scheduler = _greedy(threshold_mode="rel", threshold=0.1, patience=2)
    scheduler.step(10.0)
    scheduler.step(9.5)  # needs < 10 * 0.9 = 9 to improve
    assert scheduler.num_bad == 1


def test_hf_multiple_param_groups():
    scheduler = GreedyLR([0.1, 0.01], patience=2, factor=0.9, min_lr=1e-6)
    assert len(scheduler.min_lrs) == len(scheduler.max_lrs) == 2
    scheduler.step(5.0)
    for _ in range(3):
        scheduler.step(10.0)
    assert scheduler.lrs == pytest.approx([0.1 * 0.9, 0.01 * 0.9], abs=1e-7)


def test_hf_streaming_average_basic():
    scheduler = _greedy(smooth=True, window_size=3)
    means = [scheduler.smoothed(x) for x in [1.0, 2.0, 3.0, 4.0]]
    assert means == pytest.approx([1.0, 1.5, 2.0, 3.0])
