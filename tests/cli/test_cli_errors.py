"""The ``refimpl`` command on a new user's mistakes: bad input exits 2 with one line naming
the argument and the fix, a failed run exits 1 with one line after writing what it computed,
and neither prints a traceback or leaves a partial file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from refimpl import __version__, cli


def run_module(*argv: str, cwd: Path | None = None, timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess:
    """``python -m refimpl ARGV`` in a fresh process (how a user meets the command)."""
    return subprocess.run([sys.executable, "-m", "refimpl", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, check=False, **kwargs)


def one_error_line(stderr: str) -> str:
    """The single line a user mistake prints: no traceback, ``refimpl: error:`` style."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, stderr
    return errors[0]


# ----------------------------------------------------------------------------- entry points

def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"refimpl {__version__}"


def test_python_dash_m_refimpl(tmp_path):
    result = run_module("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"refimpl {__version__}"
    result = run_module("--help", cwd=tmp_path)
    assert result.returncode == 0 and "usage: refimpl" in result.stdout



# ----------------------------------------------------------------------------- bench

def _fake_bench_model(model, backends, args):
    """What bench_model returns, for one backend, without minutes of timing."""
    row = {"step_median_s": 0.01, "epoch_median_s": 2.0, "epoch_extrapolated": False,
           "epoch_batches_timed": 4, "epoch_batches": 4, "peak_rss_kb": 2048,
           "setup": {"first_step_s": 0.5}}
    return {"batch_size": 128, "images": 60_000, "backends": {name: row for name in backends}}


@pytest.fixture
def fake_bench(monkeypatch, tmp_path):
    from refimpl.bench import epochs as bench

    calls = []
    monkeypatch.setattr(bench, "bench_model",
                        lambda *a: calls.append(a) or _fake_bench_model(*a))
    monkeypatch.chdir(tmp_path)
    return bench, calls


BENCH = ["--models", "mlp", "--backends", "numpy", "--no-cold-compile"]


def test_bench_writes_no_file_by_default(fake_bench, tmp_path, capsys):
    bench, calls = fake_bench
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "benchmarks.md").write_text("mine\n")  # as in a clone
    assert bench.main(BENCH) == 0
    assert len(calls) == 1
    assert "| numpy | 10.00 | 2.00 |" in capsys.readouterr().out
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "docs", "docs/benchmarks.md"]
    assert (tmp_path / "docs" / "benchmarks.md").read_text() == "mine\n"


def test_bench_writes_the_paths_it_is_given(fake_bench, tmp_path):
    bench, _ = fake_bench
    report = tmp_path / "bench.md"
    report.write_text("# Mine\n\n<!-- bench:begin -->\nstale table\n<!-- bench:end -->\nafter\n")
    assert bench.main(BENCH + ["--out", "b.json", "--report", str(report)]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["models"]["mlp"]["images"] == 60_000
    text = report.read_text()
    assert text.startswith("# Mine\n") and text.endswith("after\n")
    assert "stale table" not in text and "| numpy | 10.00 |" in text


@pytest.mark.parametrize("option, path, message", [
    ("--out", ".", "--out . is a directory; give a file path"),
    ("--report", "missing/bench.md", ("--report missing/bench.md: directory missing does not "
                                      "exist; create it or choose another path")),
    ("--json", "missing/b.json", "--out missing/b.json: directory missing does not exist"),
])
def test_bench_refuses_an_unwritable_path_before_the_run(fake_bench, tmp_path, capsys, option,
                                                         path, message):
    bench, calls = fake_bench
    assert bench.main(BENCH + [option, path]) == 2
    assert calls == []  # refused before any timing
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("refimpl bench: error: ") and message in line
    assert list(tmp_path.iterdir()) == []


def test_bench_write_failure_after_the_run_is_one_line(fake_bench, tmp_path, capsys,
                                                       monkeypatch):
    bench, _ = fake_bench

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bench, "write_docs", full_disk)
    assert bench.main(BENCH + ["--report", "bench.md"]) == 1
    captured = capsys.readouterr()
    assert "| numpy |" in captured.out  # the results still reach the user
    assert "No space left on device" in one_error_line(captured.err)


# ----------------------------------------------------------------------------- missing data

@pytest.fixture
def no_full_data(monkeypatch, tmp_path):
    """A machine without the Fashion-MNIST files anywhere refimpl looks."""
    from refimpl import data

    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REFIMPL_DATA", str(tmp_path / "refimpl-data"))
    return tmp_path


def test_reproduce_without_data_names_the_places_and_quick(no_full_data, capsys):
    # an empty record directory: every run must train, so the data must be found
    assert cli.main(["reproduce", "tlr-robustness", "--out", str(no_full_data / "o"),
                     "--results", str(no_full_data / "r")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("refimpl reproduce: error: Fashion-MNIST not found; searched ")
    assert str(no_full_data / "system") in line and "apt-get install dataset-fashion-mnist" in line
    assert line.endswith("or use --quick for the embedded 2,000/500-image sample")
    assert "source=" not in line and "path=" not in line  # no Python API terms
    assert not (no_full_data / "o").exists()


def test_data_error_speaks_the_callers_terms(tmp_path):
    from refimpl.data import DataNotFoundError, find_fashion_mnist

    with pytest.raises(DataNotFoundError) as info:
        find_fashion_mnist(tmp_path)
    assert str(info.value).startswith(f"path={str(tmp_path)!r} does not hold")  # Python API
    assert "source='sample'" in str(info.value)
    cli_text = info.value.message("--data-path", "--data fashion-mnist-sample")
    assert cli_text.startswith(f"--data-path {str(tmp_path)!r} does not hold")
    assert "point --data-path at the directory" in cli_text
    assert cli_text.endswith("use --data fashion-mnist-sample for the embedded "
                             "2,000/500-image sample")
    assert "\n" not in cli_text


# ----------------------------------------------------------------------------- train

SMALL = ["train", "--model", "dense:16,relu,dense:2", "--data", "spirals", "--subset", "120",
         "--val", "40", "--batch-size", "16", "--lr", "0.1", "--no-progress"]
#: a learning rate that overflows float32 within a few steps (blobs: 3 classes)
DIVERGING = ["train", "--model", "dense:32,relu,dense:32,relu,dense:3", "--data", "blobs",
             "--subset", "120", "--val", "40", "--batch-size", "16", "--lr", "1e6",
             "--epochs", "3", "--no-progress"]
LRPO = ["train", "--model", "dense:16,relu,dense:3", "--data", "blobs", "--subset", "120",
        "--val", "40", "--batch-size", "16", "--no-progress", "--scheduler", "lrpo",
        "--scheduler-args", "pretrain_epochs=2,finetune_epochs=2,predictor_steps=50"]


def refused(capsys, argv: list[str], *fragments: str, code: int = 2) -> str:
    """Run the CLI in-process: the exit code, one error line holding every fragment."""
    assert cli.main(argv) == code
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("refimpl train: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def test_diverging_run_writes_its_history_then_exits_1(tmp_path, capsys):
    out = tmp_path / "h.json"
    line = refused(capsys, DIVERGING + ["--out", str(out)], "non-finite loss=nan at epoch 0",
                   "--nan-policy skip-batch or rollback", f"the history so far is in {out}",
                   code=1)
    assert "nan_policy=" not in line  # CLI terms, not the Python API's
    record = json.loads(out.read_text())
    assert record["status"] == "failed" and record["error"] in line
    assert 1 <= len(record["history"]["loss"]) < 8  # the steps before the NaN
    assert record["settings"]["lr"] == 1e6


def test_diverging_run_in_a_process_prints_one_line(tmp_path):
    result = run_module(*DIVERGING, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1  # no RuntimeWarning, no traceback
    assert result.stderr.startswith("refimpl train: error: non-finite loss")


def test_out_naming_a_directory_is_refused_before_training(tmp_path, capsys):
    refused(capsys, SMALL + ["--out", str(tmp_path)], f"--out {tmp_path} is a directory",
            "give a file path")
    assert "epoch" not in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["file", "below-file"])
def test_checkpoint_dir_naming_a_file_is_refused_before_training(tmp_path, capsys, where):
    blocker = tmp_path / "x"
    blocker.write_text("not a directory")
    target = blocker if where == "file" else blocker / "ck"
    out = tmp_path / "h.json"
    refused(capsys, SMALL + ["--checkpoint-dir", str(target), "--out", str(out)],
            f"--checkpoint-dir {target}", "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no history, no checkpoint


def test_output_piped_into_head_still_writes_out(tmp_path):
    out = tmp_path / "h.json"
    argv = [sys.executable, "-m", "refimpl", *SMALL, "--epochs", "30", "--out", str(out)]
    shell = " ".join(f"'{a}'" for a in argv) + " | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("epoch   1/30") and result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert json.loads(out.read_text())["status"] == "ok"


@pytest.mark.parametrize("argv, fragments", [
    (["--scheduler-args", "factor=0.5"], ["scheduler 'none' takes no arguments"]),
    (["--optimizer", "adam", "--momentum", "0.9"], ["'adam'", "momentum"]),
    (["--data-path", "/tmp"], ["--data-path applies to --data fashion-mnist only"]),
    (["--data", "fashion-mnist-sample", "--data-path", "/tmp"],
     ["--data-path applies to --data fashion-mnist only", "--data fashion-mnist-sample"]),
    (["--scheduler", "greedy", "--scheduler-args", "factor=abc"], ["factor='abc'"]),
    (["--resume", "/nope.npz"], ["/nope.npz does not exist"]),
    (["--resume"], ["--resume without a PATH", "--checkpoint-dir"]),
    (["--checkpoint-every", "2"], ["--checkpoint-every needs --checkpoint-dir"]),
])
def test_meaningless_or_bad_options_are_refused(tmp_path, capsys, argv, fragments):
    out = tmp_path / "h.json"
    refused(capsys, SMALL + argv + ["--out", str(out)], *fragments)
    assert not out.exists()


def test_missing_full_data_names_the_cli_options(no_full_data, capsys):
    line = refused(capsys, ["train", "--data", "fashion-mnist", "--no-progress"],
                   "Fashion-MNIST not found", "--data-path if given",
                   "use --data fashion-mnist-sample for the embedded")
    assert "source=" not in line and "path=" not in line


# ----------------------------------------------------------------------------- resume

@pytest.fixture
def checkpointed(tmp_path):
    """A finished 2-epoch cosine run with its checkpoint directory."""
    ck = tmp_path / "ck"
    argv = SMALL + ["--epochs", "2", "--scheduler", "cosine", "--checkpoint-dir", str(ck)]
    assert cli.main(argv) == 0
    return argv, ck


def _edited_checkpoint(ck: Path, tmp_path: Path, edit) -> Path:
    from refimpl.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(ck / "last.npz")
    edit(state)
    return save_checkpoint(tmp_path / "edited.npz", state)


def _set_position(state, epoch, batch):
    state["trainer"].update(epoch=epoch, batch=batch)


@pytest.mark.parametrize("edit, fragments", [
    (lambda s: s["trainer"].update(epoch="one"), ["trainer epoch='one' is not an integer"]),
    (lambda s: s.pop("optimizer"), ["has no 'optimizer' entry"]),
    (lambda s: s["optimizer"].pop("param_groups"), ["param_groups"]),
    (lambda s: _set_position(s, 99, 999),
     ["batch=999 but an epoch has 8 batches", "epoch=99 but its history holds 2 epochs"]),
    (lambda s: s["trainer"].update(global_step=3), ["global_step=3"]),
])
def test_hand_edited_checkpoint_is_refused(checkpointed, tmp_path, capsys, edit, fragments):
    argv, ck = checkpointed
    capsys.readouterr()
    edited = _edited_checkpoint(ck, tmp_path, edit)
    out = tmp_path / "h.json"
    line = refused(capsys, argv + ["--epochs", "3", "--resume", str(edited), "--out", str(out)],
                   f"checkpoint {edited}", *fragments)
    assert "note:" not in capsys.readouterr().err
    assert not out.exists() and line


def test_resume_with_changed_settings_names_each_one(checkpointed, tmp_path, capsys):
    argv, ck = checkpointed
    before = (ck / "last.npz").read_bytes()
    capsys.readouterr()
    changed = argv + ["--resume", "--lr", "0.2", "--momentum", "0.5",
                      "--scheduler-args", "eta_min=0.01"]
    line = refused(capsys, changed, "other settings", "--lr 0.1 in the checkpoint, 0.2 now",
                   "--momentum 0.0 in the checkpoint, 0.5 now",
                   "--scheduler-args (none) in the checkpoint, eta_min=0.01 now")
    assert "--seed" not in line and "--epochs" not in line
    assert (ck / "last.npz").read_bytes() == before


def test_extending_a_finished_cosine_run_says_what_the_rate_does(checkpointed, capsys):
    argv, _ = checkpointed
    capsys.readouterr()
    assert cli.main(argv + ["--epochs", "4", "--resume"]) == 0
    captured = capsys.readouterr()
    note = [line for line in captured.err.splitlines() if "note:" in line]
    assert len(note) == 1
    assert "--epochs 4 extends the run past the 2 epochs" in note[0]
    assert "T_max=2" in note[0] and "rises again" in note[0]
    assert "epoch   3/4" in captured.out
    assert cli.main(argv + ["--epochs", "4", "--resume"]) == 0  # nothing left: no note
    assert "note:" not in capsys.readouterr().err


def test_lrpo_resume_continues_without_rerunning_pretraining(tmp_path, capsys, monkeypatch):
    """Ctrl-C after the 2 pretraining epochs, then --resume: the run ends with the History
    of an uninterrupted run, and the 2 pretraining epochs are not trained again."""
    import os
    import signal

    from refimpl.training import loop

    ck, full_ck = tmp_path / "ck", tmp_path / "full"
    assert cli.main(LRPO + ["--checkpoint-dir", str(full_ck), "--out",
                            str(tmp_path / "full.json")]) == 0
    real_end_epoch = loop.Trainer._end_epoch
    epochs_run, interrupt = [], [True]

    def end_epoch(self, val, elapsed):
        epochs_run.append(self.epoch)
        real_end_epoch(self, val, elapsed)
        if len(epochs_run) == 2 and interrupt and interrupt.pop():  # after pretraining, once
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C, caught by the trainer

    monkeypatch.setattr(loop.Trainer, "_end_epoch", end_epoch)
    assert cli.main(LRPO + ["--checkpoint-dir", str(ck)]) == 128 + signal.SIGINT
    assert "checkpoint" in capsys.readouterr().err
    epochs_run.clear()
    assert cli.main(LRPO + ["--checkpoint-dir", str(ck), "--resume", "--out",
                            str(tmp_path / "resumed.json")]) == 0
    assert epochs_run == [2, 3, 4]  # the jump and the 2 fine-tuning epochs only
    resumed = json.loads((tmp_path / "resumed.json").read_text())["history"]
    full = json.loads((tmp_path / "full.json").read_text())["history"]
    assert resumed["loss"] == full["loss"] and resumed["lr"] == full["lr"]


def test_lrpo_resume_of_a_missing_checkpoint_exits_2(tmp_path, capsys):
    refused(capsys, LRPO + ["--resume", str(tmp_path / "nope.npz")], "nope.npz does not exist")


# ----------------------------------------------------------------------------- help

def test_train_help_has_text_for_every_option_and_no_none_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", text)  # never stated twice
    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items()
                 if a[0] == "train")[1]
    silent = [a.option_strings for a in train._actions if not a.help]
    assert silent == []


def test_theory_help_is_plain_text(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["theory", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text and ":class:" not in text  # no raw RST
    assert "Theorem A.1" in text and "--seed SEED" in text and "seed of the Monte-Carlo" in text


@pytest.mark.parametrize("argv, prefix", [
    (["train", "--epochs", "0", "--data", "spirals"], "refimpl train: error: "),
    (["train", "--lr", "abc"], "refimpl train: error: "),
    (["bench", "--repeats", "0"], "refimpl bench: error: "),
    (["reproduce", "tlr-robustness", "--seed", "-1"], "refimpl reproduce: error: "),
    (["sweep", "missing.toml"], "refimpl sweep: error: "),
    (["sweep", "report", "missing.jsonl"], "refimpl sweep report: error: "),
    (["crosscheck", "torch", "--scheduler", "nope"], "refimpl crosscheck: error: "),
    (["theory", "zz"], "refimpl theory: error: "),
])
def test_error_lines_share_one_prefix(tmp_path, monkeypatch, capsys, argv, prefix):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(prefix), line


def test_constant_means_torchs_constantlr_everywhere(tmp_path, capsys):
    """The demo's fixed rate is 'none', as in refimpl train; 'constant' is ConstantLR."""
    from refimpl import demo, registry

    assert demo.SCHEDULES["none"] is None and "constant" not in demo.SCHEDULES
    assert registry.make_scheduler("none", 0.1, epochs=2, steps_per_epoch=3) is None
    assert type(registry.make_scheduler("constant", 0.1)).__name__ == "ConstantLR"
    assert cli.main(["demo", "--schedulers", "constant", "--out-dir", str(tmp_path),
                     "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("refimpl demo: error: --schedulers: ['constant']")
    assert "the demo's fixed rate is 'none'" in line


def test_demo_out_dir_naming_a_file_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    assert cli.main(["demo", "--out-dir", str(blocker), "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"refimpl demo: error: --out-dir {blocker} is a file")
    assert "schedule" not in capsys.readouterr().out
    assert blocker.read_text() == "x"
