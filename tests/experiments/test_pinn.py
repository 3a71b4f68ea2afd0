"""refimpl.pinn: hand-derived input derivatives and parameter gradients of the Helmholtz PINN.

Tolerances: central differences with step h in float64 have truncation error O(h^2) and
rounding error O(eps / h); for h = 1e-6 (first derivatives) that is ~1e-10 relative, so we
ask 1e-7. Second differences with h = 1e-4 carry ~eps/h^2 ~ 1e-8 rounding, so 1e-5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.pinn import ACTIVATIONS, HelmholtzPINN, train_pinn, wavenumber
from refimpl.schedulers.dlrs import DLRS


def small_pinn(activations=("sin", "cos", "sin"), frequency=300.0, seed=1):
    return HelmholtzPINN(frequency, widths=(6, 5, 4), activations=activations, seed=seed)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative_tables(name):
    s, s1, s2, s3 = ACTIVATIONS[name]
    z, h = np.linspace(-2, 2, 9), 1e-6
    for f, df in ((s, s1), (s1, s2), (s2, s3)):
        np.testing.assert_allclose((f(z + h) - f(z - h)) / (2 * h), df(z), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("activations", [("sin", "cos", "sin"), ("tanh", "sin", "cos")])
def test_input_derivatives_match_finite_differences(activations):
    pinn = small_pinn(activations)
    x = np.linspace(0.05, 0.95, 7)
    N, N1, N2, _ = pinn.network(x)
    h1, h2 = 1e-6, 1e-4
    plus, minus = pinn.network(x + h1)[0], pinn.network(x - h1)[0]
    np.testing.assert_allclose(N1, (plus - minus) / (2 * h1), rtol=1e-7, atol=1e-9)
    plus, minus = pinn.network(x + h2)[0], pinn.network(x - h2)[0]
    np.testing.assert_allclose(N2, (plus - 2 * N + minus) / h2**2, rtol=1e-5, atol=1e-6)
    u, u1, u2 = pinn.trial(x)
    up, um = pinn.trial(x + h2)[0], pinn.trial(x - h2)[0]
    np.testing.assert_allclose(u1, (up - um) / (2 * h2), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(u2, (up - 2 * u + um) / h2**2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activations", [("sin", "cos", "sin"), ("tanh", "cos", "sin")])
def test_parameter_gradients_match_central_differences(activations):
    pinn = small_pinn(activations, frequency=700.0)
    x = np.random.default_rng(0).uniform(0, 1, 11)
    _, grads = pinn.loss_and_grads(x)
    h = 1e-6
    for param, grad in zip(pinn.params, grads):
        assert grad.shape == param.shape
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            old = param[index]
            param[index] = old + h
            plus = pinn.loss_and_grads(x)[0]
            param[index] = old - h
            minus = pinn.loss_and_grads(x)[0]
            param[index] = old
            numeric[index] = (plus - minus) / (2 * h)
        scale = np.abs(numeric).max()
        assert np.abs(numeric - grad).max() <= 1e-7 * scale


def test_trial_solution_meets_boundary_values_exactly():
    pinn = HelmholtzPINN(450.0, A=0.7, B=-1.3, widths=(5, 5, 5), seed=3)
    u = pinn.trial(np.array([0.0, 1.0]))[0]
    assert u[0] == pytest.approx(0.7, abs=1e-15) and u[1] == pytest.approx(-1.3, abs=1e-15)


def test_exact_solution_solves_the_boundary_problem():
    pinn = HelmholtzPINN(800.0, A=1.0, B=0.5, widths=(3, 3, 3))
    x, h, k = np.linspace(0.1, 0.9, 5), 1e-4, wavenumber(800.0)
    u = pinn.exact(x)
    second = (pinn.exact(x + h) - 2 * u + pinn.exact(x - h)) / h**2
    np.testing.assert_allclose(second + k**2 * u, 0.0, atol=1e-5 * k**2)
    assert pinn.exact(np.array([0.0, 1.0])) == pytest.approx([1.0, 0.5], abs=1e-12)


def test_loss_is_mean_squared_residual():
    pinn = small_pinn()
    x = np.linspace(0, 1, 9)
    loss, _ = pinn.loss_and_grads(x)
    assert loss == pytest.approx(float(np.mean(pinn.residual(x) ** 2)), rel=1e-14)


def test_training_reduces_the_error_and_dlrs_drives_adam():
    pinn = HelmholtzPINN(200.0, widths=(20, 20, 20), seed=0)
    start = pinn.relative_error()
    scheduler = DLRS(0.01, 0.5, 1.0, 0.1)
    history = train_pinn(pinn, epochs=15, n_points=200, batch_size=50, scheduler=scheduler,
                         error_every=5)
    assert history.error[-1] < 0.5 * start
    assert history.lr[0] == 0.01 and history.lr[-1] != 0.01  # DLRS moved the rate
    assert len(history.loss) == 15 and history.error_epochs == [5, 10, 15]


def test_fixed_batch_order_is_the_same_every_epoch_and_shuffle_differs():
    seen = {}

    class Recording(HelmholtzPINN):
        def loss_and_grads(self, x):
            seen.setdefault(self.tag, []).append(np.array(x))
            return super().loss_and_grads(x)

    for shuffle in (False, True):
        pinn = Recording(150.0, widths=(8, 8, 8), seed=0)
        pinn.tag = shuffle
        train_pinn(pinn, epochs=2, n_points=40, batch_size=10, lr=1e-3, shuffle=shuffle)
    fixed, shuffled = seen[False], seen[True]
    points = np.random.default_rng(0).uniform(0.0, 1.0, 40)
    for b in range(4):  # fixed: batch b of every epoch is points[10 b : 10 b + 10]
        np.testing.assert_array_equal(fixed[b], points[10 * b:10 * b + 10])
        np.testing.assert_array_equal(fixed[4 + b], fixed[b])
    assert not np.array_equal(shuffled[0], shuffled[4])  # reshuffled per epoch


def test_training_stops_at_the_first_check_below_stop_below():
    pinn = HelmholtzPINN(100.0, A=1.0, B=-1.0, widths=(20, 20, 20), seed=0)
    history = train_pinn(pinn, epochs=400, n_points=200, batch_size=20, lr=5e-3,
                         error_every=10, stop_below=0.05, stop_after=20)
    assert history.stopped_at is not None and history.stopped_at >= 20
    assert history.stopped_at % 10 == 0 and len(history.loss) == history.stopped_at
    assert history.error[-1] < 0.05
    earlier = [e for epoch, e in zip(history.error_epochs[:-1], history.error[:-1]) if epoch >= 20]
    assert all(e >= 0.05 for e in earlier)  # it stopped at the first check below
    assert train_pinn(small_pinn(), epochs=3, n_points=20, batch_size=10).stopped_at is None


def test_bad_input_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="frequency"):
        HelmholtzPINN(-1.0)
    with pytest.raises(ValueError, match="resonance"):
        HelmholtzPINN(170.0, c=340.0)  # k = pi
    with pytest.raises(ValueError, match="activations"):
        HelmholtzPINN(100.0, activations=("sin", "relu", "sin"))
    with pytest.raises(ValueError, match="epochs"):
        train_pinn(small_pinn(), epochs=0)
    with pytest.raises(ValueError, match="stop_below"):
        train_pinn(small_pinn(), epochs=1, stop_below=0.0)
    with pytest.raises(ValueError, match="error_every"):
        train_pinn(small_pinn(), epochs=1, error_every=0)
    with pytest.raises(ValueError, match="batch_losses"):
        from refimpl.schedulers.greedy import GreedyLR

        train_pinn(small_pinn(), epochs=1, scheduler=GreedyLR(0.01))
    assert math.isclose(wavenumber(340.0), 2 * math.pi)
