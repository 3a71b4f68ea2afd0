"""The ``refimpl`` command on a new user's mistakes: bad input exits 2 with one line naming
the argument and the fix, a failed run exits 1 with one line after writing what it computed,
and neither prints a traceback or leaves a partial file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from refimpl import __version__, cli

ROOT = Path(__file__).resolve().parents[1]


def run_module(*argv: str, cwd: Path | None = None, timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess:
    """``python -m refimpl ARGV`` in a fresh process (how a user meets the command)."""
    return subprocess.run([sys.executable, "-m", "refimpl", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, **kwargs)


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
    from refimpl import bench

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
    ("--report", "missing/bench.md", "--report missing/bench.md: directory missing does not "
                                     "exist; create it or choose another path"),
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
    assert cli.main(["reproduce", "tlr-robustness", "--out", str(no_full_data / "o")]) == 2
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
