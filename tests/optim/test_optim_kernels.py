"""The numba backend's one-pass SGD update equals :class:`refimpl.optim.SGD`'s NumPy rule bit
for bit (same operations, same order, same dtype), over every flag, in float32 and float64;
its finite check answers as ``np.isfinite(a).all()``; a trainer on the numba backend uses
them and trains exactly as with the NumPy update."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from refimpl.kernels.numba import optim as fast
from refimpl.optim import SGD, Adam

FLAGS = [{"momentum": m, "dampening": d, "nesterov": n, "weight_decay": w}
         for m, d, n, w in itertools.product((0.0, 0.9), (0.0, 0.3), (False, True), (0.0, 1e-2))
         if not (n and (m == 0 or d != 0))]


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    # one array above the parallel threshold, one below, one 2-D
    return [rng.standard_normal(size).astype(dtype) for size in
            (fast.PARALLEL_MIN + 7, 33, (40, 25))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_sgd_update_equals_the_numpy_rule_bit_for_bit(dtype, flags):
    plain, kernel = _params(dtype), _params(dtype)
    opt_plain = SGD(plain, lr=0.07, **flags)
    opt_kernel = SGD(kernel, lr=0.07, **flags)
    update = fast.update_for(opt_kernel)
    rng = np.random.default_rng(1)
    for step in range(4):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in plain]
        opt_plain.step([g.copy() for g in grads])
        opt_kernel.step([g.copy() for g in grads], update=update)
        for a, b in zip(plain, kernel):
            np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
        for index in range(len(plain)):
            if flags["momentum"]:
                np.testing.assert_array_equal(opt_plain.state[index]["momentum_buffer"],
                                              opt_kernel.state[index]["momentum_buffer"])
    # explain() reads the same numbers from either path
    left, right = opt_plain.explain(0, 3), opt_kernel.explain(0, 3)
    assert left.keys() == right.keys()
    for key in left:
        assert left[key] == right[key] or (left[key] != left[key] and right[key] != right[key])


def test_update_for_covers_sgd_only_and_declines_what_it_cannot_do():
    params = _params(np.float32)
    assert fast.update_for(Adam(params)) is None
    opt = SGD(params, lr=0.1)
    strided = np.zeros((8, 8), np.float32)[:, ::2]
    assert fast.update_for(opt)(opt, strided, np.ones((8, 4), np.float32), {},
                                opt.param_groups[0]) is NotImplemented
    # a maximizing SGD goes through the kernel with the gradient the base class negated
    a, b = _params(np.float32), _params(np.float32)
    grads = [np.ones_like(p) for p in a]
    SGD(a, lr=0.1, maximize=True).step(grads)
    opt_b = SGD(b, lr=0.1, maximize=True)
    opt_b.step(grads, update=fast.update_for(opt_b))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [10, fast.PARALLEL_MIN + 3])
def test_array_finite_answers_as_isfinite(dtype, size):
    a = np.random.default_rng(0).standard_normal(size).astype(dtype)
    assert fast.array_finite(a) is True
    for bad in (np.nan, np.inf, -np.inf):
        for where in (0, size // 2, size - 1):
            b = a.copy()
            b[where] = bad
            assert not fast.array_finite(b)
    big = np.full(size, np.finfo(dtype).max, dtype)  # finite however large
    assert fast.array_finite(big)


def test_trainer_on_numba_trains_as_with_the_numpy_update(monkeypatch):
    from refimpl.model import build
    from refimpl.train import Trainer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 300)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    histories, calls = [], []
    kernel = fast._sgd
    monkeypatch.setattr(fast, "_sgd", lambda *args: calls.append(1) or kernel(*args))
    for use_kernel in (True, False):
        model = build("dense:200,relu,dense:10", (300,), seed=0, backend="numba")
        opt = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        if not use_kernel:  # the NumPy rule: the trainer's update is dropped
            numpy_step = opt.step
            opt.step = lambda grads, step=numpy_step, **_: step(grads, copy_grads=False)
        trainer = Trainer(model, opt, batch_size=64, seed=0, progress=False)
        histories.append((trainer.fit((X, y), epochs=2).loss,
                          [p.copy() for p in model.parameters()]))
    (loss_a, params_a), (loss_b, params_b) = histories
    assert len(calls) == 2 * 4 * 4  # 2 epochs x 4 batches x 4 parameters, kernel run only
    assert loss_a == loss_b
    for a, b in zip(params_a, params_b):
        np.testing.assert_array_equal(a, b)
