"""One whole lrpo_cnn training step against PyTorch in float64 (batch 4).

The same weights are loaded into a torch ``nn.Sequential`` of the docs/methods.md §7 architecture;
the loss, every parameter gradient, and the weights after SGD (1 step), momentum SGD
(2 steps) and Adam (2 steps) must agree. Metric: ``‖ours − torch‖₂ / ‖torch‖₂`` per array,
<= 1e-10 (both sides are float64; they differ only by summation order, ~1e-15).
"""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import ops
from refimpl.model import get_model

torch = pytest.importorskip("torch", reason="torch is needed for the PyTorch cross-check")
optim = pytest.importorskip("refimpl.optim", reason="refimpl.optim is not written yet")
nn = torch.nn

pytestmark = pytest.mark.torch
TOL = 1e-10
BATCH = 4


def rel(ours: np.ndarray, theirs: np.ndarray) -> float:
    assert ours.shape == theirs.shape
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def torch_lrpo_cnn() -> nn.Sequential:
    """Spec §7 in torch: the same layer indices as refimpl's ``lrpo_cnn``."""
    return nn.Sequential(
        nn.Conv2d(1, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3),
        nn.ReLU(),
        nn.Conv2d(128, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    ).double()


def as_ours(name: str, array: np.ndarray) -> np.ndarray:
    """torch's Linear keeps its weight as (out, in); refimpl's Dense as (in, out)."""
    return array.T if name.endswith("weight") and array.ndim == 2 else array


def torch_arrays(model: nn.Module, grads: bool = False) -> list[np.ndarray]:
    """Parameters (or their grads) in refimpl's layout and order (W, b per layer)."""
    out = []
    for name, p in model.named_parameters():
        tensor = p.grad if grads else p
        out.append(as_ours(name, tensor.detach().numpy()))
    return out


@pytest.fixture
def models():
    ours = get_model("lrpo_cnn", seed=0, dtype=np.float64)
    theirs = torch_lrpo_cnn()
    names = [name for name, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == [
        n.replace("weight", "W").replace("bias", "b") for n in names
    ]
    with torch.no_grad():
        for (name, p), ours_p in zip(theirs.named_parameters(), ours.parameters()):
            p.copy_(torch.from_numpy(np.ascontiguousarray(as_ours(name, ours_p))))
    return ours, theirs


def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([1, step])
    return rng.standard_normal((BATCH, 1, 28, 28)), rng.integers(0, 10, size=BATCH)


def loss_and_grads(ours, theirs, step: int) -> tuple[float, float]:
    x, labels = batch(step)
    loss, dlogits = ops.softmax_cross_entropy(ours.forward(x), labels)
    ours.backward(dlogits)
    theirs.zero_grad()
    loss_t = nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(labels))
    loss_t.backward()
    return loss, loss_t.item()


def test_loss_and_every_gradient(models):
    ours, theirs = models
    loss, loss_t = loss_and_grads(ours, theirs, 0)
    assert abs(loss - loss_t) <= TOL * abs(loss_t)
    for name, g, g_t in zip(
        [n for n, _ in ours.named_parameters()], ours.gradients(), torch_arrays(theirs, True)
    ):
        assert rel(g, g_t) <= TOL, name


OPTIMIZERS = {
    "sgd": (1, lambda p: optim.SGD(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    "momentum": (
        2,
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4),
    ),
    "adam": (2, lambda p: optim.Adam(p, lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_weights_after_optimizer_steps(models, name):
    ours, theirs = models
    steps, make_ours, make_theirs = OPTIMIZERS[name]
    opt, opt_t = make_ours(ours.parameters()), make_theirs(theirs.parameters())
    for step in range(steps):
        loss, loss_t = loss_and_grads(ours, theirs, step)
        assert abs(loss - loss_t) <= TOL * abs(loss_t)
        opt.step(ours.gradients())
        opt_t.step()
        for p, p_t in zip(ours.parameters(), torch_arrays(theirs)):
            assert rel(p, p_t) <= TOL, f"{name} step {step}"
