"""refimpl.pinn: hand-derived input derivatives and parameter gradients of the Helmholtz PINN.

Tolerances: central differences with step h in float64 have truncation error O(h^2) and
rounding error O(eps / h); for h = 1e-6 (first derivatives) that is ~1e-10 relative, so we
ask 1e-7. Second differences with h = 1e-4 carry ~eps/h^2 ~ 1e-8 rounding, so 1e-5.

Gradient arrays are compared norm-wise: ``max|a - b| / max|b|`` per parameter array (an
entry near zero has no meaningful relative error of its own).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from refimpl.pinn import ACTIVATIONS, DERIVATIVES, HelmholtzPINN, train_pinn, wavenumber
from refimpl.schedulers.dlrs import DLRS

BACKENDS = ("numpy", "numba")
#: unit roundoff of float32 and float64
U32, U64 = np.finfo(np.float32).eps / 2, np.finfo(np.float64).eps / 2


def small_pinn(activations=("sin", "cos", "sin"), frequency=300.0, seed=1, backend="auto"):
    return HelmholtzPINN(frequency, widths=(6, 5, 4), activations=activations, seed=seed,
                         backend=backend)


def relative(a, b) -> float:
    """``max|a - b| / max|b|``."""
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def reference_loss_and_grads(pinn: HelmholtzPINN, x):
    """The plain form of docs/methods.md (9.5)-(9.9): three streams through every layer,
    each function of the activation table evaluated where the equation names it."""
    x = np.asarray(x, dtype=np.float64).ravel()
    a = x.reshape(-1, 1)
    d1, d2 = np.ones_like(a), np.zeros_like(a)
    cache, n_hidden = [], len(pinn.activations)
    for layer in range(n_hidden + 1):
        W, b = pinn.params[2 * layer], pinn.params[2 * layer + 1]
        z, z1, z2 = a @ W + b, d1 @ W, d2 @ W
        if layer == n_hidden:
            cache.append((a, d1, d2, None))
            N, N1, N2 = z[:, 0], z1[:, 0], z2[:, 0]
            break
        s, s1, s2, _ = ACTIVATIONS[pinn.activations[layer]]
        cache.append((a, d1, d2, (z, z1, z2)))
        a, d1, d2 = s(z), s1(z) * z1, s2(z) * z1**2 + s1(z) * z2
    w = x * (1.0 - x)
    u = pinn.A * (1.0 - x) + pinn.B * x + w * N
    u2 = -2.0 * N + 2.0 * (1.0 - 2.0 * x) * N1 + w * N2
    R = u2 + pinn.k**2 * u
    g_R = 2.0 * R / R.size
    g_z, g_z1, g_z2 = (v.reshape(-1, 1) for v in (g_R * (pinn.k**2 * w - 2.0),
                                                   g_R * 2.0 * (1.0 - 2.0 * x), g_R * w))
    grads = [None] * len(pinn.params)
    for layer in range(len(cache) - 1, -1, -1):
        a, d1, d2, pre = cache[layer]
        if pre is not None:
            z, z1, z2 = pre
            _, s1, s2, s3 = ACTIVATIONS[pinn.activations[layer]]
            g_h, g_h1, g_h2 = g_z, g_z1, g_z2
            g_z = g_h * s1(z) + g_h1 * s2(z) * z1 + g_h2 * (s3(z) * z1**2 + s2(z) * z2)
            g_z1 = g_h1 * s1(z) + 2.0 * g_h2 * s2(z) * z1
            g_z2 = g_h2 * s1(z)
        grads[2 * layer] = a.T @ g_z + d1.T @ g_z1 + d2.T @ g_z2
        grads[2 * layer + 1] = g_z.sum(axis=0)
        if layer > 0:
            W = pinn.params[2 * layer]
            g_z, g_z1, g_z2 = g_z @ W.T, g_z1 @ W.T, g_z2 @ W.T
    return float(np.mean(R**2)), grads


@pytest.fixture(scope="module")
def points():
    return np.random.default_rng(5).uniform(0.0, 1.0, 1000)


@pytest.fixture(scope="module")
def trained():
    """A paper-size network at 250 Hz trained to ~0.5% error (150 Adam steps): its residual
    cancels (``u~''`` against ``k^2 u~``), the ill-conditioned case."""
    pinn = HelmholtzPINN(250.0, A=1.0, B=-1.0, seed=0)
    history = train_pinn(pinn, 30, n_points=1000, batch_size=200, lr=5e-3, shuffle=False,
                         error_every=10)
    assert history.error[-1] < 0.01
    return pinn


def paper_networks(trained):
    """The paper's network at initialisation (250, 1000, 2000 Hz) and trained (250 Hz)."""
    return [HelmholtzPINN(f, A=1.0, B=-1.0, seed=0) for f in (250.0, 1000.0, 2000.0)] + [trained]


# ----------------------------------------------------------------------------- derivatives

@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative_tables(name):
    s, s1, s2, s3 = ACTIVATIONS[name]
    z, h = np.linspace(-2, 2, 9), 1e-6
    for f, df in ((s, s1), (s1, s2), (s2, s3)):
        np.testing.assert_allclose((f(z + h) - f(z - h)) / (2 * h), df(z), rtol=1e-7, atol=1e-8)
    for shared, single in zip(DERIVATIVES[name](z), ACTIVATIONS[name]):  # same numbers
        np.testing.assert_allclose(shared, single(z), rtol=1e-15, atol=1e-15)


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


@pytest.mark.parametrize("activations,backend", [(("sin", "cos", "sin"), "numpy"),
                                                 (("sin", "cos", "sin"), "numba"),
                                                 (("tanh", "cos", "sin"), "numpy")])
def test_parameter_gradients_match_central_differences(activations, backend):
    pinn = small_pinn(activations, frequency=700.0, backend=backend)
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


# ----------------------------------------------------------------------------- against the plain form

@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_and_grads_equal_the_plain_form_in_float64(backend, points, trained):
    """The stacked products and fused loops only reorder sums: 1e-12 relative asked, at most
    8e-15 measured here (1.5e-14 on networks trained for 300 epochs at 250-2000 Hz)."""
    for pinn in paper_networks(trained):
        pinn = copy.copy(pinn)
        pinn.backend, pinn._buffers = backend, {}
        loss, grads = pinn.loss_and_grads(points)
        ref_loss, ref_grads = reference_loss_and_grads(pinn, points)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        for grad, ref in zip(grads, ref_grads):
            assert grad.dtype == np.float64 and grad.shape == ref.shape
            assert relative(grad, ref) <= 1e-12


def test_numba_backend_keeps_buffers_per_size_and_returns_fresh_gradients():
    pinn = HelmholtzPINN(400.0, widths=(8, 7, 6), seed=2, backend="numba")
    oracle = copy.copy(pinn)
    oracle.backend = "numpy"
    rng = np.random.default_rng(1)
    first = pinn.loss_and_grads(rng.uniform(0, 1, 13))[1]
    kept = [g.copy() for g in first]
    for n in (13, 5, 13, 1):  # a size change re-allocates, and results stay right
        x = rng.uniform(0, 1, n)
        loss, grads = pinn.loss_and_grads(x)
        ref_loss, ref_grads = oracle.loss_and_grads(x)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        assert all(relative(g, r) <= 1e-12 for g, r in zip(grads, ref_grads))
    assert all(np.array_equal(g, k) for g, k in zip(first, kept))  # not overwritten


def test_fast_sincos_is_within_one_ulp_of_libm():
    from refimpl.kernels.numba.pinn import REDUCTION_LIMIT, sincos_array

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 5, 20_000), rng.uniform(-2e5, 2e5, 20_000),
                        np.arange(-40, 41) * (math.pi / 4), [0.0, 1e-300, 5e-324],
                        [REDUCTION_LIMIT * 0.999, REDUCTION_LIMIT * 1.001, 1e10, -1e300]])
    s, c = np.empty_like(z), np.empty_like(z)
    sincos_array(z, s, c)
    exact_s = np.array([math.sin(v) for v in z])
    exact_c = np.array([math.cos(v) for v in z])
    for got, want in ((s, exact_s), (c, exact_c)):
        assert np.all(np.abs(got - want) <= np.spacing(np.abs(want)))  # <= 1 ulp
    special = np.array([np.nan, np.inf, -np.inf])
    s, c = np.empty(3), np.empty(3)
    sincos_array(special, s, c)
    assert np.isnan(s).all() and np.isnan(c).all()


def test_fast_sincos_float32_is_within_two_ulp():
    """The float32 loops' own sine and cosine: at most 1.5 ulp measured (NumPy's float32
    ``sin`` 1.4) against the correctly rounded values; beyond 8192 the float64 fallback."""
    from refimpl.kernels.numba.pinn import sincos_array

    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(0, 5, 20_000), rng.uniform(-8192, 8192, 20_000),
                        [0.0, 8191.0, 8193.0, 1e6, -3e30]]).astype(np.float32)
    s, c = np.empty_like(z), np.empty_like(z)
    sincos_array(z, s, c)
    assert s.dtype == c.dtype == np.float32
    wide = z.astype(np.float64)
    for got, want in ((s, np.sin(wide)), (c, np.cos(wide))):
        ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(got - want) <= 2 * ulp)


# ----------------------------------------------------------------------------- float32

def _conditions(pinn: HelmholtzPINN, x: np.ndarray):
    """Condition of the loss and of each gradient array (float64 ``pinn``).

    The loss: ``kappa_L = sum |R| (|u~''| + k^2 |u~|) / sum R^2``, the cancellation of
    ``R = u~'' + k^2 u~`` weighted as ``L`` weights the points. A gradient array: its
    absolute-value computation -- the backward run with ``|W|``, ``|a|``, ``|d1|, |d2|,
    |d3|`` and seeded with ``2/M (|u~''| + k^2 |u~|)`` in place of ``2R/M`` -- over the array's
    largest entry: the size of everything summed into it, per unit of result."""
    N, N1, N2, cache = pinn.network(x)
    u, _, u2 = pinn._trial(x, N, N1, N2)
    k2 = pinn.k**2
    R = u2 + k2 * u
    size = np.abs(u2) + k2 * np.abs(u)
    kappa_loss = float(np.sum(np.abs(R) * size) / np.sum(R * R))
    absolute = copy.copy(pinn)
    absolute.params = [np.abs(p) for p in pinn.params]
    abs_cache = [(np.abs(s), None if j is None else tuple(np.abs(d) for d in j))
                 for s, j in cache]
    seed, w = (2.0 / x.size) * size, x * (1.0 - x)
    magnitudes = absolute.backward(seed * np.abs(k2 * w - 2.0), seed * 2.0 * np.abs(1 - 2 * x),
                                   seed * w, abs_cache)
    grads = pinn.loss_and_grads(x)[1]
    return kappa_loss, [float(m.max() / np.abs(g).max()) for m, g in zip(magnitudes, grads)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_agrees_with_float64_within_its_rounding_bound(backend, points, trained):
    """float32 against float64 on the same (float32) weights and points.

    Bound: a result that is a sum of terms computed through ``n`` roundings has, with
    probability at least ``1 - 2 exp(-lambda^2 / 2)``, an error below ``lambda sqrt(n) u``
    times the sum of the magnitudes of its terms (Higham & Mary 2019, probabilistic
    rounding-error analysis); in relative terms ``lambda sqrt(n) u kappa``, with ``kappa``
    the condition of :func:`_conditions`. Here ``n = 3M + sum of fan-ins`` (the sum over the
    3M stacked points in ``dW``, after the products of every layer), ``u`` float32's unit
    roundoff, and ``lambda = 5`` (probability > 1 - 1e-5). Measured over the networks of
    :func:`paper_networks` (kappa from 1 to 5e4): the largest error is 0.85 sqrt(n) u kappa
    for the gradients and 0.04 for the loss, so the bound holds with a margin of 6.
    """
    n = 3 * points.size + sum(p.shape[0] for p in trained.params[::2])
    bound = 5.0 * math.sqrt(n) * U32
    x32 = points.astype(np.float32)
    for pinn64 in paper_networks(trained):
        single = copy.copy(pinn64)
        single.params = [p.astype(np.float32) for p in pinn64.params]
        single.dtype, single.backend, single._buffers = np.dtype(np.float32), backend, {}
        double = copy.copy(pinn64)  # exactly the float32 numbers, in float64
        double.params = [p.astype(np.float64) for p in single.params]
        double._buffers = {}
        x64 = x32.astype(np.float64)
        loss32, grads32 = single.loss_and_grads(x32)
        loss64, grads64 = double.loss_and_grads(x64)
        kappa_loss, kappa_grads = _conditions(double, x64)
        assert all(g.dtype == np.float32 for g in grads32)
        assert abs(loss32 - loss64) / loss64 <= bound * kappa_loss
        for g32, g64, kappa in zip(grads32, grads64, kappa_grads):
            assert relative(g32, g64) <= bound * kappa


def test_float32_network_trains_and_stays_float32():
    pinn = HelmholtzPINN(200.0, widths=(20, 20, 20), seed=0, dtype=np.float32)
    assert all(p.dtype == np.float32 for p in pinn.params)
    start = pinn.relative_error()
    history = train_pinn(pinn, epochs=15, n_points=200, batch_size=50,
                         scheduler=DLRS(0.01, 0.5, 1.0, 0.1), error_every=5)
    assert history.error[-1] < 0.5 * start
    assert all(p.dtype == np.float32 for p in pinn.params)
    assert pinn.trial(np.linspace(0, 1, 5))[0].dtype == np.float32


# ----------------------------------------------------------------------------- torch

def test_gradients_equal_torch_double_backward(points, trained):
    """torch differentiates the same network twice in x (``create_graph``) and the loss in
    the parameters (double backward). float64: 1e-12 relative asked, at most 2e-14 measured."""
    torch = pytest.importorskip("torch", reason="torch is the cross-check's reference")
    for pinn in paper_networks(trained):
        params = [torch.tensor(p, requires_grad=True) for p in pinn.params]
        x = torch.tensor(points).reshape(-1, 1).requires_grad_(True)
        h = x
        for layer, name in enumerate(pinn.activations):
            h = getattr(torch, name)(h @ params[2 * layer] + params[2 * layer + 1])
        N = h @ params[-2] + params[-1]
        u = pinn.A * (1 - x) + pinn.B * x + x * (1 - x) * N
        (u1,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        (u2,) = torch.autograd.grad(u1.sum(), x, create_graph=True)
        loss = ((u2 + pinn.k**2 * u) ** 2).mean()
        torch_grads = torch.autograd.grad(loss, params)
        ours_loss, ours = pinn.loss_and_grads(points)
        assert ours_loss == pytest.approx(loss.item(), rel=1e-12)
        for g, t in zip(ours, torch_grads):
            assert relative(g, t.numpy()) <= 1e-12


def test_bench_baseline_is_the_same_computation(points):
    pytest.importorskip("torch", reason="the bench's baseline is torch")
    import torch

    from refimpl.bench.pinn import FREQUENCY, A, B, _TorchPINN

    pinn = HelmholtzPINN(FREQUENCY, A=A, B=B, seed=0)
    loss, grads = _TorchPINN(pinn.params, pinn.activations, pinn.k).loss_and_grads(
        torch.tensor(points).reshape(-1, 1))
    ours_loss, ours = pinn.loss_and_grads(points)
    assert ours_loss == pytest.approx(loss, rel=1e-12)
    assert all(relative(g, t.numpy()) <= 1e-12 for g, t in zip(ours, grads))


def test_bench_report_gives_a_row_per_dtype_and_thread_count_with_ratios(capsys):
    from refimpl.bench import pinn as bench

    rows = {f"{name}|{dtype}": ms / 1e3 for dtype, scale in (("float64", 2), ("float32", 1))
            for name, ms in (("refimpl numba", 4 * scale), ("refimpl numpy", 8 * scale),
                             ("torch", 10 * scale))}
    report = {"points": 1000, "repeats": 5, "steps": 20, "load_before": [0.1, 0.1, 0.1],
              "agreement": {1: {"float64": 3e-15, "float32": 1e-6}},
              "median_s": {1: rows},
              "machine": {"cpu": "CPU X", "logical_cpus": 2, "platform": "linux",
                          "load_average": [0.1, 0.1, 0.1], "python": "3.11",
                          "numpy": "2", "numba": "0.6", "torch": "2"}}
    text = bench.format_markdown(report)
    assert "| float64 | 1 | 8.00 | 16.00 | 20.00 | 0.40 | 0.80 | 3.0e-15 |" in text
    assert "| float32 | 1 | 4.00 | 8.00 | 10.00 | 0.40 | 0.80 | 1.0e-06 |" in text
    assert "CPU X" in text
    assert bench.main(["--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


# ----------------------------------------------------------------------------- problem and training

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


@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_is_mean_squared_residual(backend):
    pinn = small_pinn(backend=backend)
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


def test_backend_auto_picks_numba_for_sin_and_cos_layers_only():
    from refimpl.kernels.numba.pinn import SUPPORTED
    from refimpl.pinn import _NUMBA_ACTIVATIONS

    assert set(_NUMBA_ACTIVATIONS) == set(SUPPORTED)  # pinn.py's list is the kernels' table
    assert small_pinn().backend == "numba"
    assert small_pinn(("tanh", "sin", "cos")).backend == "numpy"
    assert small_pinn(backend="numpy").backend == "numpy"


def test_bad_input_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="frequency"):
        HelmholtzPINN(-1.0)
    with pytest.raises(ValueError, match="resonance"):
        HelmholtzPINN(170.0, c=340.0)  # k = pi
    with pytest.raises(ValueError, match="activations"):
        HelmholtzPINN(100.0, activations=("sin", "relu", "sin"))
    with pytest.raises(ValueError, match="dtype"):
        HelmholtzPINN(100.0, dtype=np.float16)
    with pytest.raises(ValueError, match="backend"):
        HelmholtzPINN(100.0, backend="cuda")
    with pytest.raises(ValueError, match="backend 'numba'.*tanh"):
        HelmholtzPINN(100.0, activations=("tanh", "sin", "sin"), backend="numba")
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
