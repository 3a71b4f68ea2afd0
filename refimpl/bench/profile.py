"""``refimpl bench --profile``: where a training step's time goes, per layer and phase.

For each model (``mlp`` batch 128, ``lrpo_cnn`` batch 64, float32, synthetic data) and each
thread count, a worker process (all thread pools set to that count, the numba backend tuned
as ``refimpl bench`` tunes it) runs ``Trainer.train_step`` on one fixed batch, repeatedly,
with :mod:`refimpl.kernels.numba.profile` recording every phase of every kernel: im2col, the GEMMs,
col2im, the bias/relu and layout passes, pooling, activations, the loss; around them the
optimizer, the finite check of the gradients and the rest of the trainer's bookkeeping
(``train_step`` minus everything timed inside it), and gathering a batch by fancy indexing.

In the same process, before and after the steps, the machine's **sgemm peak** is measured:
the best of several ``np.dot`` of two 2048 x 2048 float32 matrices. Each GEMM row shows its achieved
GFLOPS (``2 m k n`` / time) and the fraction of that peak.

Each row is the **minimum over the repeats** of that phase's time (the least disturbed
one); the step total is the minimum of the step totals, so rows need not add up to it
exactly. Two clocks are recorded: wall (``perf_counter``) and process CPU time
(``process_time``, all threads summed). On a machine shared with other work, CPU time at
1 thread is the stable one (``--clock cpu``); wall time is what a user waits.
A torch worker times its whole step with the same clocks for reference.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np

from refimpl.bench.epochs import (
    LEARNING_RATE,
    PEAK_SIZE,
    PROTOCOL_PREFIX,
    WORKLOADS,
    _cpu_model,
    _synthetic_data,
    _thread_env,
    _TorchRunner,
    sgemm_peak,
)


def step_label(index: int, step: Any) -> str:
    """A short name for a model step: ``"2 conv 64>128 3x3 +relu"``, ``"4 maxpool 2"``."""
    from refimpl.layers import Activation, Conv2d, Dense, MaxPool2d

    inner = getattr(step, "conv", None) or getattr(step, "dense", None) or step
    relu = " +relu" if inner is not step else ""
    if getattr(step, "pool", None) is not None:
        relu += f" +maxpool {step.pool.k}"
    if isinstance(inner, Conv2d):
        c_out, c_in, k, _ = inner.params["W"].shape
        text = f"conv {c_in}>{c_out} {k}x{k}"
    elif isinstance(inner, Dense):
        text = "dense {}>{}".format(*inner.params["W"].shape)
    elif isinstance(inner, MaxPool2d):
        text = f"maxpool {inner.k}"
    elif isinstance(inner, Activation):
        text = inner.name
    else:
        text = type(inner).__name__.lower()
    return f"{index} {text}{relu}"


def _instrument(trainer: Any) -> None:
    """Wrap the model's steps, the loss, the optimizer and the finite check in labels."""
    from refimpl.kernels.numba import profile
    from refimpl.training import loop

    def wrap(owner: Any, name: str, label: str) -> None:
        method = getattr(owner, name)

        def timed(*args, **kwargs):
            with profile.layer(label):
                return method(*args, **kwargs)

        setattr(owner, name, timed)

    for index, step in enumerate(trainer.model.steps):
        wrap(step, "forward", f"fwd {step_label(index, step)}")
        wrap(step, "backward", f"bwd {step_label(index, step)}")
    wrap(trainer, "_loss_fn", "loss")
    wrap(trainer.optimizer, "step", "optimizer (SGD)")
    finite = loop.all_finite

    def timed_finite(*args):
        with profile.layer("finite check of loss and grads"):
            return finite(*args)

    trainer._profile_restore = (loop, finite)
    loop.all_finite = timed_finite


def _refimpl_profile(model: str, threads: int, repeats: int, seed: int) -> dict:
    import refimpl.kernels.numba
    from refimpl.kernels.numba import profile
    from refimpl.model import get_model
    from refimpl.optim import SGD
    from refimpl.train import Trainer

    settings = refimpl.kernels.numba.tune(threads, keep_large_blocks=True,
                                loops="measure" if threads > 1 else None)
    batch, _ = WORKLOADS[model]
    X, y = _synthetic_data(model, seed)
    net = get_model(model, seed=seed, dtype=np.float32, backend="numba")
    trainer = Trainer(net, SGD(net.parameters(), lr=LEARNING_RATE), batch_size=batch,
                      progress=False)
    order = np.random.default_rng(seed).permutation(len(y))
    index = order[:batch]
    xb, yb = X[index], y[index]
    for _ in range(3):  # load or compile the kernels, settle the allocator
        trainer.train_step(xb, yb)
    peak = sgemm_peak()
    _instrument(trainer)
    steps: list[list] = []
    try:
        for _ in range(repeats):
            with profile.recording() as events:
                with profile.layer("gather batch (fancy indexing)"):
                    xb, yb = X[index], y[index]
                with profile.layer("train_step"):
                    trainer.train_step(xb, yb)
            steps.append(list(events))
    finally:
        loop, finite = trainer._profile_restore
        loop.all_finite = finite
    after = sgemm_peak()  # the better of two measurements, before and after the steps
    peak = {key: max(peak[key], after[key]) for key in peak}
    return {"peak": peak, "steps": steps, "tune": settings,
            "loop_policy": refimpl.kernels.numba.loop_policy()}


def _torch_profile(model: str, threads: int, repeats: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    runner = _TorchRunner(model, seed)
    batch, _ = WORKLOADS[model]
    X, y = _synthetic_data(model, seed)
    xb, yb = torch.from_numpy(X[:batch]), torch.from_numpy(y[:batch])
    for _ in range(3):
        runner.step(xb, yb)
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        runner.step(xb, yb)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"step_wall_s": min(wall), "step_cpu_s": min(cpu), "peak": sgemm_peak()}


def worker(backend: str, model: str, threads: int, repeats: int, seed: int) -> None:
    """Run one profile and print it as one protocol line (``refimpl bench`` parses it)."""
    run = (_torch_profile if backend == "torch" else _refimpl_profile)(
        model, threads, repeats, seed)
    print(PROTOCOL_PREFIX + json.dumps(run), flush=True)


def _run_worker(backend: str, model: str, threads: int, repeats: int, seed: int) -> dict:
    command = [sys.executable, "-m", "refimpl.bench.profile", backend, model, str(threads),
               str(repeats), str(seed)]
    done = subprocess.run(command, capture_output=True, text=True,
                          env=_thread_env(threads, backend=backend), check=False)
    for line in done.stdout.splitlines():
        if line.startswith(PROTOCOL_PREFIX):
            return json.loads(line[len(PROTOCOL_PREFIX):])
    raise RuntimeError(f"profile worker {backend}/{model}/{threads} failed:\n{done.stderr}")


# ----------------------------------------------------------------------------- summary

def summarize(run: dict, clock: str) -> dict:
    """Rows (minimum over repeats per phase) and the step total, on ``clock``."""
    column = 4 if clock == "wall" else 5
    best: dict[tuple, dict] = {}
    totals: dict[str, list[float]] = {}
    for events in run["steps"]:
        per_step: dict[tuple, float] = {}
        inner: dict[str, float] = {}
        for layer, name, detail, flops, *clocks in events:
            seconds = clocks[column - 4]
            if name == "total":
                totals.setdefault(layer, []).append(seconds)
                continue
            key = (layer, name, detail)
            per_step[key] = per_step.get(key, 0.0) + seconds
            inner[layer] = inner.get(layer, 0.0) + seconds
            best.setdefault(key, {"flops": flops})
        for key, seconds in per_step.items():
            best[key]["s"] = min(best[key].get("s", np.inf), seconds)
        # the rest of each layer: its total minus its timed phases
        for layer, name, _detail, _flops, *clocks in events:
            if name == "total" and layer in inner:
                key = (layer, "other (checks, Python, copies)", "")
                rest = clocks[column - 4] - inner[layer]
                best.setdefault(key, {"flops": 0.0})
                best[key]["s"] = min(best[key].get("s", np.inf), rest)
    step = min(totals["train_step"])
    model_parts = [k for k in totals if k.startswith(("fwd ", "bwd ", "loss", "optimizer",
                                                      "finite"))]
    bookkeeping = min(
        t - sum(totals[k][i] for k in model_parts)
        for i, t in enumerate(totals["train_step"])
    )
    rows = []
    for layer, layer_totals in totals.items():
        if layer == "train_step":
            continue
        phases = [(key, value) for key, value in best.items() if key[0] == layer]
        if not phases:
            rows.append({"layer": layer, "phase": "", "detail": "", "s": min(layer_totals),
                         "flops": 0.0})
        for (_, name, detail), value in phases:
            rows.append({"layer": layer, "phase": name, "detail": detail, "s": value["s"],
                         "flops": value["flops"]})
    rows.append({"layer": "trainer bookkeeping", "phase": "train_step minus the rows above",
                 "detail": "", "s": bookkeeping, "flops": 0.0})
    peak = run["peak"][f"{clock}_gflops"]
    for row in rows:
        row["gflops"] = row["flops"] / row["s"] / 1e9 if row["flops"] and row["s"] > 0 else None
        row["of_peak"] = row["gflops"] / peak if row["gflops"] else None
    gemm_s = sum(r["s"] for r in rows if r["flops"])
    gemm_flops = sum(r["flops"] for r in rows if r["flops"])
    return {"rows": rows, "step_s": step, "peak_gflops": peak, "gemm_s": gemm_s,
            "gemm_flops": gemm_flops, "step_of_peak": gemm_flops / step / 1e9 / peak}


def format_profile(model: str, threads: int, run: dict, torch_run: dict | None,
                   clock: str) -> str:
    s = summarize(run, clock)
    lines = [(f"### {model}, {threads} thread(s), {clock} clock (minimum of "
              f"{len(run['steps'])} steps per row)"), "",
             "| layer | phase | m x k x n | ms | % of step | GFLOPS | % of sgemm peak |",
             "|---|---|---|---|---|---|---|"]
    for row in s["rows"]:
        gflops = f"{row['gflops']:.1f}" if row["gflops"] else ""
        of_peak = f"{100 * row['of_peak']:.0f}" if row["of_peak"] else ""
        lines.append(f"| {row['layer']} | {row['phase']} | {row['detail']} | "
                     f"{1e3 * row['s']:.2f} | {100 * row['s'] / s['step_s']:.1f} | "
                     f"{gflops} | {of_peak} |")
    lines += ["", (f"train_step: {1e3 * s['step_s']:.2f} ms; GEMMs {1e3 * s['gemm_s']:.2f} ms "
                   f"({100 * s['gemm_s'] / s['step_s']:.0f}% of the step) for "
                   f"{s['gemm_flops'] / 1e9:.3f} GFLOP; sgemm peak {s['peak_gflops']:.1f} "
                   f"GFLOPS ({PEAK_SIZE}^3 np.dot, same process); the step's GEMM work runs "
                   f"at {100 * s['step_of_peak']:.0f}% of that peak over the whole step.")]
    if torch_run is not None:
        torch_s = torch_run[f"step_{clock}_s"]
        lines.append(f"torch step (same clock, separate process): {1e3 * torch_s:.2f} ms; "
                     f"refimpl numba / torch = {s['step_s'] / torch_s:.2f}.")
    return "\n".join(lines) + "\n"


def run_profile(models: list[str], threads_list: list[int], repeats: int, seed: int,
                clock: str, with_torch: bool) -> tuple[str, dict]:
    """Profile every model at every thread count; return the Markdown and the raw runs."""
    raw: dict[str, Any] = {"cpu": _cpu_model(), "platform": platform.platform(),
                           "clock": clock, "runs": {}}
    parts = [(f"CPU: {raw['cpu']} ({os.cpu_count()} logical CPUs); load average "
              f"{[round(v, 2) for v in os.getloadavg()]}."), ""]
    for model in models:
        for threads in threads_list:
            print(f"profile {model} at {threads} thread(s)", file=sys.stderr, flush=True)
            run = _run_worker("numba", model, threads, repeats, seed)
            torch_run = _run_worker("torch", model, threads, repeats, seed) if with_torch \
                else None
            raw["runs"][f"{model}/{threads}"] = {"numba": run, "torch": torch_run}
            parts.append(format_profile(model, threads, run, torch_run, clock))
    return "\n".join(parts), raw


if __name__ == "__main__":
    backend_name, model_name, n_threads, n_repeats, the_seed = sys.argv[1:6]
    worker(backend_name, model_name, int(n_threads), int(n_repeats), int(the_seed))
