"""Sweep throughput: the same sweep of quick runs on 1 worker and on N workers.

``python -m refimpl.bench.sweep [--runs 200] [--workers 1 2] [--repeats 1]`` prints one
Markdown row per worker count (runs/s and the ratio to the first count, measured in the same
process), with the machine, the load average before and after, and the versions.

Each measurement starts a fresh embedded cluster, warms every worker up with one run (so
imports and first-call costs are not timed), then times a sweep of ``--runs`` real
trainings (tiny MLP, synthetic blobs) into a fresh results file: submit to last record
written.

Baseline, measured in the same repeat: the same runs on a plain
``concurrent.futures.ProcessPoolExecutor`` with as many processes (no Dask, no results
file). Its 1-to-N ratio is what the machine can give right now (on a shared machine,
often far less than N); the sweep's ratio is judged against it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence

from refimpl.sweep.config import parse_sweep
from refimpl.sweep.results import read_records
from refimpl.sweep.runner import open_client, run_sweep
from refimpl.sweep.task import run_training, versions

QUICK_RUN = """
[sweep]
name = "throughput"
[base]
epochs = 2
batch_size = 32
val_fraction = 0.2
data = {{ name = "blobs", n = {n}, n_classes = 3, n_features = 8, std = 2.0, seed = 0 }}
model = {{ spec = "dense:32,relu,dense:3" }}
optimizer = {{ name = "sgd", lr = 0.05, momentum = 0.9 }}
[grid]
seed = {seeds}
optimizer.lr = [0.05, 0.02]
scheduler = [{{ name = "none" }}, {{ name = "greedy", factor = 0.9, patience = 1 }}]
"""


def quick_sweep(n_runs: int, n_samples: int = 2000, offset: int = 0):
    """A sweep of ``n_runs`` quick runs (a multiple of 4); ``offset`` shifts the seeds."""
    if n_runs < 4 or n_runs % 4:
        raise ValueError(f"n_runs must be a positive multiple of 4, got {n_runs}")
    seeds = list(range(offset, offset + n_runs // 4))
    return parse_sweep(QUICK_RUN.format(n=n_samples, seeds=seeds), source="bench")


def measure(workers: int, n_runs: int, n_samples: int = 2000) -> dict:
    """Runs per second of a fresh ``n_runs`` sweep on an embedded cluster of ``workers``."""
    warm_up = quick_sweep(4, n_samples, offset=10**6)
    with open_client(workers=workers) as client, tempfile.TemporaryDirectory() as out:
        # one run per worker: imports and first calls happen here, untimed
        client.run(run_training, warm_up.runs[0].config)
        sweep = quick_sweep(n_runs, n_samples)
        start = time.perf_counter()
        outcome = run_sweep(client, sweep, out, progress=False)
        elapsed = time.perf_counter() - start
        run_times = [r["wall_time"] for r in read_records(outcome.results)]
    if outcome.ok != n_runs:
        raise RuntimeError(f"{outcome.failed} of {n_runs} benchmark runs failed")
    # mean time of one run on its worker: it grows when the workers compete for CPU
    return {"workers": workers, "runs": n_runs, "seconds": elapsed,
            "runs_per_s": n_runs / elapsed, "run_s": statistics.fmean(run_times)}


def measure_pool(workers: int, n_runs: int, n_samples: int = 2000) -> dict:
    """Runs per second of the same runs on a plain process pool (the no-Dask baseline)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    configs = [run.config for run in quick_sweep(n_runs, n_samples).runs]
    warm_up = quick_sweep(4, n_samples, offset=10**6).runs[0].config
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_set_threads) as pool:
        list(pool.map(run_training, [warm_up] * workers))
        start = time.perf_counter()
        results = list(pool.map(run_training, configs, chunksize=1))
        elapsed = time.perf_counter() - start
    if any(r["status"] != "ok" for r in results):
        raise RuntimeError("a baseline run failed")
    return {"workers": workers, "runs": n_runs, "seconds": elapsed,
            "runs_per_s": n_runs / elapsed}


def _set_threads() -> None:
    from .runner import WORKER_ENV

    os.environ.update(WORKER_ENV)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refimpl.bench.sweep",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure every worker count this many times, alternating; each "
                             "ratio compares counts measured back to back")
    parser.add_argument("--samples", type=int, default=5000,
                        help="blobs per run (5000: about 0.05-0.1 s of training per run)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = []
    for repeat in range(1, args.repeats + 1):
        baseline = pool_baseline = None
        for workers in args.workers:
            result = measure(workers, args.runs, args.samples)
            pool = measure_pool(workers, args.runs, args.samples)
            baseline = baseline or result["runs_per_s"]
            pool_baseline = pool_baseline or pool["runs_per_s"]
            result.update(repeat=repeat, ratio=result["runs_per_s"] / baseline,
                          pool_runs_per_s=pool["runs_per_s"],
                          pool_ratio=pool["runs_per_s"] / pool_baseline,
                          load=os.getloadavg()[0])
            rows.append(result)
            print(f"  repeat {repeat}, {workers} worker(s): {result['runs_per_s']:.2f} runs/s "
                  f"({result['seconds']:.1f} s, {result['run_s']:.3f} s per run); process "
                  f"pool {pool['runs_per_s']:.2f} runs/s; load {result['load']:.2f}",
                  flush=True)
    print(f"\nmachine: {platform.node()}, {os.cpu_count()} CPUs; load average (1 min) before "
          f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"versions: {versions()}")
    print("\n| repeat | workers | seconds | runs/s | ratio | mean s per run | pool runs/s "
          "| pool ratio | load |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['repeat']} | {r['workers']} | {r['seconds']:.1f} | "
              f"{r['runs_per_s']:.2f} | {r['ratio']:.2f}x | {r['run_s']:.3f} | "
              f"{r['pool_runs_per_s']:.2f} | {r['pool_ratio']:.2f}x | {r['load']:.2f} |")
    for workers in args.workers[1:]:
        ratios = [r["ratio"] for r in rows if r["workers"] == workers]
        pool = [r["pool_ratio"] for r in rows if r["workers"] == workers]
        print(f"\n{workers} vs {args.workers[0]} worker(s), {args.runs} runs: sweep ratio median "
              f"{statistics.median(ratios):.2f}x (best {max(ratios):.2f}x), process-pool "
              f"baseline median {statistics.median(pool):.2f}x, over {len(ratios)} repeat(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
