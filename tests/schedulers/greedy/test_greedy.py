"""GreedyLR (docs/methods.md §4): bare rule by hand, every option against transformers, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.registry import make_scheduler
from refimpl.schedulers import GreedyLR


def test_patience_zero_is_the_bare_rule_on_a_hand_computed_trace():
    # F = 0.5 keeps every rate exact in binary; threshold 0 means "strictly below best".
    sched = GreedyLR(0.1, factor=0.5, patience=0, threshold=0.0, min_lr=0.01, max_lr=0.3)
    losses = [5.0, 4.0, 4.0, 3.0, 3.5, 2.0, 1.0, 1.0, 1.0, 1.0]
    # best: 5 4 4 3 3 2 1 1 1 1; improved? y y n y n y y n n n
    expected = [0.2, 0.3, 0.15, 0.3, 0.15, 0.3, 0.3, 0.15, 0.075, 0.0375]
    # (0.4 and 0.6 are capped at max_lr = 0.3)
    got = [sched.step(v) for v in losses]
    assert got == expected


def test_patience_counts_consecutive_steps_and_bounds_hold():
    sched = GreedyLR(1.0, factor=0.5, patience=2, threshold=0.0, min_lr=0.3, max_lr=4.0)
    # three improvements -> one increase at the 3rd; then three non-improvements -> decrease
    got = [sched.step(v) for v in [3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]]
    assert got == [1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.3]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="factor"):
        GreedyLR(0.1, factor=1.5)
    with pytest.raises(ValueError, match="mode"):
        GreedyLR(0.1, mode="up")
    with pytest.raises(ValueError, match="threshold_mode"):
        GreedyLR(0.1, threshold_mode="pct")
    with pytest.raises(ValueError, match="min_lr"):
        GreedyLR([0.1, 0.2], min_lr=[1e-3])
    with pytest.raises(ValueError, match="patience"):
        GreedyLR(0.1, patience=-1)


def test_make_builds_it_with_defaults():
    sched = make_scheduler("greedy", 0.1)
    assert isinstance(sched, GreedyLR)
    assert (sched.interval, sched.signal) == ("step", "loss")
    assert sched.factor == 0.95 and sched.patience == 10 and sched.min_lrs == [1e-3]


def _random_case(rng: np.random.Generator):
    """A random option set and a 1,000-step loss trace that exercises it."""
    n_groups = int(rng.integers(1, 4))
    lrs = [float(v) for v in 10 ** rng.uniform(-3, -0.5, n_groups)]
    per_group_bounds = rng.random() < 0.5
    min_lr = [float(v) for v in 10 ** rng.uniform(-4, -2.5, n_groups)]
    max_lr = [float(v) for v in 10 ** rng.uniform(-0.5, 0.5, n_groups)]
    options = {
        "mode": str(rng.choice(["min", "max"])),
        "factor": float(rng.uniform(0.3, 0.99)),
        "patience": int(rng.integers(0, 6)),
        "threshold": float(rng.choice([0.0, 1e-6, 1e-3, 1e-2])),
        "threshold_mode": str(rng.choice(["abs", "rel"])),
        "cooldown": int(rng.integers(0, 4)),
        "warmup": int(rng.integers(0, 4)),
        "min_lr": min_lr if per_group_bounds else min_lr[0],
        "max_lr": max_lr if per_group_bounds else max_lr[0],
        "eps": float(rng.choice([0.0, 1e-8, 1e-4])),
        "smooth": bool(rng.random() < 0.5),
        "window_size": int(rng.integers(1, 60)),
        "reset_start": int(rng.integers(1, 40)),
    }
    # trend + noise + occasional spikes, so both improvements and plateaus occur
    steps = 1000
    trend = np.cumsum(rng.normal(rng.uniform(-0.02, 0.01), 0.05, steps))
    noise = rng.normal(0, rng.uniform(0, 0.3), steps)
    spikes = (rng.random(steps) < 0.02) * rng.exponential(2.0, steps)
    losses = np.exp(0.1 * trend) + noise + spikes
    if rng.random() < 0.2:  # long plateaus push every group to min_lr, so resets occur
        losses = np.round(losses, 1)
    return lrs, options, [float(v) for v in losses]


class _CountingGreedyLR(GreedyLR):
    """Counts state clears, so the test can show that resets were exercised."""

    clears = 0

    def _clear_state(self) -> None:
        self.clears += 1
        super()._clear_state()


@pytest.mark.hf
def test_trace_equals_transformers_greedylr_on_200_random_traces():
    torch = pytest.importorskip("torch", reason="cross-check needs torch (SGD for transformers)")
    hf_opt = pytest.importorskip(
        "transformers.optimization", reason="cross-check needs transformers"
    )
    if not hasattr(hf_opt, "GreedyLR"):
        pytest.skip("this transformers has no GreedyLR")
    rng = np.random.default_rng(20261123)
    resets = cooldowns = smoothed = 0
    for case in range(200):
        lrs, options, losses = _random_case(rng)
        params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
        optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])
        theirs = hf_opt.GreedyLR(optimizer, **options)
        ours = _CountingGreedyLR(lrs, **options)
        got, expected = [], []
        for loss in losses:
            ours.step(loss)
            theirs.step(loss)
            got.append(list(ours.lrs))
            expected.append([g["lr"] for g in optimizer.param_groups])
        # both sides do the same float operations, so 1e-15 relative is the spec's bound
        np.testing.assert_allclose(
            np.array(got),
            np.array(expected),
            rtol=1e-15,
            atol=0,
            err_msg=f"case {case} options {options}",
        )
        resets += ours.clears > 1  # the first clear is the constructor's
        cooldowns += options["cooldown"] > 0
        smoothed += options["smooth"]
    assert resets > 10 and cooldowns > 50 and smoothed > 50


def test_reset_returns_to_initial_lr_after_reset_start_decreases_at_min():
    sched = GreedyLR(
        0.1, factor=0.5, patience=0, threshold=0.0, min_lr=0.025, reset_start=3, cooldown=1
    )
    lrs = [sched.step(1.0) for _ in range(12)]
    # step 1 improves on best = inf -> 0.2; each later non-cooldown step decreases:
    # 0.1, (cool), 0.05, (cool), 0.025 [at min, countdown 2], (cool), skip [1], (cool),
    # skip [0 -> reset to 0.1, then the decrease's cooldown], (cool), improves on inf -> 0.2
    assert lrs == [0.2, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025, 0.1, 0.1, 0.2]


@pytest.mark.parametrize("smooth", [False, True])
def test_state_dict_resume_equals_uninterrupted_run(smooth):
    rng = np.random.default_rng(7)
    losses = list(np.abs(np.cumsum(rng.normal(0, 0.1, 400))) + rng.random(400))
    options = {
        "factor": 0.8,
        "patience": 2,
        "cooldown": 2,
        "warmup": 1,
        "smooth": smooth,
        "window_size": 7,
        "reset_start": 3,
        "min_lr": 0.01,
    }
    full = GreedyLR([0.1, 0.05], **options)
    trace_full = [full.step(v) for v in losses]
    first = GreedyLR([0.1, 0.05], **options)
    trace = [first.step(v) for v in losses[:200]]
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    second = GreedyLR([0.3, 0.3])  # different construction: the state restores everything
    second.load_state_dict(state)
    trace += [second.step(v) for v in losses[200:]]
    assert trace == trace_full
    assert second.lrs == full.lrs
