"""The agreement suite: every backend implements every op of ``refimpl.kernels.CONTRACT`` and
agrees with the oracle (refimpl.ops), forward and backward, in float32 and float64; bad input
and bad gradients give the oracle's exceptions, word for word; NaN, infinities, signed zeros
and ties go where the oracle sends them. Each backend's own tests (tuning, loop policy,
device arrays, sizes where it switches algorithm) live beside this file.

Tolerances (relative to the largest magnitude of the oracle's result, so that entries that
cancel to ~0 are judged on the array's scale): float64 1e-12 and float32 1e-5, the project's
bounds. A backend sums in a different order than the oracle (BLAS blocking, loop order),
which costs a few ulps times sqrt(terms): ~1e-15 in float64 and ~1e-6 in float32 for the
sizes below, so both bounds hold with margin and a real indexing bug (an O(1) error) fails.
Where no sum is involved (a max, a mask, a copy) the comparison is exact.
"""

from __future__ import annotations

import functools
import importlib
import inspect

import numpy as np
import pytest

from refimpl import kernels, ops

RTOL = {np.float64: 1e-12, np.float32: 1e-5}
DTYPES = (np.float64, np.float32)
# Every usable backend except the oracle itself (cuda appears here on a GPU or the simulator).
FAST_BACKENDS = [name for name in kernels.available() if name != "numpy"]


def assert_close(got, want, dtype, what: str) -> None:
    """``max|got − want| <= rtol · max|want|``, with dtype and shape checked first."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    scale = max(float(np.max(np.abs(want), initial=0.0)), np.finfo(dtype).tiny)
    error = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0))
    assert error <= RTOL[dtype] * scale, f"{what}: max error {error:.3g} vs scale {scale:.3g}"


def test_numba_backend_is_registered_and_numpy_is_the_oracle():
    assert "numba" in kernels.available()
    assert kernels.get_backend("numba") is importlib.import_module("refimpl.kernels.numba")
    assert kernels.get_backend("numpy") is ops


#: What ``auto`` prefers, fastest first: a GPU, then compiled CPU code, then the oracle.
FASTEST_FIRST = ("cuda", "numba", "numpy")


def _real_gpu() -> bool:
    """A CUDA device that is not the simulator answers here."""
    try:
        from numba import config, cuda
    except ImportError:
        return False
    return not config.ENABLE_CUDASIM and cuda.is_available()


@pytest.mark.parametrize("present", [("numpy",), ("numba", "numpy"), ("cuda", "numpy"),
                                     ("cuda", "numba", "numpy")],
                         ids=lambda present: "+".join(present))
def test_auto_picks_the_fastest_present_backend_and_never_the_simulator(monkeypatch, present):
    """Pretend only ``present`` can run: ``auto`` is the first of them in FASTEST_FIRST, except
    that the CUDA simulator (NUMBA_ENABLE_CUDASIM=1), a correctness tool far slower than any
    backend, is passed over."""
    monkeypatch.setattr(kernels, "_may_run", lambda name: name in present)
    want = next(name for name in FASTEST_FIRST
                if name in present and (name != "cuda" or _real_gpu()))
    assert kernels.resolve("auto") == want
    chosen = kernels.get_backend("auto")
    assert kernels.name_of(chosen) == want and not chosen.is_simulator


@pytest.mark.parametrize("name", kernels.available())
def test_backend_implements_every_name_of_the_contract(name):
    """numpy, numba, and cuda where it runs (a GPU, or NUMBA_ENABLE_CUDASIM=1)."""
    backend = kernels.get_backend(name)
    missing = []
    for op in kernels.CONTRACT:
        try:
            function = kernels.lookup(backend, op)
        except AttributeError:
            function = None
        if not callable(function):
            missing.append(op)
    assert missing == [], f"backend {name!r} lacks {missing}"


@pytest.mark.parametrize("op", kernels.NEED_DX)
@pytest.mark.parametrize("name", kernels.available())
def test_backward_ops_take_the_need_dx_keyword(name, op):
    parameter = inspect.signature(getattr(kernels.get_backend(name), op)).parameters.get("need_dx")
    assert parameter is not None, f"{name}.{op} has no need_dx parameter"
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is True


@pytest.mark.parametrize("name", kernels.available())
def test_backend_all_is_the_top_level_names_of_the_contract(name):
    """``__all__`` of every backend, the oracle included, is exactly the contract's top-level
    names (``sched.tlr_pass`` -> ``sched``): nothing missing, nothing beside it."""
    contract = {op.split(".")[0] for op in kernels.CONTRACT}
    assert set(kernels.get_backend(name).__all__) == contract


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", kernels.available())
def test_fused_ops_composed_from_any_backends_basic_ops_agree_with_the_oracle(name, dtype):
    """compose_fused builds the six fused functions from any backend's basic ops; built from
    the oracle's they are the oracle's fused ops bit for bit, from another backend's they
    agree with them to the tolerance."""
    from refimpl.ops.fused import compose_fused

    fused = compose_fused(kernels.get_backend(name))
    assert set(fused) == {f"{op}_{direction}" for direction in ("forward", "backward")
                          for op in ("dense_relu", "conv2d_relu", "conv2d_relu_maxpool2d")}
    assert set(fused) <= set(kernels.CONTRACT)
    rng = np.random.default_rng(16)
    cases = [("dense_relu", _dense_args(rng, DENSE_CASES[2], dtype)),
             ("conv2d_relu", _conv_args(rng, CONV_CASES[2], dtype)),
             ("conv2d_relu_maxpool2d", (*_conv_args(rng, CONV_CASES[1], dtype), 2))]
    for op, args in cases:
        y_ref, cache_ref = getattr(ops, f"{op}_forward")(*args)
        y, cache = fused[f"{op}_forward"](*args)
        dy = _random(rng, y_ref.shape, dtype)
        want = (y_ref, *getattr(ops, f"{op}_backward")(dy, cache_ref))
        got = (y, *fused[f"{op}_backward"](dy, cache))
        for label, g, w in zip(("y", "dx", "dW", "db"), got, want):
            if name == "numpy":
                np.testing.assert_array_equal(g, w, err_msg=f"{op} {label}")
            else:
                assert_close(g, w, dtype, f"{name} composed {op} {label}")
    with pytest.raises(ValueError, match="^basic must provide the ops .* it lacks"):
        compose_fused(object())


# --- the agreement cases ---------------------------------------------------------------------
# Shapes cover batch 1, odd sizes, 1x1 and non-square kernels, stride > 1, padding > 0,
# padding larger than the kernel, kernels as large as the padded input, and trailing
# rows/cols that no window covers.
CONV_CASES = [
    # N, C_in, H, W, C_out, kh, kw, stride, padding
    (1, 1, 5, 5, 1, 1, 1, 1, 0),
    (2, 3, 7, 6, 4, 3, 3, 1, 0),
    (1, 2, 9, 8, 3, 3, 2, 2, 1),
    (3, 1, 5, 5, 2, 5, 5, 3, 2),
    (2, 2, 4, 4, 2, 3, 3, 2, 0),
    (1, 3, 6, 7, 2, 2, 3, 3, 4),
    (2, 4, 11, 11, 5, 3, 3, 1, 1),
]
DENSE_CASES = [(1, 1, 1), (1, 7, 3), (5, 13, 4), (64, 33, 10)]
POOL_CASES = [(1, 1, 2, 2, 2), (2, 3, 7, 5, 2), (1, 2, 9, 9, 3), (2, 1, 4, 6, 1), (1, 1, 5, 5, 5)]
ACTIVATION_SHAPES = [(1,), (3, 5), (2, 3, 4, 5)]
ACTIVATIONS = ("relu", "tanh", "sigmoid", "sin", "cos", "identity")


def _random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _compare_pair(backend, forward, backward, args, dtype, rng, what):
    """Run forward then backward (same random dy) on the oracle and on ``backend``."""
    y_ref, cache_ref = getattr(ops, forward)(*args)
    y, cache = getattr(backend, forward)(*args)
    assert_close(y, y_ref, dtype, f"{what} {forward}")
    dy = _random(rng, y_ref.shape, dtype)
    grads_ref = getattr(ops, backward)(dy, cache_ref)
    grads = getattr(backend, backward)(dy, cache)
    if isinstance(grads_ref, np.ndarray):
        grads, grads_ref = (grads,), (grads_ref,)
    assert len(grads) == len(grads_ref)
    for i, (g, g_ref) in enumerate(zip(grads, grads_ref)):
        assert_close(g, g_ref, dtype, f"{what} {backward}[{i}]")


def _dense_args(rng, case, dtype):
    n, fan_in, fan_out = case
    return (_random(rng, (n, fan_in), dtype), _random(rng, (fan_in, fan_out), dtype),
            _random(rng, (fan_out,), dtype))


def _conv_args(rng, case, dtype):
    n, c_in, h, w, c_out, kh, kw, stride, padding = case
    return (_random(rng, (n, c_in, h, w), dtype), _random(rng, (c_out, c_in, kh, kw), dtype),
            _random(rng, (c_out,), dtype), stride, padding)


def _agree_dense(backend, dtype, rng, what):
    for case in DENSE_CASES:
        _compare_pair(backend, "dense_forward", "dense_backward", _dense_args(rng, case, dtype),
                      dtype, rng, f"{what} {case}")


def _agree_conv2d(backend, dtype, rng, what):
    for case in CONV_CASES:
        _compare_pair(backend, "conv2d_forward", "conv2d_backward", _conv_args(rng, case, dtype),
                      dtype, rng, f"{what} {case}")


def _agree_maxpool2d(backend, dtype, rng, what):
    for n, c, h, w, k in POOL_CASES:
        # Small integers make ties common: the gradient must go to the first max.
        x = rng.integers(-2, 3, size=(n, c, h, w)).astype(dtype)
        _compare_pair(backend, "maxpool2d_forward", "maxpool2d_backward", (x, k), dtype, rng,
                      f"{what} {(n, c, h, w, k)}")


def _agree_activation(activation, backend, dtype, rng, what):
    for shape in ACTIVATION_SHAPES:
        x = 3 * _random(rng, shape, dtype)
        x.flat[0] = 0  # relu'(0) = 0 and sigmoid's branch point
        if x.size > 2:
            x.flat[1], x.flat[2] = 40, -40  # sigmoid saturates without overflow
        _compare_pair(backend, f"{activation}_forward", f"{activation}_backward", (x,), dtype,
                      rng, f"{what} {shape}")


def _agree_softmax_cross_entropy(backend, dtype, rng, what):
    for n, n_classes, scale in [(1, 1, 1), (1, 10, 1), (7, 3, 5), (64, 10, 1), (4, 6, 1000)]:
        logits = scale * _random(rng, (n, n_classes), dtype)  # scale 1000: exp would overflow
        labels = rng.integers(0, n_classes, size=n)
        loss_ref, dlogits_ref = ops.softmax_cross_entropy(logits, labels)
        loss, dlogits = backend.softmax_cross_entropy(logits, labels)
        assert isinstance(loss, float)
        assert_close(np.array(loss), np.array(loss_ref), dtype, f"{what} loss {(n, n_classes)}")
        assert_close(dlogits, dlogits_ref, dtype, f"{what} dlogits {(n, n_classes)}")


def _agree_mse(backend, dtype, rng, what):
    for shape in [(1,), (1, 1), (5, 3), (2, 3, 4, 5)]:
        pred, target = _random(rng, shape, dtype), _random(rng, shape, dtype)
        loss_ref, dpred_ref = ops.mse(pred, target)
        loss, dpred = backend.mse(pred, target)
        assert isinstance(loss, float)
        assert_close(np.array(loss), np.array(loss_ref), dtype, f"{what} loss {shape}")
        assert_close(dpred, dpred_ref, dtype, f"{what} dpred {shape}")


def _agree_dense_relu(backend, dtype, rng, what):
    for case in DENSE_CASES:
        _compare_pair(backend, "dense_relu_forward", "dense_relu_backward",
                      _dense_args(rng, case, dtype), dtype, rng, f"{what} {case}")


def _agree_conv2d_relu(backend, dtype, rng, what):
    for case in CONV_CASES[:4]:
        _compare_pair(backend, "conv2d_relu_forward", "conv2d_relu_backward",
                      _conv_args(rng, case, dtype), dtype, rng, f"{what} {case}")


def _agree_conv2d_relu_maxpool2d(backend, dtype, rng, what):
    for case in CONV_CASES[:4]:
        for k in (1, 2):
            _compare_pair(backend, "conv2d_relu_maxpool2d_forward",
                          "conv2d_relu_maxpool2d_backward", (*_conv_args(rng, case, dtype), k),
                          dtype, rng, f"{what} k={k} {case}")


# Scheduler kernels: n = 301 spans several reduction blocks on the CUDA backend and is small
# enough for its simulator. The inner products accumulate in float64 on every backend: 1e-12
# of their natural scale (the Cauchy-Schwarz bound), and the rolled state equal to the
# oracle's.
def _agree_tlr_pass(backend, dtype, rng, what):
    n = 301
    w = _random(rng, n, dtype)
    state = [rng.standard_normal(n), rng.standard_normal(n)]
    oracle_state = [a.copy() for a in state]
    u_prev_norm = float(np.linalg.norm(state[1]))
    a, b = backend.sched.tlr_pass(w, *state, 0.037)
    a_ref, b_ref = ops.sched.tlr_pass(w, *oracle_state, 0.037)
    # |<u_prev, u>| <= |u_prev| |u|; oracle_state[1] now holds u
    assert abs(a - a_ref) <= 1e-12 * u_prev_norm * float(np.linalg.norm(oracle_state[1])), what
    assert b == pytest.approx(b_ref, rel=1e-12), what
    np.testing.assert_array_equal(state[0], oracle_state[0], err_msg=what)
    np.testing.assert_allclose(state[1], oracle_state[1], rtol=1e-15, atol=0, err_msg=what)


def _agree_grad_pair_pass(backend, dtype, rng, what):
    n = 301
    g, prev = _random(rng, n, dtype), rng.standard_normal(n)
    prev_ref = prev.copy()
    got, want = backend.sched.grad_pair_pass(g, prev), ops.sched.grad_pair_pass(g, prev_ref)
    g_norm = float(np.linalg.norm(g.astype(np.float64)))
    assert abs(got[0] - want[0]) <= 1e-12 * g_norm * float(np.linalg.norm(prev_ref)), what
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-12, err_msg=what)
    np.testing.assert_array_equal(prev, prev_ref, err_msg=what)


def _contract_ops() -> list[str]:
    """The contract as the suite checks it: a forward and its backward as one op (``dense``),
    the losses and the scheduler kernels alone."""
    names: list[str] = []
    for entry in kernels.CONTRACT:
        op = entry.removesuffix("_forward").removesuffix("_backward")
        if op not in names:
            names.append(op)
    return names


CONTRACT_OPS = _contract_ops()

#: The agreement case of every op of the contract: ``case(backend, dtype, rng, what)``.
AGREEMENT = {
    "dense": _agree_dense,
    "conv2d": _agree_conv2d,
    "dense_relu": _agree_dense_relu,
    "conv2d_relu": _agree_conv2d_relu,
    "conv2d_relu_maxpool2d": _agree_conv2d_relu_maxpool2d,
    "maxpool2d": _agree_maxpool2d,
    **{activation: functools.partial(_agree_activation, activation)
       for activation in ACTIVATIONS},
    "softmax_cross_entropy": _agree_softmax_cross_entropy,
    "mse": _agree_mse,
    "sched.tlr_pass": _agree_tlr_pass,
    "sched.grad_pair_pass": _agree_grad_pair_pass,
}


def test_the_agreement_table_has_one_case_per_op_of_the_contract():
    """An op added to the contract without a case here fails below; a case left for an op
    the contract dropped fails here."""
    assert sorted(AGREEMENT) == sorted(CONTRACT_OPS)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
@pytest.mark.parametrize("op", CONTRACT_OPS)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_op_agrees_with_the_oracle(name, op, dtype):
    """Forward and backward (the same random dy on both sides) of ``op`` on backend ``name``
    against the oracle, on every shape of the op's case list."""
    assert op in AGREEMENT, f"no agreement case for the contract op {op!r}: add one to AGREEMENT"
    # One generator per (op, dtype), seeded from the op's name: the cases do not depend on
    # which other tests ran, and differ between ops.
    seed = [CONTRACT_OPS.index(op), DTYPES.index(dtype)]
    AGREEMENT[op](kernels.get_backend(name), dtype, np.random.default_rng(seed), f"{name} {op}")


# --- edge values: exact, and the same on every backend ------------------------------------------
# docs/methods.md §1: a max-pool window holding NaN outputs NaN and passes no gradient; the
# gradient goes to the first maximum on ties; relu'(0) = 0 and relu keeps NaN. No sum is
# involved, so the comparison is exact (assert_array_equal: NaN equals NaN, -0.0 equals 0.0).
def _pool_input(rng, dtype):
    """Values on a coarse grid (ties are common) and two NaN pixels, in window (0, 0) of one
    channel and (0, 1) (k = 2) or (0, 0) (k = 3) of another; 5x7 leaves trailing rows and
    columns that no window covers for k = 2 and 3."""
    x = rng.integers(-2, 3, size=(2, 3, 5, 7)).astype(dtype)
    x[1, 2, 0, 1] = x[0, 0, 1, 2] = np.nan
    return x


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_maxpool2d_ties_and_nan_input_route_exactly_as_the_oracle(name, dtype, k):
    backend, rng = kernels.get_backend(name), np.random.default_rng(8)
    x = _pool_input(rng, dtype)
    y_ref, cache_ref = ops.maxpool2d_forward(x, k)
    y, cache = backend.maxpool2d_forward(x, k)
    np.testing.assert_array_equal(y, y_ref)
    assert np.isnan(y_ref).sum() == 2
    dy = _random(rng, y_ref.shape, dtype)
    np.testing.assert_array_equal(backend.maxpool2d_backward(dy, cache),
                                  ops.maxpool2d_backward(dy, cache_ref))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_maxpool2d_nan_gradient_reaches_its_arg_max_only_as_in_the_oracle(name, dtype, k):
    """(1.7): a window's dy goes to its arg-max and exactly 0 elsewhere, so a NaN in dy
    makes one pixel NaN, not its window (torch's scatter does the same)."""
    backend, rng = kernels.get_backend(name), np.random.default_rng(9)
    x = _pool_input(rng, dtype)
    y_ref, cache_ref = ops.maxpool2d_forward(x, k)
    _, cache = backend.maxpool2d_forward(x, k)
    dy = _random(rng, y_ref.shape, dtype)
    dy[0, 1, 0, 1] = np.nan  # a window of a channel without NaN pixels
    dx_ref = ops.maxpool2d_backward(dy, cache_ref)
    assert np.isnan(dx_ref).sum() == 1
    np.testing.assert_array_equal(backend.maxpool2d_backward(dy, cache), dx_ref)


RELU_EDGES = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, -2.0, 3.0])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_relu_forward_of_nan_infinities_and_zeros_as_the_oracle(name, dtype):
    x = RELU_EDGES.astype(dtype)
    y, _ = kernels.get_backend(name).relu_forward(x)
    np.testing.assert_array_equal(y, ops.relu_forward(x)[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: np.dtype(dtype).name)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_relu_backward_of_non_finite_gradients_as_the_oracle(name, dtype):
    """(1.8): ``dx = dy`` where x > 0, else 0 -- a selection (torch's and JAX's rule), so an
    infinite or NaN dy where x <= 0 gives 0, and one where x > 0 passes."""
    backend, x = kernels.get_backend(name), RELU_EDGES.astype(dtype)
    dy = np.array([1.0, np.nan, np.inf, np.inf, -1.0, -np.inf, np.nan], dtype=dtype)
    dx = backend.relu_backward(dy, backend.relu_forward(x)[1])
    dx_ref = ops.relu_backward(dy, ops.relu_forward(x)[1])
    np.testing.assert_array_equal(dx_ref, np.array([0, 0, np.inf, 0, 0, 0, np.nan], dtype))
    np.testing.assert_array_equal(dx, dx_ref)


# --- bad input: the oracle's exception, word for word ----------------------------------------------
_F32 = np.zeros((2, 3), np.float32)
BAD_CALLS = {
    "dense int x": ("dense_forward", (np.zeros((2, 3), int), np.zeros((3, 4)), np.zeros(4))),
    "dense shapes": ("dense_forward", (np.zeros((2, 3)), np.zeros((4, 4)), np.zeros(4))),
    "dense mixed dtype": ("dense_forward", (_F32, np.zeros((3, 4)), np.zeros(4))),
    "conv channels": ("conv2d_forward", (np.zeros((1, 2, 5, 5)), np.zeros((3, 1, 3, 3)),
                                         np.zeros(3))),
    "conv too small": ("conv2d_forward", (np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)),
                                          np.zeros(1))),
    "conv stride 0": ("conv2d_forward", (np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)),
                                         np.zeros(1), 0)),
    "pool window": ("maxpool2d_forward", (np.zeros((1, 1, 2, 2)), 3)),
    "pool 3-D": ("maxpool2d_forward", (np.zeros((1, 2, 2)), 2)),
    "relu list": ("relu_forward", ([1.0, 2.0],)),
    "labels range": ("softmax_cross_entropy", (np.zeros((2, 3)), np.array([0, 3]))),
    "labels float": ("softmax_cross_entropy", (np.zeros((2, 3)), np.array([0.0, 1.0]))),
    "mse shapes": ("mse", (np.zeros((2, 3)), np.zeros((3, 2)))),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_bad_input_raises_the_oracles_error(name, case):
    """Every backend calls the oracle's checks (refimpl.ops.checks): the same ValueError."""
    op, args = BAD_CALLS[case]
    with pytest.raises(ValueError) as oracle_error:
        getattr(ops, op)(*args)
    with pytest.raises(ValueError) as backend_error:
        getattr(kernels.get_backend(name), op)(*args)
    assert str(backend_error.value) == str(oracle_error.value)


# --- a whole training run ---------------------------------------------------------------------
# Embedded Fashion-MNIST sample: the first 192 training and 64 test images, batch 32, so each
# epoch is 6 steps; float64 keeps the two backends within ~1e-13 of each other per op, and
# 12 SGD steps with momentum amplify that by far less than the 1e-9 of the issue.
TRAIN_SUBSET, VAL_SUBSET, EPOCHS = 192, 64, 2


def _train_lrpo_cnn(backend: str):
    from refimpl.data import load_sample
    from refimpl.model import get_model
    from refimpl.optim import SGD
    from refimpl.train import Trainer

    def images(split, count):
        X, y = load_sample(split)
        return (X[:count, None] / 255.0).astype(np.float64), y[:count]

    model = get_model("lrpo_cnn", seed=0, dtype=np.float64, backend=backend)
    trainer = Trainer(model, SGD(model.parameters(), lr=0.05, momentum=0.9), batch_size=32,
                      seed=0, progress=False)
    history = trainer.fit(images("train", TRAIN_SUBSET), images("test", VAL_SUBSET), EPOCHS)
    return history, model.state_dict()


@pytest.mark.slow
def test_lrpo_cnn_training_run_is_the_same_on_numba_and_numpy():
    numpy_history, numpy_state = _train_lrpo_cnn("numpy")
    numba_history, numba_state = _train_lrpo_cnn("numba")
    assert numpy_history.n_epochs == numba_history.n_epochs == EPOCHS
    assert numpy_history.n_steps == numba_history.n_steps == EPOCHS * TRAIN_SUBSET // 32
    for field in ("loss", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "lr_epoch"):
        want = np.asarray(getattr(numpy_history, field))
        got = np.asarray(getattr(numba_history, field))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=0, err_msg=field)
    assert numpy_history.loss[-1] < numpy_history.loss[0]  # it trained: not a vacuous match
    for name, value in numpy_state.items():
        scale = np.max(np.abs(value))
        assert np.max(np.abs(numba_state[name] - value)) <= 1e-9 * scale, name


@pytest.mark.parametrize("op", ["dense", "conv2d", "dense_relu", "conv2d_relu",
                                "conv2d_relu_maxpool2d"])
@pytest.mark.parametrize("name", kernels.available())
def test_need_dx_false_returns_none_and_the_same_parameter_gradients(name, op):
    """Every backend (the oracle too) accepts ``need_dx=False`` and then only drops dx."""
    backend = kernels.get_backend(name)
    rng = np.random.default_rng(15)
    if op.startswith("dense"):
        args = (rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3))
    else:
        args = (rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)),
                rng.standard_normal(3), 1, 1)
    forward, backward = getattr(backend, f"{op}_forward"), getattr(backend, f"{op}_backward")
    y, cache = forward(*args)
    dy = rng.standard_normal(np.shape(y))
    dx, dW, db = backward(dy, cache)
    y, cache = forward(*args)  # a fresh cache: a backend may consume it
    none, dW_only, db_only = backward(dy, cache, need_dx=False)
    assert dx is not None and none is None
    np.testing.assert_array_equal(dW_only, dW)
    np.testing.assert_array_equal(db_only, db)


# --- bad gradients: one exception and one message on every backend --------------------------
# docs/methods.md §1: all arrays of one call share one dtype. A backward given a dy of the
# other float dtype than its forward ran in is refused by refimpl.ops.checks.check_grad_dtype,
# which every backend calls, so the oracle, numba and cuda raise the same ValueError.
BACKWARD_OPS = tuple(op[: -len("_backward")] for op in kernels.CONTRACT
                     if op.endswith("_backward"))


def _forward_args(op: str, rng, dtype) -> tuple:
    """Small valid arguments of ``{op}_forward`` in ``dtype``."""
    if op in ("dense", "dense_relu"):
        return _dense_args(rng, DENSE_CASES[2], dtype)
    if op in ("conv2d", "conv2d_relu"):
        return _conv_args(rng, CONV_CASES[1], dtype)
    if op == "conv2d_relu_maxpool2d":
        return (*_conv_args(rng, CONV_CASES[1], dtype), 2)
    if op == "maxpool2d":
        return (_random(rng, (2, 3, 5, 4), dtype), 2)
    if op in ACTIVATIONS:
        return (_random(rng, (3, 5), dtype),)
    raise AssertionError(f"no forward arguments for the contract op {op!r}; add them here")


def _backward_error(backend, op: str, dtype, make_dy) -> ValueError:
    """The ValueError of ``{op}_backward`` for the dy that ``make_dy(y)`` builds after a
    ``dtype`` forward."""
    y, cache = getattr(backend, f"{op}_forward")(*_forward_args(op, np.random.default_rng(17),
                                                                  dtype))
    with pytest.raises(ValueError) as caught:
        getattr(backend, f"{op}_backward")(make_dy(np.asarray(y)), cache)
    return caught.value


def test_every_backward_op_of_the_contract_has_forward_arguments_here():
    assert set(BACKWARD_OPS) == {"dense", "conv2d", "dense_relu", "conv2d_relu",
                                 "conv2d_relu_maxpool2d", "maxpool2d", *ACTIVATIONS}
    for op in BACKWARD_OPS:
        assert f"{op}_forward" in kernels.CONTRACT
        _forward_args(op, np.random.default_rng(0), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", BACKWARD_OPS)
@pytest.mark.parametrize("name", kernels.available())
def test_dy_of_the_other_dtype_is_refused_with_one_message_on_every_backend(name, op, dtype):
    """A float64 dy after a float32 forward (and the reverse): without the check the oracle
    returned float64 gradients while numba raised. Now every backend, the oracle included,
    raises this ValueError, word for word."""
    forward_dtype, other = np.dtype(dtype), np.dtype(np.float32 if dtype is np.float64
                                                     else np.float64)
    error = _backward_error(kernels.get_backend(name), op, dtype,
                            lambda y: np.ones(y.shape, dtype=other))
    assert str(error) == (f"dy has dtype {other} but the forward ran in {forward_dtype}; "
                          f"cast it with dy.astype(np.{forward_dtype})")


@pytest.mark.parametrize("op", BACKWARD_OPS)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_dy_of_another_shape_is_refused_with_the_oracles_message(name, op):
    """A dy whose last axis is one too long: the same ValueError text as the oracle's."""
    def longer(y):
        return np.ones((*y.shape[:-1], y.shape[-1] + 1), dtype=y.dtype)

    want = _backward_error(ops, op, np.float32, longer)
    got = _backward_error(kernels.get_backend(name), op, np.float32, longer)
    assert "the shape of the forward output y" in str(want)
    assert str(got) == str(want)
