"""``make gpu-check``: the CUDA backend on a real GPU, in one run of a few minutes.

1. prints the device (and the versions of numba, numba-cuda and torch);
2. runs the CUDA tests with the simulator off (``pytest tests/backends -k cuda``);
3. times training steps of ``mlp`` (batch 128) and ``lrpo_cnn`` (batch 64), float32, SGD:
   refimpl's device-resident step (``Trainer.train_step`` on the ``cuda`` backend), refimpl's
   op-by-op step on host arrays, and torch CUDA on the same model (weights copied), with the
   repeats interleaved, and checks that the three agree on the first step's loss;
4. writes the results as Markdown (``--out``, default ``out/gpu-check.md``) for
   ``docs/benchmarks.md``.

Run from the repository root with ``PYTHONPATH=.`` (no install, no network)::

    PYTHONPATH=. python scripts/gpu_check.py [--out out/gpu-check.md]

``--tiny`` runs the same path on Numba's CUDA simulator with tiny models and a few tests,
torch on the CPU standing in for torch CUDA; its timings measure the simulator, not a GPU,
and the report says so. The exit status is 0 when the tests pass, 1 when they fail or
could not run, and 2 when there is no GPU (without ``--tiny``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The CUDA tests: the agreement suite's cuda cases, the device layer, the training step.
TESTS = (["tests/backends"], "cuda")
#: In --tiny mode: a quick selection, to exercise this script's test stage.
TINY_TESTS = (["tests/backends/test_cuda_training.py"], "optimizer_kernels and momentum")
#: Full runs: the named models and batch sizes of docs/benchmarks.md.
BATCHES = {"mlp": 128, "lrpo_cnn": 64}
#: --tiny: small models of the same kinds -> (spec, per-sample input shape, batch size).
TINY_MODELS = {
    "mlp": ("flatten,dense:8,relu,dense:10", (16,), 4),
    "lrpo_cnn": ("conv:2x3,relu,pool2,flatten,dense:10", (1, 6, 6), 2),
}
LEARNING_RATE = 0.01
DEVICE_RESIDENT = "refimpl cuda, device-resident step (`Trainer.train_step`)"
OP_BY_OP = "refimpl cuda, op by op on host arrays"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/gpu-check.md", help="the Markdown report")
    parser.add_argument("--tiny", action="store_true",
                        help="the simulator, tiny models, torch CPU (no GPU needed)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (5; --tiny 2)")
    parser.add_argument("--steps", type=int, help="steps timed per repeat (20; --tiny 1)")
    parser.add_argument("--budget", type=float,
                        help="seconds for the whole run (570; --tiny 240); repeats stop early")
    parser.add_argument("--skip-tests", action="store_true", help="benchmarks only")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.tiny else 5)
    args.steps = args.steps or (1 if args.tiny else 20)
    args.budget = args.budget or (240.0 if args.tiny else 570.0)
    return args


# --- the device -------------------------------------------------------------------------------


def describe_device(tiny: bool) -> dict[str, Any]:
    """The GPU (or the simulator), its driver, and the library versions."""
    import numba
    from numba import cuda

    import refimpl.kernels.cuda as kc

    info: dict[str, Any] = {"numba": numba.__version__, "simulator": kc.is_simulator,
                            "usable": kc.is_available()}
    try:
        from importlib.metadata import version

        info["numba-cuda"] = version("numba-cuda")
    except Exception:  # noqa: BLE001 - a version is only reported
        info["numba-cuda"] = "?"
    if kc.is_simulator:
        info["device"] = "Numba CUDA simulator (no GPU: every GPU thread is a Python thread)"
    elif info["usable"]:
        gpu = cuda.get_current_device()
        name = gpu.name.decode() if isinstance(gpu.name, bytes) else gpu.name
        info["device"] = f"{name} (compute capability {gpu.compute_capability})"
        try:
            info["cuda driver"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
        except Exception as exc:  # noqa: BLE001 - the driver version is only reported
            info["cuda driver"] = f"unknown ({type(exc).__name__})"
    else:
        info["device"] = "none"
    torch = _torch()
    if torch is not None:
        info["torch"] = torch.__version__
        gpu = torch.cuda.is_available() and not tiny
        info["torch device"] = (f"cuda: {torch.cuda.get_device_name(0)} (CUDA "
                                f"{torch.version.cuda})" if gpu else "cpu")
    return info


def _torch():
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch


# --- the tests --------------------------------------------------------------------------------


def run_tests(tiny: bool, timeout: float) -> dict[str, Any]:
    """``pytest`` on the CUDA tests in a child process with the simulator on or off."""
    paths, selection = TINY_TESTS if tiny else TESTS
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths,
               "-k", selection]
    shown = f"NUMBA_ENABLE_CUDASIM={int(tiny)} pytest -q {' '.join(paths)} -k '{selection}'"
    if importlib.util.find_spec("pytest") is None:
        return {"ok": False, "command": shown, "summary": "not run: pytest is not installed"}
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1" if tiny else "0",
           "REFIMPL_GPU_CHECK_CHILD": "1",  # the tiny-mode test must not start this again
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    print(f"$ {shown}", flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=max(timeout, 30), check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "command": shown, "summary": f"timed out after {timeout:.0f} s"}
    output = done.stdout + done.stderr
    print(output[-4000:], flush=True)
    lines = [line for line in output.splitlines()
             if re.search(r"\d+ (passed|failed|error)", line)]
    summary = lines[-1].strip("= ") if lines else f"pytest exited with {done.returncode}"
    return {"ok": done.returncode == 0, "command": shown, "summary": summary,
            "seconds": time.perf_counter() - started}


# --- the steps timed --------------------------------------------------------------------------


class DeviceResident:
    """refimpl's trainer on the cuda backend: the step stays on the device."""

    label = DEVICE_RESIDENT

    def __init__(self, make_model) -> None:
        from refimpl.optim import SGD
        from refimpl.training.loop import Trainer

        model = make_model()
        self.trainer = Trainer(model, SGD(model.parameters(), lr=LEARNING_RATE),
                               progress=False)

    def step(self, xb, yb) -> float:
        return self.trainer.train_step(xb, yb)


class OpByOp:
    """The model's own forward/backward through the NumPy-level cuda ops (every op copies its
    inputs in and its outputs out) and the optimizer's update of host arrays."""

    label = OP_BY_OP

    def __init__(self, make_model) -> None:
        from refimpl.optim import SGD

        self.model = make_model()
        self.optimizer = SGD(self.model.parameters(), lr=LEARNING_RATE)

    def step(self, xb, yb) -> float:
        logits = self.model.forward(xb)
        loss, dlogits = self.model.ops.softmax_cross_entropy(logits, yb)
        self.model.backward(dlogits, input_grad=False)
        self.optimizer.step(self.model.gradients(), copy_grads=False)
        return float(loss)


class TorchStep:
    """The same layers and weights in torch, SGD, the batch copied in and the loss out."""

    def __init__(self, make_model, torch, device: str, stand_in: bool) -> None:
        self.torch, self.device = torch, device
        self.net = _torch_model(make_model(), torch).to(device)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LEARNING_RATE)
        self.label = "torch CPU (stand-in: no GPU)" if stand_in else f"torch {device.upper()}"

    def step(self, xb, yb) -> float:
        x = self.torch.from_numpy(xb).to(self.device)
        y = self.torch.from_numpy(yb).to(self.device)
        self.optimizer.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.net(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def _torch_model(model, torch):
    """A torch ``Sequential`` with refimpl ``model``'s layers and weights."""
    from refimpl.layers import Activation, Conv2d, Dense, Flatten, MaxPool2d

    nn = torch.nn
    layers = []
    for layer in model.layers:
        if isinstance(layer, (Dense, Conv2d)):
            W, b = layer.params["W"], layer.params["b"]
            if isinstance(layer, Dense):
                module, weight = nn.Linear(*W.shape), W.T
            else:
                module = nn.Conv2d(W.shape[1], W.shape[0], W.shape[2], stride=layer.stride,
                                   padding=layer.padding)
                weight = W
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(weight.copy()))
                module.bias.copy_(torch.from_numpy(b.copy()))
        elif isinstance(layer, MaxPool2d):
            module = nn.MaxPool2d(layer.k)
        elif isinstance(layer, Flatten):
            module = nn.Flatten()
        elif isinstance(layer, Activation) and layer.name in ("relu", "tanh", "sigmoid"):
            module = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[layer.name]()
        else:
            raise ValueError(f"no torch form for {layer!r}")
        layers.append(module)
    return nn.Sequential(*layers)


def bench_model(name: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    """First-step losses and per-step times of every runner on one fixed batch."""
    import numpy as np

    from refimpl.model import MODELS, build, get_model

    if args.tiny:
        spec, shape, batch = TINY_MODELS[name]

        def make_model():
            return build(spec, shape, seed=0, dtype=np.float32, backend="cuda")
    else:
        batch, shape = BATCHES[name], MODELS[name][1]

        def make_model():
            return get_model(name, seed=0, dtype=np.float32, backend="cuda")
    model = make_model()
    rng = np.random.default_rng(0)
    xb = rng.random((batch, *shape), dtype=np.float32)
    yb = rng.integers(0, 10, size=batch)
    runners: list[Any] = [DeviceResident(make_model), OpByOp(make_model)]
    torch = _torch()
    if torch is not None:
        gpu = torch.cuda.is_available() and not args.tiny
        runners.append(TorchStep(make_model, torch, "cuda" if gpu else "cpu", stand_in=not gpu))
    first, times = {}, {runner.label: [] for runner in runners}
    for runner in runners:  # the first step compiles the kernels: not timed
        print(f"[{name}] first step: {runner.label}", flush=True)
        first[runner.label] = runner.step(xb, yb)
        runner.step(xb, yb)
    for repeat in range(args.repeats):
        if repeat and time.monotonic() > deadline:
            print(f"[{name}] time budget reached after {repeat} repeats", flush=True)
            break
        for runner in runners:
            started = time.perf_counter()
            for _ in range(args.steps):
                runner.step(xb, yb)
            times[runner.label].append((time.perf_counter() - started) / args.steps)
    return {"name": name, "batch": batch, "spec": spec if args.tiny else None,
            "parameters": model.num_parameters(), "first_loss": first,
            "step_ms": {label: 1e3 * statistics.median(t) for label, t in times.items()},
            "repeats": len(next(iter(times.values())))}


# --- the report -------------------------------------------------------------------------------


def markdown(device: dict, tests: dict | None, results: list[dict], args: argparse.Namespace,
             argv: Sequence[str]) -> str:
    from refimpl.bench.epochs import machine_info

    machine = machine_info()
    lines = ["## CUDA check", "",
             f"Measured {machine['date_utc']} with `scripts/gpu_check.py "
             f"{' '.join(argv)}`".rstrip() + " (`make gpu-check`).", ""]
    if device["simulator"]:
        lines += [("**Simulator run (`--tiny`)**: tiny models on Numba's CUDA simulator; the "
                  "times measure the simulator, not a GPU, and torch runs on the CPU."), ""]
    lines += [f"- Device: {device['device']}"]
    lines += [f"- {key}: {device[key]}" for key in ("cuda driver", "torch device")
              if key in device]
    lines += [(f"- Versions: Python {machine['python']}, numpy {machine['numpy']}, numba "
              f"{device['numba']}, numba-cuda {device['numba-cuda']}, torch "
              f"{device.get('torch', 'not installed')}"),
              (f"- Host: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, "
              f"{machine['platform']}"), ""]
    if tests is not None:
        verdict = "passed" if tests["ok"] else "FAILED"
        lines += ["### Tests", "", f"`{tests['command']}`: **{verdict}** ({tests['summary']}).",
                  ""]
    for result in results:
        torch_label = next((label for label in result["step_ms"]
                            if label.startswith("torch")), None)
        torch_ms = result["step_ms"].get(torch_label)
        reference = result["first_loss"][DEVICE_RESIDENT]
        what = f"`{result['spec']}`" if result["spec"] else "float32"
        lines += [(f"### {result['name']} (batch {result['batch']}, {what}, "
                  f"{result['parameters']:,} parameters)"), "",
                  "| implementation | step ms | step / torch | first-step loss |",
                  "|---|---|---|---|"]
        for label, ms in result["step_ms"].items():
            ratio = f"{ms / torch_ms:.2f}" if torch_ms else "-"
            loss = result["first_loss"][label]
            agree = "" if label == DEVICE_RESIDENT else \
                f" ({abs(loss - reference) / abs(reference):.1e} from the first row)"
            lines.append(f"| {label} | {ms:.3f} | {ratio} | {loss:.6f}{agree} |")
        lines.append("")
    lines += [(f"A step: the batch copied in from host memory, forward, softmax cross-entropy, "
              f"backward, an SGD update (lr {LEARNING_RATE}), and the loss back as a Python "
              f"float (which waits for the device). Medians over {args.repeats} interleaved "
              f"repeats (fewer where the time budget ran out) of {args.steps} steps on one "
              "fixed batch; two untimed steps first (kernel compilation). Every implementation "
              "starts from the same weights, so the first-step losses agree to float32 "
              "rounding."), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    # Before numba is imported: the simulator is on for --tiny and off otherwise.
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1" if args.tiny else "0"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    started = time.monotonic()
    device = describe_device(args.tiny)
    print("device:", ", ".join(f"{key}={value}" for key, value in device.items()), flush=True)
    if not device["usable"]:
        print("gpu_check: no usable CUDA GPU; run with --tiny to use the simulator",
              file=sys.stderr)
        return 2
    tests = None
    if not args.skip_tests:
        # leave the benchmarks about a third of the budget
        tests = run_tests(args.tiny, timeout=args.budget * 2 / 3)
    deadline = started + args.budget * 0.9
    results = [bench_model(name, args, deadline) for name in BATCHES]
    report = markdown(device, tests, results, args, argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    print(f"gpu_check: wrote {out} in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if tests is None or tests["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
