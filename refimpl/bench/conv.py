"""Per-layer convolution timings: each conv layer of a model on every path the numba backend has
for it (im2col, Winograd F(2x2, 3x3), direct loops), against PyTorch CPU.

``python -m refimpl.bench.conv [--model lrpo_cnn] [--batch 64] [--repeats 20] [--threads 1,2]``
prints one Markdown table per thread count: for each conv step of the model's fused plan (the
op it runs: conv+relu or conv+relu+maxpool) and each path, the median time of a forward +
backward (the backward without the input gradient for the model's first layer, as in
training), the path's own GFLOPS (floating-point operations of its matrix products, or of its
loops, per second), the effective GFLOPS (those of the direct convolution,
``2 N H_out W_out C_out C_in kh kw`` per product, per second: comparable across paths) and
the ratio to im2col measured in the same run. PyTorch runs the same ops (``conv2d``, ``relu``,
``max_pool2d``) with autograd; its algorithm is its own, so only its effective GFLOPS is given.

Method: float32 random data of the layer's shapes (the same seed in both processes). As in
``refimpl bench`` (:mod:`refimpl.bench.epochs`), the numba paths and PyTorch run in two worker
processes per thread count, every thread pool at that count: numba's with the environment of
:func:`refimpl.kernels.numba.tuning.shared_cores_environment` and
``tune(threads, keep_large_blocks=True)``, torch's with its defaults, so neither library's
idle threads wait on the cores of the other's work. Each worker runs every path twice
untimed, then the coordinator asks torch and numba in turn, ``--repeats`` rounds per layer
(in a round, each path's forward + backward :data:`CALLS_PER_ROUND` times back to back, their
median; so a change in the machine's load reaches every path); medians over the rounds. The
paths are forced one at a time (``REFIMPL_CONV_PATH``'s mechanism), so the measured policy of
:mod:`refimpl.kernels.numba.tuning` is neither consulted nor changed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence

import numpy as np

import refimpl.kernels.numba as nb
from refimpl.bench.epochs import (
    PROTOCOL_PREFIX,
    WorkerProcess,
    _progress,
    _thread_env,
    checked_thread_counts,
    machine_info,
)
from refimpl.kernels.numba import tuning, winograd
from refimpl.kernels.plan import Conv2dReLU, Conv2dReLUPool
from refimpl.model import MODELS, get_model


def conv_layers(model: str, batch: int) -> list[dict]:
    """The conv steps of ``model``'s fused plan: op, shapes, options, whether dx is needed.
    Found by one image through the oracle's fused plan, so no numba kernel runs here."""
    net = get_model(model, seed=0, dtype=np.float32).set_backend("numpy", fuse=True)
    x = np.zeros((1, *MODELS[model][1]), dtype=np.float32)
    layers = []
    for k, step in enumerate(net.steps):
        if isinstance(step, (Conv2dReLU, Conv2dReLUPool)):
            W = step.params["W"]
            layers.append({"op": step.op, "x_shape": (batch, *x.shape[1:]), "w_shape": W.shape,
                           "options": step.options(), "need_dx": k > net.plan.first_trainable})
        x = step.forward(x)
        step.clear_cache()
    return layers


def direct_flops(layer: dict) -> float:
    """Forward + backward operations of the direct convolution (3 products, 2 without dx)."""
    padding = layer["options"][1]
    return tuning.conv_flops(layer["x_shape"], layer["w_shape"], padding) * (
        3 if layer["need_dx"] else 2)


def path_flops(layer: dict, path: str) -> float:
    """Operations the path itself performs in its products: Winograd's 16 per tile."""
    if path != "winograd":
        return direct_flops(layer)
    n, c_in, height, width = layer["x_shape"]
    padding = layer["options"][1]
    tiles_h, tiles_w = winograd.tile_grid(height + 2 * padding - 2, width + 2 * padding - 2)
    product = 2.0 * winograd.POINTS * layer["w_shape"][0] * c_in * n * tiles_h * tiles_w
    return product * (3 if layer["need_dx"] else 2)


def _numba_step(layer: dict, path: str, x, W, b):
    forward = getattr(nb, f"{layer['op']}_forward")
    backward = getattr(nb, f"{layer['op']}_backward")

    def step() -> None:
        with tuning._conv_policy(path):
            y, cache = forward(x, W, b, *layer["options"])
            backward(np.ones_like(y), cache, need_dx=layer["need_dx"])

    return step


def _torch_step(layer: dict, x, W, b):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    stride, padding = layer["options"][:2]
    xt = torch.from_numpy(x).requires_grad_(layer["need_dx"])
    Wt, bt = torch.from_numpy(W).requires_grad_(), torch.from_numpy(b).requires_grad_()

    def step() -> None:
        y = F.relu(F.conv2d(xt, Wt, bt, stride=stride, padding=padding))
        if layer["op"] == "conv2d_relu_maxpool2d":
            y = F.max_pool2d(y, layer["options"][2])
        y.backward(torch.ones_like(y))
        for tensor in (xt, Wt, bt):
            tensor.grad = None

    return step


def _layer_data(layer: dict, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer["x_shape"]).astype(np.float32)
    fan_in = int(np.prod(layer["w_shape"][1:]))
    W = (rng.standard_normal(layer["w_shape"]) / np.sqrt(fan_in)).astype(np.float32)
    return x, W, np.zeros(layer["w_shape"][0], np.float32)


#: Calls of a step per round, back to back; the round's time is their median. A call of a few
#: milliseconds right after the other worker's may share the cores with that library's idle
#: threads still spinning (torch's OpenMP spins a while before it sleeps); the median of three
#: is a call after the first.
CALLS_PER_ROUND = 3


def worker(backend: str, model: str, batch: int, threads: int, seed: int) -> None:
    """A worker process: the steps of every layer on ``backend`` (``numba``: each path;
    ``torch``), each run twice; its hello names them per layer. Then, for each job, the median
    of :data:`CALLS_PER_ROUND` timed forward + backward calls of every step of the layer the
    job names, until ``{"job": "quit"}``."""
    if backend == "numba":
        nb.tune(threads, keep_large_blocks=True)
    else:
        import torch

        torch.set_num_threads(threads)
    steps = []
    for layer in conv_layers(model, batch):
        x, W, b = _layer_data(layer, seed)
        if backend == "torch":
            steps.append({"torch": _torch_step(layer, x, W, b)})
        else:
            steps.append({path: _numba_step(layer, path, x, W, b)
                          for path in tuning.conv_candidates(x.shape, W.shape,
                                                             layer["options"][0], x.dtype)})
    for step in (step for layer_steps in steps for step in layer_steps.values()):
        step()
        step()
    print(PROTOCOL_PREFIX + json.dumps({"paths": [list(s) for s in steps]}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        if job["job"] == "quit":
            return
        seconds = {}
        for name, step in steps[job["layer"]].items():
            calls = []
            for _ in range(CALLS_PER_ROUND):
                start = time.perf_counter()
                step()
                calls.append(time.perf_counter() - start)
            seconds[name] = statistics.median(calls)
        print(PROTOCOL_PREFIX + json.dumps({"seconds": seconds}), flush=True)


def run(model: str, batch: int, repeats: int, threads: Sequence[int], seed: int = 0) -> dict:
    """``{threads: [{path: median seconds} per layer]}``: the workers of each thread count
    asked in turn, torch then numba, ``repeats`` rounds per layer."""
    import importlib.util

    backends = ["torch", "numba"] if importlib.util.find_spec("torch") else ["numba"]
    results: dict[int, list[dict]] = {}
    for t in threads:
        workers = [WorkerProcess(
            [sys.executable, "-m", "refimpl.bench.conv", "--worker", backend, "--model", model,
             "--batch", str(batch), "--threads", str(t), "--seed", str(seed)],
            _thread_env(t, backend=backend), f"conv bench worker {backend!r}")
            for backend in backends]
        try:
            results[t] = []
            n_layers = len(workers[0].hello["paths"])
            for i in range(n_layers):
                samples: dict[str, list[float]] = {}
                for _ in range(repeats):
                    for w in workers:
                        for name, sec in w.ask({"job": "time", "layer": i})["seconds"].items():
                            samples.setdefault(name, []).append(sec)
                _progress(f"bench conv: {t} thread(s), layer {i + 1}/{n_layers}")
                by_path = {name: statistics.median(v) for name, v in samples.items()}
                # numba's paths first, im2col leading, torch last, as the table reads
                results[t].append({name: by_path[name] for name in
                                   sorted(by_path, key=lambda p: (p == "torch", p != "im2col"))})
        finally:
            for w in workers:
                w.close(answer=False)
    return results


def report(model: str, layers: list[dict], seconds: list[dict], machine: dict,
           threads: int | None = None) -> str:
    """The Markdown table of one thread count's results, with the machine and versions."""
    at = "" if threads is None else f" at {threads} thread(s)"
    lines = [(f"conv layers of {model}{at}, float32, forward + backward; median of the "
              "interleaved repeats; ratio = im2col time / this time (same run)"),
             (f"machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, "
             f"{machine['platform']}; load average {machine['load_average']}; numpy "
             f"{machine['numpy']}, numba {machine['numba']}, torch {machine['torch']}"),
             "", "| layer | path | ms | GFLOPS | effective GFLOPS | ratio to im2col |",
             "|---|---|---:|---:|---:|---:|"]
    for layer, measured in zip(layers, seconds):
        n, c_in, height, width = layer["x_shape"]
        name = (f"{layer['op']} {c_in}->{layer['w_shape'][0]} {height}x{width} "
                f"k{layer['w_shape'][2]}x{layer['w_shape'][3]} N={n}"
                + ("" if layer["need_dx"] else " (no dx)"))
        for path, s in measured.items():
            own = "-" if path == "torch" else f"{path_flops(layer, path) / s / 1e9:.1f}"
            lines.append(f"| {name} | {path} | {s * 1e3:.2f} | {own} | "
                         f"{direct_flops(layer) / s / 1e9:.1f} | {measured['im2col'] / s:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refimpl.bench.conv", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--model", default="lrpo_cnn", choices=sorted(MODELS),
                        help="a named model (default lrpo_cnn)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--threads", default="1,2",
                        help="thread count(s) of every library, e.g. 2 or 1,2 (default 1,2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data (default 0)")
    parser.add_argument("--worker", choices=("numba", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be positive")
    try:
        threads = checked_thread_counts(args.threads)
    except ValueError as error:
        parser.error(str(error))
    if args.worker:
        worker(args.worker, args.model, args.batch, threads[0], args.seed)
        return 0
    layers = conv_layers(args.model, args.batch)
    results = run(args.model, args.batch, args.repeats, threads, args.seed)
    machine = machine_info()
    print("\n\n".join(report(args.model, layers, results[t], machine, t) for t in threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
