"""LRPO (docs/methods.md §7): predictor, jump factor, the plan as a scheduler, and an end-to-end run."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from refimpl.experiments.lrpo import run_lrpo
from refimpl.schedulers.lrpo import LRPOSchedule, TrajectoryPredictor, jump_factor


def test_predictor_recovers_an_exponential_decay():
    # L_e = 2 exp(-0.1 e): log-loss is linear in e, so the fit is near perfect and the
    # predicted one-epoch drop is 1 - exp(-0.1) = 0.0952
    losses = 2.0 * np.exp(-0.1 * np.arange(1, 11))
    p = TrajectoryPredictor(seed=0).fit(losses)
    assert p.steps <= 2000
    assert p.confidence > 0.95
    # a tanh net extrapolating one epoch: 10% of r is the tolerance we can promise
    assert p.relative_drop() == pytest.approx(1 - math.exp(-0.1), rel=0.1)
    assert p.fit_time > 0


def test_predictor_is_seeded_and_state_dict_round_trips():
    losses = [2.3, 1.2, 0.9, 0.8, 0.7, 0.66, 0.6]
    a = TrajectoryPredictor(seed=3).fit(losses, max_steps=300)
    b = TrajectoryPredictor(seed=3).fit(losses, max_steps=300)
    np.testing.assert_array_equal(a.predict_loss([8, 9]), b.predict_loss([8, 9]))
    c = TrajectoryPredictor(seed=99)
    c.load_state_dict(json.loads(json.dumps(a.state_dict())))
    np.testing.assert_array_equal(c.predict_loss([1, 8]), a.predict_loss([1, 8]))
    with pytest.raises(ValueError, match="not fitted"):
        TrajectoryPredictor().predict_loss([1])
    with pytest.raises(ValueError, match="> 0"):
        TrajectoryPredictor().fit([1.0, 0.0])


def test_jump_factor_clips_to_one_and_alpha_max():
    assert jump_factor(r=0.1, c=0.9) == pytest.approx(1.09, rel=1e-15)  # the paper's alpha
    assert jump_factor(r=-0.2, c=1.0) == 1.0  # a predicted rise never lowers the rate
    assert jump_factor(r=0.9, c=1.0, alpha_max=1.5) == 1.5


def _epoch_losses(n_epochs: int, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(2.0 * np.exp(-0.2 * e) * (1 + 0.05 * rng.random(6))) for e in range(n_epochs)]


def test_schedule_phases_and_rates():
    sched = LRPOSchedule(0.05, pretrain_epochs=4, jump_epochs=2, finetune_lr=0.001)
    assert (sched.interval, sched.signal) == ("epoch", "batch_losses")
    lrs = [sched.step(e) for e in _epoch_losses(8)]
    alpha = sched.alpha
    assert 1.0 < alpha <= 1.5  # a decaying loss predicts a drop, so the rate jumps up
    assert alpha == jump_factor(sched.r, sched.c, 1.5)
    # the rate after epoch e's step is the rate of epoch e + 1
    assert lrs == [0.05, 0.05, 0.05, 0.05 * alpha, 0.05 * alpha, 0.001, 0.001, 0.001]
    assert [sched.phase(e) for e in range(7)] == ["pretrain"] * 4 + ["jump"] * 2 + ["finetune"]
    assert sched.losses == pytest.approx([float(np.mean(e)) for e in _epoch_losses(4)], rel=0)


def test_schedule_state_dict_resume_equals_uninterrupted_run():
    epochs = _epoch_losses(9, seed=1)
    full = LRPOSchedule(0.05, pretrain_epochs=5, jump_epochs=1, predictor_steps=500)
    trace_full = [full.step(e) for e in epochs]
    for cut in (3, 6):  # before and after the predictor fit
        first = LRPOSchedule(0.05, pretrain_epochs=5, jump_epochs=1, predictor_steps=500)
        trace = [first.step(e) for e in epochs[:cut]]
        second = LRPOSchedule(0.1, pretrain_epochs=2)
        second.load_state_dict(json.loads(json.dumps(first.state_dict())))
        trace += [second.step(e) for e in epochs[cut:]]
        assert trace == trace_full
        assert second.alpha == full.alpha


@pytest.mark.slow
def test_run_lrpo_end_to_end_on_the_embedded_sample_with_numba():
    pytest.importorskip("numba", reason="the end-to-end run uses the numba backend")
    data = pytest.importorskip("refimpl.data")
    from refimpl.model import build

    # Small so that it runs well under 60 s on a shared 2-core machine: 640 train / 200 val
    # images of the embedded sample, a one-hidden-layer MLP, E1 = 4, E3 = 1, E4 = 2 epochs.
    X, y = data.load_fashion_mnist("train", source="sample", subset=640, seed=0)
    Xv, yv = data.load_fashion_mnist("test", source="sample", subset=200, seed=0)
    model = build("flatten,dense:32,relu,dense:10", (1, 28, 28), seed=0)
    start = time.perf_counter()
    result = run_lrpo(
        model,
        (X, y),
        (Xv, yv),
        lr=0.05,
        pretrain_epochs=4,
        jump_epochs=1,
        finetune_epochs=2,
        finetune_lr=0.001,
        batch_size=64,
        seed=0,
        backend="numba",
        progress=False,
    )
    elapsed = time.perf_counter() - start
    assert elapsed < 60
    assert [p.name for p in result.phases] == ["pretrain", "predictor", "jump", "finetune"]
    assert [p.epochs for p in result.phases] == [4, 0, 1, 2]
    assert result.total_epochs == 7 and result.history.n_epochs == 7
    assert [p.steps for p in result.phases if p.name != "predictor"] == [40, 10, 20]
    assert 1.0 <= result.alpha <= 1.5 and 0.0 <= result.c <= 1.0
    assert result.alpha == jump_factor(result.r, result.c, 1.5)
    assert 0 < result.fit_time < elapsed
    # every step ran at its phase's rate
    lrs = np.array(result.history.lr)
    np.testing.assert_array_equal(lrs[:40], 0.05)
    np.testing.assert_array_equal(lrs[40:50], 0.05 * result.alpha)
    np.testing.assert_array_equal(lrs[50:], 0.001)
    assert result.history.train_loss[3] < result.history.train_loss[0]  # it learned
    assert result.pretrain_losses == pytest.approx(result.history.train_loss[:4], rel=1e-12)
    text = result.summary()
    assert "alpha=" in text and "predictor fit" in text
    json.dumps(result.to_dict())  # the whole report is JSON-serialisable
