"""Forward and backward of every refimpl.ops op against PyTorch (CPU, float64).

Metric: norm-relative difference ``‖ours − torch‖₂ / ‖torch‖₂`` per output, <= 1e-10.
Both sides compute the same sums in float64 but in different orders (im2col + BLAS vs
torch's kernels), so they differ by a few ulps per element (~1e-15 relative); 1e-10 leaves
room for that and still catches any wrong index, sign or scale.
"""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import ops

torch = pytest.importorskip("torch", reason="torch is needed for the PyTorch cross-check")
F = torch.nn.functional

pytestmark = pytest.mark.torch
TOL = 1e-10


def rel(ours: np.ndarray, theirs) -> float:
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape
    scale = np.linalg.norm(theirs)
    return float(np.linalg.norm(ours - theirs) / (scale if scale > 0 else 1.0))


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def _torch_grads(fn, arrays, dy):
    """Run ``fn`` on leaf tensors made from ``arrays``; return output and input grads."""
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*leaves)
    out.backward(torch.tensor(dy))
    return out, [leaf.grad for leaf in leaves]


def _check(ours_forward, ours_backward, torch_fn, arrays, **kwargs):
    y, cache = ours_forward(*arrays, **kwargs)
    dy = _rng(99, *y.shape).standard_normal(y.shape)
    grads = ours_backward(dy, cache)
    grads = (grads,) if isinstance(grads, np.ndarray) else grads
    y_t, grads_t = _torch_grads(torch_fn, arrays, dy)
    assert rel(y, y_t) <= TOL
    for g, g_t in zip(grads, grads_t, strict=True):
        assert rel(g, g_t) <= TOL


@pytest.mark.parametrize(
    "n,c_in,h,w,c_out,kh,kw,stride,padding",
    [
        (2, 3, 8, 8, 4, 3, 3, 1, 0),
        (1, 2, 7, 9, 3, 3, 3, 1, 1),
        (2, 3, 9, 8, 5, 3, 3, 2, 1),
        (3, 4, 11, 10, 2, 5, 3, 3, 2),
        (2, 64, 13, 13, 8, 3, 3, 1, 0),
    ],
)
def test_conv2d(n, c_in, h, w, c_out, kh, kw, stride, padding):
    rng = _rng(1, n, c_in, h, stride, padding)
    arrays = [
        rng.standard_normal((n, c_in, h, w)),
        rng.standard_normal((c_out, c_in, kh, kw)),
        rng.standard_normal(c_out),
    ]
    _check(
        ops.conv2d_forward,
        ops.conv2d_backward,
        lambda x, W, b: F.conv2d(x, W, b, stride=stride, padding=padding),
        arrays,
        stride=stride,
        padding=padding,
    )


@pytest.mark.parametrize("n,d_in,d_out", [(1, 1, 1), (5, 7, 3), (16, 512, 256)])
def test_dense(n, d_in, d_out):
    rng = _rng(2, n, d_in, d_out)
    arrays = [
        rng.standard_normal((n, d_in)),
        rng.standard_normal((d_in, d_out)),
        rng.standard_normal(d_out),
    ]
    # torch.nn.functional.linear takes the weight as (out, in).
    _check(ops.dense_forward, ops.dense_backward, lambda x, W, b: F.linear(x, W.T, b), arrays)


@pytest.mark.parametrize("shape,k", [((2, 3, 8, 8), 2), ((1, 2, 7, 9), 2), ((2, 2, 10, 11), 3)])
def test_maxpool2d(shape, k):
    x = _rng(3, *shape).standard_normal(shape)
    _check(ops.maxpool2d_forward, ops.maxpool2d_backward, lambda t: F.max_pool2d(t, k), [x], k=k)


def test_maxpool2d_ties_follow_torch():
    """Quantised inputs make many ties: the arg-max choice must be torch's."""
    x = _rng(4).integers(0, 3, size=(2, 3, 8, 8)).astype(np.float64)
    _check(ops.maxpool2d_forward, ops.maxpool2d_backward, lambda t: F.max_pool2d(t, 2), [x], k=2)


TORCH_ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "sin": torch.sin,
    "cos": torch.cos,
    "identity": lambda t: t * 1.0,
}


@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
def test_activation(name):
    x = 3 * _rng(5).standard_normal((4, 3, 5, 5))
    x[0, 0, 0, :3] = [0.0, 40.0, -40.0]  # relu'(0) and saturated sigmoid/tanh
    forward, backward = ops.ACTIVATIONS[name]
    _check(forward, backward, TORCH_ACTIVATIONS[name], [x])


@pytest.mark.parametrize("n,n_classes,scale", [(1, 2, 1.0), (8, 10, 3.0), (5, 7, 300.0)])
def test_softmax_cross_entropy(n, n_classes, scale):
    rng = _rng(6, n, n_classes)
    logits = scale * rng.standard_normal((n, n_classes))
    labels = rng.integers(0, n_classes, size=n)
    loss, dlogits = ops.softmax_cross_entropy(logits, labels)
    leaf = torch.tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(leaf, torch.tensor(labels))
    loss_t.backward()
    assert abs(loss - loss_t.item()) <= TOL * abs(loss_t.item())
    assert rel(dlogits, leaf.grad) <= TOL


@pytest.mark.parametrize("shape", [(1,), (4, 3), (2, 3, 5)])
def test_mse(shape):
    rng = _rng(7, *shape)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, dpred = ops.mse(pred, target)
    leaf = torch.tensor(pred, requires_grad=True)
    loss_t = F.mse_loss(leaf, torch.tensor(target))
    loss_t.backward()
    assert abs(loss - loss_t.item()) <= TOL * abs(loss_t.item())
    assert rel(dpred, leaf.grad) <= TOL
