"""``refimpl train``'s first-run defaults: the embedded sample where Fashion-MNIST is not
installed, each optimizer's own default rate, and a warning when the loss blows up."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
import types

import pytest

from refimpl import cli, cli_train, registry
from refimpl.checkpoint import load_checkpoint

#: a model that trains in milliseconds on 28x28 images
TINY = "flatten,dense:16,relu,dense:10"
#: fast runs on a drawn data set, with the rate left to the default
BLOBS = ["train", "--model", "dense:8,relu,dense:3", "--data", "blobs", "--subset", "120",
         "--val", "40", "--batch-size", "16", "--epochs", "1", "--no-progress"]
#: a few hundred images of the embedded sample
SAMPLE = ["train", "--model", TINY, "--data", "fashion-mnist-sample", "--subset", "300",
          "--val", "100", "--batch-size", "32", "--no-progress"]


@pytest.fixture
def no_full_data(monkeypatch, tmp_path):
    """A machine without the Fashion-MNIST files anywhere refimpl looks for them."""
    from refimpl import data

    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REFIMPL_DATA", str(tmp_path / "refimpl-data"))
    (tmp_path / "refimpl-data").mkdir()  # there, but empty
    with pytest.raises(data.DataNotFoundError):
        data.find_fashion_mnist()
    return tmp_path


def stderr_lines(text: str) -> list[str]:
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.strip()]


def record_of(path) -> dict:
    return json.loads(path.read_text())


def signature_lr(optimizer: str) -> float:
    """The ``lr`` default of the optimizer class's constructor, read here on its own."""
    cls = registry.optimizer_class(optimizer)
    return inspect.signature(cls).parameters["lr"].default


# ----------------------------------------------------------------------------- --data

def test_without_data_falls_back_to_the_sample_and_says_so_once(no_full_data, capsys):
    out = no_full_data / "h.json"
    code = cli.main(["train", "--model", TINY, "--epochs", "1", "--no-progress",
                     "--out", str(out)])
    assert code == 0
    err = stderr_lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert err[0].startswith("refimpl train: note: Fashion-MNIST is not installed here ")
    assert "apt-get install dataset-fashion-mnist" in err[0]
    assert err[0].endswith("training on the embedded sample fashion-mnist-sample instead")
    record = record_of(out)
    assert record["status"] == "ok" and record["settings"]["data"] == "fashion-mnist-sample"
    # the defaults (--subset all, --val 0: the test split) fit the sample's 2,000 images
    from refimpl.data import load_sample

    n_train = len(load_sample("train")[1])
    assert len(record["history"]["loss"]) == math.ceil(n_train / 64)


def test_fallback_with_sizes_for_the_full_set_is_one_error_naming_why(no_full_data, capsys):
    out = no_full_data / "h.json"
    code = cli.main(["train", "--model", TINY, "--subset", "20000", "--val", "4000",
                     "--no-progress", "--out", str(out)])
    assert code == 2
    err = stderr_lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert err[0].startswith("refimpl train: error: Fashion-MNIST is not installed here ")
    assert "--data defaults to fashion-mnist-sample" in err[0]
    assert "--subset + --val = 24000 exceeds the 2000 training images" in err[0]
    assert err[0].endswith("(lower --subset or --val)")
    assert not out.exists()


@pytest.mark.parametrize("given, message", [
    (["--data", "fashion-mnist"], "Fashion-MNIST not found; searched "),
    (["--data-path", "missing"], "--data-path 'missing' does not hold the Fashion-MNIST files"),
])
def test_fashion_mnist_asked_for_and_missing_stays_an_error(no_full_data, capsys, given,
                                                            message):
    out = no_full_data / "h.json"
    code = cli.main(["train", "--model", TINY, "--no-progress", "--out", str(out), *given])
    assert code == 2
    err = stderr_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("refimpl train: error: "), err
    assert message in err[0] and "note:" not in err[0]
    assert not out.exists()


def test_fashion_mnist_asked_for_and_missing_in_a_fresh_process(tmp_path):
    """``--data fashion-mnist`` with a data directory that lacks the files: exit 2."""
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "refimpl", "train", "--data", "fashion-mnist",
                           "--data-path", "empty", "--out", "h.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    err = stderr_lines(done.stderr)
    assert len(err) == 1 and "does not hold the Fashion-MNIST files" in err[0]
    assert not (tmp_path / "h.json").exists()


# ----------------------------------------------------------------------------- --lr

@pytest.mark.parametrize("optimizer", registry.optimizer_names())
def test_each_optimizer_trains_at_its_own_default_rate(optimizer, tmp_path, capsys):
    out = tmp_path / "h.json"
    assert cli.main(BLOBS + ["--optimizer", optimizer, "--out", str(out)]) == 0
    expected = 0.05 if optimizer == "sgd" else signature_lr(optimizer)
    captured = capsys.readouterr()
    assert f"lr {expected:g}: {optimizer}'s default (--lr to change)" in captured.out
    assert "warning" not in captured.err
    record = record_of(out)
    assert record["settings"]["lr"] == expected
    assert set(record["history"]["lr"]) == {expected}  # what the optimizer stepped with


def test_adam_uses_torchs_rate_not_sgds():
    assert signature_lr("adam") == 0.001 == cli_train.default_lr("adam")
    assert cli_train.default_lr("sgd") == 0.05
    assert cli_train.default_lr("AdamW") == signature_lr("adamw")


def test_default_rate_reaches_the_scheduler_and_the_checkpoint(tmp_path, capsys):
    ck, out = tmp_path / "ck", tmp_path / "h.json"
    argv = BLOBS + ["--optimizer", "adam", "--scheduler", "cosine", "--checkpoint-dir", str(ck),
                    "--epochs", "2"]
    assert cli.main(argv + ["--out", str(out)]) == 0
    lrs = record_of(out)["history"]["lr"]
    assert lrs[0] == 0.001 and lrs[-1] == pytest.approx(0.0005)  # cosine from adam's rate
    state = load_checkpoint(ck / "last.npz")
    assert state["metadata"]["cli"]["lr"] == 0.001
    capsys.readouterr()
    # a resume without --lr compares the rate used, so it is accepted ...
    assert cli.main(argv + ["--resume"]) == 0
    capsys.readouterr()
    # ... and one with another rate is refused, naming both
    assert cli.main(argv + ["--resume", "--lr", "0.05"]) == 2
    err = stderr_lines(capsys.readouterr().err)
    assert len(err) == 1 and "--lr 0.001 in the checkpoint, 0.05 now" in err[0]


def test_a_given_lr_wins(tmp_path, capsys):
    out = tmp_path / "h.json"
    assert cli.main(BLOBS + ["--optimizer", "adam", "--lr", "0.02", "--out", str(out)]) == 0
    assert "default" not in capsys.readouterr().out
    record = record_of(out)
    assert record["settings"]["lr"] == 0.02 and set(record["history"]["lr"]) == {0.02}


def test_help_states_the_default_rate_per_optimizer(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0.05 for sgd" in text
    for name in registry.optimizer_names():
        if name != "sgd":
            assert f"{name} {signature_lr(name):g}" in text


# ----------------------------------------------------------------------------- loss growth

def test_a_loss_that_blows_up_warns_once_with_the_cause_and_the_fix(tmp_path, capsys):
    out = tmp_path / "h.json"
    code = cli.main(SAMPLE + ["--optimizer", "rmsprop", "--lr", "5", "--epochs", "3",
                              "--nan-policy", "skip-batch", "--out", str(out)])
    assert code == 0
    history = record_of(out)["history"]
    start = next(loss for loss in history["loss"] if math.isfinite(loss))
    grown = [loss for loss in history["train_loss"]
             if math.isfinite(loss) and loss > 100 * start]
    assert len(grown) >= 2  # more than one epoch qualifies, and still one warning
    warnings = [line for line in stderr_lines(capsys.readouterr().err) if "warning" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"refimpl train: warning: the training loss grew from "
                                  f"{start:.2g} to {grown[0]:.2g} (epoch 1): ")
    assert warnings[0].endswith("the learning rate 5 is probably too large for rmsprop "
                                f"(try --lr {signature_lr('rmsprop'):g})")


def test_a_run_that_learns_gets_no_warning(tmp_path, capsys):
    assert cli.main(SAMPLE + ["--optimizer", "adam", "--epochs", "2"]) == 0
    assert "warning" not in capsys.readouterr().err


def _epoch_end(callback, step_losses, epoch_loss, epoch=0):
    trainer = types.SimpleNamespace(history=types.SimpleNamespace(loss=step_losses))
    callback.on_epoch_end(trainer, {"epoch": epoch, "train_loss": epoch_loss})


def test_the_warning_skips_non_finite_losses_and_suggests_a_tenth_at_the_default(capsys):
    warn = cli_train.LossGrowthWarning(0.05, "sgd")
    for loss in (float("nan"), float("inf"), 229.0):  # not finite, or under 100 x 2.3
        _epoch_end(warn, [float("nan"), 2.3], loss)
    assert capsys.readouterr().err == ""
    _epoch_end(warn, [float("nan"), 2.3], 4100.0, epoch=3)  # the first finite step is 2.3
    _epoch_end(warn, [float("nan"), 2.3], 9000.0, epoch=4)
    err = stderr_lines(capsys.readouterr().err)
    assert len(err) == 1
    assert err[0] == ("refimpl train: warning: the training loss grew from 2.3 to 4.1e+03 "
                      "(epoch 4): the learning rate 0.05 is probably too large for sgd "
                      "(try --lr 0.005)")


def test_a_refused_command_prints_the_defaults_nowhere(no_full_data, capsys):
    """The lines about the defaults come once nothing can be refused: a mistake found when
    the optimizer is built still prints one line in all."""
    code = cli.main(["train", "--model", TINY, "--optimizer", "adam", "--momentum", "0.9",
                     "--no-progress"])
    assert code == 2
    captured = capsys.readouterr()
    err = stderr_lines(captured.err)
    assert len(err) == 1 and err[0].startswith("refimpl train: error: "), err
    assert "momentum" in err[0] and captured.out == ""
