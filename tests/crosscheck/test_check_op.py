"""check_op: torch's and JAX's ops against the oracle through the adapters, planted bugs,
the differences between conventions it must find, and bad input.

Tolerances are check_op's defaults (1e-12 float64, 1e-5 float32, relative to the size of
the terms each element sums; refimpl/crosscheck/ops.py says why). The conv2d shapes cover
stride 1 and 2, padding 0, 1 and 2, non-square kernels and batch 1.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from refimpl import ops
from refimpl.crosscheck import OpCheckResult, check_op, jax_op, torch_op

DTYPES = [np.float64, np.float32]
CONV_SHAPES = [  # n, c_in, h, w, c_out, kh, kw, stride, padding
    (2, 3, 8, 8, 4, 3, 3, 1, 0),
    (1, 2, 7, 9, 3, 3, 3, 1, 1),
    (2, 3, 9, 8, 5, 3, 3, 2, 1),
    (3, 4, 11, 10, 2, 5, 3, 2, 2),
    (1, 2, 6, 7, 3, 2, 4, 1, 2),
    (2, 16, 10, 10, 8, 3, 3, 1, 1),
]
ACTIVATIONS = ["relu", "tanh", "sigmoid", "sin", "cos", "identity"]


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def _conv_inputs(shape, dtype) -> list[np.ndarray]:
    n, c_in, h, w, c_out, kh, kw, _, _ = shape
    rng = _rng(1, *shape[:7])
    return [rng.standard_normal(s).astype(dtype)
            for s in ((n, c_in, h, w), (c_out, c_in, kh, kw), (c_out,))]


def _dense_inputs(n, d_in, d_out, dtype) -> list[np.ndarray]:
    rng = _rng(2, n, d_in, d_out)
    return [rng.standard_normal(s).astype(dtype) for s in ((n, d_in), (d_in, d_out), (d_out,))]


def _activation_input(dtype) -> np.ndarray:
    x = 3 * _rng(5).standard_normal((4, 3, 5, 5))
    x[0, 0, 0, :3] = [0.0, 40.0, -40.0]  # relu'(0), saturated sigmoid and tanh
    return x.astype(dtype)


def _numpy_dense():
    """A dense layer written in NumPy, in the oracle's layout."""
    def forward(x, W, b):
        return x @ W + b

    def backward(dy, x, W, b):
        return dy @ W.T, x.T @ dy, dy.sum(axis=0)
    return forward, backward


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the torch adapter drives torch")


@pytest.fixture(scope="module")
def F(torch):
    return torch.nn.functional


@pytest.fixture(scope="module")
def jax():
    return pytest.importorskip("jax", reason="the JAX adapter drives jax (extra: optax)")


# -- acceptance: torch ------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_torch_conv2d_is_the_oracle(F, shape, dtype):
    stride, padding = shape[7:]
    result = check_op("conv2d", *torch_op(F.conv2d), inputs=_conv_inputs(shape, dtype),
                      stride=stride, padding=padding)
    assert result.ok, result
    assert result.outputs == ("out", "dx", "dW", "db")
    assert result.dtype == np.dtype(dtype).name


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [(1, 1, 1), (5, 7, 3), (16, 64, 32)])
def test_torch_linear_through_the_adapter(F, sizes, dtype):
    inputs = _dense_inputs(*sizes, dtype)
    for forward, backward in (torch_op(F.linear), torch_op("dense"),
                              torch_op(lambda x, W, b: x @ W.T + b, layout="linear")):
        result = check_op("dense", forward, backward, inputs=inputs)
        assert result.ok, result


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k", [((2, 3, 8, 8), 2), ((1, 2, 7, 9), 2), ((2, 2, 10, 11), 3)])
def test_torch_max_pool2d_tie_free(F, shape, k, dtype):
    x = _rng(3, *shape).standard_normal(shape).astype(dtype)  # continuous: no ties
    result = check_op("maxpool2d", *torch_op(F.max_pool2d), inputs=[x], k=k)
    assert result.ok, result


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_max_pool2d_ties_follow_the_same_rule(F, dtype):
    """Both send a tied window's gradient to its first maximum in row-major order."""
    x = _rng(4).integers(0, 3, size=(2, 3, 8, 8)).astype(dtype)
    windows = x.reshape(2, 3, 4, 2, 4, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 4, 4, 4)
    tied = (windows == windows.max(axis=-1, keepdims=True)).sum(axis=-1) > 1
    assert tied.sum() > 20  # the input does exercise the tie rule
    result = check_op("maxpool2d", *torch_op(F.max_pool2d), inputs=[x], k=2)
    assert result.ok, result


@pytest.mark.torch
def test_torch_max_pool2d_nan_window_differs(F):
    """A window holding NaN: torch routes its gradient to the NaN, the oracle passes none
    (docs/methods.md §1). check_op finds it at the NaN's position."""
    x = _rng(6).standard_normal((1, 1, 4, 4))
    x[0, 0, 2, 3] = np.nan
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    result = check_op("maxpool2d", *torch_op(F.max_pool2d), inputs=[x], dout=dout, k=2)
    assert not result.ok
    assert (result.output, result.index) == ("dx", (0, 0, 2, 3))
    assert (result.ours, result.theirs) == (0.0, 4.0)
    assert result.failed == ("dx",)  # the outputs (NaN in both) agree


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_torch_activations(torch, name, dtype):
    x = _activation_input(dtype)
    function = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                "sin": torch.sin, "cos": torch.cos, "identity": lambda t: t}[name]
    for forward, backward in (torch_op(function), torch_op(name)):
        result = check_op(name, forward, backward, inputs=[x])
        assert result.ok, result


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,n_classes,scale", [(1, 2, 1.0), (8, 10, 3.0), (5, 7, 300.0)])
def test_torch_cross_entropy(F, n, n_classes, scale, dtype):
    """refimpl's loss is the batch mean with integer labels, as F.cross_entropy's default."""
    rng = _rng(7, n, n_classes)
    logits = (scale * rng.standard_normal((n, n_classes))).astype(dtype)
    labels = rng.integers(0, n_classes, size=n).astype(np.int32)  # the layout casts to int64
    result = check_op("softmax_cross_entropy", *torch_op(F.cross_entropy),
                      inputs=[logits, labels])
    assert result.ok, result
    assert result.outputs == ("out", "dlogits")
    scaled = check_op("softmax_cross_entropy", *torch_op(F.cross_entropy),
                      inputs=[logits, labels], dout=np.asarray(2.5, dtype=dtype))
    assert scaled.ok, scaled


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (4, 3), (2, 3, 5)])
def test_torch_mse_loss(F, shape, dtype):
    rng = _rng(8, *shape)
    pred, target = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    result = check_op("mse", *torch_op(F.mse_loss), inputs=[pred, target])
    assert result.ok, result
    assert result.outputs == ("out", "dpred")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_fused_ops(dtype):
    pytest.importorskip("torch", reason="the torch adapter drives torch")
    dense = _dense_inputs(6, 9, 5, dtype)
    assert check_op("dense_relu", *torch_op("dense_relu"), inputs=dense)
    conv = _conv_inputs(CONV_SHAPES[1], dtype)
    assert check_op("conv2d_relu", *torch_op("conv2d_relu"), inputs=conv, padding=1)
    result = check_op("conv2d_relu_maxpool2d", *torch_op("conv2d_relu_maxpool2d"),
                      inputs=conv, stride=1, padding=1, k=2)
    assert result.ok, result


# -- planted bugs -----------------------------------------------------------------------------
@pytest.mark.torch
def test_planted_dW_scale_is_found_and_named(F):
    x, W, b = _conv_inputs(CONV_SHAPES[2], np.float64)
    forward, backward = torch_op(F.conv2d)

    def scaled_dW(dout, *inputs, **args):
        dx, dW, db = backward(dout, *inputs, **args)
        return dx, dW * (1 + 1e-6), db

    dout = _rng(9).standard_normal((2, 5, 5, 4))
    result = check_op("conv2d", forward, scaled_dW, inputs=[x, W, b], dout=dout,
                      stride=2, padding=1)
    assert not result and isinstance(result, OpCheckResult)
    assert result.output == "dW" and result.failed == ("dW",)
    _, cache = ops.conv2d_forward(x, W, b, 2, 1)
    assert result.ours == ops.conv2d_backward(dout, cache)[1][result.index]
    assert result.theirs == pytest.approx(result.ours * (1 + 1e-6), rel=1e-12)
    assert 1e-7 < result.max_rel_diff["dW"] < 1e-6  # relative to the terms, >= |dW|
    text = str(result)
    assert f"dW parts at index {result.index}" in text and "outputs that part: dW" in text


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_planted_zero_in_dx_is_found_at_its_element(F, dtype):
    inputs = _conv_inputs(CONV_SHAPES[3], dtype)
    forward, backward = torch_op(F.conv2d)
    where = (1, 2, 3, 4)

    def zeroed_dx(dout, *arrays, **args):
        dx, dW, db = backward(dout, *arrays, **args)
        dx = dx.copy()
        dx[where] = 0
        return dx, dW, db

    result = check_op("conv2d", forward, zeroed_dx, inputs=inputs, stride=2, padding=2)
    assert (result.output, result.index, result.theirs) == ("dx", where, 0.0)
    assert abs(result.ours) > 1e-3


@pytest.mark.torch
def test_planted_forward_bug_parts_out_first(F):
    """A convolution that drops the bias: the output parts, and db (zeros) with it."""
    forward, backward = torch_op(lambda x, W, b, stride, padding:
                                 F.conv2d(x, W, None, stride=stride, padding=padding))
    result = check_op("conv2d", forward, backward, inputs=_conv_inputs(CONV_SHAPES[0],
                      np.float64), stride=1, padding=0)
    assert result.output == "out" and result.failed == ("out", "db")
    assert result.max_rel_diff["dx"] <= 1e-12 and result.max_rel_diff["dW"] <= 1e-12


def test_numpy_implementation_and_a_planted_bug_without_any_framework():
    forward, backward = _numpy_dense()
    inputs = _dense_inputs(4, 6, 3, np.float64)
    result = check_op("dense", forward, backward, inputs=inputs)
    assert result.ok and str(result).startswith("dense: refimpl vs ")
    assert "equal in out, dx, dW, db" in str(result)

    def off_by_one_db(dy, x, W, b):
        return dy @ W.T, x.T @ dy, dy[1:].sum(axis=0)  # forgets the first row

    result = check_op("dense", forward, off_by_one_db, inputs=inputs)
    assert result.output == "db" and result.index in {(0,), (1,), (2,)}
    only_forward = check_op("dense", forward, inputs=inputs)
    assert only_forward.ok and only_forward.outputs == ("out",)


def test_cancellation_passes_the_terms_bound_not_a_relative_one():
    """Outputs near 0 by cancellation, summed in another order: they differ by rounding of
    the size of the terms, so a bound relative to |theirs| fails them and check_op's passes.
    The same sums with one term of 256 off by 1% fail (the bound is not loose)."""
    rng = _rng(10)
    x = rng.standard_normal((8, 256)).astype(np.float32)
    W = rng.standard_normal((256, 16)).astype(np.float32)
    b = -(x[0].astype(np.float64) @ W.astype(np.float64)).astype(np.float32)  # row 0 -> 0

    def one_term_at_a_time(x, W, b, wrong=0.0):
        y = np.broadcast_to(b, (x.shape[0], W.shape[1])).copy()
        for k in reversed(range(W.shape[0])):
            y += x[:, k : k + 1] * W[k] * np.float32(1 + wrong * (k == 0))
        return y

    ours, _ = ops.dense_forward(x, W, b)
    theirs = one_term_at_a_time(x, W, b)
    assert (np.abs(ours - theirs) > 1e-5 * np.abs(theirs)).any()  # a pure relative bound fails
    assert check_op("dense", one_term_at_a_time, inputs=[x, W, b]).ok
    wrong = check_op("dense", lambda *a: one_term_at_a_time(*a, wrong=1e-2), inputs=[x, W, b])
    assert wrong.output == "out"


# -- acceptance: JAX --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [CONV_SHAPES[0], CONV_SHAPES[2], CONV_SHAPES[4]])
def test_jax_conv_general_dilated(jax, shape, dtype):
    stride, padding = shape[7:]
    result = check_op("conv2d", *jax_op(jax.lax.conv_general_dilated),
                      inputs=_conv_inputs(shape, dtype), stride=stride, padding=padding)
    assert result.ok, result


@pytest.mark.parametrize("dtype", DTYPES)
def test_jax_dense_relu_and_maxpool(jax, dtype):
    jnp = jax.numpy
    inputs = _dense_inputs(5, 7, 3, dtype)
    assert check_op("dense", *jax_op(lambda x, W, b: jnp.dot(x, W) + b), inputs=inputs)
    assert check_op("dense", *jax_op("dense"), inputs=inputs)
    x = _activation_input(dtype)
    for name in ACTIVATIONS:
        result = check_op(name, *jax_op(name), inputs=[x])
        assert result.ok, result
    assert check_op("relu", *jax_op(jax.nn.relu), inputs=[x])
    ties = _rng(4).integers(0, 3, size=(2, 3, 8, 8)).astype(dtype)
    assert check_op("maxpool2d", *jax_op("maxpool2d"), inputs=[ties], k=2)  # first maximum


@pytest.mark.parametrize("dtype", DTYPES)
def test_jax_losses(jax, dtype):
    optax = pytest.importorskip("optax", reason="the JAX losses are optax's")
    rng = _rng(11)
    logits = (3 * rng.standard_normal((8, 10))).astype(dtype)
    labels = rng.integers(0, 10, size=8)
    result = check_op("softmax_cross_entropy",
                      *jax_op(optax.softmax_cross_entropy_with_integer_labels),
                      inputs=[logits, labels])
    assert result.ok, result
    # Logits 300 apart: softmax entries underflow, subnormal in NumPy, flushed to 0 by XLA.
    wide = (300 * rng.standard_normal((16, 10))).astype(dtype)
    many = rng.integers(0, 10, size=16)
    dlogits = ops.softmax_cross_entropy(wide, many)[1]
    assert ((dlogits != 0) & (np.abs(dlogits) < np.finfo(dtype).tiny)).any()
    result = check_op("softmax_cross_entropy", *jax_op("softmax_cross_entropy"),
                      inputs=[wide, many])
    assert result.ok, result
    pred, target = (rng.standard_normal((4, 3)).astype(dtype) for _ in range(2))
    assert check_op("mse", *jax_op(optax.squared_error), inputs=[pred, target])
    assert check_op("mse", *jax_op("mse"), inputs=[pred, target])


def test_jax_float64_is_scoped_to_the_adapter(jax):
    before = bool(jax.config.jax_enable_x64)
    forward, _ = jax_op("tanh")
    assert bool(jax.config.jax_enable_x64) == before
    assert forward(np.ones(3)).dtype == np.float64
    assert forward(np.ones(3, dtype=np.float32)).dtype == np.float32
    assert bool(jax.config.jax_enable_x64) == before


def test_jax_relu_conventions_at_zero(jax):
    """jnp.maximum(x, 0) gives half the gradient at x = 0; jax.nn.relu (and the oracle) 0."""
    x = np.array([-1.0, 0.0, 2.0])
    dout = np.array([1.0, 2.0, 3.0])
    result = check_op("relu", *jax_op(lambda v: jax.numpy.maximum(v, 0)), inputs=[x],
                      dout=dout)
    assert (result.output, result.index, result.ours, result.theirs) == ("dx", (1,), 0.0, 1.0)
    assert check_op("relu", *jax_op(jax.nn.relu), inputs=[x], dout=dout)


def test_jax_reshape_max_pool_splits_tied_gradients(jax):
    """A max-pool written as reshape + max shares a tied window's gradient equally; the
    oracle (and lax.reduce_window, and torch) give it all to the first maximum."""
    def reshape_max(x, k=2):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // k, k, w // k, k).max(axis=(3, 5))

    ties = np.ones((1, 1, 2, 2))
    result = check_op("maxpool2d", *jax_op(reshape_max), inputs=[ties],
                      dout=np.ones((1, 1, 1, 1)))
    # The worst element is one the oracle gives nothing (scale ~0): the first such one.
    assert (result.output, result.index, result.ours, result.theirs) == (
        "dx", (0, 0, 0, 1), 0.0, 0.25)
    assert result.failed == ("dx",) and result.max_rel_diff["dx"] > 1e200
    tie_free = _rng(12).standard_normal((2, 3, 6, 6))
    assert check_op("maxpool2d", *jax_op(reshape_max), inputs=[tie_free])


# -- bad input --------------------------------------------------------------------------------
def test_unknown_op_names_the_choices():
    forward, backward = _numpy_dense()
    with pytest.raises(ValueError, match=r"unknown op 'linear'; choose one of: .*conv2d.*dense"):
        check_op("linear", forward, backward, inputs=[])
    with pytest.raises(ValueError, match="without _forward"):
        check_op("dense_forward", forward, inputs=[])


def test_wrong_inputs_and_arguments():
    forward, backward = _numpy_dense()
    x, W, b = _dense_inputs(2, 3, 4, np.float64)
    with pytest.raises(ValueError, match=r"dense takes 3 input\(s\), \[x, W, b\].*got 2"):
        check_op("dense", forward, inputs=[x, W])
    with pytest.raises(TypeError, match="list of arrays"):
        check_op("dense", forward, inputs=x)
    with pytest.raises(TypeError, match="maxpool2d takes k; got unknown argument.*kernel_size"):
        check_op("maxpool2d", forward, inputs=[np.ones((1, 1, 2, 2))], kernel_size=2)
    with pytest.raises(ValueError, match="rtol and atol must be >= 0"):
        check_op("dense", forward, inputs=[x, W, b], rtol=-1.0)
    with pytest.raises(ValueError, match="x must have dtype float32 or float64"):
        check_op("dense", forward, inputs=[x.astype(int), W, b])
    with pytest.raises(ValueError, match=r"dout must have the shape of the op's output \(2, 4\)"):
        check_op("dense", forward, backward, inputs=[x, W, b], dout=np.ones((4, 2)))
    with pytest.raises(ValueError, match="dout has dtype float32"):
        check_op("dense", forward, backward, inputs=[x, W, b], dout=np.ones((2, 4), np.float32))


def test_what_their_functions_return_is_checked_by_name():
    forward, backward = _numpy_dense()
    x, W, b = _dense_inputs(2, 3, 4, np.float64)
    with pytest.raises(ValueError, match=r"forward returned out of shape \(4,\).*\(2, 4\)"):
        check_op("dense", lambda x, W, b: b, inputs=[x, W, b])
    def transposed_dW(*arrays):
        dx, dW, db = backward(*arrays)
        return dx, dW.T, db

    with pytest.raises(ValueError, match=r"returned dW of shape \(4, 3\).*W \(in, out\)"):
        check_op("dense", forward, transposed_dW, inputs=[x, W, b])
    with pytest.raises(ValueError, match=r"returned 2 gradient\(s\), but dense has 3: \(dx, dW"):
        check_op("dense", forward, lambda *a: backward(*a)[:2], inputs=[x, W, b])
    with pytest.raises(ValueError, match="backward returned None for db"):
        check_op("dense", forward, lambda *a: (*backward(*a)[:2], None), inputs=[x, W, b])
    with pytest.raises(ValueError, match="forward returned out as float32 for float64 inputs"):
        check_op("dense", lambda *a: forward(*a).astype(np.float32), inputs=[x, W, b])


@pytest.mark.torch
def test_adapter_errors(F):
    pred = np.ones(3)
    with pytest.raises(ValueError, match=r"returned 2 gradient\(s\), but mse has 1: \(dpred\)"):
        check_op("mse", *torch_op(F.mse_loss, wrt=(0, 1)), inputs=[pred, pred])
    with pytest.raises(ValueError, match="unknown op 'linear' for torch_op"):
        torch_op("linear")
    with pytest.raises(ValueError, match="unknown torch layout 'conv'; choose one of: .*linear"):
        torch_op(F.conv2d, layout="conv")
    with pytest.raises(TypeError, match="fn must be a function or an op name"):
        torch_op(3)
    with pytest.raises(ValueError, match="wrt must hold input positions"):
        torch_op(F.conv2d, wrt=(-1,))


def test_importing_crosscheck_imports_no_framework():
    code = ("import sys, refimpl.crosscheck; "
            "print(sorted({'torch', 'jax', 'optax'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"
