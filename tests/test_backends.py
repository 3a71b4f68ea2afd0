"""kernels registry: every backend implements every op of kernels.CONTRACT and agrees with the
oracle (refimpl.ops), forward and backward, in float32 and float64.

Tolerances (relative to the largest magnitude of the oracle's result, so that entries that
cancel to ~0 are judged on the array's scale): float64 1e-12 and float32 1e-5, the bounds of
the issue. A backend sums in a different order than the oracle (BLAS blocking, loop order),
which costs a few ulps times sqrt(terms): ~1e-15 in float64 and ~1e-6 in float32 for the
sizes below, so both bounds hold with margin and a real indexing bug (an O(1) error) fails.
"""

from __future__ import annotations

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


def test_numba_backend_is_registered():
    assert "numba" in kernels.available()
    assert kernels.get_backend("numba") is importlib.import_module("refimpl.kernels.numba")
    assert kernels.get_backend("auto") is not None


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


def test_contract_names_the_fused_ops_identity_and_the_scheduler_kernels():
    for name in ("identity_forward", "identity_backward", "dense_relu_forward",
                 "conv2d_relu_backward", "sched.tlr_pass", "sched.grad_pair_pass"):
        assert name in kernels.CONTRACT
    assert set(kernels.NEED_DX) <= set(kernels.CONTRACT)


# --- the agreement cases: (name, forward args builder, forward, backward) ------------------
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_dense_agrees_with_oracle(name, dtype):
    backend, rng = kernels.get_backend(name), np.random.default_rng(0)
    for case in DENSE_CASES:
        _compare_pair(backend, "dense_forward", "dense_backward",
                      _dense_args(rng, case, dtype), dtype, rng, f"{name} dense {case}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_conv2d_agrees_with_oracle(name, dtype):
    backend, rng = kernels.get_backend(name), np.random.default_rng(1)
    for case in CONV_CASES:
        _compare_pair(backend, "conv2d_forward", "conv2d_backward",
                      _conv_args(rng, case, dtype), dtype, rng, f"{name} conv {case}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_maxpool2d_agrees_with_oracle(name, dtype):
    backend, rng = kernels.get_backend(name), np.random.default_rng(2)
    for n, c, h, w, k in POOL_CASES:
        # Small integers make ties common: the gradient must go to the first max.
        x = rng.integers(-2, 3, size=(n, c, h, w)).astype(dtype)
        _compare_pair(backend, "maxpool2d_forward", "maxpool2d_backward", (x, k), dtype, rng,
                      f"{name} maxpool {(n, c, h, w, k)}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_activation_agrees_with_oracle(name, activation, dtype):
    backend, rng = kernels.get_backend(name), np.random.default_rng(3)
    for shape in ACTIVATION_SHAPES:
        x = 3 * _random(rng, shape, dtype)
        x.flat[0] = 0  # relu'(0) = 0 and sigmoid's branch point
        if x.size > 2:
            x.flat[1], x.flat[2] = 40, -40  # sigmoid saturates without overflow
        _compare_pair(backend, f"{activation}_forward", f"{activation}_backward", (x,), dtype,
                      rng, f"{name} {activation} {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_softmax_cross_entropy_agrees_with_oracle(name, dtype):
    backend, rng = kernels.get_backend(name), np.random.default_rng(4)
    for n, n_classes, scale in [(1, 1, 1), (1, 10, 1), (7, 3, 5), (64, 10, 1), (4, 6, 1000)]:
        logits = scale * _random(rng, (n, n_classes), dtype)  # scale 1000: exp would overflow
        labels = rng.integers(0, n_classes, size=n)
        loss_ref, dlogits_ref = ops.softmax_cross_entropy(logits, labels)
        loss, dlogits = backend.softmax_cross_entropy(logits, labels)
        assert isinstance(loss, float)
        assert_close(np.array(loss), np.array(loss_ref), dtype, f"{name} loss {(n, n_classes)}")
        assert_close(dlogits, dlogits_ref, dtype, f"{name} dlogits {(n, n_classes)}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_mse_agrees_with_oracle(name, dtype):
    backend, rng = kernels.get_backend(name), np.random.default_rng(5)
    for shape in [(1,), (1, 1), (5, 3), (2, 3, 4, 5)]:
        pred, target = _random(rng, shape, dtype), _random(rng, shape, dtype)
        loss_ref, dpred_ref = ops.mse(pred, target)
        loss, dpred = backend.mse(pred, target)
        assert isinstance(loss, float)
        assert_close(np.array(loss), np.array(loss_ref), dtype, f"{name} mse {shape}")
        assert_close(dpred, dpred_ref, dtype, f"{name} dpred {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_fused_pairs_agree_with_oracle(name, dtype):
    backend, rng = kernels.get_backend(name), np.random.default_rng(6)
    for case in DENSE_CASES:
        _compare_pair(backend, "dense_relu_forward", "dense_relu_backward",
                      _dense_args(rng, case, dtype), dtype, rng, f"{name} dense+relu {case}")
    for case in CONV_CASES[:4]:
        _compare_pair(backend, "conv2d_relu_forward", "conv2d_relu_backward",
                      _conv_args(rng, case, dtype), dtype, rng, f"{name} conv+relu {case}")
    for case in CONV_CASES[:4]:
        for k in (1, 2):
            args = (*_conv_args(rng, case, dtype), k)
            _compare_pair(backend, "conv2d_relu_maxpool2d_forward",
                          "conv2d_relu_maxpool2d_backward", args, dtype, rng,
                          f"{name} conv+relu+maxpool{k} {case}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_scheduler_kernels_agree_with_oracle(name, dtype):
    """The inner products accumulate in float64 on every backend: 1e-12 of their natural
    scale (Cauchy-Schwarz bound), and the rolled state equal to the oracle's."""
    sched, rng = kernels.get_backend(name).sched, np.random.default_rng(7)
    n = 301  # several reduction blocks on the CUDA backend, small enough for its simulator
    w = _random(rng, n, dtype)
    state = [rng.standard_normal(n), rng.standard_normal(n)]
    oracle_state = [a.copy() for a in state]
    u_prev_norm = float(np.linalg.norm(state[1]))
    a, b = sched.tlr_pass(w, *state, 0.037)
    a_ref, b_ref = ops.sched.tlr_pass(w, *oracle_state, 0.037)
    # |<u_prev, u>| <= |u_prev| |u|; oracle_state[1] now holds u
    assert abs(a - a_ref) <= 1e-12 * u_prev_norm * float(np.linalg.norm(oracle_state[1]))
    assert b == pytest.approx(b_ref, rel=1e-12)
    np.testing.assert_array_equal(state[0], oracle_state[0])
    np.testing.assert_allclose(state[1], oracle_state[1], rtol=1e-15, atol=0)
    g, prev = _random(rng, n, dtype), rng.standard_normal(n)
    prev_ref = prev.copy()
    got, want = sched.grad_pair_pass(g, prev), ops.sched.grad_pair_pass(g, prev_ref)
    g_norm = float(np.linalg.norm(g.astype(np.float64)))
    assert abs(got[0] - want[0]) <= 1e-12 * g_norm * float(np.linalg.norm(prev_ref))
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-12)
    np.testing.assert_array_equal(prev, prev_ref)


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
