"""refimpl.ops: contract coverage, dtypes, shape formulas, tie rules and input validation.

Float32 results are compared with the float64 ones at 1e-5 relative (norm-wise), the
project's float32 tolerance: a few hundred float32 products summed in a matmul keep a
relative error around 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refimpl import kernels, ops

DTYPES = [np.float32, np.float64]


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def _conv_inputs(dtype, n=2, c_in=3, h=7, w=6, c_out=4, k=3):
    rng = _rng(1)
    return (
        rng.standard_normal((n, c_in, h, w)).astype(dtype),
        rng.standard_normal((c_out, c_in, k, k)).astype(dtype),
        rng.standard_normal(c_out).astype(dtype),
    )


def test_activation_table_holds_each_element_wise_pair_of_the_contract():
    """ops.ACTIVATIONS (the names the model builder accepts) maps every element-wise op of
    the contract (a forward of ``x`` alone) to that op's own pair, and nothing else."""
    import inspect

    element_wise = {op.removesuffix("_forward") for op in kernels.CONTRACT
                    if op.endswith("_forward")
                    and list(inspect.signature(getattr(ops, op)).parameters) == ["x"]}
    assert set(ops.ACTIVATIONS) == element_wise
    for name, pair in ops.ACTIVATIONS.items():
        assert pair == (getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward")), name


def _compose(op: str, args: tuple, dy_from):
    """The fused op ``op`` spelled out as its basic ops in turn (docs/methods.md §1,
    (1.19)-(1.21)): forward ``y`` and the backward ``(dx, dW, db)`` for ``dy_from(y)``."""
    layer = "dense" if op == "dense_relu" else "conv2d"
    layer_args = args[:-1] if op == "conv2d_relu_maxpool2d" else args
    z, layer_cache = getattr(ops, f"{layer}_forward")(*layer_args)
    y, relu_cache = ops.relu_forward(z)
    if op == "conv2d_relu_maxpool2d":
        y, pool_cache = ops.maxpool2d_forward(y, args[-1])
    dy = dy_from(y)
    dz = ops.maxpool2d_backward(dy, pool_cache) if op == "conv2d_relu_maxpool2d" else dy
    return y, dy, getattr(ops, f"{layer}_backward")(ops.relu_backward(dz, relu_cache),
                                                    layer_cache)


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(["dense_relu", "conv2d_relu", "conv2d_relu_maxpool2d"]),
       n=st.integers(1, 3), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
       h=st.integers(1, 8), w=st.integers(1, 8), k=st.integers(1, 3), stride=st.integers(1, 2),
       padding=st.integers(0, 1), pool=st.integers(1, 2), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**16))
def test_fused_ops_equal_the_composition_of_the_basic_ops(op, n, c_in, c_out, h, w, k, stride,
                                                          padding, pool, dtype, seed):
    """On random shapes and values, each fused pair gives the bits of its basic ops run in
    turn, forward and backward, with and without dx."""
    rng = _rng(20, seed)

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    if op == "dense_relu":
        args = (normal(n, c_in * h), normal(c_in * h, c_out), normal(c_out))
    else:
        h_out = (h + 2 * padding - k) // stride + 1
        w_out = (w + 2 * padding - k) // stride + 1
        assume(h_out >= 1 and w_out >= 1)
        args = (normal(n, c_in, h, w), normal(c_out, c_in, k, k), normal(c_out), stride, padding)
        if op == "conv2d_relu_maxpool2d":
            assume(h_out >= pool and w_out >= pool)
            args = (*args, pool)
    y_want, dy, grads_want = _compose(op, args, lambda y: normal(*y.shape))
    y, cache = getattr(ops, f"{op}_forward")(*args)
    np.testing.assert_array_equal(y, y_want)
    for need_dx in (True, False):
        got = getattr(ops, f"{op}_backward")(dy, cache, need_dx=need_dx)
        assert (got[0] is None) != need_dx
        for label, g, want in zip(("dx", "dW", "db"), got, grads_want):
            if g is not None:
                np.testing.assert_array_equal(g, want, err_msg=f"{op} {label}")


def test_the_oracle_holds_no_speed_code():
    """refimpl/ops, refimpl/layers.py and refimpl/model.py are the definition: the speed
    devices of the backends (Numba, thread pools, ``out=`` buffers, ``einsum``, in-place
    ``putmask``) live in refimpl/kernels, and none of their names appears here."""
    from pathlib import Path

    import refimpl

    root = Path(refimpl.__file__).parent
    sources = [*sorted((root / "ops").glob("*.py")), root / "layers.py", root / "model.py"]
    words = ("numba", "threads", "out=", "GRADS_OUT", "einsum", "putmask")
    found = [f"{path.relative_to(root)}:{number}: {word}" for path in sources
             for number, line in enumerate(path.read_text().splitlines(), 1)
             for word in words if word in line]
    assert len(sources) > 10 and found == []


def test_sched_oracle_rolls_the_state_forward():
    rng = _rng(21)
    w, cached, u_prev = rng.standard_normal(7), rng.standard_normal(7), rng.standard_normal(7)
    u = (cached - w) / 0.5
    a_want, b_want = float(u_prev @ u), float(u_prev @ u_prev)
    a, b = ops.sched.tlr_pass(w, cached, u_prev, 0.5)
    assert a == pytest.approx(a_want, rel=1e-12) and b == pytest.approx(b_want, rel=1e-12)
    np.testing.assert_array_equal(cached, w)
    np.testing.assert_allclose(u_prev, u, rtol=1e-15)
    g, prev = rng.standard_normal(7).astype(np.float32), rng.standard_normal(7)
    g64, prev0 = g.astype(np.float64), prev.copy()
    products = ops.sched.grad_pair_pass(g, prev)
    np.testing.assert_allclose(products, [g64 @ prev0, g64 @ g64, prev0 @ prev0], rtol=1e-12)
    np.testing.assert_array_equal(prev, g64)


# -- dtype preservation -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_preserved_by_dense_and_conv(dtype):
    rng = _rng(2)
    x, W, b = (rng.standard_normal(s).astype(dtype) for s in [(3, 4), (4, 5), (5,)])
    y, cache = ops.dense_forward(x, W, b)
    assert y.dtype == dtype
    assert all(g.dtype == dtype for g in ops.dense_backward(np.ones_like(y), cache))
    y, cache = ops.conv2d_forward(*_conv_inputs(dtype), stride=2, padding=1)
    assert y.dtype == dtype
    assert all(g.dtype == dtype for g in ops.conv2d_backward(np.ones_like(y), cache))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ops.ACTIVATIONS))
def test_dtype_preserved_by_activations(dtype, name):
    x = _rng(3).standard_normal((2, 3, 4)).astype(dtype)
    forward, backward = ops.ACTIVATIONS[name]
    y, cache = forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    dx = backward(np.ones_like(y), cache)
    assert dx.dtype == dtype and dx.shape == x.shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_preserved_by_pool_and_losses(dtype):
    x = _rng(4).standard_normal((2, 3, 5, 5)).astype(dtype)
    y, cache = ops.maxpool2d_forward(x, 2)
    assert y.dtype == dtype and ops.maxpool2d_backward(np.ones_like(y), cache).dtype == dtype
    loss, dlogits = ops.softmax_cross_entropy(x.reshape(2, -1), np.array([0, 3]))
    assert type(loss) is float and dlogits.dtype == dtype
    loss, dpred = ops.mse(x, np.zeros(x.shape, dtype=np.float64))
    assert type(loss) is float and dpred.dtype == dtype


def test_float32_agrees_with_float64():
    """The float32 path is the same math: 1e-5 relative to the float64 result."""
    y64, c64 = ops.conv2d_forward(*_conv_inputs(np.float64), stride=1, padding=1)
    y32, c32 = ops.conv2d_forward(*_conv_inputs(np.float32), stride=1, padding=1)
    assert np.linalg.norm(y32 - y64) / np.linalg.norm(y64) <= 1e-5
    dy = _rng(5).standard_normal(y64.shape)
    for g32, g64 in zip(
        ops.conv2d_backward(dy.astype(np.float32), c32), ops.conv2d_backward(dy, c64)
    ):
        assert np.linalg.norm(g32 - g64) / np.linalg.norm(g64) <= 1e-5


# -- shapes ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    c_in=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
)
def test_conv2d_shape_formula(n, c_in, h, w, k, stride, padding):
    x, W, b = _conv_inputs(np.float64, n, c_in, h, w, 2, k)
    h_out = (h + 2 * padding - k) // stride + 1
    w_out = (w + 2 * padding - k) // stride + 1
    if h_out < 1 or w_out < 1:
        with pytest.raises(ValueError, match="x of shape"):
            ops.conv2d_forward(x, W, b, stride, padding)
        return
    y, cache = ops.conv2d_forward(x, W, b, stride, padding)
    assert y.shape == (n, 2, h_out, w_out)
    dx, dW, db = ops.conv2d_backward(np.ones_like(y), cache)
    assert (dx.shape, dW.shape, db.shape) == (x.shape, W.shape, b.shape)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(1, 4))
def test_maxpool2d_shape_floor_mode(h, w, k):
    x = _rng(6, h, w, k).standard_normal((2, 3, h, w))
    if h < k or w < k:
        with pytest.raises(ValueError, match="k="):
            ops.maxpool2d_forward(x, k)
        return
    y, cache = ops.maxpool2d_forward(x, k)
    assert y.shape == (2, 3, h // k, w // k)
    dx = ops.maxpool2d_backward(np.ones_like(y), cache)
    assert dx.shape == x.shape
    # Each window sends exactly one unit of gradient; dropped rows/cols get none.
    assert dx.sum() == y.size
    assert not dx[:, :, (h // k) * k :].any() and not dx[:, :, :, (w // k) * k :].any()


def test_im2col_and_col2im_are_adjoint():
    """<im2col(x), c> == <x, col2im(c)>: the backward scatters exactly what the forward read."""
    rng = _rng(7)
    x = rng.standard_normal((2, 3, 8, 7))  # N=2, C=3; kernel 3x2, stride 2
    h_out, w_out = ops.conv2d_output_size(8, 3, 2), ops.conv2d_output_size(7, 2, 2)
    cols = ops.im2col(x, 3, 2, 2)
    assert cols.shape == (3 * 3 * 2, 2 * h_out * w_out)
    c = rng.standard_normal(cols.shape)
    dcols = c.reshape(3, 3, 2, 2, h_out, w_out)  # (C, kh, kw, N, H_out, W_out)
    lhs, rhs = np.sum(cols * c), np.sum(x * ops.col2im(dcols, x.shape, 3, 2, 2))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


# -- values and tie rules ----------------------------------------------------------------


def test_maxpool_first_max_on_ties():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, :, 2:] = [[1.0, 5.0], [5.0, 5.0]]  # second window: max 5 at (0,1), (1,0), (1,1)
    y, cache = ops.maxpool2d_forward(x, 2)
    np.testing.assert_array_equal(y, [[[[0.0, 5.0]]]])
    dx = ops.maxpool2d_backward(np.array([[[[2.0, 3.0]]]]), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] = 2.0  # all-zero window: the first (top-left) pixel
    expected[0, 0, 0, 3] = 3.0  # first 5 in row-major order
    np.testing.assert_array_equal(dx, expected)


def test_maxpool_nan_windows_and_nan_gradients():
    """(1.6)-(1.7): a window holding NaN outputs NaN and passes no gradient; a NaN in dy
    reaches its window's arg-max only, the rest of the window gets exactly 0."""
    x = np.array([[[[1.0, np.nan, 0.0, 2.0], [3.0, 0.5, -1.0, 1.0]]]])
    y, cache = ops.maxpool2d_forward(x, 2)
    np.testing.assert_array_equal(y, [[[[np.nan, 2.0]]]])
    dx = ops.maxpool2d_backward(np.array([[[[5.0, 7.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 0.0, 0.0, 7.0], [0.0, 0.0, 0.0, 0.0]]]])
    dx = ops.maxpool2d_backward(np.array([[[[1.0, np.nan]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 0.0, 0.0, np.nan], [0.0, 0.0, 0.0, 0.0]]]])


def test_maxpool_output_is_the_first_maximum_itself():
    """Ties between 0.0 and -0.0: y is the window's first maximum, sign included."""
    x = np.array([[[[-0.0, 0.0, 0.0, -0.0]]]])
    y, cache = ops.maxpool2d_forward(x, 1)
    assert np.array_equal(np.signbit(y), np.signbit(x))
    y, cache = ops.maxpool2d_forward(x.reshape(1, 1, 2, 2), 2)
    assert y.shape == (1, 1, 1, 1) and np.signbit(y).all() and cache[0].ravel()[0] == 0


def test_relu_derivative_at_zero_is_zero():
    x = np.array([-1.0, 0.0, 2.0])
    y, cache = ops.relu_forward(x)
    np.testing.assert_array_equal(y, [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(ops.relu_backward(np.ones(3), cache), [0.0, 0.0, 1.0])


def test_softmax_cross_entropy_values_and_stability():
    loss, dlogits = ops.softmax_cross_entropy(np.zeros((2, 4)), np.array([1, 3]))
    assert loss == pytest.approx(np.log(4), rel=1e-15)
    np.testing.assert_allclose(dlogits.sum(axis=1), 0.0, atol=1e-16)
    # Huge logits would overflow a naive exp; log-sum-exp keeps them exact.
    loss, dlogits = ops.softmax_cross_entropy(np.array([[1e4, 0.0], [0.0, 1e4]]), np.array([0, 0]))
    assert loss == pytest.approx(1e4 / 2, rel=1e-15)
    np.testing.assert_allclose(dlogits, [[0.0, 0.0], [-0.5, 0.5]], atol=1e-300)


def test_sigmoid_extremes_do_not_overflow():
    with np.errstate(over="raise", invalid="raise"):
        y, _ = ops.sigmoid_forward(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


def test_mse_value():
    loss, dpred = ops.mse(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))
    assert loss == 2.5
    np.testing.assert_array_equal(dpred, [[1.0, 2.0]])


# -- bad input: every message names the argument ----------------------------------------

X4 = np.zeros((2, 3, 5, 5))
W4 = np.zeros((4, 3, 3, 3))
B4 = np.zeros(4)

BAD_CALLS = {
    "dense x ndim": (lambda: ops.dense_forward(np.zeros(3), np.zeros((3, 2)), np.zeros(2)), "x"),
    "dense W mismatch": (
        lambda: ops.dense_forward(np.zeros((1, 3)), np.zeros((4, 2)), np.zeros(2)),
        "W",
    ),
    "dense b shape": (
        lambda: ops.dense_forward(np.zeros((1, 3)), np.zeros((3, 2)), np.zeros(3)),
        "b",
    ),
    "dense int x": (
        lambda: ops.dense_forward(np.zeros((1, 3), int), np.zeros((3, 2)), np.zeros(2)),
        "x",
    ),
    "dense list x": (lambda: ops.dense_forward([[0.0, 1.0]], np.zeros((2, 2)), np.zeros(2)), "x"),
    "dense mixed dtype": (
        lambda: ops.dense_forward(np.zeros((1, 3), np.float32), np.zeros((3, 2)), np.zeros(2)),
        "W",
    ),
    "conv x ndim": (lambda: ops.conv2d_forward(np.zeros((3, 5, 5)), W4, B4), "x"),
    "conv W channels": (lambda: ops.conv2d_forward(X4, np.zeros((4, 2, 3, 3)), B4), "W"),
    "conv b shape": (lambda: ops.conv2d_forward(X4, W4, np.zeros(3)), "b"),
    "conv stride 0": (lambda: ops.conv2d_forward(X4, W4, B4, stride=0), "stride"),
    "conv padding -1": (lambda: ops.conv2d_forward(X4, W4, B4, padding=-1), "padding"),
    "conv kernel too big": (lambda: ops.conv2d_forward(X4, np.zeros((4, 3, 7, 7)), B4), "x"),
    "conv W dtype": (lambda: ops.conv2d_forward(X4, W4.astype(np.int64), B4), "W"),
    "pool k 0": (lambda: ops.maxpool2d_forward(X4, 0), "k"),
    "pool x ndim": (lambda: ops.maxpool2d_forward(np.zeros((5, 5)), 2), "x"),
    "pool k too big": (lambda: ops.maxpool2d_forward(X4, 6), "x"),
    "relu int x": (lambda: ops.relu_forward(np.zeros(3, dtype=np.int32)), "x"),
    "ce logits ndim": (lambda: ops.softmax_cross_entropy(np.zeros(3), np.zeros(3, int)), "logits"),
    "ce float labels": (lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.zeros(2)), "labels"),
    "ce bool labels": (
        lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.zeros(2, bool)),
        "labels",
    ),
    "ce labels shape": (
        lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.zeros(3, int)),
        "labels",
    ),
    "ce labels high": (
        lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3])),
        "labels",
    ),
    "ce labels negative": (
        lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([-1, 0])),
        "labels",
    ),
    "mse shape": (lambda: ops.mse(np.zeros((2, 3)), np.zeros((3, 2))), "target"),
    "mse int pred": (lambda: ops.mse(np.zeros(3, int), np.zeros(3)), "pred"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_raises_value_error_naming_the_argument(case):
    call, argument = BAD_CALLS[case]
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(f"{argument} ") or f" {argument} " in str(info.value)


@pytest.mark.parametrize(
    "forward,args",
    [
        (ops.dense_forward, (np.zeros((2, 3)), np.zeros((3, 4)), np.zeros(4))),
        (ops.conv2d_forward, (X4, W4, B4)),
        (ops.maxpool2d_forward, (X4, 2)),
        (ops.tanh_forward, (X4,)),
        (ops.identity_forward, (X4,)),
    ],
)
def test_backward_refuses_a_gradient_of_the_wrong_shape(forward, args):
    y, cache = forward(*args)
    backward = getattr(ops, forward.__name__.replace("_forward", "_backward"))
    with pytest.raises(ValueError, match="^dy "):
        backward(np.zeros((1, *y.shape)), cache)
