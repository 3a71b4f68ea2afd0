"""Every backward of refimpl.ops against central differences in float64.

Tolerance: relative error (refimpl.gradcheck.relative_error, max abs difference over the
largest gradient entry) <= 1e-7. With eps = 1e-6 the central difference has truncation
error ~1e-12 and rounding error ~1e-16 |f| / 1e-6 ~ 1e-10 relative on these O(1) problems,
so 1e-7 leaves three orders of margin while any wrong term in a backward gives O(1).
Inputs of relu and maxpool are kept away from their kinks (by more than eps), where the
function is not differentiable and a finite difference is meaningless.
"""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import ops
from refimpl.gradcheck import check_op, gradcheck, numerical_gradient, relative_error
from refimpl.model import build

TOL = 1e-7


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


# (N, C_in, H, W, C_out, kh, kw, stride, padding): odd sizes, batch 1, strides 1-3, padding 0-2.
CONV_CASES = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0),
    (2, 3, 7, 6, 4, 3, 3, 1, 1),
    (2, 2, 8, 7, 3, 3, 3, 2, 1),
    (1, 3, 9, 9, 2, 3, 2, 2, 0),
    (3, 2, 6, 5, 2, 1, 1, 1, 0),
    (2, 2, 7, 7, 3, 5, 5, 3, 2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c)))
def test_conv2d_backward(case):
    n, c_in, h, w, c_out, kh, kw, stride, padding = case
    rng = _rng(1, *case)
    x = rng.standard_normal((n, c_in, h, w))
    W = rng.standard_normal((c_out, c_in, kh, kw))
    b = rng.standard_normal(c_out)
    err = check_op(
        ops.conv2d_forward, ops.conv2d_backward, [x, W, b], stride=stride, padding=padding
    )
    assert err <= TOL


@pytest.mark.parametrize("case", CONV_CASES[:4], ids=lambda c: "x".join(map(str, c)))
def test_conv2d_relu_backward(case):
    """The fused pair; no pre-activation lies within eps of relu's kink for these seeds
    (checked below), so central differences see a smooth function."""
    n, c_in, h, w, c_out, kh, kw, stride, padding = case
    rng = _rng(7, *case)
    x = rng.standard_normal((n, c_in, h, w))
    W = rng.standard_normal((c_out, c_in, kh, kw))
    b = rng.standard_normal(c_out)
    z, _ = ops.conv2d_forward(x, W, b, stride, padding)
    assert np.abs(z).min() > 1e-4 and (z < 0).any() and (z > 0).any()
    err = check_op(
        ops.conv2d_relu_forward, ops.conv2d_relu_backward, [x, W, b], stride=stride,
        padding=padding,
    )
    assert err <= TOL


@pytest.mark.parametrize("case", CONV_CASES[:4], ids=lambda c: "x".join(map(str, c)))
def test_conv2d_relu_maxpool2d_backward(case):
    """The fused conv+relu+maxpool op; the seeds keep every pre-activation away from relu's
    kink and every window's positive maximum away from its runner-up (checked below)."""
    n, c_in, h, w, c_out, kh, kw, stride, padding = case
    rng = _rng(8, *case)
    x = rng.standard_normal((n, c_in, h, w))
    W = rng.standard_normal((c_out, c_in, kh, kw))
    b = rng.standard_normal(c_out)
    z, _ = ops.conv2d_forward(x, W, b, stride, padding)
    assert np.abs(z).min() > 1e-4
    k = 2 if min(z.shape[2:]) >= 2 else 1
    hk, wk = z.shape[2] // k, z.shape[3] // k
    windows = np.maximum(z, 0)[:, :, :hk * k, :wk * k].reshape(n, c_out, hk, k, wk, k)
    top2 = np.sort(windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c_out, hk, wk, -1), -1)
    if k > 1:
        positive = top2[..., -1] > 0
        assert (top2[..., -1] - top2[..., -2])[positive].min() > 1e-4
    err = check_op(
        ops.conv2d_relu_maxpool2d_forward, ops.conv2d_relu_maxpool2d_backward, [x, W, b],
        stride=stride, padding=padding, k=k,
    )
    assert err <= TOL


@pytest.mark.parametrize("shape", [(1, 7, 3), (5, 4, 9)])
def test_dense_relu_backward(shape):
    n, d_in, d_out = shape
    rng = _rng(8, *shape)
    inputs = [rng.standard_normal((n, d_in)), rng.standard_normal((d_in, d_out)),
              rng.standard_normal(d_out)]
    z, _ = ops.dense_forward(*inputs)
    assert np.abs(z).min() > 1e-4  # away from relu's kink (see the conv case)
    assert check_op(ops.dense_relu_forward, ops.dense_relu_backward, inputs) <= TOL


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 3), (5, 4, 9)])
def test_dense_backward(shape):
    n, d_in, d_out = shape
    rng = _rng(2, *shape)
    inputs = [
        rng.standard_normal((n, d_in)),
        rng.standard_normal((d_in, d_out)),
        rng.standard_normal(d_out),
    ]
    assert check_op(ops.dense_forward, ops.dense_backward, inputs) <= TOL


def _distinct_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.01 apart (far more than eps), so no window has a near-tie."""
    size = int(np.prod(shape))
    return (rng.permutation(size) * 0.01 - size * 0.005).reshape(shape).astype(np.float64)


@pytest.mark.parametrize("shape,k", [((1, 1, 4, 4), 2), ((2, 3, 7, 5), 2), ((2, 2, 9, 10), 3)])
def test_maxpool2d_backward(shape, k):
    x = _distinct_values(_rng(3, *shape, k), shape)
    assert check_op(ops.maxpool2d_forward, ops.maxpool2d_backward, [x], k=k) <= TOL


@pytest.mark.parametrize("name", sorted(ops.ACTIVATIONS))
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 3, 4, 5)])
def test_activation_backward(name, shape):
    x = 2 * _rng(4, *shape).standard_normal(shape)
    if name == "relu":
        x = np.where(np.abs(x) < 1e-3, 0.5, x)  # away from the kink at 0
    forward, backward = ops.ACTIVATIONS[name]
    assert check_op(forward, backward, [x]) <= TOL


@pytest.mark.parametrize("n,n_classes", [(1, 2), (4, 10), (7, 3)])
def test_softmax_cross_entropy_gradient(n, n_classes):
    rng = _rng(5, n, n_classes)
    logits = 3 * rng.standard_normal((n, n_classes))
    labels = rng.integers(0, n_classes, size=n)
    _, dlogits = ops.softmax_cross_entropy(logits, labels)

    def loss() -> float:
        return ops.softmax_cross_entropy(logits, labels)[0]

    assert gradcheck(loss, [logits], [dlogits]) <= TOL


@pytest.mark.parametrize("shape", [(1,), (4, 3), (2, 3, 5)])
def test_mse_gradient(shape):
    rng = _rng(6, *shape)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    _, dpred = ops.mse(pred, target)
    assert gradcheck(lambda: ops.mse(pred, target)[0], [pred], [dpred]) <= TOL


@pytest.mark.parametrize(
    "spec,input_shape",
    [
        ("conv:3x3p1,relu,pool2,conv:2x3s2,tanh,flatten,dense:5,sigmoid,dense:3", (2, 9, 9)),
        ("dense:6,sin,dense:4,cos,dense:3,identity", (5,)),
    ],
)
def test_whole_sequential(spec, input_shape):
    """Every parameter gradient of a small network under softmax cross-entropy."""
    model = build(spec, input_shape, seed=7, dtype=np.float64)
    rng = _rng(7)
    x = rng.standard_normal((3, *input_shape))
    labels = rng.integers(0, 3, size=3)

    def loss() -> float:
        return ops.softmax_cross_entropy(model.forward(x), labels)[0]

    _, dlogits = ops.softmax_cross_entropy(model.forward(x), labels)
    dx = model.backward(dlogits)
    analytic = [g.copy() for g in model.gradients()]
    assert gradcheck(loss, model.parameters(), analytic) <= TOL
    assert gradcheck(loss, [x], [dx]) <= TOL


def test_gradcheck_detects_a_wrong_backward():
    """The checker must fail a backward that drops a term (here: dW of dense, halved)."""
    rng = _rng(8)
    inputs = [rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)]

    def wrong_backward(dy, cache):
        dx, dW, db = ops.dense_backward(dy, cache)
        return dx, dW / 2, db

    assert check_op(ops.dense_forward, wrong_backward, inputs) > 0.1


def test_numerical_gradient_restores_input_and_matches_closed_form():
    x = _rng(9).standard_normal((3, 2))
    before = x.copy()
    grad = numerical_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_array_equal(x, before)
    assert relative_error(grad, 3 * x**2) <= 1e-9


def test_relative_error_and_argument_checks():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([2.0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="float64"):
        numerical_gradient(lambda: 0.0, np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(lambda: 0.0, np.zeros((3, 2)).T)
    with pytest.raises(ValueError, match="analytic"):
        gradcheck(lambda: 0.0, [np.zeros(2)], [])
