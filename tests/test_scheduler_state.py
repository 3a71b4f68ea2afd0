"""state_dict / load_state_dict of the standard schedulers: mid-trace round trips (through
JSON), wrong class, missing keys."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.crosscheck import adversarial_losses
from refimpl.schedulers.standard import (
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
