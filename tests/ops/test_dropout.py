"""Dropout: the op pair refimpl.ops.dropout_* and the layer refimpl.layers.Dropout (seeded
masks, exact backward, identity in evaluation)."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import ops
from refimpl.layers import Activation, Dense, Dropout
from refimpl.model import Sequential
from refimpl.optim import SGD
from refimpl.train import Trainer


def test_forward_keeps_a_seeded_fraction_and_rescales():
    x = np.ones((200, 50))
    layer = Dropout(0.2, seed=3)
    y = layer.forward(x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1.0 / 0.8, rtol=1e-15)
    assert 0.78 < kept.mean() < 0.82  # 10,000 draws: std of the mean 0.004
    layer.backward(np.zeros_like(x))
    again = Dropout(0.2, seed=3).forward(x)
    np.testing.assert_array_equal(again, y)  # same seed, same first mask
    assert not np.array_equal(layer.forward(x), y)  # the next call draws a new mask


def test_backward_is_the_mask_times_dy_exactly():
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((8, 6)), rng.standard_normal((8, 6))
    layer = Dropout(0.5, seed=1)
    y = layer.forward(x)
    scale = np.divide(y, x)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, dy * scale)
    # central difference of sum(dy * dropout(x)) along v, same mask (a fresh layer, same seed)
    v, h = rng.standard_normal(x.shape), 1e-6
    loss = lambda z: float(np.sum(dy * Dropout(0.5, seed=1).forward(z)))
    numeric = (loss(x + h * v) - loss(x - h * v)) / (2 * h)
    assert numeric == pytest.approx(float(np.sum(dx * v)), rel=1e-8)  # float64, linear map


def test_float32_stays_float32_and_eval_is_identity():
    x = np.ones((4, 3), np.float32)
    layer = Dropout(0.3)
    assert layer.forward(x).dtype == np.float32
    layer.backward(x)
    layer.training = False
    assert layer.forward(x) is x and layer.backward(x) is x


def test_trainer_evaluates_without_dropout_and_trains_with_it():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 5)).astype(np.float32), rng.integers(0, 3, 64)
    model = Sequential([Dense(5, 16, rng=0), Activation("relu"), Dropout(0.5, seed=0),
                        Dense(16, 3, rng=1)])
    trainer = Trainer(model, SGD(model.parameters(), lr=0.1), batch_size=16, progress=False)
    first = trainer.evaluate(X, y)
    assert trainer.evaluate(X, y) == first  # deterministic: no mask in evaluation
    assert model.layers[2].training  # switched back on afterwards
    trainer.fit((X, y), epochs=1)
    # one mask per training step (4), plus the forward of the trainer's input-shape check
    assert model.layers[2].calls == 5


def test_bad_p_and_seed_are_refused():
    with pytest.raises(ValueError, match="p must be"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="seed must be"):
        Dropout(0.1, seed=-1)


# -- the op pair ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_op_pair_is_the_mask_times_the_inverse_keep_probability(dtype):
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((6, 7)).astype(dtype), rng.standard_normal((6, 7)).astype(dtype)
    keep = ops.dropout_mask(np.random.default_rng(1), x.shape, 0.25)
    assert keep.dtype == bool and keep.any() and not keep.all()
    np.testing.assert_array_equal(keep, np.random.default_rng(1).random(x.shape) >= 0.25)
    y, cache = ops.dropout_forward(x, 0.25, keep)
    scale = np.where(keep, dtype(1 / 0.75), dtype(0))
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, x * scale)
    np.testing.assert_array_equal(ops.dropout_backward(dy, cache), dy * scale)
    np.testing.assert_array_equal(y[~keep], 0)


def test_layer_runs_the_op_pair_with_the_nth_seeded_mask():
    x = np.random.default_rng(2).standard_normal((5, 4))
    layer = Dropout(0.4, seed=7)
    for n in range(2):
        keep = ops.dropout_mask(np.random.default_rng([7, n]), x.shape, 0.4)
        np.testing.assert_array_equal(layer.forward(x), ops.dropout_forward(x, 0.4, keep)[0])
        layer.backward(np.ones_like(x))


@pytest.mark.parametrize("call,argument", [
    (lambda: ops.dropout_forward(np.ones(3), 1.0, np.ones(3, bool)), "p"),
    (lambda: ops.dropout_forward(np.ones(3), -0.1, np.ones(3, bool)), "p"),
    (lambda: ops.dropout_forward(np.ones(3), 0.5, np.ones(4, bool)), "keep"),
    (lambda: ops.dropout_forward(np.ones(3), 0.5, np.ones(3)), "keep"),
    (lambda: ops.dropout_forward(np.ones(3, int), 0.5, np.ones(3, bool)), "x"),
    (lambda: ops.dropout_backward(np.ones(4), np.ones(3)), "dy"),
    (lambda: ops.dropout_backward(np.ones(3, np.float32), np.ones(3)), "dy"),
    (lambda: ops.dropout_mask(np.random.default_rng(0), (3,), 1.5), "p"),
])
def test_op_bad_input_names_the_argument(call, argument):
    with pytest.raises(ValueError, match=f"^{argument} "):
        call()
