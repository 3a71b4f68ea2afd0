"""Trainer: what is not a model, optimizer, scheduler or callback list is refused at
construction with the fix; a schedule's rate past the run's last step (which no step uses)
is never refused, and an unusable rate is refused before the step that would use it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.data import make_spirals
from refimpl.model import build
from refimpl.optim import SGD
from refimpl.schedulers import CosineAnnealingLR, GreedyLR, OneCycleLR
from refimpl.schedulers.base import Scheduler
from refimpl.train import Trainer

TRAIN = make_spirals(100, seed=1)
BATCH = 16
BATCHES = math.ceil(100 / BATCH)  # 7


def model_and_sgd(lr=0.1):
    model = build("dense:16,tanh,dense:2", (2,), seed=0)
    return model, SGD(model.parameters(), lr=lr, momentum=0.9)


# ----------------------------------------------------------------------------- construction

def test_a_name_instead_of_an_object_is_a_type_error_with_the_fix():
    model, optimizer = model_and_sgd()
    with pytest.raises(TypeError, match=r"optimizer.*SGD\(model.parameters\(\), lr=.*"
                                        r"make_optimizer\('sgd'"):
        Trainer(model, "sgd")
    with pytest.raises(TypeError, match=r"scheduler.*'cosine'.*make_scheduler\('cosine'"):
        Trainer(model, optimizer, scheduler="cosine")
    with pytest.raises(TypeError, match=r"model must be a model object.*get_model"):
        Trainer("mlp", optimizer)


def test_objects_of_the_wrong_kind_are_type_errors():
    model, optimizer = model_and_sgd()
    with pytest.raises(TypeError, match="model must be a refimpl model.*without forward"):
        Trainer(object(), optimizer)
    with pytest.raises(TypeError, match="optimizer must be an optimizer.*without step"):
        Trainer(model, object())
    with pytest.raises(TypeError, match="scheduler must be a scheduler.*without step"):
        Trainer(model, optimizer, scheduler=0.1)


def test_an_optimizer_over_other_arrays_is_refused():
    """It would update the other model's arrays and leave this one untrained."""
    model, _ = model_and_sgd()
    _, other_optimizer = model_and_sgd()
    with pytest.raises(ValueError, match=r"model.parameters\(\).*0 of them the model's 4"):
        Trainer(model, other_optimizer)
    reordered = SGD(model.parameters()[::-1], lr=0.1)
    with pytest.raises(ValueError, match="same order"):
        Trainer(model, reordered)


def test_callbacks_must_be_a_list_of_objects_with_a_hook():
    class Hook:
        def on_epoch_end(self, trainer, logs):
            pass

    class Typo:
        def on_epoch_ends(self, trainer, logs):  # never called: refused
            pass

    model, optimizer = model_and_sgd()
    with pytest.raises(TypeError, match=r"callbacks=\[callback\]"):
        Trainer(model, optimizer, callbacks=Hook())
    with pytest.raises(TypeError, match=r"callbacks\[1\] \(Typo\) defines neither"):
        Trainer(model, optimizer, callbacks=[Hook(), Typo()])
    assert len(Trainer(model, optimizer, callbacks=(Hook(),)).callbacks) == 1


def test_progress_and_metadata_of_the_wrong_kind_are_refused():
    model, optimizer = model_and_sgd()
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        Trainer(model, optimizer, progress="yes")
    with pytest.raises(TypeError, match="metadata must be a dict"):
        Trainer(model, optimizer, metadata=["run 1"])


def test_scheduler_rates_must_match_the_optimizer_groups():
    model, optimizer = model_and_sgd()
    with pytest.raises(ValueError, match="scheduler has 3 rates but the optimizer has 1"):
        Trainer(model, optimizer, scheduler=CosineAnnealingLR([0.1, 0.1, 0.1], T_max=5))


# ----------------------------------------------------------------------------- the last step

def test_one_cycle_linear_finishes_although_its_rate_past_the_end_is_negative():
    """The trainer steps OneCycleLR after each of the T steps; the T-th step gives torch's
    overshoot below zero, which no step uses."""
    model, optimizer = model_and_sgd()
    total = 2 * BATCHES
    scheduler = OneCycleLR(0.1, max_lr=0.1, total_steps=total, anneal_strategy="linear")
    reference = OneCycleLR(0.1, max_lr=0.1, total_steps=total, anneal_strategy="linear")
    history = Trainer(model, optimizer, scheduler, batch_size=BATCH, progress=False).fit(
        TRAIN, epochs=2)
    assert history.lr == [reference.closed_form(t)[0] for t in range(total)]
    assert min(history.lr) >= 0 and scheduler.lr < 0 and scheduler.last_epoch == total
    assert optimizer.param_groups[0]["lr"] == history.lr[-1]  # the last rate used


def test_an_epoch_interval_schedule_past_its_end_finishes_too():
    model, optimizer = model_and_sgd()
    scheduler = OneCycleLR(0.1, max_lr=0.1, total_steps=3, anneal_strategy="linear",
                           pct_start=0.5, interval="epoch")
    history = Trainer(model, optimizer, scheduler, batch_size=BATCH, progress=False).fit(
        TRAIN, epochs=3)
    assert scheduler.lr < 0 and min(history.lr) >= 0 and len(history.train_loss) == 3


class DropsBelowZero(Scheduler):
    """Halves the rate, and gives -1 at its third step."""

    interval, signal = "step", "none"
    _state_keys = ("calls",)
    _signed_lrs = True

    def __init__(self, lr):
        super().__init__(lr)
        self.calls = 0

    def step(self):
        self.calls += 1
        self.lrs = [-1.0] if self.calls == 3 else [lr * 0.5 for lr in self.lrs]
        return self.lr


def test_an_unusable_rate_is_refused_before_the_step_that_would_use_it():
    model, optimizer = model_and_sgd()
    trainer = Trainer(model, optimizer, DropsBelowZero(0.1), batch_size=BATCH, progress=False)
    with pytest.raises(ValueError, match=r"scheduler lr must be a finite number >= 0, got -1\.0 "
                                         r"\(group 0, from DropsBelowZero\); the next optimizer "
                                         r"step would use it"):
        trainer.fit(TRAIN, epochs=1)
    assert trainer.history.lr == [0.1, 0.05, 0.025]  # three steps taken, the fourth refused
    assert optimizer.param_groups[0]["lr"] == 0.025  # never written into the optimizer


def test_a_finished_run_resumes_and_a_longer_one_is_refused_before_any_step(tmp_path):
    def trainer():
        model, optimizer = model_and_sgd()
        scheduler = OneCycleLR(0.1, max_lr=0.1, total_steps=2 * BATCHES,
                               anneal_strategy="linear")
        return Trainer(model, optimizer, scheduler, batch_size=BATCH, progress=False,
                       checkpoint_dir=tmp_path)

    finished = trainer()
    history = finished.fit(TRAIN, epochs=2)
    again = trainer()
    assert again.fit(TRAIN, epochs=2, resume=True).lr == history.lr  # loads, runs nothing
    assert again.scheduler.lr < 0
    longer = trainer()
    with pytest.raises(ValueError, match="next optimizer step would use it"):
        longer.fit(TRAIN, epochs=3, resume=True)
    for got, want in zip(longer.model.parameters(), finished.model.parameters()):
        np.testing.assert_array_equal(got, want)  # no step was taken at the stale rate


def test_usable_rates_still_reach_the_optimizer_after_every_step():
    model, optimizer = model_and_sgd()
    scheduler = GreedyLR(0.1, patience=0, min_lr=1e-3, max_lr=0.5)
    history = Trainer(model, optimizer, scheduler, batch_size=BATCH, progress=False).fit(
        TRAIN, epochs=1)
    assert optimizer.param_groups[0]["lr"] == scheduler.lr
    assert len(set(history.lr)) > 1
