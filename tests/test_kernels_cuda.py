"""CUDA backend (kernels.cuda) against the NumPy oracle (refimpl.ops, refimpl.optim,
refimpl.schedulers).

Runs on a GPU when one is usable, else on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
which ``make test`` sets); with neither, the module skips. The simulator runs every thread
as a Python thread, so shapes are tiny (batch 2, 3x5x5 images).

Tolerance: the error relative to the largest magnitude of the oracle's result,
``max|got − want| / max|want|``, must be <= 1e-12 in float64 and <= 1e-5 in float32 (the
project's bounds). The kernels sum in a different order than NumPy/BLAS, so results agree
to rounding, not bit for bit; rounding of sums of ~10 terms is ~1e-15 (float64) and
~1e-6 (float32) of the largest term, inside both bounds. Scheduler rates that use the same
float64 operations in the same order are compared exactly.
"""

from __future__ import annotations

import math

import hypothesis
import hypothesis.strategies as st
import numba
import numpy as np
import pytest

cuda = pytest.importorskip("numba.cuda", reason="the CUDA backend needs numba-cuda")

import kernels
import kernels.cuda as kc
from refimpl import ops

if not kc.is_available():
    pytest.skip(
        "no CUDA GPU is usable and NUMBA_ENABLE_CUDASIM is not 1 "
        "(run `NUMBA_ENABLE_CUDASIM=1 pytest tests/test_kernels_cuda.py` to use the simulator)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.cuda

DTYPES = [np.float64, np.float32]
TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
ACTIVATIONS = ("relu", "tanh", "sigmoid", "sin", "cos")


def assert_close(got, want):
    """Error relative to the largest |want|, within the dtype's tolerance; same dtype."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    scale = max(float(np.max(np.abs(want), initial=0.0)), np.finfo(want.dtype).tiny)
    error = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0)) / scale
    assert error <= TOL[want.dtype], f"relative error {error:.3g} > {TOL[want.dtype]:g}"


def assert_loss_close(got: float, want: float, dtype):
    assert isinstance(got, float)
    assert abs(got - want) <= TOL[np.dtype(dtype)] * abs(want)


def normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --- the contract ----------------------------------------------------------------------


def test_every_contract_op_exists_on_both_layers():
    for name in kernels.CONTRACT:
        assert callable(getattr(kc, name)), f"kernels.cuda lacks {name}"
        assert callable(getattr(kc.device, name)), f"kernels.cuda.device lacks {name}"
    assert kc.is_simulator == bool(numba.config.ENABLE_CUDASIM)


def test_registry_lists_cuda_but_auto_skips_the_simulator():
    assert "cuda" in kernels.available()
    assert kernels.get_backend("cuda") is kc
    if kc.is_simulator:
        assert kernels.get_backend("auto") is not kc


# --- ops against the oracle ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_matches_oracle(dtype):
    # in=10 and out=9 span two 8-wide simulator tiles, so the tile loop and edges run.
    rng = np.random.default_rng(0)
    x, W, b = normal(rng, (3, 10), dtype), normal(rng, (10, 9), dtype), normal(rng, 9, dtype)
    dy = normal(rng, (3, 9), dtype)
    y, cache = kc.dense_forward(x, W, b)
    y_ref, cache_ref = ops.dense_forward(x, W, b)
    assert_close(y, y_ref)
    for got, want in zip(kc.dense_backward(dy, cache), ops.dense_backward(dy, cache_ref)):
        assert_close(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (2, 1), (1, 2)])
def test_conv2d_matches_oracle(dtype, stride, padding):
    rng = np.random.default_rng(1)
    x, W, b = (
        normal(rng, (2, 3, 5, 5), dtype),
        normal(rng, (2, 3, 3, 2), dtype),
        normal(rng, 2, dtype),
    )
    y, cache = kc.conv2d_forward(x, W, b, stride=stride, padding=padding)
    y_ref, cache_ref = ops.conv2d_forward(x, W, b, stride=stride, padding=padding)
    assert_close(y, y_ref)
    dy = normal(rng, y_ref.shape, dtype)
    for got, want in zip(kc.conv2d_backward(dy, cache), ops.conv2d_backward(dy, cache_ref)):
        assert_close(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 3])
def test_maxpool2d_matches_oracle_with_ties_nan_and_dropped_edges(dtype, k):
    rng = np.random.default_rng(2)
    # Values on a coarse grid make ties common; 5x7 leaves trailing rows/cols for k=2, 3.
    x = rng.integers(-2, 3, size=(2, 3, 5, 7)).astype(dtype)
    x[1, 2, 0, 1] = np.nan
    y, cache = kc.maxpool2d_forward(x, k)
    y_ref, cache_ref = ops.maxpool2d_forward(x, k)
    np.testing.assert_array_equal(y, y_ref)  # a max is exact
    dy = normal(rng, y_ref.shape, dtype)
    np.testing.assert_array_equal(
        kc.maxpool2d_backward(dy, cache), ops.maxpool2d_backward(dy, cache_ref)
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_oracle(name, dtype):
    rng = np.random.default_rng(3)
    x = normal(rng, (2, 3, 4), dtype) * 3
    x[0, 0, :2] = 0  # relu'(0) = 0
    x[1, 2, :2] = [-40, 40]  # sigmoid's saturated branches
    dy = normal(rng, x.shape, dtype)
    y, cache = getattr(kc, f"{name}_forward")(x)
    y_ref, cache_ref = getattr(ops, f"{name}_forward")(x)
    assert_close(y, y_ref)
    assert_close(
        getattr(kc, f"{name}_backward")(dy, cache), getattr(ops, f"{name}_backward")(dy, cache_ref)
    )


# inf · 0 = NaN on purpose; the simulator's threads do not inherit np.errstate.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_edge_values_match_oracle_exactly(dtype):
    x = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, -2.0, 3.0], dtype=dtype)
    dy = np.array([1.0, 2.0, 3.0, np.inf, -1.0, -np.inf, 5.0], dtype=dtype)
    with np.errstate(invalid="ignore"):
        y, cache = kc.relu_forward(x)
        y_ref, cache_ref = ops.relu_forward(x)
        dx, dx_ref = kc.relu_backward(dy, cache), ops.relu_backward(dy, cache_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_matches_oracle(dtype):
    rng = np.random.default_rng(4)
    logits = normal(rng, (3, 5), dtype) * 4
    logits[0, 0] = 80  # would overflow exp without the max shift
    labels = np.array([0, 4, 2])
    loss, dlogits = kc.softmax_cross_entropy(logits, labels)
    loss_ref, dlogits_ref = ops.softmax_cross_entropy(logits, labels)
    assert_loss_close(loss, loss_ref, dtype)
    assert_close(dlogits, dlogits_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_matches_oracle(dtype):
    rng = np.random.default_rng(5)
    pred, target = normal(rng, (3, 2), dtype), normal(rng, (3, 2), dtype)
    loss, dpred = kc.mse(pred, target)
    loss_ref, dpred_ref = ops.mse(pred, target)
    assert_loss_close(loss, loss_ref, dtype)
    assert_close(dpred, dpred_ref)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: kc.dense_forward(np.ones((2, 3)), np.ones((4, 2)), np.ones(2)), "W"),
        (lambda: kc.dense_forward(np.ones((2, 3)), np.ones((3, 2), np.float32), np.ones(2)), "W"),
        (lambda: kc.dense_forward(np.ones((2, 3), int), np.ones((3, 2)), np.ones(2)), "x"),
        (lambda: kc.conv2d_forward(np.ones((1, 2, 4, 4)), np.ones((1, 3, 3, 3)), np.ones(1)), "W"),
        (
            lambda: kc.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), np.ones(1), 0),
            "stride",
        ),
        (lambda: kc.maxpool2d_forward(np.ones((1, 1, 2, 2)), 3), "k"),
        (lambda: kc.softmax_cross_entropy(np.ones((2, 3)), np.array([0, 3])), "labels"),
        (lambda: kc.mse(np.ones((2, 1)), np.ones((1, 2))), "target"),
        (lambda: kc.device.relu_forward(np.ones(3)), "x"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


# --- a training step that stays on the device -----------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_device_training_step_matches_oracle_and_stays_on_device(dtype):
    """dense → relu → dense → cross-entropy → backward → SGD(momentum) twice, all on
    device arrays, against the same step through refimpl.ops and refimpl.optim.SGD."""
    from refimpl.optim import SGD as OracleSGD

    rng = np.random.default_rng(6)
    x, labels = normal(rng, (2, 4), dtype), np.array([1, 0])
    params = [
        normal(rng, (4, 3), dtype),
        normal(rng, 3, dtype),
        normal(rng, (3, 2), dtype),
        normal(rng, 2, dtype),
    ]
    hyper = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True}

    def oracle_grads(p):
        h, c1 = ops.dense_forward(x, p[0], p[1])
        a, c2 = ops.relu_forward(h)
        z, c3 = ops.dense_forward(a, p[2], p[3])
        loss, dz = ops.softmax_cross_entropy(z, labels)
        da, dW2, db2 = ops.dense_backward(dz, c3)
        _dx, dW1, db1 = ops.dense_backward(ops.relu_backward(da, c2), c1)
        return loss, [dW1, db1, dW2, db2]

    dev = kc.device
    params_d = [cuda.to_device(p) for p in params]
    x_d, labels_d = cuda.to_device(x), cuda.to_device(labels)
    sgd_d = kc.SGD(params_d, **hyper)
    oracle_params = [p.copy() for p in params]
    sgd = OracleSGD(oracle_params, **hyper)
    for _ in range(2):
        h, c1 = dev.dense_forward(x_d, params_d[0], params_d[1])
        a, c2 = dev.relu_forward(h)
        z, c3 = dev.dense_forward(a, params_d[2], params_d[3])
        loss_d, dz = dev.softmax_cross_entropy(z, labels_d)
        da, dW2, db2 = dev.dense_backward(dz, c3)
        _, dW1, db1 = dev.dense_backward(dev.relu_backward(da, c2), c1)
        grads_d = [dW1, db1, dW2, db2]
        assert all(kc.is_device_array(g) for g in [*grads_d, loss_d, z])
        sgd_d.step(grads_d)
        loss, grads = oracle_grads(oracle_params)
        sgd.step(grads)
        assert_loss_close(float(loss_d.copy_to_host()[0]), loss, dtype)
    for got, want in zip(params_d, oracle_params):
        assert_close(got.copy_to_host(), want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "hyper",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05},
        {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    ],
)
def test_sgd_kernel_matches_oracle_optimizer(dtype, hyper):
    from refimpl.optim import SGD as OracleSGD

    rng = np.random.default_rng(7)
    params = [normal(rng, (3, 2), dtype), normal(rng, 4, dtype)]
    oracle_params = [p.copy() for p in params]
    params_d = [cuda.to_device(p) for p in params]
    sgd_d, sgd = kc.SGD(params_d, lr=0.05, **hyper), OracleSGD(oracle_params, lr=0.05, **hyper)
    for _ in range(3):
        grads = [normal(rng, p.shape, dtype) for p in params]
        sgd_d.step([cuda.to_device(g) for g in grads])
        sgd.step(grads)
    for got, want in zip(params_d, oracle_params):
        assert_close(got.copy_to_host(), want)


# --- scheduler math on the device ------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"patience": 0, "min_lr": 1e-4},
        {"patience": 2, "cooldown": 2, "warmup": 1, "threshold": 0.01, "threshold_mode": "rel"},
        {
            "patience": 1,
            "smooth": True,
            "window_size": 4,
            "factor": 0.5,
            "min_lr": 0.02,
            "reset_start": 3,
            "cooldown": 1,
        },
        {
            "mode": "max",
            "patience": 1,
            "lr": [0.1, 0.3],
            "min_lr": [0.05, 0.01],
            "max_lr": [0.2, 0.5],
        },
    ],
)
def test_greedy_lr_kernel_matches_oracle_step_by_step(options):
    from refimpl.schedulers.greedy import GreedyLR as OracleGreedyLR

    options = dict(options)
    lr = options.pop("lr", 0.1)
    rng = np.random.default_rng(8)
    # A falling, then rising, then falling noisy trace: both counters fire, rates hit
    # their bounds, and (third case) the reset after reset_start decreases at min_lr.
    trend = np.concatenate([np.linspace(2, 1, 25), np.linspace(1, 3, 25), np.linspace(3, 0.5, 20)])
    losses = trend + 0.1 * rng.standard_normal(trend.size)
    device_greedy, oracle = kc.GreedyLR(lr, **options), OracleGreedyLR(lr, **options)
    loss_d = cuda.to_device(losses)  # read in place, as a loss kernel's output would be
    changes = 0
    for t, loss in enumerate(losses):
        before = list(oracle.lrs)
        device_greedy.step(loss_d, index=t)
        oracle.step(float(loss))
        changes += oracle.lrs != before
        assert device_greedy.lrs.copy_to_host().tolist() == oracle.lrs, f"step {t}"
    assert changes >= 3  # the trace really exercises the rule


@pytest.mark.parametrize("dtype", DTYPES)
def test_newton_lr_kernel_matches_oracle(dtype):
    from refimpl.schedulers.newton import NewtonLR as OracleNewtonLR

    rng = np.random.default_rng(9)
    shapes = [(3, 2), (4,)]
    params = [normal(rng, s, dtype) for s in shapes]
    params_d = [cuda.to_device(p) for p in params]
    lrs = cuda.to_device(np.array([0.05]))
    K = 2
    device_tlr = kc.NewtonLR(params_d, lrs, K=K, gamma=0.33)
    oracle = OracleNewtonLR(0.05, gamma=0.33, p=1.0, batches_per_epoch=K)
    drift = [normal(rng, s, np.float64) for s in shapes]
    moved = 0
    for t in range(12):
        # A steady drift (consecutive directions agree: a > 0) with noise and, later,
        # a reversal (directions disagree: den > b) so the factor goes both ways.
        sign = 1.0 if t < 7 else -1.0
        for p, d in zip(params, drift):
            p += (sign * 0.05 * d + 0.01 * rng.standard_normal(p.shape)).astype(dtype)
        for p, p_d in zip(params, params_d):
            p_d.copy_to_device(p)
        before = oracle.lr
        device_tlr.step()
        oracle.step(params)
        moved += oracle.lr != before
        got = float(lrs.copy_to_host()[0])
        assert abs(got - oracle.lr) <= 1e-12 * oracle.lr, f"call {t + 1}"
    assert moved >= 2


def test_dlrs_kernel_matches_oracle():
    from refimpl.schedulers.dlrs import DLRS as OracleDLRS

    rng = np.random.default_rng(10)
    device_dlrs, oracle = kc.DLRS([0.03, 0.002]), OracleDLRS([0.03, 0.002])
    # Convergent, flat, divergent and constant epochs, and one that drives lr to a clip bound.
    epochs = [
        np.linspace(2, 1, 6),
        np.linspace(1, 1.5, 5),
        np.linspace(1, 4, 7),
        np.full(4, 0.7),
        np.linspace(3, 0.2, 9),
    ]
    for batch_losses in epochs:
        batch_losses = batch_losses + 0.01 * rng.random(batch_losses.size)
        buffer = cuda.to_device(np.concatenate([batch_losses, [np.nan]]))  # a longer buffer
        device_dlrs.step(buffer, n_losses=batch_losses.size)
        oracle.step(batch_losses)
        got = device_dlrs.lrs.copy_to_host()
        np.testing.assert_allclose(got, oracle.lrs, rtol=1e-12, atol=0)
    assert oracle.lrs != [0.03, 0.002]


def test_dlrs_host_losses_are_checked():
    with pytest.raises(ValueError, match="batch_losses"):
        kc.DLRS(0.01).step([1.0, math.nan])


@pytest.mark.parametrize("dtype", DTYPES)
def test_model_through_get_backend_cuda_matches_numpy_backend(dtype):
    """The path ``refimpl bench --backend cuda`` uses: layers calling kernels.get_backend."""
    from refimpl.model import build

    spec = "conv:2x3p1,relu,pool2,flatten,dense:4,sigmoid,dense:3"
    oracle = build(spec, (3, 5, 5), seed=1, dtype=dtype)
    model = build(spec, (3, 5, 5), seed=1, dtype=dtype, backend="cuda")
    x = normal(np.random.default_rng(11), (2, 3, 5, 5), dtype)
    assert_close(model.forward(x), oracle.forward(x))
    dlogits = normal(np.random.default_rng(12), (2, 3), dtype)
    assert_close(model.backward(dlogits), oracle.backward(dlogits))
    for got, want in zip(model.gradients(), oracle.gradients()):
        assert_close(got, want)


@hypothesis.settings(max_examples=8, deadline=None)
@hypothesis.given(
    n=st.integers(1, 2),
    c_in=st.integers(1, 2),
    c_out=st.integers(1, 2),
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_conv2d_any_small_shape_matches_oracle(
    n, c_in, c_out, height, width, kh, kw, stride, padding, seed
):
    """Shape/dtype invariants and values for any geometry the oracle accepts (float64)."""
    hypothesis.assume(height + 2 * padding >= kh and width + 2 * padding >= kw)
    rng = np.random.default_rng(seed)
    x = normal(rng, (n, c_in, height, width), np.float64)
    W, b = normal(rng, (c_out, c_in, kh, kw), np.float64), normal(rng, c_out, np.float64)
    y, cache = kc.conv2d_forward(x, W, b, stride=stride, padding=padding)
    y_ref, cache_ref = ops.conv2d_forward(x, W, b, stride=stride, padding=padding)
    assert_close(y, y_ref)
    dy = normal(rng, y_ref.shape, np.float64)
    for got, want in zip(kc.conv2d_backward(dy, cache), ops.conv2d_backward(dy, cache_ref)):
        assert_close(got, want)


@pytest.mark.hf
def test_greedy_lr_kernel_matches_transformers():
    """The spec's anchor (§4): transformers' GreedyLR, step by step, to 1e-15."""
    torch = pytest.importorskip("torch", reason="transformers' GreedyLR drives a torch optimizer")
    optimization = pytest.importorskip("transformers.optimization", reason="needs transformers")
    options = {
        "patience": 1,
        "cooldown": 1,
        "smooth": True,
        "window_size": 3,
        "factor": 0.7,
        "min_lr": 0.03,
        "reset_start": 2,
        "threshold_mode": "rel",
        "threshold": 0.01,
    }
    rng = np.random.default_rng(13)
    trend = np.concatenate([np.linspace(2, 1, 15), np.linspace(1, 3, 25), np.linspace(3, 1, 10)])
    losses = trend + 0.05 * rng.standard_normal(trend.size)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    reference = optimization.GreedyLR(optimizer, **options)
    device_greedy = kc.GreedyLR(0.1, **options)
    seen = set()
    for t, loss in enumerate(losses):
        reference.step(float(loss))
        device_greedy.step(float(loss))
        want = optimizer.param_groups[0]["lr"]
        seen.add(want)
        assert abs(device_greedy.lr - want) <= 1e-15 * want, f"step {t}"
    assert len(seen) >= 3
