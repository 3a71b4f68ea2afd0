"""refimpl bench: its arithmetic (GEMM work of a step, the profile's summary), its report
(a row per thread count and backend, naming the CPU), its argument checks, and one real
``--profile`` run end to end. No timing is asserted: only that the numbers are put together
as documented.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from refimpl.bench import epochs as bench
from refimpl.bench import profile as bench_profile


def _gemm(m, k, n):
    return 2.0 * m * k * n


def test_training_flops_of_the_mlp_and_the_lrpo_cnn_by_hand():
    # mlp 784-1000-10, batch 128: the first layer has no dx product, the second has all three.
    mlp = 2 * _gemm(1000, 784, 128) + 3 * _gemm(10, 1000, 128)
    assert bench.training_flops("mlp", 128) == mlp
    # lrpo_cnn, batch 64: conv 1->64 (26x26 out), conv 64->128 (11x11 after the pool),
    # conv 128->32 (9x9), dense 512->256, dense 256->10; a conv is its im2col product.
    cnn = (2 * _gemm(64, 9, 64 * 26 * 26) + 3 * _gemm(128, 576, 64 * 11 * 11)
           + 3 * _gemm(32, 1152, 64 * 9 * 9) + 3 * _gemm(256, 512, 64)
           + 3 * _gemm(10, 256, 64))
    assert bench.training_flops("lrpo_cnn", 64) == cnn


@pytest.mark.parametrize("value, counts", [("2", [2]), ("1,2", [1, 2]), (" 1, 4 ", [1, 4]),
                                           (3, [3])])
def test_thread_counts_parse(value, counts):
    assert bench._thread_counts(value) == counts


@pytest.mark.parametrize("value", ["0", "1,1", "a", "", "2,-1"])
def test_bad_thread_counts_exit_2_in_one_line(value, capsys):
    assert bench.main(["--threads", value, "--backends", "numpy"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("refimpl bench: error: --threads must be")


def _row(step, epoch, rss_kb, of_peak):
    return {"step_median_s": step, "epoch_median_s": epoch, "epoch_extrapolated": False,
            "epoch_batches_timed": 5, "epoch_batches": 5, "peak_rss_kb": rss_kb,
            "setup": {"first_step_s": 0.1}, "of_sgemm_peak": of_peak}


def test_report_has_a_row_per_thread_count_with_ratios_within_it_and_the_cpu():
    report = {
        "machine": {"date_utc": "now", "cpu": "Test CPU 9000", "logical_cpus": 2,
                    "platform": "p", "load_average": [0, 0, 0], "python": "3", "numpy": "n",
                    "numba": "b", "scipy": "s", "torch": "t"},
        "settings": {"command": "refimpl bench --threads 1,2", "repeats": 5, "steps": 10,
                     "threads": "1,2"},
        "load_before": [0, 0, 0],
        "models": {"mlp": {
            "batch_size": 128, "images": 640, "gflop_per_step": 0.4,
            "threads": {
                1: {"backends": {"numba": _row(0.004, 2.0, 2048, 0.5),
                                 "torch": _row(0.005, 4.0, 4096, 0.25)},
                    "sgemm_peak_gflops": 100.0},
                2: {"backends": {"numba": _row(0.003, 3.0, 2048, 0.4),
                                 "torch": _row(0.002, 1.0, 4096, 0.9)},
                    "sgemm_peak_gflops": 190.0},
            }}},
    }
    text = bench.format_markdown(report)
    lines = text.splitlines()
    assert "| numba | 4.00 | 2.00 | 0.50 | - | 50% | 2 | 0.50 | 0.10 | 1 | Test CPU 9000 |" \
        in lines
    assert "| numba | 3.00 | 3.00 | 3.00 | - | 40% | 2 | 0.50 | 0.10 | 2 | Test CPU 9000 |" \
        in lines
    assert "1 thread(s) 100 GFLOPS; 2 thread(s) 190 GFLOPS" in text
    assert "round by round" not in text  # rows without per-repeat epochs: no such line


def test_round_ratios_pair_each_repeat_with_torch_s_of_the_same_round():
    numba = dict(_row(0.004, 2.0, 2048, 0.5), epoch_s=[1.0, 3.0, 2.0, 1.2])
    torch = dict(_row(0.005, 2.0, 4096, 0.5), epoch_s=[2.0, 2.0, 2.0, 1.0])
    assert bench.round_ratios(numba, torch) == [0.5, 1.5, 1.0, 1.2]
    assert bench.round_ratios(numba, None) == []
    blocks = {2: {"backends": {"torch": torch, "numba": numba}}}
    assert bench._round_ratio_line("mlp", blocks) == (
        "mlp epoch / torch round by round (each repeat over torch's repeat of the same round; "
        "median, range, n): numba at 2 thread(s) 1.10 (0.50–1.50, n = 4).")


def test_profile_summary_takes_each_phase_minimum_and_the_rest_of_each_layer():
    # events: (layer, phase, detail, flops, wall_s, cpu_s)
    def step(gemm_s, im2col_s, layer_s, optimizer_s, step_s):
        return [("fwd 0 conv", "im2col", "", 0.0, im2col_s, im2col_s),
                ("fwd 0 conv", "gemm Y=W.cols", "2x3x4", 48e9, gemm_s, gemm_s),
                ("fwd 0 conv", "total", "", 0.0, layer_s, layer_s),
                ("optimizer (SGD)", "total", "", 0.0, optimizer_s, optimizer_s),
                ("train_step", "total", "", 0.0, step_s, step_s)]

    run = {"steps": [step(2.0, 1.0, 4.0, 0.5, 5.0), step(1.0, 2.0, 3.5, 0.4, 4.4)],
           "peak": {"wall_gflops": 96.0, "cpu_gflops": 48.0}}
    summary = bench_profile.summarize(run, "wall")
    rows = {(r["layer"], r["phase"]): r for r in summary["rows"]}
    assert rows[("fwd 0 conv", "im2col")]["s"] == 1.0
    gemm = rows[("fwd 0 conv", "gemm Y=W.cols")]
    assert gemm["s"] == 1.0 and gemm["gflops"] == 48.0 and gemm["of_peak"] == 0.5
    assert rows[("fwd 0 conv", "other (checks, Python, copies)")]["s"] == 0.5  # 3.5 - 1 - 2
    assert rows[("optimizer (SGD)", "")]["s"] == 0.4
    # bookkeeping: step minus the labelled parts, per step: 5 - 4.5 = 0.5, 4.4 - 3.9 = 0.5
    assert rows[("trainer bookkeeping", "train_step minus the rows above")]["s"] == \
        pytest.approx(0.5)
    assert summary["step_s"] == 4.4
    assert bench_profile.summarize(run, "cpu")["peak_gflops"] == 48.0


def test_profile_cli_prints_a_table_per_thread_count(tmp_path):
    """One real, short ``refimpl bench --profile`` run of the mlp on the numba backend."""
    pytest.importorskip("numba", reason="the profile times the numba backend")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    out = tmp_path / "profile.json"
    done = subprocess.run(
        [sys.executable, "-m", "refimpl.bench", "--profile", "--models", "mlp", "--threads",
         "1", "--profile-steps", "2", "--backends", "numba", "--clock", "cpu", "--out",
         str(out)],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "### mlp, 1 thread(s), cpu clock" in text
    gemm_rows = [line for line in text.splitlines() if "| gemm y=x.W | 128x784x1000 |" in line]
    assert len(gemm_rows) == 1
    cells = [cell.strip() for cell in gemm_rows[0].strip("|").split("|")]
    assert float(cells[5]) > 0 and float(cells[6]) > 0  # GFLOPS and % of the peak
    assert "| trainer bookkeeping |" in text and "| optimizer (SGD) |" in text
    raw = json.loads(out.read_text())
    assert set(raw["profile"]["runs"]) == {"mlp/1"}
    assert raw["profile"]["runs"]["mlp/1"]["numba"]["peak"]["cpu_gflops"] > 0


def test_parser_documents_profile_and_threads():
    text = bench.build_parser().format_help()
    assert "--profile" in text and "1,2" in text
    assert isinstance(bench.build_parser().parse_args([]), argparse.Namespace)


def test_bench_prints_a_line_per_measurement_as_it_comes_in(tmp_path):
    """A real, tiny run (the numpy oracle, 1 thread, 2 repeats of 1% of an mlp epoch): on
    stderr, a line when each worker is ready and one per repeat, naming the model, backend,
    thread count, repeat k/n and seconds; stdout keeps only the tables."""
    import re

    done = subprocess.run(
        [sys.executable, "-m", "refimpl", "bench", "--models", "mlp", "--backends", "numpy",
         "--threads", "1", "--repeats", "2", "--steps", "1", "--numpy-fraction", "0.01",
         "--no-cold-compile"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("bench mlp: ")]
    assert lines[0] == "bench mlp: numpy"
    assert re.fullmatch(r"bench mlp: numpy, 1 thread: ready, first step [\d.]+ s "
                        r"\(build [\d.]+ s\)", lines[1]), lines
    repeat = re.compile(r"bench mlp: numpy, 1 thread, repeat (\d)/2: step [\d.]+ ms, epoch "
                        r"[\d.]+ s for 5 of 469 batches \([\d.]+ s per epoch, extrapolated\)")
    assert [repeat.fullmatch(line)[1] for line in lines[2:]] == ["1", "2"], lines
    assert "repeat 1/2" not in done.stdout and "| numpy |" in done.stdout
