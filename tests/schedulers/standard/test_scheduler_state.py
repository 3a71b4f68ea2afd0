"""state_dict / load_state_dict of the standard schedulers: mid-trace round trips (through
JSON), wrong class, missing keys."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.crosscheck import adversarial_losses
from refimpl.schedulers import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    LinearWarmup,
    MultiStepLR,
    ReduceLROnPlateau,
    StepLR,
)

STEPS, SPLIT = 120, 47
LOSSES = adversarial_losses(STEPS, seed=5, threshold=0.01)

# factory(lrs) -> scheduler; each is built twice, so a fresh object is loaded into
FACTORIES = {
    "constant": lambda lr: ConstantLR(lr, factor=0.25, total_iters=60),
    "step": lambda lr: StepLR(lr, step_size=9, gamma=0.7),
    "multistep": lambda lr: MultiStepLR(lr, milestones=[10, 46, 46, 80], gamma=0.5),
    "exponential": lambda lr: ExponentialLR(lr, gamma=0.97),
    "cosine": lambda lr: CosineAnnealingLR(lr, T_max=33, eta_min=1e-4),
    "cosine-restarts": lambda lr: CosineAnnealingWarmRestarts(lr, T_0=5, T_mult=2, eta_min=1e-4),
    "plateau": lambda lr: ReduceLROnPlateau(lr, factor=0.5, patience=2, threshold=0.01,
                                            cooldown=3, min_lr=1e-4),
    "warmup-cosine": lambda lr: LinearWarmup(lr, CosineAnnealingLR(lr, T_max=50),
                                             start_factor=0.1, total_iters=30),
    "warmup-plateau": lambda lr: LinearWarmup(lr, ReduceLROnPlateau(lr, patience=1),
                                              total_iters=20),
    "warmup-alone": lambda lr: LinearWarmup(lr, total_iters=60),
}


def _advance(scheduler, start: int, stop: int) -> list[list[float]]:
    trace = []
    for step in range(start, stop):
        if scheduler.signal == "loss":
            scheduler.step(LOSSES[step])
        else:
            scheduler.step()
        trace.append(list(scheduler.lrs))
    return trace


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_round_trip_mid_trace_continues_identically(name):
    lrs = [0.1, 0.03]
    reference = FACTORIES[name](lrs)
    expected = _advance(reference, 0, STEPS)

    first = FACTORIES[name](lrs)
    _advance(first, 0, SPLIT)
    saved = json.loads(json.dumps(first.state_dict()))  # plain, JSON-serialisable
    _advance(first, SPLIT, SPLIT + 5)  # stepping on must not alter what was saved

    resumed = FACTORIES[name]([0.5, 0.5])  # base rates come from the state dict
    resumed.load_state_dict(saved)
    assert resumed.lrs == expected[SPLIT - 1]
    assert _advance(resumed, SPLIT, STEPS) == expected[SPLIT:]


def test_state_is_not_shared_with_the_saved_dict():
    scheduler = MultiStepLR(0.1, milestones=[3, 5])
    state = scheduler.state_dict()
    state["milestones"].append(1)
    assert scheduler.milestones == [3, 5]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_loading_another_class_raises(name):
    other = "step" if name != "step" else "cosine"
    saved = FACTORIES[other](0.1).state_dict()
    with pytest.raises(ValueError, match="belongs to"):
        FACTORIES[name](0.1).load_state_dict(saved)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_missing_keys_raise(name):
    scheduler = FACTORIES[name](0.1)
    saved = scheduler.state_dict()
    key = next(k for k in saved if k not in ("class",))
    for dropped in (key, "last_epoch"):
        broken = {k: v for k, v in saved.items() if k != dropped}
        with pytest.raises(ValueError, match="missing keys"):
            FACTORIES[name](0.1).load_state_dict(broken)


def test_warmup_nested_state_is_checked():
    saved = FACTORIES["warmup-cosine"](0.1).state_dict()
    saved["after"] = StepLR(0.1, 2).state_dict()
    with pytest.raises(ValueError, match="belongs to 'StepLR'"):
        FACTORIES["warmup-cosine"](0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="after"):
        FACTORIES["warmup-alone"](0.1).load_state_dict(FACTORIES["warmup-cosine"](0.1).state_dict())


def test_plateau_state_holds_the_counters():
    scheduler = FACTORIES["plateau"](0.1)
    for loss in [1.0, 1.0, 1.0, 1.0]:
        scheduler.step(loss)
    state = scheduler.state_dict()
    assert state["best"] == 1.0 and state["cooldown_counter"] == 3
    assert state["lrs"] == [0.05] and np.isfinite(state["best"])


def test_failed_warmup_load_leaves_the_scheduler_unchanged():
    scheduler = FACTORIES["warmup-cosine"](0.1)
    for _ in range(40):
        scheduler.step()
    before = scheduler.state_dict()
    saved = FACTORIES["warmup-cosine"](0.2).state_dict()
    saved["after"].pop("T_max")
    with pytest.raises(ValueError, match="missing keys"):
        scheduler.load_state_dict(saved)
    assert scheduler.state_dict() == before


# -- a state loads exactly when the constructor would accept its hyper-parameters -------------
import inspect

from refimpl import schedulers

# class name -> valid constructor arguments (besides lr); every scheduler of the package
VALID = {
    "ConstantLR": {"factor": 0.5, "total_iters": 4},
    "StepLR": {"step_size": 3, "gamma": 0.5},
    "MultiStepLR": {"milestones": [2, 5], "gamma": 0.5},
    "ExponentialLR": {"gamma": 0.9},
    "CosineAnnealingLR": {"T_max": 6, "eta_min": 1e-3},
    "CosineAnnealingWarmRestarts": {"T_0": 3, "T_mult": 2, "eta_min": 1e-3},
    "LinearWarmup": {"start_factor": 0.5, "total_iters": 3},
    "ReduceLROnPlateau": {"factor": 0.5, "patience": 1, "cooldown": 1, "min_lr": 1e-4},
    "GreedyLR": {"factor": 0.9, "patience": 1, "min_lr": 1e-4, "max_lr": 0.5, "smooth": True,
                 "window_size": 3},
    "NewtonLR": {"gamma": 0.5, "p": 0.5, "batches_per_epoch": 2},
    "HypergradientAdditiveLR": {"hyper_lr": 1e-3},
    "HypergradientMultiplicativeLR": {"hyper_lr": 1e-2, "min_lr": 1e-4},
    "DLRS": {"delta_d": 0.5, "min_lr": 1e-4, "max_lr": 0.5},
    "Adacomp": {"beta": 0.8, "tolerance": 1e-6, "min_lr": 1e-4, "max_lr": 0.5},
    "LRPOSchedule": {"pretrain_epochs": 2, "jump_epochs": 1, "finetune_lr": 0.01,
                     "predictor_steps": 5},
}
# values to try under each hyper-parameter name: refused and accepted ones alike (which is
# which depends on the class; the test asks the constructor)
CANDIDATES = {
    "factor": [5, -0.5, 0.0, 0.5, 1.0, "abc"],
    "patience": [-3, 2.5, 0, 4, True],
    "gamma": [-1.0, 0.0, 0.5, 1.5, float("nan")],
    "step_size": [0, 4, 2.5],
    "total_iters": [0, -2, 1, 7],
    "milestones": [[-1, 3], [5, 1], [], "abc"],
    "T_max": [0, 5, 1.5],
    "T_0": [0, 4],
    "T_mult": [0, 1, 3],
    "eta_min": [-1.0, 0.0, 1e-2],
    "start_factor": [0.0, 0.25, 1.0, 2.0],
    "interval": ["hour", "step", "epoch"],
    "mode": ["up", "min", "max"],
    "threshold": [-1.0, 0.0, 0.1],
    "threshold_mode": ["x", "rel", "abs"],
    "cooldown": [-1, 0, 3],
    "warmup": [-1, 0, 2],
    "min_lr": [-1.0, 0.0, 1e-5, 0.9],
    "max_lr": [-1.0, 1e-5, 0.9],
    "eps": [-1.0, 0.0, 1e-9],
    "window_size": [0, 5],
    "reset_start": [-1, 0, 10],
    "p": [0.0, -0.1, 0.25],
    "max_factor": [0.5, 10.0],
    "batches_per_epoch": [0, 5, None],
    "hyper_lr": [-1.0, 0.0, 0.01, float("inf")],
    "delta_d": [-1.0, 0.2],
    "delta_i": [-1.0, 0.2],
    "beta": [-1.0, 0.5, 0.55, 5.0],
    "tolerance": [-1.0, 0.0, 1e-3],
    "pretrain_epochs": [1, 3],
    "jump_epochs": [-1, 0, 2],
    "finetune_lr": [-1.0, 0.02],
    "alpha_max": [0.5, 2.0],
    "predictor_steps": [0, 7],
}
LRS = [0.1, 0.05]


def _build(name: str, **changes):
    kwargs = {**VALID[name], **changes}
    if name == "LinearWarmup":
        after = schedulers.CosineAnnealingLR(LRS, T_max=5)
        return schedulers.LinearWarmup(LRS, after, **kwargs)
    return getattr(schedulers, name)(LRS, **kwargs)


def _drive(scheduler, steps: int = 4) -> None:
    """A few steps with whatever signal the scheduler takes, so its counters have moved."""
    for k in range(steps):
        loss = 1.0 + 0.3 * (-1) ** k
        signal = {"none": (), "loss": (loss,), "params": ([np.full(3, float(k))],),
                  "grads": ([np.array([1.0, -k, 0.5])],),
                  "batch_losses": ([loss, loss * 0.9, loss * 0.8],)}[scheduler.signal]
        scheduler.step(*signal)


def _running(name: str):
    scheduler = _build(name)
    _drive(scheduler)
    return scheduler


def _hyper_keys(name: str, state: dict) -> dict[str, str]:
    """state key -> constructor argument, for the hyper-parameters in the state (an argument
    kept per group is stored under its plural: min_lr -> min_lrs)."""
    cls = getattr(schedulers, name)
    arguments = set(inspect.signature(cls).parameters)
    keys = {}
    for key in state:
        for argument in (key, key[:-1]):
            if argument in arguments and argument in CANDIDATES:
                keys[key] = argument
    return keys


def _constructor_accepts(name: str, argument: str, value) -> bool:
    try:
        _build(name, **{argument: value})
    except ValueError:
        return False
    return True


def _load_accepts(scheduler, state: dict) -> bool:
    before = json.dumps(scheduler.state_dict(), sort_keys=True, default=repr)
    try:
        scheduler.load_state_dict(state)
    except ValueError:
        after = json.dumps(scheduler.state_dict(), sort_keys=True, default=repr)
        assert after == before, "a refused load changed the scheduler"
        return False
    return True


@pytest.mark.parametrize("name", sorted(VALID))
def test_loader_accepts_exactly_what_the_constructor_accepts(name):
    saved = _running(name).state_dict()
    keys = _hyper_keys(name, saved)
    assert keys, f"{name}: no hyper-parameter found in its state"
    tried = refused = 0
    for key, argument in keys.items():
        for value in CANDIDATES[argument]:
            state = json.loads(json.dumps(saved))
            per_group = key != argument and isinstance(saved[key], list)
            state[key] = [value] * len(LRS) if per_group else value
            expected = _constructor_accepts(name, argument, value)
            assert _load_accepts(_running(name), state) == expected, (
                f"{name}: {key}={value!r}: constructor "
                f"{'accepts' if expected else 'refuses'} it, the loader does not agree")
            tried += 1
            refused += not expected
    assert refused and refused < tried  # both outcomes were exercised


@pytest.mark.parametrize("name", sorted(VALID))
def test_careless_values_and_unknown_keys_are_refused_naming_the_key(name):
    scheduler = _running(name)
    saved = scheduler.state_dict()
    bad = [("surprise", 1.0, "unknown keys.*surprise")]
    bad += [(key, value, key) for key, value in (("factor", 5), ("patience", -3))
            if key in saved]
    for key, value, message in bad:
        state = {**json.loads(json.dumps(saved)), key: value}
        before = scheduler.state_dict()
        with pytest.raises(ValueError, match=message):
            scheduler.load_state_dict(state)
        assert json.dumps(scheduler.state_dict(), default=repr) == json.dumps(before,
                                                                              default=repr)
    fresh = _build(name)
    fresh.load_state_dict(json.loads(json.dumps(saved)))  # the valid state still loads
    assert json.dumps(fresh.state_dict(), default=repr) == json.dumps(saved, default=repr)


def test_a_loaded_value_is_stored_as_the_constructor_stores_it():
    scheduler = _running("MultiStepLR")
    state = scheduler.state_dict()
    state["milestones"] = [5, 2, 2]
    scheduler.load_state_dict(state)
    assert scheduler.milestones == _build("MultiStepLR", milestones=[5, 2, 2]).milestones

    greedy = _running("GreedyLR")
    state = greedy.state_dict()
    state["patience"] = 3.0  # the constructor accepts a whole float and keeps an int
    greedy.load_state_dict(state)
    assert greedy.patience == 3 and isinstance(greedy.patience, int)


def test_a_valid_hyper_parameter_change_takes_effect():
    plateau = _running("ReduceLROnPlateau")
    state = plateau.state_dict()
    state["factor"], state["patience"], state["cooldown"] = 0.25, 0, 0
    state["cooldown_counter"] = 0
    plateau.load_state_dict(state)
    before = list(plateau.lrs)
    plateau.step(10.0)  # worse than the best loss (0.7), patience 0: reduce at once
    assert plateau.lrs == [max(lr * 0.25, 1e-4) for lr in before]


def _stepped_then_fresh(make, signals):
    """A scheduler stepped through ``signals``, and the state of a fresh one built the same."""
    stepped = make()
    for signal in signals:
        stepped.step(signal)
    return stepped, make().state_dict()


@pytest.mark.parametrize("name", ["adacomp", "hypergrad-add", "hypergrad-mul", "greedy"])
def test_a_fresh_state_loads_into_a_stepped_scheduler(name):
    # Slots that are empty before the first step (the last loss, the last gradient) hold
    # None in a fresh state; rolling back to that state must load it (a trainer's rollback
    # to its first checkpoint does exactly this).
    from refimpl.schedulers import (
        Adacomp,
        GreedyLR,
        HypergradientAdditiveLR,
        HypergradientMultiplicativeLR,
    )

    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(3)] for _ in range(4)]
    makers = {
        "adacomp": (lambda: Adacomp(0.1), [1.0, 0.9, 0.95, 0.7]),
        "hypergrad-add": (lambda: HypergradientAdditiveLR(0.1, hyper_lr=1e-3), grads),
        "hypergrad-mul": (lambda: HypergradientMultiplicativeLR(0.1, hyper_lr=1e-3), grads),
        "greedy": (lambda: GreedyLR(0.1, patience=0, smooth=True, window_size=3),
                   [1.0, 0.9, 0.95, 0.7]),
    }
    make, signals = makers[name]
    stepped, fresh_state = _stepped_then_fresh(make, signals)
    stepped.load_state_dict(json.loads(json.dumps(fresh_state)))
    replay, expected = make(), []
    for signal in signals:
        expected.append(replay.step(signal))
    assert [stepped.step(signal) for signal in signals] == expected


def test_none_is_still_refused_where_a_fresh_scheduler_holds_a_number():
    from refimpl.schedulers import GreedyLR

    scheduler = GreedyLR(0.1)
    state = scheduler.state_dict()
    counter = "num_bad"  # a counter, not a constructor argument
    state[counter] = None
    with pytest.raises(ValueError, match=counter):
        scheduler.load_state_dict(state)
