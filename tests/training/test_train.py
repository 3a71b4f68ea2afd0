"""refimpl.train: determinism, resume, scheduler driving, NaN policies, signals, bad input."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest

from refimpl.checkpoint import CheckpointError
from refimpl.data import make_regression, make_spirals
from refimpl.model import build
from refimpl.optim import SGD
from refimpl.schedulers.base import Scheduler
from refimpl.train import History, NonFiniteLossError, Trainer, TrainingInterrupted

N_TRAIN, BATCH = 100, 16          # 7 batches per epoch, the last one of 4 examples
BATCHES = math.ceil(N_TRAIN / BATCH)
TRAIN = make_spirals(N_TRAIN, seed=1)
VAL = make_spirals(40, seed=2)


class Recorder(Scheduler):
    """A protocol-following scheduler that records what it was given and halves the rate."""

    _state_keys = ("calls",)

    def __init__(self, lr, interval="step", signal="loss"):
        super().__init__(lr)
        self.interval, self.signal = interval, signal
        self.calls = 0
        self.received = []
        self.batches_per_epoch = None

    def set_batches_per_epoch(self, n):
        self.batches_per_epoch = n

    def step(self, *args):
        self.received.append(args)
        self.calls += 1
        self.lrs = [lr * 0.5 for lr in self.lrs]
        return self.lr


def real_scheduler(name, lr):
    from refimpl.registry import make_scheduler

    kwargs = {"greedy": {"patience": 1, "min_lr": 1e-3, "max_lr": 0.5},
              "cosine": {"T_max": 3 * BATCHES, "interval": "step"},
              "plateau": {"patience": 0, "factor": 0.5},
              "newton": {}}[name]
    try:
        return make_scheduler(name, lr, **kwargs)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"scheduler {name} not available yet: {exc}")


def make_trainer(scheduler=None, seed=0, lr=0.1, **kwargs):
    model = build("dense:16,tanh,dense:2", (2,), seed=0)
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9)
    if isinstance(scheduler, str):
        scheduler = real_scheduler(scheduler, lr)
    kwargs.setdefault("batch_size", BATCH)
    kwargs.setdefault("progress", False)
    return Trainer(model, optimizer, scheduler, seed=seed, **kwargs)


def params_bytes(trainer):
    return [p.tobytes() for p in trainer.model.parameters()]


# ----------------------------------------------------------------------------- History

def test_history_shapes_and_values():
    trainer = make_trainer()
    h = trainer.fit(TRAIN, VAL, epochs=3)
    assert len(h.loss) == len(h.lr) == len(h.step_time) == 3 * BATCHES
    assert all(t > 0 for t in h.step_time)
    assert len(h.train_loss) == len(h.val_acc) == len(h.epoch_time) == 3
    assert h.lr == [0.1] * (3 * BATCHES)
    # train_loss is the example-weighted mean of the epoch's batch losses
    sizes = [BATCH] * (BATCHES - 1) + [N_TRAIN - BATCH * (BATCHES - 1)]
    expected = sum(l * n for l, n in zip(h.loss[:BATCHES], sizes)) / N_TRAIN
    assert h.train_loss[0] == pytest.approx(expected, rel=1e-12)
    assert trainer.evaluate(*VAL) == (h.val_loss[-1], h.val_acc[-1])
    assert h.val_loss[-1] < h.val_loss[0]


def test_history_json_round_trip_and_equality():
    h = make_trainer().fit(TRAIN, VAL, epochs=2)
    again = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert again == h
    again.epoch_time = [t + 1 for t in again.epoch_time]
    again.step_time = [t + 1 for t in again.step_time]
    assert again == h  # wall times are not part of equality
    again.loss[3] = np.nextafter(again.loss[3], 1.0)
    assert again != h  # one ulp is


# ----------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("scheduler", [None, "greedy", "cosine", "plateau", "newton"])
def test_same_seed_same_history(scheduler):
    a, b = make_trainer(scheduler), make_trainer(scheduler)
    ha, hb = a.fit(TRAIN, VAL, epochs=3), b.fit(TRAIN, VAL, epochs=3)
    assert ha == hb
    assert params_bytes(a) == params_bytes(b)


def test_different_seed_different_history():
    assert make_trainer(seed=0).fit(TRAIN, epochs=1) != make_trainer(seed=1).fit(TRAIN, epochs=1)


# ----------------------------------------------------------------------------- resume

class SignalAt:
    """Callback: send ``signum`` to this process at the end of global step ``step``."""

    def __init__(self, step, signum=signal.SIGTERM):
        self.step, self.signum = step, signum

    def on_batch_end(self, trainer, logs):
        if logs["step"] == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("scheduler", ["greedy", "cosine", "plateau", "newton", None])
@pytest.mark.parametrize("stop_step", [9, BATCHES - 1])  # mid-epoch, and the last batch
def test_signal_checkpoint_resume_is_bit_identical(tmp_path, scheduler, stop_step):
    reference = make_trainer(scheduler)
    expected = reference.fit(TRAIN, VAL, epochs=3)
    before = signal.getsignal(signal.SIGTERM)
    stopped = make_trainer(scheduler, checkpoint_dir=tmp_path, callbacks=[SignalAt(stop_step)])
    with pytest.raises(TrainingInterrupted) as info:
        stopped.fit(TRAIN, VAL, epochs=3)
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
    assert info.value.signum == signal.SIGTERM
    assert info.value.checkpoint == tmp_path / "last.npz"
    assert stopped.history.n_steps == stop_step + 1
    resumed = make_trainer(scheduler, checkpoint_dir=tmp_path)  # fresh objects
    history = resumed.fit(TRAIN, VAL, epochs=3, resume=info.value.checkpoint)
    assert history == expected
    assert params_bytes(resumed) == params_bytes(reference)


def test_resume_from_epoch_checkpoint_and_extend(tmp_path):
    expected = make_trainer("greedy").fit(TRAIN, VAL, epochs=3)
    make_trainer("greedy", checkpoint_dir=tmp_path).fit(TRAIN, VAL, epochs=1)
    assert (tmp_path / "last.npz").is_file() and (tmp_path / "last.json").is_file()
    history = make_trainer("greedy", checkpoint_dir=tmp_path).fit(TRAIN, VAL, epochs=3,
                                                                  resume=True)
    assert history == expected


def test_resume_from_step_checkpoint(tmp_path):
    expected = make_trainer(Recorder(0.1)).fit(TRAIN, VAL, epochs=2)
    seen = []

    class Copy:
        def on_batch_end(self, trainer, logs):
            if logs["step"] == 9:  # checkpoint_every=5 wrote step 10's state just before
                seen.append((tmp_path / "last.npz").read_bytes())

    make_trainer(Recorder(0.1), checkpoint_dir=tmp_path, checkpoint_every=5,
                 callbacks=[Copy()]).fit(TRAIN, VAL, epochs=2)
    (tmp_path / "mid.npz").write_bytes(seen[0])
    resumed = make_trainer(Recorder(0.1))
    assert resumed.fit(TRAIN, VAL, epochs=2, resume=tmp_path / "mid.npz") == expected


def test_resume_from_a_step_checkpoint_written_after_an_epochs_last_batch(tmp_path):
    # checkpoint_every = BATCHES writes after the last batch of epoch 0, before that epoch's
    # end (validation, epoch record): its position is batch == BATCHES, a valid place to
    # resume from (a kill -9 between the two writes leaves exactly this file)
    expected = make_trainer("greedy").fit(TRAIN, VAL, epochs=2)
    seen = []

    class Copy:
        def on_batch_end(self, trainer, logs):
            if logs["step"] == BATCHES - 1:
                seen.append((tmp_path / "last.npz").read_bytes())

    make_trainer("greedy", checkpoint_dir=tmp_path, checkpoint_every=BATCHES,
                 callbacks=[Copy()]).fit(TRAIN, VAL, epochs=2)
    (tmp_path / "end.npz").write_bytes(seen[0])
    resumed = make_trainer("greedy")
    assert resumed.fit(TRAIN, VAL, epochs=2, resume=tmp_path / "end.npz") == expected


def test_sigint_without_checkpoint_dir():
    trainer = make_trainer(callbacks=[SignalAt(2, signal.SIGINT)])
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit(TRAIN, epochs=2)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.checkpoint is None


def test_resume_refuses_other_run_and_bad_files(tmp_path):
    make_trainer(checkpoint_dir=tmp_path).fit(TRAIN, epochs=1)
    path = tmp_path / "last.npz"
    with pytest.raises(ValueError, match="seed"):
        make_trainer(seed=5).fit(TRAIN, epochs=2, resume=path)
    with pytest.raises(ValueError, match="training data differ"):
        make_trainer().fit(make_spirals(N_TRAIN, seed=9), epochs=2, resume=path)
    with pytest.raises(ValueError, match="scheduler"):
        make_trainer(Recorder(0.1)).fit(TRAIN, epochs=2, resume=path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        make_trainer().fit(TRAIN, epochs=2, resume=path)
    with pytest.raises(CheckpointError, match="does not exist"):
        make_trainer().fit(TRAIN, epochs=2, resume=tmp_path / "none.npz")


def test_state_dict_before_fit_and_the_data_fingerprint_only_when_a_checkpoint_needs_it(
        tmp_path, monkeypatch):
    from refimpl.training import loop, resume

    fresh = make_trainer()
    assert fresh.state_dict()["trainer"]["data"] is None  # no data seen yet: no fingerprint
    fresh.save_checkpoint(tmp_path / "before.npz")  # and it saves

    taken = []
    monkeypatch.setattr(loop, "fingerprint", lambda X, y: taken.append(len(X))
                        or resume.fingerprint(X, y))
    make_trainer().fit(TRAIN, epochs=2)  # no checkpoint: the data are not hashed
    assert taken == []
    trainer = make_trainer(checkpoint_dir=tmp_path)
    trainer.fit(TRAIN, epochs=2)  # two checkpoint writes, one fingerprint
    assert taken == [N_TRAIN]
    assert trainer.state_dict()["trainer"]["data"] == resume.fingerprint(*TRAIN)
    second = make_trainer(checkpoint_dir=tmp_path)
    second.fit((TRAIN[0][:64], TRAIN[1][:64]), epochs=1)  # a new fit, new data: taken again
    assert taken == [N_TRAIN, 64]


# ----------------------------------------------------------------------------- schedulers

def test_step_scheduler_rates_reach_the_optimizer():
    scheduler = Recorder(0.1, interval="step", signal="loss")
    trainer = make_trainer(scheduler)
    h = trainer.fit(TRAIN, epochs=1)
    assert h.lr == [0.1 * 0.5**t for t in range(BATCHES)]  # rate used at step t
    assert [args[0] for args in scheduler.received] == h.loss
    assert trainer.optimizer.param_groups[0]["lr"] == scheduler.lr
    assert scheduler.batches_per_epoch == BATCHES


@pytest.mark.parametrize("kind", ["none", "loss", "params", "grads", "batch_losses"])
def test_epoch_scheduler_signals(kind):
    scheduler = Recorder(0.1, interval="epoch", signal=kind)
    trainer = make_trainer(scheduler)
    h = trainer.fit(TRAIN, VAL, epochs=2)
    assert scheduler.calls == 2
    assert h.lr == [0.1] * BATCHES + [0.05] * BATCHES
    assert h.lr_epoch == [0.05, 0.025]
    args = scheduler.received[-1]
    if kind == "none":
        assert args == ()
    elif kind == "loss":
        assert args == (h.val_loss[-1],)  # the validation loss
    elif kind in ("params", "grads"):
        expected = trainer.model.parameters() if kind == "params" else trainer.model.gradients()
        assert all(a is b for a, b in zip(args[0], expected))
    else:
        assert args[0] == h.loss[-BATCHES:]


def test_epoch_loss_signal_without_val_uses_train_loss():
    scheduler = Recorder(0.1, interval="epoch", signal="loss")
    h = make_trainer(scheduler).fit(TRAIN, epochs=1)
    assert scheduler.received == [(h.train_loss[0],)]


def test_bad_scheduler_rate_is_refused():
    class Bad(Recorder):
        def step(self, *args):
            self.lrs = [float("nan")]
            return self.lr

    with pytest.raises(ValueError, match="scheduler lr must be a finite number"):
        make_trainer(Bad(0.1)).fit(TRAIN, epochs=1)


# ----------------------------------------------------------------------------- callbacks

def test_user_callbacks_and_stop_training():
    events = []

    class Hook:
        def on_batch_end(self, trainer, logs):
            events.append(("batch", logs["step"]))

        def on_epoch_end(self, trainer, logs):
            events.append(("epoch", logs["epoch"]))
            trainer.stop_training = logs["epoch"] == 1

    h = make_trainer(callbacks=[Hook()]).fit(TRAIN, epochs=5)
    assert h.n_epochs == 2
    assert events.count(("epoch", 0)) == 1 and len(events) == 2 * BATCHES + 2


def test_progress_bar_runs(capsys):
    make_trainer(progress=True).fit(TRAIN, epochs=1)
    assert "epoch 1/1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- NaN policies

class Poisoned:
    """Wraps a model; the training forward pass number ``at`` (0-based) returns NaN logits.

    Training batches have BATCH or N_TRAIN % BATCH rows; the 1-row shape probe and the
    40-row validation passes are not counted.
    """

    def __init__(self, model, at):
        self._model, self._at, self._count = model, set(at), 0

    def forward(self, x):
        out = self._model.forward(x)
        if len(x) in (BATCH, N_TRAIN % BATCH):
            self._count += 1
            if self._count - 1 in self._at:
                out = out * np.nan
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


def poisoned_trainer(at, **kwargs):
    trainer = make_trainer(**kwargs)
    trainer.model = Poisoned(trainer.model, at)
    return trainer


def test_nan_raise_leaves_weights_and_disk_untouched(tmp_path):
    trainer = poisoned_trainer({3}, checkpoint_dir=tmp_path / "ck", nan_policy="raise")
    snapshots = []

    class Snap:
        def on_batch_end(self, trainer, logs):
            snapshots.append(params_bytes(trainer))

    trainer.callbacks.append(Snap())
    with pytest.raises(NonFiniteLossError, match="step 3.*nan_policy"):
        trainer.fit(TRAIN, epochs=2)
    assert params_bytes(trainer) == snapshots[-1]  # the bad step changed nothing
    assert trainer.history.n_steps == 3
    assert not (tmp_path / "ck").exists()


def test_nan_skip_batch():
    trainer = poisoned_trainer({3, 8}, nan_policy="skip-batch")
    snapshots = []

    class Snap:
        def on_batch_end(self, trainer, logs):
            snapshots.append((logs["skipped"], params_bytes(trainer)))

    trainer.callbacks.append(Snap())
    h = trainer.fit(TRAIN, VAL, epochs=2)
    assert h.skipped == [3, 8]
    assert np.isnan(h.loss[3]) and np.isnan(h.loss[8]) and np.isfinite(h.train_loss).all()
    assert snapshots[3][0] and snapshots[3][1] == snapshots[2][1]  # no update on step 3
    assert snapshots[4][1] != snapshots[3][1]
    good = [l for i, l in enumerate(h.loss[:BATCHES]) if i != 3]
    sizes = [BATCH] * (BATCHES - 2) + [N_TRAIN % BATCH]
    assert h.train_loss[0] == pytest.approx(np.dot(good, sizes) / sum(sizes), rel=1e-12)
    assert poisoned_trainer({3, 8}, nan_policy="skip-batch").fit(TRAIN, VAL, epochs=2) == h


def test_nan_skip_batch_does_not_step_scheduler():
    scheduler = Recorder(0.1)
    poisoned = poisoned_trainer({2}, scheduler=scheduler, nan_policy="skip-batch")
    poisoned.fit(TRAIN, epochs=1)
    assert scheduler.calls == BATCHES - 1


def test_nan_rollback_halves_lr_from_last_good_state():
    at = BATCHES + 2  # third step of epoch 2; the last good state is the end of epoch 1
    trainer = poisoned_trainer({at}, nan_policy="rollback")
    h = trainer.fit(TRAIN, VAL, epochs=2)
    assert len(h.events) == 1 and h.events[0]["to_step"] == BATCHES
    assert h.lr == [0.1] * BATCHES + [0.05] * BATCHES
    assert h.n_steps == 2 * BATCHES and np.isfinite(h.loss).all()


def test_nan_rollback_restores_the_scheduler_through_its_state_dict():
    class Steady(Scheduler):
        """Keeps its rate; counts its steps; records every state it is given to load."""

        interval, signal, _state_keys = "step", "none", ("calls",)

        def __init__(self, lr):
            super().__init__(lr)
            self.calls, self.loaded = 0, []

        def step(self):
            self.calls += 1
            return self.lr

        def load_state_dict(self, state):
            self.loaded.append(state)
            super().load_state_dict(state)

    # forward passes BATCHES + 2 and BATCHES + 5 fail: the second is the third step after
    # the first rollback, before any new checkpoint, so the rates go to 0.1 * 0.5 ** 2
    scheduler = Steady(0.1)
    trainer = poisoned_trainer({BATCHES + 2, BATCHES + 5}, scheduler=scheduler,
                               nan_policy="rollback")
    h = trainer.fit(TRAIN, VAL, epochs=2)
    # the History is restored from the last good state too, so it keeps the latest event
    assert [e["lr_scale"] for e in h.events] == [0.25]
    assert h.lr == [0.1] * BATCHES + [0.025] * BATCHES
    assert scheduler.lrs == scheduler.base_lrs == [0.025]
    # both loads restore the end of epoch 1 (BATCHES steps) with the scaled rates
    assert [(s["calls"], s["lrs"], s["base_lrs"]) for s in scheduler.loaded] == [
        (BATCHES, [0.05], [0.05]), (BATCHES, [0.025], [0.025])]
    assert scheduler.calls == 2 * BATCHES


def _warmup_then_step(lr):
    from refimpl.schedulers import LinearWarmup, StepLR

    return LinearWarmup(lr, StepLR(lr, step_size=1, gamma=0.5), start_factor=0.25,
                        total_iters=2)


def _constant_then_exponential(lr):
    from refimpl.schedulers import ConstantLR, ExponentialLR, SequentialLR
    from refimpl.schedulers.lr_base import ParamGroups

    groups = ParamGroups(lr)
    return SequentialLR(groups, [ConstantLR(groups, factor=0.5, total_iters=2),
                                 ExponentialLR(groups, gamma=0.8)], milestones=[2])


@pytest.mark.parametrize("make", [_warmup_then_step, _constant_then_exponential])
def test_nan_rollback_halves_the_rates_of_every_child_scheduler(make):
    # Poisoned in epoch 2, the run returns to the end of epoch 1; the child that takes over
    # at the milestone (epoch 2, after the rollback) restarts from its own base rates, so
    # those must have been halved with the parent's. Halving is exact in binary floating
    # point and every rule here is a product, so the halved run is compared exactly.
    clean = make_trainer(scheduler=make(0.1)).fit(TRAIN, VAL, epochs=4)
    trainer = poisoned_trainer({BATCHES + 2}, scheduler=make(0.1), nan_policy="rollback")
    h = trainer.fit(TRAIN, VAL, epochs=4)
    assert [e["to_step"] for e in h.events] == [BATCHES]
    assert h.lr[:BATCHES] == clean.lr[:BATCHES]
    assert h.lr[BATCHES:] == [0.5 * lr for lr in clean.lr[BATCHES:]]
    assert len(set(clean.lr[2 * BATCHES:])) == 2  # the child after the milestone did act


def test_nan_rollback_gives_up():
    trainer = poisoned_trainer(set(range(100)), nan_policy="rollback", max_rollbacks=2)
    with pytest.raises(NonFiniteLossError, match="gave up after 2 rollbacks"):
        trainer.fit(TRAIN, epochs=1)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("train, message", [
    ((TRAIN[0].astype(np.float64), TRAIN[1]), "cast with"),
    ((TRAIN[0].astype(np.int64), TRAIN[1]), "float32 or float64"),
    ((TRAIN[0], TRAIN[1] + 1), r"labels must lie in 0\.\.1"),
    ((TRAIN[0], -TRAIN[1]), r"labels must lie in 0\.\.1"),
    ((TRAIN[0], TRAIN[1].astype(np.float32)), "integers"),
    ((TRAIN[0], TRAIN[1][:-1]), "one label per row"),
    ((TRAIN[0][:, :1], TRAIN[1]), "model cannot take"),
    ((np.full_like(TRAIN[0], np.nan), TRAIN[1]), "NaN"),
    ((TRAIN[0].tolist(), TRAIN[1]), "NumPy arrays"),
    (TRAIN[0], "tuple"),
])
def test_bad_data_is_refused_before_writing(tmp_path, train, message):
    trainer = make_trainer(checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ValueError, match=message):
        trainer.fit(train, epochs=1)
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_bad_optimizer_lr_is_refused(value, tmp_path):
    trainer = make_trainer(checkpoint_dir=tmp_path / "ck")
    trainer.optimizer.param_groups[0]["lr"] = value
    with pytest.raises(ValueError, match="lr"):
        trainer.fit(TRAIN, epochs=1)
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size"), ({"nan_policy": "ignore"}, "nan_policy"),
    ({"loss": "hinge"}, "loss"), ({"seed": -1}, "seed"), ({"checkpoint_every": 0}, "checkpoint"),
])
def test_bad_trainer_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(**kwargs)
    with pytest.raises(ValueError, match="epochs"):
        make_trainer().fit(TRAIN, epochs=0)


def test_mse_regression_trains():
    X, t = make_regression(128, seed=0)
    model = build("dense:16,tanh,dense:1", (1,), seed=0)
    trainer = Trainer(model, SGD(model.parameters(), lr=0.05, momentum=0.9), loss="mse",
                      batch_size=16, progress=False)
    h = trainer.fit((X, t), (X, t), epochs=8)
    assert h.val_loss[-1] < 0.5 * h.val_loss[0] and np.isnan(h.val_acc).all()
    with pytest.raises(ValueError, match="targets have per-example shape"):
        trainer.fit((X, np.zeros((128, 2), np.float32)), epochs=1)
