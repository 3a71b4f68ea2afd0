"""``refimpl bench``: training-step and epoch timings of every backend against PyTorch CPU.

What is timed (issue 4). For each model -- ``mlp`` (784-1000-10, batch 128, 60,000 images)
and ``lrpo_cnn`` (docs/methods.md §7, batch 64, 20,000 images) -- and each backend -- every one of
``kernels.available()`` plus ``torch`` when it is installed -- in float32:

* a **training step**: forward, softmax cross-entropy, backward and a plain SGD update
  (``refimpl.model.get_model`` layers and ``refimpl.optim.SGD``; the same architecture built
  from ``torch.nn`` with ``torch.optim.SGD``), on one fixed batch;
* an **epoch**: every batch of a seeded shuffle of the training set, the batch gathered
  with fancy indexing, then a step;
* **peak RSS** of the process that ran it, and the **first-call time** (imports, model
  build and the first step: for ``numba`` this is where kernels are JIT-compiled, or
  loaded from the on-disk cache; a cold compile is timed in a fresh, empty cache dir).

How. Each backend runs in its own worker subprocess (``python -m refimpl.bench --worker``),
so peak RSS is separable and no library's thread pool or allocator affects another's.
The coordinator sends the workers one job at a time and **interleaves** the repeats
(torch, numba, numpy, torch, numba, ...), so load from other processes on the machine hits
every backend alike; the table reports the median of the repeats. All thread pools are
set to ``--threads`` (default 2: ``torch.set_num_threads``, ``numba.set_num_threads`` and
the BLAS pools through ``OMP/OPENBLAS/MKL_NUM_THREADS``). The data are synthetic
(uniform pixels in [0, 1), random labels, seeded): timings do not depend on the values.

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
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

#: model name -> (batch size, training images), as the issue fixes them.
WORKLOADS = {"mlp": (128, 60_000), "lrpo_cnn": (64, 20_000)}
LEARNING_RATE = 0.01
PROTOCOL_PREFIX = "@@bench "
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
    """A training step of ``refimpl``'s model and SGD on one backend of ``kernels``."""

    def __init__(self, model: str, backend: str, seed: int) -> None:
        import kernels
        from refimpl.model import get_model
        from refimpl.optim import SGD

        self.model = get_model(model, seed=seed, dtype=np.float32, backend=backend)
        self.ops = kernels.get_backend(backend)
        self.optimizer = SGD(self.model.parameters(), lr=LEARNING_RATE)
        self.n_parameters = self.model.num_parameters()

    def step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        logits = self.model.forward(xb)
        loss, dlogits = self.ops.softmax_cross_entropy(logits, yb)
        self.model.backward(dlogits, input_grad=False)  # as the Trainer; torch skips it too
        self.optimizer.step(self.model.gradients())
        return loss


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
                import kernels.cpu

                # Numba's workqueue threads sleep beside BLAS's, and glibc keeps the step's
                # large temporaries for reuse (kernels/cpu/tuning.py); NUMBA_THREADING_LAYER wins.
                layer = None if "NUMBA_THREADING_LAYER" in os.environ else "workqueue"
                kernels.cpu.tune(threads, threading_layer=layer, keep_large_blocks=True)
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
        """Time the first ``ceil(fraction * batches)`` batches of a fresh shuffle."""
        n = len(self.y)
        n_batches = math.ceil(n / self.batch_size)
        run = max(1, min(n_batches, math.ceil(fraction * n_batches)))
        order = np.random.default_rng([self.seed, self.epochs_run]).permutation(n)
        self.epochs_run += 1
        start = time.perf_counter()
        for b in range(run):
            self.runner.step(*self.gather(order[b * self.batch_size:(b + 1) * self.batch_size]))
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "batches": run, "of_batches": n_batches,
                "epoch_s": seconds * n_batches / run}

    def serve(self) -> None:
        self._send({"ready": True, "setup": self.setup, "rss_before_kb": self.rss_before_kb,
                    "n_parameters": int(self.runner.n_parameters)})
        for line in sys.stdin:
            job = json.loads(line)
            if job["job"] == "steps":
                self._send({"steps": self.steps(job["count"])})
            elif job["job"] == "epoch":
                self._send(self.epoch(job["fraction"]))
            elif job["job"] == "quit":
                self._send({"peak_rss_kb": _peak_rss_kb()})
                return

    @staticmethod
    def _send(message: dict) -> None:
        print(PROTOCOL_PREFIX + json.dumps(message), flush=True)


def _peak_rss_kb() -> int:
    """Peak resident set size of this process in KiB (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# ----------------------------------------------------------------------------- coordinator

def _thread_env(threads: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    env.update(extra or {})
    return env


class _WorkerProcess:
    """The coordinator's handle on one worker subprocess (JSON lines over pipes)."""

    def __init__(self, backend: str, model: str, threads: int, seed: int,
                 env_extra: dict | None = None) -> None:
        command = [sys.executable, "-m", "refimpl.bench", "--worker", backend, "--model", model,
                   "--threads", str(threads), "--seed", str(seed)]
        self.name = backend
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=_thread_env(threads, env_extra))
        self.hello = self._receive()

    def ask(self, job: dict) -> dict:
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        return self._receive()

    def close(self) -> dict:
        answer = self.ask({"job": "quit"})
        self.process.wait(timeout=60)
        return answer

    def _receive(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                return json.loads(line[len(PROTOCOL_PREFIX):])
        self.process.wait()
        raise RuntimeError(f"bench worker {self.name!r} exited with status "
                           f"{self.process.returncode} (its stderr is above)")


def _backends(requested: str | None) -> list[str]:
    """``kernels.available()`` plus torch when importable, or the requested list."""
    import importlib.util

    import kernels

    found = kernels.available() + (["torch"] if importlib.util.find_spec("torch") else [])
    if requested is None:
        return found
    names = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in names if name not in found]
    if unknown:
        raise ValueError(f"--backends: {unknown} not available here; choose from {found}")
    return names


def _cold_compile_seconds(model: str, threads: int, seed: int) -> dict:
    """First-call time of a numba worker whose cache dir starts empty (a true JIT compile)."""
    with tempfile.TemporaryDirectory(prefix="refimpl-numba-cache-") as cache_dir:
        worker = _WorkerProcess("numba", model, threads, seed, {"NUMBA_CACHE_DIR": cache_dir})
        worker.close()
    return worker.hello["setup"]


def bench_model(model: str, backends: list[str], args: argparse.Namespace) -> dict:
    """Interleaved repeats of steps and epochs for one model on every backend."""
    workers = {name: _WorkerProcess(name, model, args.threads, args.seed) for name in backends}
    result: dict[str, Any] = {"batch_size": WORKLOADS[model][0], "images": WORKLOADS[model][1],
                              "backends": {}}
    for name, worker in workers.items():
        result["backends"][name] = {"setup": worker.hello["setup"],
                                    "n_parameters": worker.hello["n_parameters"],
                                    "rss_before_kb": worker.hello["rss_before_kb"],
                                    "step_s": [], "epoch_s": [], "epoch_runs": []}
    for _ in range(args.repeats):
        for name, worker in workers.items():
            entry = result["backends"][name]
            entry["step_s"].append(float(np.median(worker.ask({"job": "steps",
                                                                "count": args.steps})["steps"])))
            fraction = args.numpy_fraction if name == "numpy" else (
                args.quick_fraction if args.quick else 1.0)
            run = worker.ask({"job": "epoch", "fraction": fraction})
            entry["epoch_s"].append(run["epoch_s"])
            entry["epoch_runs"].append(run)
    for name, worker in workers.items():
        entry = result["backends"][name]
        entry["peak_rss_kb"] = worker.close()["peak_rss_kb"]
        entry["step_median_s"] = float(np.median(entry["step_s"]))
        entry["epoch_median_s"] = float(np.median(entry["epoch_s"]))
        first = entry["epoch_runs"][0]
        entry["epoch_extrapolated"] = first["batches"] < first["of_batches"]
        entry["epoch_batches_timed"] = first["batches"]
        entry["epoch_batches"] = first["of_batches"]
    if "numba" in backends and not args.no_cold_compile:
        result["numba_cold_compile"] = _cold_compile_seconds(model, args.threads, args.seed)
    return result


def machine_info() -> dict:
    """Machine, load and library versions, recorded beside every figure."""
    info: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
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


def _table_row(name: str, row: dict, torch_row: dict | None, numpy_row: dict | None) -> str:
    epoch = f"{row['epoch_median_s']:.2f}"
    if row["epoch_extrapolated"]:
        epoch += (
            f" (extrapolated from {row['epoch_batches_timed']} of {row['epoch_batches']} batches)"
        )
    cells = [
        name,
        f"{1e3 * row['step_median_s']:.2f}",
        epoch,
        _ratio(row["epoch_median_s"], torch_row and torch_row["epoch_median_s"]),
        _ratio(row["epoch_median_s"], numpy_row and numpy_row["epoch_median_s"]),
        f"{row['peak_rss_kb'] / 1024:.0f}",
        _ratio(row["peak_rss_kb"], torch_row and torch_row["peak_rss_kb"]),
        f"{row['setup']['first_step_s']:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def format_markdown(report: dict) -> str:
    """The results as Markdown: one table per model, then the machine."""
    machine, settings = report["machine"], report["settings"]
    header = (
        "| backend | step ms | epoch s | epoch / torch | epoch / numpy | peak RSS MiB "
        "| RSS / torch | first call s |"
    )
    lines = [f"Measured {machine['date_utc']} with `{settings['command']}`.", ""]
    for model, result in report["models"].items():
        rows = result["backends"]
        title = f"### {model} (batch {result['batch_size']}, {result['images']:,} images, float32)"
        lines += [title, "", header, "|---|---|---|---|---|---|---|---|"]
        for name, row in rows.items():
            lines.append(_table_row(name, row, rows.get("torch"), rows.get("numpy")))
        if "numba_cold_compile" in result:
            cold = result["numba_cold_compile"]["first_step_s"]
            warm = rows["numba"]["setup"]["first_step_s"]
            lines += ["", (f"numba first step with an empty JIT cache (compile): {cold:.1f} s; "
                           f"with the cache filled: {warm:.2f} s.")]
        lines.append("")
    lines += [
        (f"Medians of {settings['repeats']} interleaved repeats (steps: median of "
         f"{settings['steps']} steps per repeat); {settings['threads']} threads for every "
         "library."),
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
    p.add_argument("--threads", type=int, default=2, help="threads for every library")
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
    p.add_argument("--worker", metavar="BACKEND", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.repeats < 1 or args.steps < 1 or args.threads < 1:
        raise ValueError("--repeats, --steps and --threads must be >= 1")
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
    if args.worker:
        _Worker(args.worker, args.model, args.threads, args.seed).serve()
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
    for model in args.models.split(","):
        print(f"bench {model}: {', '.join(backends)}", file=sys.stderr, flush=True)
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


if __name__ == "__main__":
    sys.exit(main())
