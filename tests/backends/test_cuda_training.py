"""The device-resident training step of the CUDA backend (refimpl.kernels.cuda.train and
refimpl.kernels.cuda.optim): ``Trainer.fit`` with ``backend="cuda"`` against the NumPy oracle,
the optimizer kernels against ``refimpl.optim`` step by step, the host<->device copies of a
step, and ``scripts/gpu_check.py --tiny``.

Runs on a GPU when one is usable, else on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``);
with neither, the module skips. On the simulator every GPU thread is a Python thread, so the
models and data are tiny (a step of the small MLP takes about two seconds there).

Tolerances: a whole ``fit`` in float64 agrees with the oracle within 1e-10 relative (losses,
final parameters, optimizer state); the kernels sum in another order than NumPy, so not bit
for bit. The optimizer kernels do the oracle's operations in its order: on the simulator they
are equal to ``refimpl.optim`` bit for bit; on a GPU, where NVVM may fuse a multiply and an
add, within 1e-12 (float64) and 1e-5 (float32) of the largest magnitude.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.backends._cuda import require_cuda

cuda = require_cuda()

import refimpl.kernels.cuda as kc
from refimpl.kernels.cuda import optim as device_optim
from refimpl.kernels.cuda import train as device_train
from refimpl.model import build
from refimpl.optim import SGD, Adam, AdamW, NAdam
from refimpl.training.loop import Trainer
from tests.conftest import ROOT

pytestmark = pytest.mark.cuda

TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
FIT_TOL = 1e-10

#: name -> (spec, per-sample input shape, samples): 16-sample batches, the MLP's last one of 12
MODELS = {
    "mlp": ("dense:16,relu,dense:10", (20,), 60),
    "cnn": ("conv:4x3,relu,pool2,flatten,dense:10", (1, 8, 8), 32),
}
OPTIMIZERS = {
    "sgd": lambda params: SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda params: Adam(params, lr=0.01),
}


def relative_error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    scale = max(float(np.max(np.abs(want), initial=0.0)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(got - want), initial=0.0)) / scale


def data(model: str, seed: int = 0):
    _, shape, n = MODELS[model]
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), rng.integers(0, 10, size=n)


def make_trainer(model: str, optimizer: str, backend: str, **kwargs) -> Trainer:
    spec, shape, _ = MODELS[model]
    net = build(spec, shape, seed=0, dtype=np.float64, backend=backend)
    return Trainer(net, OPTIMIZERS[optimizer](net.parameters()), batch_size=16, seed=3,
                   progress=False, **kwargs)


def greedy(lr: float):
    from refimpl.registry import make_scheduler

    return make_scheduler("greedy", lr, patience=1, min_lr=1e-3, max_lr=0.5)


_ORACLE: dict = {}


def oracle_fit(model: str, optimizer: str, epochs: int = 2) -> Trainer:
    """The numpy backend's run (cached: several tests compare with it)."""
    key = (model, optimizer, epochs)
    if key not in _ORACLE:
        trainer = make_trainer(model, optimizer, "numpy",
                               scheduler=greedy(0.05) if optimizer == "sgd" else None)
        val = data(model, seed=1) if model == "mlp" else None
        trainer.fit(data(model), val=val, epochs=epochs)
        _ORACLE[key] = trainer
    return _ORACLE[key]


def assert_same_run(got: Trainer, want: Trainer) -> None:
    """Losses, rates, accuracies, final parameters and optimizer state within FIT_TOL."""
    assert len(got.history.loss) == len(want.history.loss)
    assert relative_error(got.history.loss, want.history.loss) <= FIT_TOL
    assert got.history.lr == want.history.lr
    assert got.history.train_acc == want.history.train_acc
    assert np.allclose(got.history.val_loss, want.history.val_loss, rtol=FIT_TOL, atol=0,
                       equal_nan=True)
    for (name, p), q in zip(got.model.named_parameters(), want.model.parameters()):
        assert relative_error(p, q) <= FIT_TOL, name
    got_state, want_state = got.state_dict()["optimizer"]["state"], \
        want.state_dict()["optimizer"]["state"]
    assert got_state.keys() == want_state.keys()
    for index, entry in want_state.items():
        assert got_state[index].keys() == entry.keys()
        for key, value in entry.items():
            assert relative_error(got_state[index][key], value) <= FIT_TOL, (index, key)


# --- Trainer.fit on the device against the oracle ----------------------------------------


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_fit_on_the_device_matches_the_oracle(model, optimizer):
    """Two epochs of ``fit`` (SGD with momentum and weight decay under GreedyLR, which reads
    the loss at every step; Adam), with validation for the MLP (evaluation reads the
    parameters the device has trained)."""
    want = oracle_fit(model, optimizer)
    got = make_trainer(model, optimizer, "cuda",
                       scheduler=greedy(0.05) if optimizer == "sgd" else None)
    val = data(model, seed=1) if model == "mlp" else None
    got.fit(data(model), val=val, epochs=2)
    assert isinstance(got._device, device_train.DeviceStep)  # the step ran on the device
    assert_same_run(got, want)


def test_a_run_resumed_from_a_device_checkpoint_matches_the_oracle(tmp_path):
    """The checkpoint written after epoch 1 holds the device's parameters and momentum
    buffers; a new trainer resumes from it (copying them to the device again)."""
    first = make_trainer("mlp", "sgd", "cuda", scheduler=greedy(0.05), checkpoint_dir=tmp_path)
    first.fit(data("mlp"), val=data("mlp", seed=1), epochs=1)
    resumed = make_trainer("mlp", "sgd", "cuda", scheduler=greedy(0.05),
                           checkpoint_dir=tmp_path)
    resumed.fit(data("mlp"), val=data("mlp", seed=1), epochs=2, resume=True)
    assert_same_run(resumed, oracle_fit("mlp", "sgd"))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf, both sides
def test_a_non_finite_batch_updates_nothing_and_later_steps_match_the_oracle():
    got = make_trainer("mlp", "sgd", "cuda", nan_policy="skip-batch")
    want = make_trainer("mlp", "sgd", "numpy", nan_policy="skip-batch")
    X, y = data("mlp")
    bad = X[:16].copy()
    bad[3, 2] = np.inf
    for trainer in (got, want):
        assert np.isnan(trainer.train_step(bad, y[:16]))
        assert trainer.history.skipped == [0]
        trainer.train_step(X[16:32], y[16:32])
        trainer.train_step(X[32:48], y[32:48])
    assert relative_error(got.history.loss[1:], want.history.loss[1:]) <= FIT_TOL
    # evaluate() refreshes the host parameters from the device before it reads them
    assert got.evaluate(X, y) == pytest.approx(want.evaluate(X, y), rel=FIT_TOL)
    for (name, p), q in zip(got.model.named_parameters(), want.model.parameters()):
        assert relative_error(p, q) <= FIT_TOL, name


def test_bad_labels_raise_the_oracles_error():
    got = make_trainer("mlp", "sgd", "cuda")
    want = make_trainer("mlp", "sgd", "numpy")
    X, y = data("mlp")
    for labels in (np.full(16, 10), y[:16].astype(np.float64), y[:15]):
        with pytest.raises(ValueError) as expected:
            want.train_step(X[:16], labels)
        with pytest.raises(ValueError) as raised:
            got.train_step(X[:16], labels)
        assert str(raised.value) == str(expected.value)


def test_an_optimizer_without_device_kernels_trains_op_by_op():
    """NAdam has no CUDA update: the trainer keeps the host step (as before this module)."""
    spec, shape, _ = MODELS["mlp"]
    losses = []
    for backend in ("cuda", "numpy"):
        net = build(spec, shape, seed=0, dtype=np.float64, backend=backend)
        trainer = Trainer(net, NAdam(net.parameters(), lr=0.01), batch_size=16, progress=False)
        X, y = data("mlp")
        losses.append(trainer.train_step(X[:16], y[:16]))
        assert trainer._device is None
    assert losses[0] == pytest.approx(losses[1], rel=FIT_TOL)


# --- copies per step -----------------------------------------------------------------------


class TransferCounter:
    """Counts host->device and device->host copies while active.

    On a GPU every copy goes through ``driver.host_to_device`` / ``driver.device_to_host``
    (``to_device``, ``copy_to_device``, ``copy_to_host``, reading one element); on the
    simulator through ``cuda.to_device`` and the device array's ``copy_to_device`` /
    ``copy_to_host``. A copy made inside another counted call counts once.
    """

    def __init__(self, monkeypatch):
        self.into_device = self.out_of_device = 0
        self._depth = 0
        if kc.is_simulator:
            array = type(cuda.device_array(1))
            places = [(cuda, "to_device", "in"), (array, "copy_to_device", "in"),
                      (array, "copy_to_host", "out")]
        else:
            from numba.cuda.cudadrv import driver

            places = [(driver, "host_to_device", "in"), (driver, "device_to_host", "out")]
        for owner, name, direction in places:
            monkeypatch.setattr(owner, name, self._counted(getattr(owner, name), direction))

    def _counted(self, function, direction):
        def counted(*args, **kwargs):
            if self._depth == 0:
                if direction == "in":
                    self.into_device += 1
                else:
                    self.out_of_device += 1
            self._depth += 1
            try:
                return function(*args, **kwargs)
            finally:
                self._depth -= 1

        return counted

    def counts(self) -> tuple[int, int]:
        return self.into_device, self.out_of_device


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_a_step_copies_one_batch_in_and_one_result_out(optimizer, monkeypatch):
    """Inside ``fit``: the first step copies the parameters in (n_params arrays; Adam's
    moments start as zeros made on the device), then every step copies exactly one buffer
    in (x and y packed together) and one out (loss, hit count, non-finite flag)."""
    trainer = make_trainer("mlp", optimizer, "cuda")
    counter = TransferCounter(monkeypatch)
    per_step = []
    step = trainer.train_step

    def counted_step(xb, yb):
        before = counter.counts()
        loss = step(xb, yb)
        after = counter.counts()
        per_step.append((after[0] - before[0], after[1] - before[1]))
        return loss

    trainer.train_step = counted_step
    X, y = data("mlp")
    trainer.fit((X[:32], y[:32]), epochs=2)
    n_params = len(trainer.model.parameters())
    assert per_step[0] == (n_params + 1, 1)
    assert per_step[1:] == [(1, 1)] * 3


# --- the optimizer kernels against refimpl.optim -------------------------------------------

OPTIMIZER_CASES = {
    "sgd": (SGD, {"lr": 0.1}),
    "sgd-momentum": (SGD, {"lr": 0.1, "momentum": 0.9}),
    "sgd-dampening-decay": (SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.3,
                                  "weight_decay": 0.01}),
    "sgd-nesterov-decay": (SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True,
                                 "weight_decay": 0.01}),
    "sgd-maximize": (SGD, {"lr": 0.05, "momentum": 0.5, "maximize": True}),
    "adam": (Adam, {"lr": 0.01}),
    "adam-l2": (Adam, {"lr": 0.01, "weight_decay": 0.01}),
    "adam-amsgrad": (Adam, {"lr": 0.01, "amsgrad": True}),
    "adam-small-beta1": (Adam, {"lr": 0.01, "betas": (0.3, 0.8)}),  # lerp's other rounding
    "adam-maximize-amsgrad": (Adam, {"lr": 0.01, "amsgrad": True, "maximize": True}),
    "adamw": (AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    "adamw-amsgrad": (AdamW, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
}


def assert_kernel_result(got, want) -> None:
    assert got.dtype == want.dtype
    if kc.is_simulator:
        np.testing.assert_array_equal(got, want)
    else:
        assert relative_error(got, want) <= TOL[want.dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_optimizer_kernels_match_refimpl_optim_step_by_step(case, dtype):
    """Three steps over two parameter groups (the second with its own rate); after every step
    the parameters and every state array equal the NumPy optimizer's."""
    cls, kwargs = OPTIMIZER_CASES[case]
    rng = np.random.default_rng(7)
    shapes = [(3, 4), (5,), (2, 3)]
    start = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    host = [p.copy() for p in start]
    mirror = [p.copy() for p in start]   # the device optimizer's own (host) parameter arrays

    def groups(params):
        return [{"params": params[:2]}, {"params": params[2:], "lr": kwargs["lr"] * 0.5}]

    want = cls(groups(host), **kwargs)
    got = cls(groups(mirror), **kwargs)
    params = [cuda.to_device(p) for p in start]
    state: dict = {}
    for _ in range(3):
        grads = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
        want.step(grads)
        device_optim.step(got, params, [cuda.to_device(g) for g in grads], state)
        for index, (on_device, expected) in enumerate(zip(params, host)):
            assert_kernel_result(on_device.copy_to_host(), expected)
            expected_state = want.state[index]
            arrays = {k for k, v in expected_state.items() if isinstance(v, np.ndarray)}
            assert set(state[index]) == arrays
            for name in arrays:
                assert_kernel_result(state[index][name].copy_to_host(), expected_state[name])
            assert {k: v for k, v in got.state[index].items() if k not in arrays} == \
                {k: v for k, v in expected_state.items() if k not in arrays}


def test_only_sgd_adam_and_adamw_have_device_kernels():
    params = [np.zeros(3)]
    assert device_optim.supports(SGD(params)) and device_optim.supports(Adam(params))
    assert device_optim.supports(AdamW(params))
    assert not device_optim.supports(NAdam(params))
    with pytest.raises(ValueError, match="SGD, Adam or AdamW"):
        device_optim.step(NAdam(params), [cuda.to_device(params[0])],
                          [cuda.to_device(params[0])], {})


# --- make gpu-check, tiny ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get("REFIMPL_GPU_CHECK_CHILD")),
                    reason="run by scripts/gpu_check.py itself: no recursion")
def test_gpu_check_runs_end_to_end_in_tiny_mode(tmp_path):
    """``scripts/gpu_check.py --tiny``: the simulator, tiny models, torch on the CPU standing
    in for torch CUDA (when torch is installed), a Markdown report."""
    out = tmp_path / "gpu-check.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_ENABLE_CUDASIM": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--tiny",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = out.read_text()
    assert "simulator" in report.lower()
    for model in ("mlp", "lrpo_cnn"):
        assert f"### {model}" in report
    assert "device-resident" in report
    with contextlib.suppress(ImportError):
        import torch  # noqa: F401

        assert "torch CPU" in report
    print(f"gpu_check --tiny took {time.perf_counter() - started:.1f} s")
