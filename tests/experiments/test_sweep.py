"""refimpl.sweep: config validation and expansion, run ids, the results file, the report, and
real sweeps on a 2-worker LocalCluster (completion, re-run, a worker killed mid-sweep,
a failing run, Ctrl-C).

The cluster tests share one module-scoped LocalCluster (start-up costs seconds) and train
real models through refimpl.train: a tiny MLP on synthetic blobs for 1-2 epochs.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from refimpl.safety import json_safe, resolve_inside
from refimpl.sweep import SweepConfigError, main, parse_sweep, run_id
from refimpl.sweep.config import canonical_json
from refimpl.sweep.report import build_table, varying_columns
from refimpl.sweep.report import main as report_main
from refimpl.sweep.results import ResultsLockedError, ResultsWriter, read_records
from refimpl.sweep.task import build_run, load_data, run_training
from tests.conftest import ROOT

BASE = """
[base]
epochs = {epochs}
batch_size = 32
val_fraction = 0.25
data = {{ name = "blobs", n = {n}, n_classes = 3, n_features = 8, std = 2.0, seed = 0 }}
model = {{ spec = "dense:16,relu,dense:3" }}
optimizer = {{ name = "sgd", lr = 0.05 }}
"""


def sweep_text(n_seeds: int = 10, n: int = 240, epochs: int = 1, extra: str = "") -> str:
    """A grid of 4 schedulers-or-rates x n_seeds seeds (40 runs for n_seeds = 10)."""
    return BASE.format(n=n, epochs=epochs) + f"""
[grid]
seed = {list(range(n_seeds))}
optimizer.lr = [0.05, 0.1]
scheduler = [{{ name = "none" }}, {{ name = "greedy", factor = 0.9, patience = 1 }}]
{extra}"""


# ----------------------------------------------------------------------------- config


def test_grid_expands_to_the_cartesian_product_with_unique_ids():
    sweep = parse_sweep(sweep_text(n_seeds=10))
    assert len(sweep.runs) == 40
    assert len({run.id for run in sweep.runs}) == 40
    combos = {(r.config["seed"], r.config["optimizer"]["lr"], r.config["scheduler"]["name"])
              for r in sweep.runs}
    assert len(combos) == 40
    # defaults are written into every config, so a record shows the whole run
    assert all(r.config["dtype"] == "float32" and r.config["nan_policy"] == "raise"
               for r in sweep.runs)


def test_example_file_is_valid():
    from refimpl.sweep import load_sweep

    sweep = load_sweep(ROOT / "examples" / "sweep.toml")
    assert len(sweep.runs) == 3 * 2 * 3


def test_the_example_in_docs_is_valid():
    text = (ROOT / "docs" / "sweeps.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    sweep = parse_sweep(example)
    assert sweep.strategy == "random" and len(sweep.runs) == 20 * 3 * 2 * 3


def test_run_id_ignores_key_order_and_sees_every_value():
    config = parse_sweep(sweep_text(n_seeds=1)).runs[0].config
    reordered = json.loads(json.dumps(dict(reversed(list(config.items())))))
    assert run_id(reordered) == run_id(config)
    changed = json.loads(canonical_json(config))
    changed["optimizer"]["lr"] = 0.050000000000000010  # one ulp away
    assert run_id(changed) != run_id(config)


def test_run_id_is_stable_across_processes_and_hash_seeds():
    config = parse_sweep(sweep_text(n_seeds=1)).runs[0].config
    code = ("import json,sys; from refimpl.sweep import run_id; "
            "print(run_id(json.loads(sys.stdin.read())))")
    ids = set()
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps(config),
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        ids.add(out.stdout.strip())
    assert ids == {run_id(config)}


def test_union_of_grids_and_duplicates_dropped():
    text = BASE.format(n=100, epochs=1) + """
[[grid]]
scheduler = [{ name = "greedy", factor = 0.9 }, { name = "greedy", factor = 0.8 }]
[[grid]]
scheduler = [{ name = "cosine", T_max = 2 }, { name = "greedy", factor = 0.9 }]
"""
    sweep = parse_sweep(text)
    assert len(sweep.runs) == 3 and sweep.duplicates == 1


def test_random_search_is_reproducible_in_bounds_and_crossed_with_the_grid():
    text = BASE.format(n=100, epochs=1) + """
[sweep]
strategy = "random"
samples = 7
seed = 3
[grid]
seed = [0, 1]
[random]
optimizer.lr = { log_uniform = [1e-3, 1e-1] }
optimizer.momentum = { uniform = [0.0, 0.9] }
batch_size = { int = [8, 16] }
scheduler = [{ name = "none" }, { name = "cosine", T_max = 1 }]
"""
    first, again = parse_sweep(text), parse_sweep(text)
    assert [r.id for r in first.runs] == [r.id for r in again.runs]
    assert len(first.runs) == 14
    for run in first.runs:
        assert 1e-3 <= run.config["optimizer"]["lr"] <= 1e-1
        assert 0.0 <= run.config["optimizer"]["momentum"] <= 0.9
        assert run.config["batch_size"] in range(8, 17)
    # each draw is repeated once per grid seed with identical hyper-parameters
    draws = {}
    for run in first.runs:
        key = canonical_json({k: v for k, v in run.config.items() if k != "seed"})
        draws.setdefault(key, set()).add(run.config["seed"])
    assert len(draws) == 7 and all(seeds == {0, 1} for seeds in draws.values())
    other = parse_sweep(text.replace("seed = 3", "seed = 4"))
    assert {r.id for r in other.runs} != {r.id for r in first.runs}


@pytest.mark.parametrize("snippet, key, words", [
    ("[bogus]\nx = 1", "bogus", "unknown"),
    ("[grid]\noptimizer.lrr = [0.1]", "optimizer.lrr", "did you mean 'lr'"),
    ("[grid]\nseed = 3", "grid.seed", "list of values"),
    ("[grid]\nseed = []", "grid.seed", "at least one value"),
    ("[grid]\nepochs = [0]", "epochs", "integer >= 1"),
    ("[grid]\nbackend = ['gpu']", "backend", "one of"),
    ("[grid]\nscheduler = [{ name = 'step' }]", "scheduler.step_size", "missing"),
    ("[grid]\nscheduler = [{ name = 'cosin' }]", "scheduler.name", "did you mean 'cosine'"),
    ("[grid]\nscheduler = [{ name = 'greedy', lr = 1.0 }]", "scheduler.lr", "optimizer.lr"),
    ("[grid]\nscheduler = [{ name = 'nope' }]", "scheduler.name", "unknown scheduler"),
    ("[grid]\ndata = [{ name = 'fashion-mnist', path = '/etc' }]", "data.path", "paths"),
    (("[sweep]\nstrategy = 'random'\nsamples = 2\n[grid]\nscheduler = [{ name = 'none' }]\n"
     "[random]\nscheduler.factor = { uniform = [0.5, 0.9] }"), "grid.scheduler", "overlaps"),
    ("[sweep]\nstrategy = 'random'\nsamples = 2\n[grid]\nseed = [1]\n[random]\nseed = [2]",
     "grid.seed", "also a [random] axis"),
    ("[sweep]\nresults = '../escape.jsonl'", "sweep.results", "climbs out"),
    ("[sweep]\nresults = '/tmp/abs.jsonl'", "sweep.results", "absolute"),
    ("[sweep]\nstrategy = 'random'", "sweep.samples", "samples"),
    ("[sweep]\nstrategy = 'random'\nsamples = 2\n[random]\noptimizer.lr = { uniform = [2, 1] }",
     "random.optimizer.lr", "swap"),
    ("[random]\nseed = [1, 2]", "random", "strategy"),
    ("[sweep]\nmax_runs = 3\n[grid]\nseed = [1, 2, 3, 4]", "sweep.max_runs", "4 runs"),
    ("[base.model]\nname = 'mlp'", "model", "not both"),
    ("[grid]\noptimizer.lr = [nan]", "grid.optimizer.lr", "finite"),
    ("[grid]\nseed = [1979-05-27]", "grid.seed", "date value is not allowed"),
])
def test_config_errors_name_the_key(snippet, key, words):
    text = BASE.format(n=100, epochs=1)
    if snippet.startswith("[base.model]"):
        text = text.replace('model = { spec = "dense:16,relu,dense:3" }',
                            'model = { spec = "dense:16,relu,dense:3", name = "mlp" }')
    else:
        text += "\n" + snippet
    with pytest.raises(SweepConfigError) as info:
        parse_sweep(text, source="cfg.toml")
    message = str(info.value)
    assert message.startswith("cfg.toml: ") and key in message and words in message, message


def test_bad_toml_and_missing_base():
    with pytest.raises(SweepConfigError, match="not valid TOML"):
        parse_sweep("[base\n")
    with pytest.raises(SweepConfigError, match="base: missing"):
        parse_sweep("[grid]\nseed = [1]")


# ----------------------------------------------------------------------------- safety


def test_resolve_inside_refuses_symlinks_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "out"
    root.mkdir()
    (root / "link").symlink_to(outside)
    assert resolve_inside(root, "a/b.jsonl", "k") == (root / "a" / "b.jsonl").resolve()
    with pytest.raises(ValueError, match="outside the output directory"):
        resolve_inside(root, "link/x.jsonl", "k")


def test_json_safe_maps_non_finite_to_null_and_refuses_objects():
    import numpy as np

    assert json_safe({"a": np.float32(1.5), "b": [math.nan, math.inf], "c": (1, 2)}) == \
        {"a": 1.5, "b": [None, None], "c": [1, 2]}
    with pytest.raises(TypeError):
        json_safe({"x": object()})


# ----------------------------------------------------------------------------- results file


def test_results_file_survives_a_cut_last_line_and_is_locked(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as writer:
        writer.append({"id": "a", "status": "ok", "x": math.nan})
        with pytest.raises(ResultsLockedError):
            ResultsWriter(path).__enter__()
    with path.open("ab") as handle:  # a crash in the middle of a write
        handle.write(b'{"id": "b", "stat')
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert [r["id"] for r in read_records(path)] == ["a"]
    with ResultsWriter(path) as writer:
        writer.append({"id": "c", "status": "ok"})
    with pytest.warns(RuntimeWarning):
        records = read_records(path)
    assert [r["id"] for r in records] == ["a", "c"] and records[0]["x"] is None
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1]) == {"id": "c", "status": "ok"}
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]  # no lock file left


# ----------------------------------------------------------------------------- one run


def test_run_training_ok_and_failed_results():
    sweep = parse_sweep(sweep_text(n_seeds=1))
    result = run_training(sweep.runs[0].config)
    assert result["status"] == "ok", result.get("traceback")
    summary = result["summary"]
    assert summary["epochs"] == 1 and summary["steps"] == math.ceil(180 / 32)
    assert 0 <= summary["val_acc"] <= 1 and result["backend"] == "numpy"
    assert result["versions"]["numpy"]
    json.dumps(result, allow_nan=False)  # strict JSON
    bad = json.loads(json.dumps(sweep.runs[0].config))
    bad["scheduler"] = {"name": "greedy", "factor": 5.0}  # valid key, invalid value
    failed = run_training(bad)
    assert failed["status"] == "failed" and "factor" in failed["error"]
    assert "Traceback" in failed["traceback"]


def test_cosine_without_T_max_runs_over_the_whole_run():
    # T_max is filled with the run length in the scheduler's interval: 3 epochs, or
    # 3 * ceil(180 / 32) = 18 steps with interval = "step"; the rate then ends the run at
    # eta_min = 0 (cos(pi) = -1 gives exactly 0 in both cases)
    for interval, steps in (("epoch", 3), ("step", 3 * math.ceil(180 / 32))):
        text = BASE.format(n=240, epochs=3) + (
            f'scheduler = {{ name = "cosine", interval = "{interval}" }}\n')
        config = parse_sweep(text).runs[0].config
        assert "T_max" not in config["scheduler"]
        train, _ = load_data(config)
        trainer = build_run(config, train[0].shape[1:], n_train=len(train[1]))
        assert trainer.scheduler.T_max == steps
        result = run_training(config)
        assert result["status"] == "ok", result.get("traceback")
        assert result["summary"]["final_lr"] == 0.0


# ----------------------------------------------------------------------------- report


def _fake_record(i, lr, scheduler, seed, val_loss):
    return {"id": f"r{i}", "status": "ok", "wall_time": 0.1,
            "config": {"seed": seed, "optimizer": {"name": "sgd", "lr": lr},
                       "scheduler": scheduler},
            "summary": {"val_loss": val_loss, "curves": {"val_loss": [1.0, val_loss]}}}


def test_report_groups_over_seeds_and_ranks(tmp_path):
    greedy, cosine = {"name": "greedy", "factor": 0.9}, {"name": "cosine", "T_max": 2}
    records = [_fake_record(0, 0.1, greedy, 0, 0.2), _fake_record(1, 0.1, greedy, 1, 0.4),
               _fake_record(2, 0.1, cosine, 0, 0.1), _fake_record(3, 0.01, cosine, 0, 0.5),
               {"id": "r4", "status": "failed", "error": "ValueError: boom\nmore",
                "config": {"seed": 0}}]
    assert varying_columns(records[:4]) == ["optimizer.lr", "scheduler"]
    header, table, metric = build_table(records)
    assert metric == "val_loss" and header[:3] == ["optimizer.lr", "scheduler", "runs"]
    assert [row[:3] for row in table] == [["0.1", "cosine(T_max=2)", 1],
                                          ["0.1", "greedy(factor=0.9)", 2],
                                          ["0.01", "cosine(T_max=2)", 1]]
    assert table[1][3] == pytest.approx(0.3, rel=1e-12)  # mean of 0.2 and 0.4
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert report_main([str(path)]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "greedy(factor=0.9)" in report and "r4: ValueError: boom" in report
    assert (tmp_path / "report" / "curves.png").stat().st_size > 0
    assert (tmp_path / "report" / "val_loss_vs_optimizer.lr.png").stat().st_size > 0


# ----------------------------------------------------------------------------- on a cluster


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed", reason="sweeps run on dask.distributed")
    from refimpl.sweep import open_client

    with open_client(workers=2) as dask_client:
        yield dask_client


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _ok_ids(path: Path) -> list[str]:
    return [r["id"] for r in read_records(path) if r["status"] == "ok"]


def test_forty_run_sweep_completes_and_rerun_runs_nothing(client, tmp_path):
    from refimpl.sweep import run_sweep

    sweep = parse_sweep(sweep_text(n_seeds=10))
    outcome = run_sweep(client, sweep, tmp_path, progress=False)
    assert (outcome.ok, outcome.failed, outcome.interrupted) == (40, 0, False)
    path = tmp_path / "results.jsonl"
    records = read_records(path)
    assert len(records) == 40 and sorted(_ok_ids(path)) == sorted(r.id for r in sweep.runs)
    assert all(r["config"] == next(x.config for x in sweep.runs if x.id == r["id"])
               for r in records)
    before = path.read_bytes()
    again = run_sweep(client, sweep, tmp_path, progress=False)
    assert (again.ok, again.failed, again.already_done) == (0, 0, 40)
    assert path.read_bytes() == before


def test_a_raising_run_is_recorded_as_failed_and_the_sweep_goes_on(client, tmp_path, capsys,
                                                                    monkeypatch):
    from refimpl.sweep import run_sweep

    monkeypatch.setattr("refimpl.sweep.runner._is_terminal", lambda stream: True)  # the bar
    text = sweep_text(n_seeds=2).replace('{ name = "greedy", factor = 0.9, patience = 1 }',
                                         '{ name = "greedy", factor = 5.0 }')
    outcome = run_sweep(client, parse_sweep(text), tmp_path, progress=True)
    assert (outcome.ok, outcome.failed) == (4, 4)
    bar = capsys.readouterr().err  # tqdm: done/total, elapsed<remaining (ETA), failures
    assert "8/8" in bar and "<" in bar and "failed=4" in bar
    failed = [r for r in read_records(tmp_path / "results.jsonl") if r["status"] == "failed"]
    assert all("factor" in r["error"] and "Traceback" in r["traceback"] for r in failed)
    # each failure's reason is on stderr too, one line per run, not only in the results file
    reasons = [line for line in bar.splitlines() if " failed: " in line]
    assert sorted(line.split()[2] for line in reasons) == sorted(r["id"] for r in failed)
    assert all("factor" in line and "Traceback" not in line for line in reasons)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]  # no lock file
    retried = run_sweep(client, parse_sweep(text), tmp_path, progress=False,
                        retry_failed=True)
    assert (retried.ok, retried.failed, retried.already_done) == (0, 4, 4)


def test_progress_off_a_terminal_is_plain_lines_every_tenth_of_the_runs(client, tmp_path,
                                                                         capsys):
    """stderr captured (a log file, not a terminal): no tqdm frames, one whole line per
    tenth of the runs (12 runs: every 2), from the start to the end."""
    import re

    from refimpl.sweep import run_sweep

    outcome = run_sweep(client, parse_sweep(sweep_text(n_seeds=3)), tmp_path, progress=True)
    assert (outcome.ok, outcome.failed) == (12, 0)
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s" not in err and "run/s" not in err, err
    lines = err.splitlines()
    pattern = re.compile(r"sweep: (\d+)/12 runs, (\d+) failed, \d+ s")
    assert all(pattern.fullmatch(line) for line in lines), lines
    done = [int(pattern.fullmatch(line)[1]) for line in lines]
    assert done == sorted(done) and set(range(0, 13, 2)) <= set(done), done
    assert lines[-1].startswith("sweep: 12/12 runs, 0 failed, ")
    assert len(lines) <= 13  # not a line per run: no more than the tenths and the start


def test_plain_progress_writes_every_interval_and_its_final_count():
    """Between tenths, a line once ``interval`` seconds have passed; at close, the final
    count once; failures as their own lines."""
    import io

    from refimpl.sweep.runner import PlainProgress

    now = [0.0]
    stream = io.StringIO()
    progress = PlainProgress("big", 100, 4, stream, interval=30.0, clock=lambda: now[0])
    for seconds in (10.0, 20.0, 31.0, 35.0, 62.0):  # runs 5..9: within the first tenth
        now[0] = seconds
        progress.update(1)
    progress.write("big: run abc failed: ValueError: boom")
    progress.set_postfix(failed=1, refresh=False)
    now[0] = 63.0
    progress.update(1)  # 10: the next tenth
    now[0] = 64.0
    progress.update(1)
    progress.close()
    progress.close()
    assert stream.getvalue().splitlines() == [
        "big: 4/100 runs, 0 failed, 0 s",
        "big: 7/100 runs, 0 failed, 31 s",
        "big: 9/100 runs, 0 failed, 62 s",
        "big: run abc failed: ValueError: boom",
        "big: 10/100 runs, 1 failed, 63 s",
        "big: 11/100 runs, 1 failed, 64 s",
    ]


def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(client, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during
    `refimpl sweep` with its embedded cluster: exit 130, whole records kept, no process
    left; re-running (here with --cluster on the test's cluster) completes the sweep.
    """
    text = sweep_text(n_seeds=10, n=3000, epochs=4)
    config = tmp_path / "sweep.toml"
    config.write_text(text)
    out = tmp_path / "out"
    # The sweep starts as from a terminal, with Python's KeyboardInterrupt handler. A shell
    # without job control starts a background command (`make test &`, a CI runner) with
    # SIGINT ignored, children inherit that across exec, and Python then installs no handler,
    # so the signal below would be lost and the sweep would run to its end.
    as_from_a_terminal = ("import runpy, signal, sys; "
                          "signal.signal(signal.SIGINT, signal.default_int_handler); "
                          "sys.argv[0] = 'refimpl.sweep'; "
                          "runpy.run_module('refimpl.sweep', run_name='__main__')")
    process = subprocess.Popen(
        [sys.executable, "-c", as_from_a_terminal, str(config), "--workers", "2", "--out",
         str(out), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    path = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while not (path.exists() and path.read_bytes().count(b"\n") >= 1):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert _group_gone(process.pid, timeout=15), "worker processes outlived the client"
    partial = path.read_text().splitlines()
    assert 1 <= len(partial) < 40
    assert all(json.loads(line)["status"] == "ok" for line in partial)  # whole lines only
    args = [str(config), "--out", str(out), "--no-progress"]
    assert main([*args, "--cluster", client.scheduler.address]) == 0
    assert len(set(_ok_ids(path))) == len(read_records(path)) == 40
    assert main(args) == 0  # nothing left: returns without starting a cluster


def test_killed_worker_run_is_retried_elsewhere_nothing_twice_nothing_lost(client, tmp_path):
    """Kill -9 a worker process while it trains; expect exactly 40 distinct ok records."""
    from refimpl.sweep import run_sweep

    # bigger data so each run lasts long enough (~0.1 s) to be killed mid-run
    sweep = parse_sweep(sweep_text(n_seeds=10, n=6000, epochs=1))
    path = tmp_path / "results.jsonl"
    killed: dict = {}
    pids = client.run(os.getpid)

    def kill_a_busy_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if path.exists() and path.read_bytes().count(b"\n") >= 4:
                busy = {w: keys for w, keys in client.processing().items() if keys}
                if busy:
                    address, keys = next(iter(busy.items()))
                    pid = pids[address]
                    os.kill(pid, signal.SIGKILL)
                    killed.update(address=address, pid=pid, keys=set(keys))
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    outcome = run_sweep(client, sweep, tmp_path, progress=False)
    killer.join()
    assert killed, "the sweep finished before a worker could be killed"
    records = read_records(path)
    assert len(records) == 40 and len({r["id"] for r in records}) == 40
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert outcome.ok == 40
    # the run the dead worker held was redone by another process
    by_key = {f"refimpl-run-{r['id']}": r for r in records}
    redone = [by_key[k] for k in killed["keys"] if by_key[k]["pid"] != killed["pid"]]
    assert redone and all(r["worker"] != killed["address"] for r in redone)


def test_a_retried_run_resumes_from_its_own_checkpoint(tmp_path):
    config = json.loads(json.dumps(parse_sweep(sweep_text(n_seeds=1, epochs=2)).runs[0].config))
    config["checkpoint"] = True
    first = run_training(config, str(tmp_path))
    assert first["status"] == "ok" and first["resumed"] is False
    assert (tmp_path / "checkpoints" / run_id(config) / "last.npz").is_file()
    again = run_training(config, str(tmp_path))  # as a retry after a dead worker would
    assert again["status"] == "ok" and again["resumed"] is True
    curves = ("train_loss", "val_loss", "val_acc", "lr_epoch")
    assert {k: again["summary"]["curves"][k] for k in curves} == \
        {k: first["summary"]["curves"][k] for k in curves}
    (tmp_path / "checkpoints" / run_id(config) / "last.npz").write_bytes(b"garbage")
    fresh = run_training(config, str(tmp_path))
    assert fresh["status"] == "ok" and fresh["resumed"] is False and "resume_error" in fresh
