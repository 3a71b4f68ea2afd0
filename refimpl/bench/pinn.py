"""``refimpl bench --pinn``: the Helmholtz PINN's loss and gradients, refimpl against torch.

What is timed. One call that returns the loss ``mean R^2`` and the gradients of every
parameter of the paper's network (1-100-100-100-1, sin, cos, sin; docs/methods.md §9) at
``--points`` collocation points (default 1,000, the authors' batch), in float64 and in
float32:

* ``refimpl numba`` and ``refimpl numpy``: :meth:`refimpl.pinn.HelmholtzPINN.loss_and_grads`
  with ``backend="numba"`` and ``"numpy"`` (input derivatives carried forward, gradients by
  the hand-derived backward);
* ``torch``: the same network in ``torch.nn.functional`` terms, ``u~`` from it, ``u~'`` and
  ``u~''`` by ``torch.autograd.grad(..., create_graph=True)`` twice, then the gradients of
  the loss by a third ``torch.autograd.grad`` (double backward), with the same weights and
  points.

How. One worker subprocess per thread count (``--threads``, default ``1,2``), with every
thread pool of the process at that count (BLAS through ``OMP/OPENBLAS/MKL_NUM_THREADS``,
Numba, ``torch.set_num_threads``). The coordinator interleaves the repeats over thread
counts, and each worker interleaves the six (implementation, dtype) rows inside a repeat,
so load from other processes hits every row alike; a row's figure is the median over
``--repeats`` of the median of ``--steps`` calls. Each worker first checks that refimpl's
and torch's gradients agree (largest relative difference per array, printed beside the
timings). The ratio columns divide refimpl's time by torch's at the same dtype and thread
count, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from refimpl.bench.epochs import (
    PROTOCOL_PREFIX,
    WorkerProcess,
    _progress,
    _thread_env,
    checked_thread_counts,
    machine_info,
)

#: The paper's network and the frequency and boundary values of the timed problem.
FREQUENCY, A, B = 1000.0, 1.0, -1.0
DTYPES = ("float64", "float32")
IMPLEMENTATIONS = ("refimpl numba", "refimpl numpy", "torch")


class _TorchPINN:
    """Loss and gradients of the trial-solution PINN by torch autograd (double backward)."""

    def __init__(self, params: list[np.ndarray], activations: list[str], k: float) -> None:
        import torch

        self.torch = torch
        self.params = [torch.tensor(p, requires_grad=True) for p in params]
        self.activations = [getattr(torch, name) for name in activations]
        self.k2 = k * k

    def loss_and_grads(self, x: Any) -> tuple[float, list]:
        torch = self.torch
        x = x.detach().requires_grad_(True)
        h = x
        for layer, activation in enumerate(self.activations):
            h = activation(h @ self.params[2 * layer] + self.params[2 * layer + 1])
        N = h @ self.params[-2] + self.params[-1]
        u = A * (1 - x) + B * x + x * (1 - x) * N
        (u1,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        (u2,) = torch.autograd.grad(u1.sum(), x, create_graph=True)
        loss = ((u2 + self.k2 * u) ** 2).mean()
        return loss.item(), list(torch.autograd.grad(loss, self.params))


class _Worker:
    """Every (implementation, dtype) row at one thread count, in one process."""

    def __init__(self, threads: int, points: int, seed: int) -> None:
        import torch

        from refimpl.pinn import HelmholtzPINN

        torch.set_num_threads(threads)
        x64 = np.random.default_rng(seed).uniform(0.0, 1.0, points)
        self.calls: dict[tuple[str, str], Any] = {}
        self.agreement: dict[str, float] = {}
        for dtype in DTYPES:
            pinns = {backend: HelmholtzPINN(FREQUENCY, A=A, B=B, seed=seed, dtype=dtype,
                                            backend=backend) for backend in ("numba", "numpy")}
            x = x64.astype(dtype)
            net = _TorchPINN(pinns["numpy"].params, pinns["numpy"].activations, pinns["numpy"].k)
            tx = torch.from_numpy(x).reshape(-1, 1)
            for backend, pinn in pinns.items():
                self.calls[f"refimpl {backend}", dtype] = (
                    lambda pinn=pinn, x=x: pinn.loss_and_grads(x))
            self.calls["torch", dtype] = lambda net=net, tx=tx: net.loss_and_grads(tx)
            ours = pinns["numba"].loss_and_grads(x)[1]
            theirs = [g.numpy() for g in net.loss_and_grads(tx)[1]]
            self.agreement[dtype] = max(float(np.abs(a - b).max() / np.abs(b).max())
                                        for a, b in zip(ours, theirs))
        for call in self.calls.values():  # compile or load the numba kernels, warm caches
            call()

    def repeat(self, steps: int) -> dict:
        """The median seconds of ``steps`` calls of every row, rows interleaved."""
        times: dict[str, list[float]] = {f"{name}|{dtype}": [] for name, dtype in self.calls}
        for _ in range(steps):
            for (name, dtype), call in self.calls.items():
                start = time.perf_counter()
                call()
                times[f"{name}|{dtype}"].append(time.perf_counter() - start)
        return {key: float(np.median(values)) for key, values in times.items()}

    def serve(self) -> None:
        print(PROTOCOL_PREFIX + json.dumps({"agreement": self.agreement}), flush=True)
        for line in sys.stdin:
            job = json.loads(line)
            if job["job"] == "quit":
                return
            print(PROTOCOL_PREFIX + json.dumps(self.repeat(job["steps"])), flush=True)


def _worker(threads: int, points: int, seed: int) -> WorkerProcess:
    command = [sys.executable, "-m", "refimpl.bench.pinn", "--worker", "--threads",
               str(threads), "--points", str(points), "--seed", str(seed)]
    return WorkerProcess(command, _thread_env(threads), "PINN bench worker")


def run(threads: Sequence[int], points: int, repeats: int, steps: int, seed: int) -> dict:
    """Interleaved repeats over the thread counts; medians per row."""
    load_before = [round(v, 2) for v in os.getloadavg()]
    workers = {t: _worker(t, points, seed) for t in threads}
    samples: dict[int, dict[str, list[float]]] = {t: {} for t in threads}
    for repeat in range(1, repeats + 1):
        for t, worker in workers.items():
            for key, seconds in worker.ask({"job": "repeat", "steps": steps}).items():
                samples[t].setdefault(key, []).append(seconds)
            _progress(f"bench pinn: {t} thread(s), repeat {repeat}/{repeats}")
    for worker in workers.values():
        worker.close(answer=False)
    return {"points": points, "repeats": repeats, "steps": steps, "load_before": load_before,
            "agreement": {t: w.hello["agreement"] for t, w in workers.items()},
            "median_s": {t: {key: float(np.median(v)) for key, v in rows.items()}
                         for t, rows in samples.items()},
            "machine": machine_info()}


def format_markdown(report: dict) -> str:
    """One row per (dtype, thread count): milliseconds per call and refimpl / torch."""
    machine = report["machine"]
    lines = [f"### Helmholtz PINN: loss and gradients at {report['points']:,} points",
             "", "| dtype | threads | " + " | ".join(f"{n} ms" for n in IMPLEMENTATIONS)
             + " | numba / torch | numpy / torch | refimpl vs torch gradients |",
             "|---|---|---|---|---|---|---|---|"]
    for dtype in DTYPES:
        for t, rows in report["median_s"].items():
            ms = {name: 1e3 * rows[f"{name}|{dtype}"] for name in IMPLEMENTATIONS}
            lines.append(
                f"| {dtype} | {t} | " + " | ".join(f"{ms[n]:.2f}" for n in IMPLEMENTATIONS)
                + f" | {ms['refimpl numba'] / ms['torch']:.2f}"
                + f" | {ms['refimpl numpy'] / ms['torch']:.2f}"
                + f" | {report['agreement'][t][dtype]:.1e} |")
    lines += [
        "",
        (f"Medians of {report['repeats']} interleaved repeats of the median of "
         f"{report['steps']} calls; every library on the row's thread count. The last column: "
         "the largest difference between refimpl's (numba) and torch's gradient of a parameter "
         "array, relative to that array's largest entry."),
        (f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, "
         f"{machine['platform']}; load average before {report['load_before']}, after "
         f"{machine['load_average']}."),
        (f"Versions: Python {machine['python']}, numpy {machine['numpy']}, numba "
         f"{machine['numba']}, torch {machine['torch']}."),
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m refimpl.bench.pinn",
        description="Time the Helmholtz PINN's loss and gradients: refimpl (numba, numpy) "
                    "against torch autograd's double backward, float64 and float32.")
    p.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    p.add_argument("--points", type=int, default=1000, help="collocation points per call")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    p.add_argument("--steps", type=int, default=20, help="calls timed per row and repeat")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and points")
    p.add_argument("--out", default=None, metavar="PATH", help="also write the report as JSON")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        _Worker(int(args.threads), args.points, args.seed).serve()
        return 0
    import importlib.util

    problems = []
    try:
        threads = checked_thread_counts(args.threads)
    except ValueError as error:
        problems.append(str(error))
    if min(args.points, args.repeats, args.steps) < 1:
        problems.append("--points, --repeats and --steps must be >= 1")
    if importlib.util.find_spec("torch") is None:
        problems.append("torch is not installed (pip install torch): it is the baseline")
    if problems:
        print(f"refimpl bench --pinn: error: {problems[0]}", file=sys.stderr)
        return 2
    report = run(threads, args.points, args.repeats, args.steps, args.seed)
    print(format_markdown(report), flush=True)
    if args.out is not None:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
