"""Files that are not what a command expects, and a second Ctrl-C during ``refimpl train``.

``refimpl crosscheck replay`` given a cut or a text file, and ``refimpl sweep report`` given
the sweep's TOML or an empty file, exit 2 with one line that names the file and says what to
give. A second SIGINT while the trainer stops after the first ends the process at once with
one line and exit status 130; the checkpoint and the ``--out`` record are kept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from refimpl import cli
from refimpl.sweep.report import main as report_main
from refimpl.trace import TraceRecorder, load_trace
from refimpl.training.signals import InterruptedAgain, SignalCatcher, TrainingInterrupted

RECORD_ONE = "(record one with refimpl.trace.TraceRecorder)"


def run_refimpl(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m refimpl ARGV`` in a fresh process, in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "refimpl", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=120, check=False)


def only_line(stderr: str) -> str:
    """The one line on stderr (no traceback, nothing else)."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _trace_bytes(tmp_path: Path) -> bytes:
    recorder = TraceRecorder(lrs=[0.1, 0.05])
    for step in range(20):
        recorder.step(lrs=[0.1, 0.05], loss=1.0 / (step + 1))
    return recorder.save(tmp_path / "whole.npz").read_bytes()


# ----------------------------------------------------------------------------- trace files

@pytest.mark.parametrize("kind, what", [
    ("truncated", "truncated, or a damaged zip archive"),
    ("text", "a text file, not a zip archive"),
])
def test_replay_of_a_file_that_is_not_a_trace_is_one_line_and_exit_2(tmp_path, kind, what):
    data = _trace_bytes(tmp_path)
    path = tmp_path / "greedy.npz"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_text("step,lr\n0,0.1\n1,0.1\n")
    done = run_refimpl("crosscheck", "replay", "greedy.npz", "--scheduler", "greedy",
                       cwd=tmp_path)
    assert done.returncode == 2
    line = only_line(done.stderr)
    assert line == f"refimpl crosscheck: error: greedy.npz is not a trace file: {what} " \
                   f"{RECORD_ONE}"
    assert "pickle" not in line and "BadZipFile" not in line


@pytest.mark.parametrize("content, what", [
    (b"", "an empty file"),
    (b"PK\x03", "truncated: only the first bytes of a zip archive"),
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'", "a single .npy array"),
    (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00", "not a zip archive"),
])
def test_load_trace_says_what_the_file_is_instead(tmp_path, content, what):
    path = tmp_path / "t.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_trace(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a trace file: {what}")
    assert message.endswith(RECORD_ONE) and "\n" not in message


def test_load_trace_refuses_every_cut_of_a_trace_with_a_value_error(tmp_path):
    """Cut anywhere (a copy or download stopped early): never another exception type."""
    data = _trace_bytes(tmp_path)
    path = tmp_path / "cut.npz"
    for size in range(0, len(data), 7):
        path.write_bytes(data[:size])
        with pytest.raises(ValueError, match="is not a trace file"):
            load_trace(path)
    path.write_bytes(data)
    assert load_trace(path).steps == 20


# ----------------------------------------------------------------------------- sweep report

def test_sweep_report_of_the_sweep_toml_is_refused_naming_the_results_file(tmp_path):
    (tmp_path / "sweep.toml").write_text(
        '[base]\nepochs = 1\n\n[grid]\nseed = [0, 1]\noptimizer.lr = [0.05, 0.1]\n')
    done = run_refimpl("sweep", "report", "sweep.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = only_line(done.stderr)
    assert line.startswith("refimpl sweep report: error: sweep.toml holds no result records")
    assert "runs/<name>/results.jsonl" in line
    assert done.stdout == "" and not (tmp_path / "report").exists()


def test_sweep_report_of_an_empty_results_file_is_refused(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    path.write_text("")
    assert report_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert only_line(err).startswith(f"refimpl sweep report: error: {path} holds no result "
                                     "records: it is empty")
    assert not (tmp_path / "report").exists()


def test_sweep_report_still_warns_of_a_cut_line_in_real_results(tmp_path, capsys):
    record = {"id": "r0", "status": "ok", "config": {"seed": 0},
              "summary": {"val_loss": 0.5}, "wall_time": 0.1}
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record) + "\n" + '{"id": "r1", "sta')
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable line"):
        assert report_main([str(path), "--no-plots"]) == 0
    assert "1 runs, 1 ok" in capsys.readouterr().out


# ----------------------------------------------------------------------------- Ctrl-C twice

def test_a_second_signal_while_stopping_raises_interrupted_again():
    with SignalCatcher() as catcher:
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while catcher.signum is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert catcher.signum == signal.SIGINT  # the first: a flag, no exception
        with pytest.raises(InterruptedAgain) as info:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.signum, info.value.first) == (signal.SIGINT, signal.SIGINT)


def _main_with(monkeypatch, cmd_train) -> int:
    """``refimpl train`` through :func:`refimpl.cli.main`, its run replaced by ``cmd_train``."""
    monkeypatch.setattr("refimpl.cli_train.cmd_train", cmd_train)
    try:
        return cli.main(["train", "--no-progress"])
    except KeyboardInterrupt as exc:  # not pytest's own: the command let it escape
        pytest.fail(f"refimpl train let a KeyboardInterrupt escape: {exc!r}")


def test_ctrl_c_outside_the_training_loop_is_one_line_and_130(monkeypatch, capsys):
    def loading_the_data(args):
        raise KeyboardInterrupt

    assert _main_with(monkeypatch, loading_the_data) == 130
    assert only_line(capsys.readouterr().err) == "refimpl train: interrupted"


def test_ctrl_c_while_the_stop_is_recorded_counts_as_the_second(monkeypatch, capsys):
    """A Ctrl-C after the trainer's handlers are gone, while ``refimpl train`` writes the
    record of the first stop: Python raises it inside the handling of TrainingInterrupted."""
    def writing_the_record(args):
        try:
            raise TrainingInterrupted(signal.SIGINT, None)
        except TrainingInterrupted:
            raise KeyboardInterrupt  # where the signal lands, mid-handling

    assert _main_with(monkeypatch, writing_the_record) == 130
    assert only_line(capsys.readouterr().err) == (
        "refimpl train: interrupted again: stopping now; no checkpoint (no --checkpoint-dir)")


#: The child: ``refimpl train`` as started from a terminal (Python's KeyboardInterrupt
#: handler; a background shell would hand it an ignored SIGINT), with the stop after the
#: first signal made slow -- as a big checkpoint on a slow disk is -- so that the second
#: signal lands while the trainer is stopping, every time.
SLOW_STOP_CHILD = """
import runpy, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from refimpl.training.loop import Trainer
stop = Trainer._interrupt
def slow_stop(self):
    print("first signal seen: stopping", file=sys.stderr, flush=True)
    time.sleep(60)
    stop(self)
Trainer._interrupt = slow_stop
sys.argv[0] = "refimpl"
runpy.run_module("refimpl", run_name="__main__", alter_sys=True)
"""


def test_second_ctrl_c_during_train_ends_in_one_line_with_130_and_keeps_the_checkpoint(
        tmp_path):
    from refimpl.checkpoint import load_checkpoint

    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", SLOW_STOP_CHILD, "train", "--data", "blobs", "--model",
             "dense:16,relu,dense:3", "--epochs", "100000", "--checkpoint-dir", "ck",
             "--out", "run.json", "--no-progress"],
            # no restart with the shared-cores environment: it would drop the patch above
            cwd=tmp_path, stdout=out, stderr=err, text=True,
            env=dict(os.environ, REFIMPL_KEEP_ENVIRONMENT="1"))
    try:
        checkpoint = tmp_path / "ck" / "last.npz"
        deadline = time.monotonic() + 60
        while not (checkpoint.exists() and "epoch" in stdout.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        while "first signal seen" not in stderr.read_text():
            assert process.poll() is None and time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    text = stderr.read_text()
    assert process.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.splitlines() == [
        "first signal seen: stopping",
        "refimpl train: interrupted again: stopping now; the last checkpoint is kept"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = load_checkpoint(checkpoint)  # whole, and the only file there
    assert state is not None
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["last.json", "last.npz"]
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "interrupted" and record["history"]["train_loss"]
    assert np.isfinite(record["history"]["train_loss"]).all()
