"""refimpl.layers.Dropout: seeded masks, exact backward, identity in evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.layers import Activation, Dense, Dropout, Sequential
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
