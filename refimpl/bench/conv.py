"""Per-layer convolution timings: each conv layer of a model on every path the numba backend has
for it (im2col, Winograd F(2x2, 3x3), direct loops), against PyTorch CPU.

``python -m refimpl.bench.conv [--model lrpo_cnn] [--batch 64] [--repeats 20]`` prints one
Markdown table per model: for each conv step of the model's fused plan (the op it runs:
conv+relu or conv+relu+maxpool) and each path, the median time of a forward + backward (the
backward without the input gradient for the model's first layer, as in training), the path's
own GFLOPS (floating-point operations of its matrix products, or of its loops, per second),
the effective GFLOPS (those of the direct convolution, ``2 N H_out W_out C_out C_in kh kw`` per
product, per second: comparable across paths) and the ratio to im2col measured in the same
run. PyTorch runs the same ops (``conv2d``, ``relu``, ``max_pool2d``) with autograd; its
algorithm is its own, so only its effective GFLOPS is given.

Method: float32 random data of the layer's shapes; every path runs twice untimed, then the paths
take turns ``--repeats`` times (so a change in the machine's load reaches all of them); medians.
The paths are forced one at a time (``REFIMPL_CONV_PATH``'s mechanism), so the measured policy
of :mod:`refimpl.kernels.numba.tuning` is neither consulted nor changed. The process-wide
settings are those of ``refimpl bench`` (``tune(keep_large_blocks=True)``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import numpy as np

import refimpl.kernels.numba as nb
from refimpl.bench.epochs import machine_info
from refimpl.kernels.numba import tuning, winograd
from refimpl.kernels.plan import Conv2dReLU, Conv2dReLUPool
from refimpl.model import MODELS, get_model


def conv_layers(model: str, batch: int) -> list[dict]:
    """The conv steps of ``model``'s numba plan: op, shapes, options, whether dx is needed."""
    net = get_model(model, seed=0, dtype=np.float32, backend="numba")
    x = np.zeros((1, *MODELS[model][1]), dtype=np.float32)
    layers = []
    for k, step in enumerate(net.steps):
        if isinstance(step, (Conv2dReLU, Conv2dReLUPool)):
            W = step.params["W"]
            layers.append({"op": step.op, "x_shape": (batch, *x.shape[1:]), "w_shape": W.shape,
                           "options": step.options(), "need_dx": k > net.plan.first_trainable})
        with tuning._conv_policy("im2col"):  # shapes only: no measurement for batch 1
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


def measure(layer: dict, repeats: int, seed: int = 0) -> dict:
    """Median seconds of a forward + backward of ``layer`` on each path and on PyTorch."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer["x_shape"]).astype(np.float32)
    fan_in = int(np.prod(layer["w_shape"][1:]))
    W = (rng.standard_normal(layer["w_shape"]) / np.sqrt(fan_in)).astype(np.float32)
    b = np.zeros(layer["w_shape"][0], np.float32)
    stride = layer["options"][0]
    steps = {path: _numba_step(layer, path, x, W, b)
             for path in tuning.conv_candidates(x.shape, W.shape, stride, x.dtype)}
    if (torch_step := _torch_step(layer, x, W, b)) is not None:
        steps["torch"] = torch_step
    for step in steps.values():
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def report(model: str, layers: list[dict], seconds: list[dict], machine: dict) -> str:
    """The Markdown table of :func:`measure`'s results, with the machine and versions."""
    lines = [(f"conv layers of {model}, float32, forward + backward; median of the interleaved "
             "repeats; ratio = im2col time / this time (same run)"),
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
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be positive")
    nb.tune(keep_large_blocks=True)
    layers = conv_layers(args.model, args.batch)
    seconds = []
    for layer in layers:
        seconds.append(measure(layer, args.repeats))
    print(report(args.model, layers, seconds, machine_info()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
