"""CUDA backend (refimpl.kernels.cuda) beyond the agreement suite of test_backends.py (which
checks every op of the contract, bad input and edge values on every backend, cuda included):
the device-array layer, argument errors of both layers, a chain of ops that stays on the
device, the scheduler kernels on device arrays and through the schedulers, a model built
for the backend, and random convolution shapes.

Runs on a GPU when one is usable, else on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
which ``make test`` sets); with neither, the module skips. The simulator runs every thread
as a Python thread, so shapes are tiny (batch 2, 3x5x5 images).

Tolerance: the error relative to the largest magnitude of the oracle's result,
``max|got − want| / max|want|``, must be <= 1e-12 in float64 and <= 1e-5 in float32 (the
project's bounds). The kernels sum in a different order than NumPy/BLAS, so results agree
to rounding, not bit for bit; rounding of sums of ~10 terms is ~1e-15 (float64) and
~1e-6 (float32) of the largest term, inside both bounds. The scheduler kernels accumulate in
float64 on both sides (1e-12 of the natural scale of each inner product).
"""

from __future__ import annotations

import hypothesis
import hypothesis.strategies as st
import numba
import numpy as np
import pytest

from tests.backends._cuda import require_cuda

cuda = require_cuda()

import refimpl.kernels.cuda as kc
from refimpl import kernels, ops

pytestmark = pytest.mark.cuda

DTYPES = [np.float64, np.float32]
TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


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


def test_every_contract_op_exists_on_the_device_layer():
    """The NumPy-level names are the agreement suite's; the device layer (device arrays in
    and out) must provide every op too, the scheduler kernels aside."""
    missing = [name for name in kernels.CONTRACT
               if not name.startswith("sched.") and not callable(getattr(kc.device, name, None))]
    assert missing == [], f"refimpl.kernels.cuda.device lacks {missing}"
    assert kc.is_simulator == bool(numba.config.ENABLE_CUDASIM)


def test_registry_lists_cuda_but_auto_skips_the_simulator():
    assert "cuda" in kernels.available()
    assert kernels.get_backend("cuda") is kc
    if kc.is_simulator:
        assert kernels.get_backend("auto") is not kc


# --- errors --------------------------------------------------------------------------------
# The oracle's messages word for word: test_backends.py. Here: both layers name the argument.
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


# --- a chain of ops that stays on the device ---------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_device_chain_matches_oracle_and_stays_on_device(dtype):
    """dense+relu (fused) → dense → cross-entropy → backward, all on device arrays."""
    rng = np.random.default_rng(6)
    x, labels = normal(rng, (2, 4), dtype), np.array([1, 0])
    W1, b1, W2, b2 = (normal(rng, s, dtype) for s in [(4, 3), 3, (3, 2), 2])
    h, c1 = ops.dense_relu_forward(x, W1, b1)
    z, c2 = ops.dense_forward(h, W2, b2)
    loss, dz = ops.softmax_cross_entropy(z, labels)
    dh, dW2, db2 = ops.dense_backward(dz, c2)
    _, dW1, db1 = ops.dense_relu_backward(dh, c1, need_dx=False)

    dev = kc.device
    h_d, c1_d = dev.dense_relu_forward(*(cuda.to_device(a) for a in (x, W1, b1)))
    z_d, c2_d = dev.dense_forward(h_d, cuda.to_device(W2), cuda.to_device(b2))
    loss_d, dz_d = dev.softmax_cross_entropy(z_d, cuda.to_device(labels))
    dh_d, dW2_d, db2_d = dev.dense_backward(dz_d, c2_d)
    none, dW1_d, db1_d = dev.dense_relu_backward(dh_d, c1_d, need_dx=False)
    assert none is None
    assert all(kc.is_device_array(a) for a in (h_d, z_d, loss_d, dz_d, dW1_d, dW2_d))
    assert_loss_close(float(loss_d.copy_to_host()[0]), loss, dtype)
    for got, want in zip((dW1_d, db1_d, dW2_d, db2_d), (dW1, db1, dW2, db2)):
        assert_close(got.copy_to_host(), want)


# --- scheduler kernels ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_sched_kernels_update_device_arrays_in_place(dtype):
    """Given device arrays, the state is rolled forward on the device (nothing copied back)."""
    rng = np.random.default_rng(9)
    w, cached, u_prev = normal(rng, 70, dtype), rng.standard_normal(70), rng.standard_normal(70)
    oracle = [cached.copy(), u_prev.copy()]
    cached_d, u_prev_d = cuda.to_device(cached), cuda.to_device(u_prev)
    a, b = kc.sched.tlr_pass(cuda.to_device(w), cached_d, u_prev_d, 0.05)
    a_ref, b_ref = ops.sched.tlr_pass(w, *oracle, 0.05)
    scale = float(np.linalg.norm(u_prev) * np.linalg.norm(oracle[1]))
    assert abs(a - a_ref) <= 1e-12 * scale and b == pytest.approx(b_ref, rel=1e-12)
    np.testing.assert_array_equal(cached_d.copy_to_host(), oracle[0])
    np.testing.assert_allclose(u_prev_d.copy_to_host(), oracle[1], rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_newton_lr_on_the_cuda_backend_matches_the_numpy_backend(dtype):
    from refimpl.schedulers.newton import NewtonLR

    rng = np.random.default_rng(10)
    shapes = [(3, 2), (4,)]
    params = [normal(rng, s, dtype) for s in shapes]
    drift = [normal(rng, s, np.float64) for s in shapes]
    on_gpu = NewtonLR(0.05, gamma=0.33, batches_per_epoch=2, p=1.0, backend="cuda")
    oracle = NewtonLR(0.05, gamma=0.33, batches_per_epoch=2, p=1.0)
    moved = 0
    for t in range(12):
        # A steady drift (consecutive directions agree) then a reversal: the factor moves
        # the rate both ways.
        sign = 1.0 if t < 7 else -1.0
        for p, d in zip(params, drift):
            p += (sign * 0.05 * d + 0.01 * rng.standard_normal(p.shape)).astype(dtype)
        before = oracle.lr
        on_gpu.step(params)
        oracle.step(params)
        moved += oracle.lr != before
        assert on_gpu.lr == pytest.approx(oracle.lr, rel=1e-12), f"call {t + 1}"
    assert moved >= 2


def test_hypergradient_on_the_cuda_backend_matches_the_numpy_backend():
    from refimpl.schedulers.newton import HypergradientMultiplicativeLR

    rng = np.random.default_rng(11)
    on_gpu = HypergradientMultiplicativeLR(0.05, hyper_lr=0.1, backend="cuda")
    oracle = HypergradientMultiplicativeLR(0.05, hyper_lr=0.1)
    for _ in range(5):
        grads = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
        on_gpu.step(grads)
        oracle.step(grads)
        assert on_gpu.lr == pytest.approx(oracle.lr, rel=1e-12)
    assert oracle.lr != 0.05


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
