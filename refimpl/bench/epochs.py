"""``refimpl bench``: training-step and epoch timings of every backend against PyTorch CPU.

What is timed (issue 4). For each model -- ``mlp`` (784-1000-10, batch 128, 60,000 images)
and ``lrpo_cnn`` (docs/methods.md §7, batch 64, 20,000 images) -- and each backend -- every one of
``kernels.available()`` plus ``torch`` when it is installed -- in float32:

* a **training step**: ``Trainer.train_step`` (forward, softmax cross-entropy, backward, a
  plain SGD update and the trainer's bookkeeping) of a ``refimpl.model.get_model`` model with
  ``refimpl.optim.SGD``; for torch the same architecture built from ``torch.nn`` with
  ``torch.optim.SGD`` (zero_grad, forward, loss, backward, step); on one fixed batch;
* an **epoch**: for refimpl's backends one ``Trainer.fit`` epoch (the README's way to
  train: data checks, a seeded shuffle, each batch gathered by fancy indexing, then a
  step); for torch every batch of a seeded shuffle gathered by fancy indexing (cheaper
  than a ``DataLoader``), then a step;
* **peak RSS** of the process that ran it, and the **first-call time** (imports, model
  build and the first step: for ``numba`` this is where kernels are JIT-compiled, or
  loaded from the on-disk cache; a cold compile is timed in a fresh, empty cache dir);
* the **sgemm peak** of the machine at that thread count: the best of several ``np.dot``
  of two 2048 x 2048 float32 matrices, in every worker before and after its jobs; each row
  reports the fraction of it that its epoch reaches (the GEMM-equivalent operations of a
  training step, :func:`training_flops`, over the epoch time).

How. Each backend runs in its own worker subprocess (``python -m refimpl.bench --worker``)
per thread count, so peak RSS is separable and no library's thread pool or allocator affects
another's. The coordinator sends the workers one job at a time and **interleaves** the
repeats over thread counts and backends (1 thread: torch, numba, numpy; 2 threads: torch,
numba, numpy; 1 thread: torch, ...), so load from other processes on the machine hits every
row alike; the table reports the median of the repeats, and a line under it each backend's
epoch over torch's of the same round (median and range): on a machine whose speed changes
between rounds the medians of the two columns can come from different conditions, the
round-by-round ratio cannot. All thread pools of a worker are set
to its thread count (``--threads 1,2``; default 2): ``torch.set_num_threads``,
``numba.set_num_threads`` and the BLAS pools through ``OMP/OPENBLAS/MKL_NUM_THREADS``. The
numba and numpy workers also start with the environment of
:func:`refimpl.kernels.numba.tuning.shared_cores_environment` (Numba's OpenMP layer, idle
OpenMP and OpenBLAS threads that sleep instead of spinning; a variable the caller sets wins),
and the numba worker calls ``refimpl.kernels.numba.tune(threads, keep_large_blocks=True,
loops="measure")`` (``loops`` at 2 threads and more: the thread policy of the Numba loops
measured in this run, not read from an earlier run's cache; the settings and environment are
printed with the results); a user's program gets these by setting the same variables before
it starts and calling ``tune`` itself (docs/architecture.md). The data are synthetic
(uniform pixels in [0, 1), random labels, seeded): timings do not depend on the values.
Every row names the CPU model and thread count, so rows from different machines can sit in
one table.

``--profile`` prints, instead, where a step's time goes per layer and phase
(:mod:`refimpl.bench.profile`).

Extrapolation, always labelled in the output: with ``--quick`` each repeat times
``--quick-fraction`` of an epoch and scales up; the numpy oracle always runs only
``--numpy-fraction`` of an epoch (it is the slow reference) and is scaled the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

#: model name -> (batch size, training images), as the issue fixes them.
WORKLOADS = {"mlp": (128, 60_000), "lrpo_cnn": (64, 20_000)}
LEARNING_RATE = 0.01
PROTOCOL_PREFIX = "@@bench "
#: Side of the square float32 matrices whose ``np.dot`` measures the sgemm peak.
PEAK_SIZE = 2048
DOCS_BEGIN, DOCS_END = "<!-- bench:begin -->", "<!-- bench:end -->"


# ----------------------------------------------------------------------------- worker side

def _synthetic_data(model: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST-shaped float32 images in [0, 1) and int64 labels, from ``seed``."""
    _, n_images = WORKLOADS[model]
    rng = np.random.default_rng(seed)
    X = rng.random((n_images, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=n_images)
    return (X.reshape(n_images, 784) if model == "mlp" else X), y


class _RefimplRunner:
    """``refimpl``'s model, SGD and :class:`~refimpl.train.Trainer` on one backend."""

    def __init__(self, model: str, backend: str, seed: int) -> None:
        from refimpl.model import get_model
        from refimpl.optim import SGD
        from refimpl.train import Trainer

        self.model = get_model(model, seed=seed, dtype=np.float32, backend=backend)
        self.optimizer = SGD(self.model.parameters(), lr=LEARNING_RATE)
        self.trainer = Trainer(self.model, self.optimizer, batch_size=WORKLOADS[model][0],
                               seed=seed, progress=False)
        self.n_parameters = self.model.num_parameters()

    def step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        return self.trainer.train_step(xb, yb)

    def fit_epoch(self, X: np.ndarray, y: np.ndarray) -> None:
        """One epoch of ``Trainer.fit`` over ``(X, y)`` (weights carry on between calls)."""
        self.trainer.fit((X, y), epochs=1)


class _TorchRunner:
    """The same architecture, loss and SGD update in PyTorch (CPU, float32)."""

    def __init__(self, model: str, seed: int) -> None:
        import torch
        from torch import nn

        torch.manual_seed(seed)
        if model == "mlp":
            layers = [nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 10)]
        else:
            layers = [
                nn.Conv2d(1, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(64, 128, 3), nn.ReLU(), nn.Conv2d(128, 32, 3), nn.ReLU(),
                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10),
            ]
        self.torch = torch
        self.model = nn.Sequential(*layers)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE)
        self.n_parameters = sum(p.numel() for p in self.model.parameters())

    def step(self, xb: Any, yb: Any) -> float:
        self.optimizer.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(xb), yb)
        loss.backward()
        self.optimizer.step()
        return loss.item()


class _Worker:
    """One backend, one model, one process: answers the coordinator's jobs."""

    def __init__(self, backend: str, model: str, threads: int, seed: int) -> None:
        start = time.perf_counter()
        self.backend, self.batch_size = backend, WORKLOADS[model][0]
        self.tuned: dict | None = None
        X, y = _synthetic_data(model, seed)
        if backend == "torch":
            import torch

            torch.set_num_threads(threads)
            self.runner: Any = _TorchRunner(model, seed)
            self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
            self.gather = lambda index: (self.X[torch.from_numpy(index)],
                                         self.y[torch.from_numpy(index)])
        else:
            if backend == "numba":
                import refimpl.kernels.numba

                # The threading layer and the idle policies of the pools come from this
                # worker's environment (_thread_env), and glibc keeps the step's large
                # temporaries for reuse (refimpl/kernels/numba/tuning.py). The thread policy
                # of the Numba loops is measured afresh here, in the conditions of this run,
                # rather than read from an earlier run's cache ($REFIMPL_NUMBA_LOOPS still wins).
                self.tuned = refimpl.kernels.numba.tune(threads, keep_large_blocks=True,
                                              loops="measure" if threads > 1 else None)
                self.tuned["environment"] = {
                    name: os.environ.get(name)
                    for name in refimpl.kernels.numba.tuning.SHARED_CORES_ENVIRONMENT}
            elif backend == "cuda":
                import numba

                numba.set_num_threads(threads)
            self.runner = _RefimplRunner(model, backend, seed)
            self.X, self.y = X, y
            self.gather = lambda index: (self.X[index], self.y[index])
        self.seed = seed
        self.rss_before_kb = _peak_rss_kb()
        # First call: for numba the kernels are compiled (or loaded from cache) here.
        first = time.perf_counter()
        self.runner.step(*self.gather(np.arange(self.batch_size)))
        self.setup = {"build_s": first - start, "first_step_s": time.perf_counter() - first}
        self.epochs_run = 0
        self.peak = sgemm_peak()

    def steps(self, count: int) -> list[float]:
        """Seconds of each of ``count`` steps on one fixed batch."""
        xb, yb = self.gather(np.arange(self.batch_size))
        times = []
        for _ in range(count):
            start = time.perf_counter()
            self.runner.step(xb, yb)
            times.append(time.perf_counter() - start)
        return times

    def epoch(self, fraction: float) -> dict:
        """Time an epoch over the first ``ceil(fraction * batches)`` batches' worth of images
        (all of them when ``fraction`` is 1): ``Trainer.fit`` for refimpl's backends, a
        seeded shuffle gathered batch by batch for torch."""
        n = len(self.y)
        n_batches = math.ceil(n / self.batch_size)
        run = max(1, min(n_batches, math.ceil(fraction * n_batches)))
        images = min(n, run * self.batch_size)
        self.epochs_run += 1
        if self.backend != "torch":
            X, y = self.X[:images], self.y[:images]
            start = time.perf_counter()
            self.runner.fit_epoch(X, y)
            seconds = time.perf_counter() - start
            return {"seconds": seconds, "batches": run, "of_batches": n_batches,
                    "epoch_s": seconds * n_batches / run}
        order = np.random.default_rng([self.seed, self.epochs_run]).permutation(images)
        start = time.perf_counter()
        for b in range(run):
            self.runner.step(*self.gather(order[b * self.batch_size:(b + 1) * self.batch_size]))
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "batches": run, "of_batches": n_batches,
                "epoch_s": seconds * n_batches / run}

    def serve(self) -> None:
        self._send({"ready": True, "setup": self.setup, "rss_before_kb": self.rss_before_kb,
                    "n_parameters": int(self.runner.n_parameters), "tuned": self.tuned,
                    "sgemm_peak": self.peak})
        for line in sys.stdin:
            job = json.loads(line)
            if job["job"] == "steps":
                self._send({"steps": self.steps(job["count"])})
            elif job["job"] == "epoch":
                self._send(self.epoch(job["fraction"]))
            elif job["job"] == "quit":
                rss = _peak_rss_kb()  # before the peak's 2048 x 2048 matrices
                self._send({"peak_rss_kb": rss, "sgemm_peak": sgemm_peak()})
                return

    @staticmethod
    def _send(message: dict) -> None:
        print(PROTOCOL_PREFIX + json.dumps(message), flush=True)


def sgemm_peak(repeats: int = 7, size: int = PEAK_SIZE) -> dict:
    """Best wall and CPU GFLOPS of ``np.dot`` on two ``size`` x ``size`` float32 matrices."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    np.dot(a, b)
    flops = 2.0 * size**3
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        np.dot(a, b)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"wall_gflops": flops / min(wall) / 1e9, "cpu_gflops": flops / min(cpu) / 1e9,
            "size": size}


def training_flops(model: str, batch: int) -> float:
    """Floating-point operations of one training step's products, as GEMMs: per Dense or
    Conv2d layer ``2 m k n`` for the forward and for ``dW``, and for ``dx`` except in the
    first layer (whose input gradient a training step skips); a convolution counts as its
    im2col product (``m = C_out``, ``k = C_in kh kw``, ``n = batch H_out W_out``)."""
    from refimpl.layers import Conv2d, Dense
    from refimpl.model import MODELS, get_model

    shape: tuple[int, ...] = MODELS[model][1]
    total, first = 0.0, True
    for layer in get_model(model).layers:
        out = layer.output_shape(shape)
        if isinstance(layer, (Dense, Conv2d)):
            if isinstance(layer, Dense):
                m, k, n = layer.params["W"].shape[1], layer.params["W"].shape[0], batch
            else:
                m, k = out[0], int(np.prod(layer.params["W"].shape[1:]))
                n = batch * out[1] * out[2]
            total += 2.0 * m * k * n * (2 if first else 3)
            first = False
        shape = out
    return total


def _peak_rss_kb() -> int:
    """Peak resident set size of this process in KiB (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# ----------------------------------------------------------------------------- coordinator

def _thread_env(threads: int, extra: dict | None = None, backend: str = "") -> dict:
    """A worker's environment: every thread pool at ``threads``; for a refimpl CPU backend also
    the shared-cores settings of :func:`refimpl.kernels.numba.tuning.shared_cores_environment`
    (where the caller's environment sets none of them; torch's worker keeps its defaults)."""
    if backend in ("numba", "numpy"):
        from refimpl.kernels.numba.tuning import shared_cores_environment

        env = shared_cores_environment()
    else:
        env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    env.update(extra or {})
    return env


class WorkerProcess:
    """The coordinator's handle on one worker subprocess: JSON jobs on its stdin, answers on
    stdout lines that start with :data:`PROTOCOL_PREFIX` (anything else it prints passes by);
    the first answer, ``hello``, comes unasked. Used by every ``refimpl bench`` mode."""

    def __init__(self, command: list[str], env: dict, name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.hello = self._receive()

    def ask(self, job: dict) -> dict:
        self._send(job)
        return self._receive()

    def close(self, answer: bool = True) -> dict | None:
        """Send ``{"job": "quit"}``; return the worker's last answer where it gives one."""
        last = self.ask({"job": "quit"}) if answer else self._send({"job": "quit"})
        self.process.wait(timeout=60)
        return last

    def _send(self, job: dict) -> None:
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()

    def _receive(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                return json.loads(line[len(PROTOCOL_PREFIX):])
        self.process.wait()
        raise RuntimeError(f"{self.name} exited with status {self.process.returncode} "
                           "(its stderr is above)")


def _training_worker(backend: str, model: str, threads: int, seed: int,
                     env_extra: dict | None = None) -> WorkerProcess:
    command = [sys.executable, "-m", "refimpl.bench", "--worker", backend, "--model", model,
               "--threads", str(threads), "--seed", str(seed)]
    return WorkerProcess(command, _thread_env(threads, env_extra, backend),
                         f"bench worker {backend!r}")


def _backends(requested: str | None) -> list[str]:
    """``kernels.available()`` plus torch when importable, or the requested list."""
    import importlib.util

    from refimpl import kernels

    found = kernels.available() + (["torch"] if importlib.util.find_spec("torch") else [])
    if requested is None:
        return found
    names = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in names if name not in found]
    if unknown:
        raise ValueError(f"--backends: {unknown} not available here; choose from {found}")
    return names


def _thread_counts(threads: int | str | Sequence[int]) -> list[int]:
    """``--threads``: one count or a comma-separated list ("1,2")."""
    if isinstance(threads, int):
        return [threads]
    if isinstance(threads, str):
        return [int(part) for part in threads.split(",") if part.strip()]
    return [int(t) for t in threads]


def _cold_compile_seconds(model: str, threads: int, seed: int) -> dict:
    """First-call time of a numba worker whose cache dir starts empty (a true JIT compile)."""
    with tempfile.TemporaryDirectory(prefix="refimpl-numba-cache-") as cache_dir:
        worker = _training_worker("numba", model, threads, seed, {"NUMBA_CACHE_DIR": cache_dir})
        worker.close()
    return worker.hello["setup"]


def bench_model(model: str, backends: list[str], args: argparse.Namespace) -> dict:
    """Interleaved repeats of steps and epochs for one model, every thread count and backend.

    Returns ``{"batch_size", "images", "gflop_per_step", "threads": {count: {"backends":
    {name: row}, "sgemm_peak_gflops": ...}}}`` and, for the first thread count, its
    ``"backends"`` at the top level too.
    """
    counts = _thread_counts(args.threads)
    workers = {}
    for t in counts:
        for name in backends:
            workers[(t, name)] = worker = _training_worker(name, model, t, args.seed)
            setup = worker.hello["setup"]
            _progress(f"bench {model}: {name}, {_threads(t)}: ready, first step "
                      f"{setup['first_step_s']:.2f} s (build {setup['build_s']:.2f} s)")
    batch = WORKLOADS[model][0]
    result: dict[str, Any] = {"batch_size": batch, "images": WORKLOADS[model][1],
                              "gflop_per_step": training_flops(model, batch) / 1e9,
                              "threads": {t: {"backends": {}} for t in counts}}
    for (t, name), worker in workers.items():
        result["threads"][t]["backends"][name] = {
            "setup": worker.hello["setup"], "n_parameters": worker.hello["n_parameters"],
            "rss_before_kb": worker.hello["rss_before_kb"], "tuned": worker.hello["tuned"],
            "sgemm_peak": [worker.hello["sgemm_peak"]],
            "step_s": [], "epoch_s": [], "epoch_runs": []}
    for repeat in range(1, args.repeats + 1):
        for (t, name), worker in workers.items():
            entry = result["threads"][t]["backends"][name]
            entry["step_s"].append(float(np.median(worker.ask({"job": "steps",
                                                                "count": args.steps})["steps"])))
            fraction = args.numpy_fraction if name == "numpy" else (
                args.quick_fraction if args.quick else 1.0)
            run = worker.ask({"job": "epoch", "fraction": fraction})
            entry["epoch_s"].append(run["epoch_s"])
            entry["epoch_runs"].append(run)
            _progress(f"bench {model}: {name}, {_threads(t)}, repeat {repeat}/{args.repeats}: "
                      f"step {1e3 * entry['step_s'][-1]:.2f} ms, {_epoch_text(run)}")
    for (t, name), worker in workers.items():
        entry = result["threads"][t]["backends"][name]
        closing = worker.close()
        entry["peak_rss_kb"] = closing["peak_rss_kb"]
        entry["sgemm_peak"].append(closing["sgemm_peak"])
        entry["step_median_s"] = float(np.median(entry["step_s"]))
        entry["epoch_median_s"] = float(np.median(entry["epoch_s"]))
        first = entry["epoch_runs"][0]
        entry["epoch_extrapolated"] = first["batches"] < first["of_batches"]
        entry["epoch_batches_timed"] = first["batches"]
        entry["epoch_batches"] = first["of_batches"]
    for t in counts:
        rows = result["threads"][t]["backends"]
        peak = max(p["wall_gflops"] for row in rows.values() for p in row["sgemm_peak"])
        result["threads"][t]["sgemm_peak_gflops"] = peak
        per_epoch = result["gflop_per_step"] * result["images"] / batch
        for row in rows.values():
            row["of_sgemm_peak"] = per_epoch / row["epoch_median_s"] / peak
    result["backends"] = result["threads"][counts[0]]["backends"]
    if "numba" in backends and not args.no_cold_compile:
        result["numba_cold_compile"] = cold = _cold_compile_seconds(model, counts[-1], args.seed)
        _progress(f"bench {model}: numba, {_threads(counts[-1])}: first step with an empty "
                  f"JIT cache {cold['first_step_s']:.1f} s")
    return result


def _progress(line: str) -> None:
    """One progress line on stderr as a measurement comes in (stdout keeps the tables)."""
    print(line, file=sys.stderr, flush=True)


def _threads(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def _epoch_text(run: dict) -> str:
    """An epoch job's answer in words: the seconds timed and, when it timed part of the
    epoch, the whole epoch's extrapolated seconds."""
    if run["batches"] < run["of_batches"]:
        return (f"epoch {run['seconds']:.2f} s for {run['batches']} of {run['of_batches']} "
                f"batches ({run['epoch_s']:.2f} s per epoch, extrapolated)")
    return f"epoch {run['seconds']:.2f} s"


def machine_info() -> dict:
    """Machine, load and library versions, recorded beside every figure."""
    info: dict[str, Any] = {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    for module in ("numpy", "numba", "scipy", "torch", "llvmlite"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------- report

def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def _table_row(name: str, row: dict, torch_row: dict | None, numpy_row: dict | None,
               threads: int, cpu: str) -> str:
    epoch = f"{row['epoch_median_s']:.2f}"
    if row["epoch_extrapolated"]:
        epoch += (
            f" (extrapolated from {row['epoch_batches_timed']} of {row['epoch_batches']} batches)"
        )
    of_peak = row.get("of_sgemm_peak")
    cells = [
        name,
        f"{1e3 * row['step_median_s']:.2f}",
        epoch,
        _ratio(row["epoch_median_s"], torch_row and torch_row["epoch_median_s"]),
        _ratio(row["epoch_median_s"], numpy_row and numpy_row["epoch_median_s"]),
        f"{100 * of_peak:.0f}%" if of_peak is not None else "-",
        f"{row['peak_rss_kb'] / 1024:.0f}",
        _ratio(row["peak_rss_kb"], torch_row and torch_row["peak_rss_kb"]),
        f"{row['setup']['first_step_s']:.2f}",
        str(threads),
        cpu,
    ]
    return "| " + " | ".join(cells) + " |"


def round_ratios(row: dict, torch_row: dict | None) -> list[float]:
    """``row``'s epoch over torch's epoch of the same round, one per repeat: a repeat runs
    right after torch's, so a change in the machine's speed between rounds (a VM whose second
    core comes and goes) reaches both sides of each ratio."""
    if not torch_row or "epoch_s" not in row or "epoch_s" not in torch_row:
        return []
    return [mine / theirs for mine, theirs in zip(row["epoch_s"], torch_row["epoch_s"])
            if mine and theirs]


def _round_ratio_line(model: str, blocks: dict) -> str | None:
    parts = []
    for threads, block in blocks.items():
        rows = block["backends"]
        for name, row in rows.items():
            ratios = round_ratios(row, rows.get("torch")) if name != "torch" else []
            if ratios:
                parts.append(f"{name} at {threads} thread(s) {statistics.median(ratios):.2f} "
                             f"({min(ratios):.2f}–{max(ratios):.2f}, n = {len(ratios)})")
    if not parts:
        return None
    return (f"{model} epoch / torch round by round (each repeat over torch's repeat of the same "
            "round; median, range, n): " + "; ".join(parts) + ".")


def _by_threads(result: dict, settings: dict) -> dict:
    """``{threads: {"backends": rows, ...}}``, also for a result of one thread count."""
    if "threads" in result:
        return result["threads"]
    return {_thread_counts(settings["threads"])[0]: {"backends": result["backends"]}}


def format_markdown(report: dict) -> str:
    """The results as Markdown: one table per model (a row per thread count and backend),
    then the machine."""
    machine, settings = report["machine"], report["settings"]
    header = (
        "| backend | step ms | epoch s | epoch / torch | epoch / numpy | of sgemm peak "
        "| peak RSS MiB | RSS / torch | first call s | threads | CPU |"
    )
    lines = [f"Measured {machine['date_utc']} with `{settings['command']}`.", ""]
    peaks: dict = {}
    tuned: dict = {}
    for model, result in report["models"].items():
        title = f"### {model} (batch {result['batch_size']}, {result['images']:,} images, float32)"
        lines += [title, "", header, "|---|---|---|---|---|---|---|---|---|---|---|"]
        for threads, block in _by_threads(result, settings).items():
            rows = block["backends"]
            if "sgemm_peak_gflops" in block:
                peaks[int(threads)] = max(peaks.get(int(threads), 0.0),
                                          block["sgemm_peak_gflops"])
            for name, row in rows.items():
                lines.append(_table_row(name, row, rows.get("torch"), rows.get("numpy"),
                                        threads, machine["cpu"]))
                if row.get("tuned"):
                    tuned[int(threads)] = row["tuned"]
        paired = _round_ratio_line(model, _by_threads(result, settings))
        if paired:
            lines += ["", paired]
        if "numba_cold_compile" in result:
            cold = result["numba_cold_compile"]["first_step_s"]
            warm = result["backends"]["numba"]["setup"]["first_step_s"]
            lines += ["", (f"numba first step with an empty JIT cache (compile): {cold:.1f} s; "
                           f"with the cache filled: {warm:.2f} s.")]
        if "gflop_per_step" in result:
            lines += ["", (f"A training step is {result['gflop_per_step']:.3f} GFLOP of "
                           "products (`training_flops`); \"of sgemm peak\" is that work per "
                           "epoch over the epoch time, against the peak below.")]
        lines.append("")
    if peaks:
        lines.append("sgemm peak (best `np.dot` of 2048 x 2048 float32, measured in every worker): "
                     + "; ".join(f"{t} thread(s) {g:.0f} GFLOPS" for t, g in sorted(peaks.items()))
                     + ".")
    for threads, settings_in_force in sorted(tuned.items()):
        settings_in_force = dict(settings_in_force)
        environment = settings_in_force.pop("environment", None)
        lines.append(f"numba worker at {threads} thread(s), environment {environment}: "
                     "`refimpl.kernels.numba.tune(threads, keep_large_blocks=True, loops=...)` "
                     f"gave {settings_in_force}.")
    lines += [
        (f"Medians of {settings['repeats']} interleaved repeats (steps: median of "
         f"{settings['steps']} steps per repeat); every library on the row's thread count."),
        (f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, "
         f"{machine['platform']}; load average before {report['load_before']}, after "
         f"{machine['load_average']}."),
        (f"Versions: Python {machine['python']}, numpy {machine['numpy']}, numba "
         f"{machine['numba']}, scipy {machine['scipy']}, torch {machine['torch']}."),
    ]
    return "\n".join(lines) + "\n"


def write_docs(path: Path, markdown: str) -> None:
    """Replace the text between the bench markers of ``path`` (append them if absent)."""
    block = f"{DOCS_BEGIN}\n{markdown}{DOCS_END}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if DOCS_BEGIN in text and DOCS_END in text:
        head, rest = text.split(DOCS_BEGIN, 1)
        text = head + block + rest.split(DOCS_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    from refimpl.cli import HelpFormatter

    p = argparse.ArgumentParser(
        prog="refimpl bench",
        description="Time training steps and epochs of mlp and lrpo_cnn on every backend and "
                    "on torch CPU (float32, same thread count), with peak RSS per backend.",
        formatter_class=HelpFormatter)
    p.add_argument("--models", default="mlp,lrpo_cnn", help="comma-separated model names")
    p.add_argument("--backends", default=None,
                   help="comma-separated backends (default: every one available here, "
                        "and torch when installed)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (>= 5 for the docs)")
    p.add_argument("--steps", type=int, default=10, help="steps timed per repeat")
    p.add_argument("--threads", default="2",
                   help="thread count(s) for every library, e.g. 2 or 1,2 (one interleaved "
                        "run; a row per count)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, init and shuffles")
    p.add_argument("--quick", action="store_true",
                   help="time --quick-fraction of each epoch and extrapolate (labelled)")
    p.add_argument("--quick-fraction", type=float, default=0.1, help="epoch fraction in --quick")
    p.add_argument("--numpy-fraction", type=float, default=0.1,
                   help="epoch fraction the numpy oracle runs (extrapolated, labelled)")
    p.add_argument("--no-cold-compile", action="store_true",
                   help="skip timing a numba JIT compile from an empty cache")
    p.add_argument("--out", "--json", dest="out", type=Path, default=None, metavar="PATH",
                   help="write the full report as JSON to PATH (default: none)")
    p.add_argument("--report", "--docs", dest="report", type=Path, default=None,
                   metavar="PATH",
                   help="rewrite the bench section of the Markdown file PATH, e.g. "
                        "docs/benchmarks.md in a clone (default: none; the tables always go "
                        "to stdout)")
    p.add_argument("--pinn", action="store_true",
                   help="instead of the timings, time the Helmholtz PINN's loss and gradients "
                        "against torch autograd's double backward, float64 and float32, with "
                        "--threads, --repeats, --steps, --seed and --out (refimpl.bench.pinn; "
                        "`python -m refimpl.bench.pinn` has more options)")
    p.add_argument("--profile", action="store_true",
                   help="instead of the timings, print where a numba training step's time "
                        "goes, per layer and phase, with each GEMM's GFLOPS against the "
                        "sgemm peak (refimpl.bench.profile)")
    p.add_argument("--profile-steps", type=int, default=20,
                   help="--profile: steps per thread count (each row: the minimum)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="--profile: wall time, or process CPU time (steadier on a shared "
                        "machine at 1 thread)")
    p.add_argument("--worker", metavar="BACKEND", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    return p


def checked_thread_counts(value: str) -> list[int]:
    """``--threads`` of every bench mode: distinct counts >= 1, else ValueError in one line."""
    try:
        counts = _thread_counts(value)
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise ValueError(f"--threads must be distinct integers >= 1 separated by commas, "
                         f"e.g. 1,2; got {value!r}")
    return counts


def _check_args(args: argparse.Namespace) -> None:
    checked_thread_counts(args.threads)
    if args.repeats < 1 or args.steps < 1 or args.profile_steps < 1:
        raise ValueError("--repeats, --steps and --profile-steps must be >= 1")
    for name in ("quick_fraction", "numpy_fraction"):
        if not 0 < getattr(args, name) <= 1:
            raise ValueError(f"--{name.replace('_', '-')} must lie in (0, 1]")
    unknown = [m for m in args.models.split(",") if m not in WORKLOADS]
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; choose from {sorted(WORKLOADS)}")
    for option in ("out", "report"):
        if str(getattr(args, option)) == "-":  # the old spelling of "write nothing"
            setattr(args, option, None)
        if getattr(args, option) is not None:
            _check_writable(getattr(args, option), f"--{option}")


def _check_writable(path: Path, option: str) -> None:
    """Refuse, before minutes of timing, an output path that could not be written."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a file path")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: directory {parent} does not exist; create it "
                         "or choose another path")
    try:  # a real attempt: permission bits say little to root or on special file systems
        if path.exists():
            open(path, "a").close()  # appends nothing, changes nothing
        else:
            with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}."):
                pass
    except OSError as error:
        raise ValueError(f"{option} {path} cannot be written ({error.strerror}); choose "
                         "another path") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with the hidden ``--worker``, serve as one backend's worker)."""
    args = build_parser().parse_args(argv)
    if args.pinn:
        from refimpl.bench.pinn import main as pinn_main

        return pinn_main(["--threads", str(args.threads), "--repeats", str(args.repeats),
                          "--steps", str(args.steps), "--seed", str(args.seed)]
                         + ([] if args.out is None else ["--out", str(args.out)]))
    if args.worker:
        _Worker(args.worker, args.model, int(args.threads), args.seed).serve()
        return 0
    try:
        _check_args(args)
        backends = _backends(args.backends)
    except ValueError as error:
        print(f"refimpl bench: error: {error}", file=sys.stderr)
        return 2
    shown = " ".join(argv if argv is not None else sys.argv[1:])
    report: dict[str, Any] = {
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                        if k not in ("worker", "model")},
                     "command": f"refimpl bench {shown}".strip()},
        "load_before": [round(v, 2) for v in os.getloadavg()],
        "models": {},
    }
    if args.profile:
        return _profile(args, report, "torch" in backends)
    for model in args.models.split(","):
        _progress(f"bench {model}: {', '.join(backends)}")
        report["models"][model] = bench_model(model, backends, args)
    report["machine"] = machine_info()
    markdown = format_markdown(report)
    print(markdown, flush=True)
    try:
        if args.out is not None:
            args.out.write_text(json.dumps(report, indent=1))
        if args.report is not None:
            write_docs(args.report, markdown)
    except OSError as error:  # checked before the run; the disk may still fill up
        print(f"refimpl bench: error: cannot write the results ({error}); the tables are "
              "above", file=sys.stderr)
        return 1
    return 0


def _profile(args: argparse.Namespace, report: dict, with_torch: bool) -> int:
    from refimpl.bench.profile import run_profile

    markdown, raw = run_profile(args.models.split(","), _thread_counts(args.threads),
                                args.profile_steps, args.seed, args.clock, with_torch)
    print(markdown, flush=True)
    try:
        if args.out is not None:
            args.out.write_text(json.dumps({**report, "profile": raw}, indent=1))
        if args.report is not None:
            print("refimpl bench: --report is not written by --profile (paste the tables "
                  "by hand)", file=sys.stderr)
    except OSError as error:
        print(f"refimpl bench: error: cannot write the results ({error}); the tables are "
              "above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
