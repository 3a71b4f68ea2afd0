"""The numba backend's other convolution paths against the oracle (refimpl.ops): Winograd
F(2x2, 3x3) (refimpl/kernels/numba/winograd.py) and the direct loops of a one-channel input
(refimpl/kernels/numba/conv_first.py), and the measured policy that picks a path per layer shape
(refimpl/kernels/numba/tuning.py).

Winograd changes the rounding, not the math. Its float32 results are held to the bound derived
in docs/methods.md §1, evaluated element by element: with u = 2⁻²⁴ and γ_n = n u / (1 − n u),

    |y_winograd − y| ≤ γ_{C_in+8} S̃,   S̃ = |Aᵀ| [Σ_c |G| |g| |Gᵀ| ⊙ |Bᵀ| |d| |B|] |A|,

(the Winograd form evaluated on |x|, |W| and the entry-wise absolute matrices), and the oracle's
own rounding |y_oracle − y| ≤ γ_{K+1} (S + |b|), S the convolution of |x| with |W| (K = 9 C_in);
the two together bound the difference this file measures. dx and dW have the same form with
γ_{C_out+11} and γ_{T+5} (T tiles). The direct path sums the oracle's terms in another order:
float32 within 1e-5 and float64 within 1e-12 of the output scale, the project's tolerances.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import refimpl.kernels.numba as nb
from refimpl import ops
from refimpl.kernels.numba import conv, tuning
from tests.backends.test_backends import DTYPES, _random, assert_close

U32 = 2.0**-24
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)


def gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


# --- a readable Winograd in NumPy (float64): the identity, and the bound's S̃ ----------------
def _tiles(x, padding):
    """The 4x4 tiles (N, tiles_h, tiles_w, C, 4, 4) of the zero-padded x, at stride 2."""
    n, c, h, w = x.shape
    h_out, w_out = h + 2 * padding - 2, w + 2 * padding - 2
    th, tw = (h_out + 1) // 2, (w_out + 1) // 2
    padded = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    padded[:, :, padding:padding + h, padding:padding + w] = x
    rows = 2 * np.arange(th)[:, None] + np.arange(4)
    cols = 2 * np.arange(tw)[:, None] + np.arange(4)
    return padded[:, :, rows[:, :, None, None], cols[None, None]].transpose(0, 2, 4, 1, 3, 5)


def winograd_numpy(x, W, dy, padding, BT=BT, G=G, AT=AT):
    """(y, dx, dW) of the Winograd form with the given matrices, no bias, in float64; with the
    absolute matrices and inputs it is S̃ of each bound."""
    n, c, h, w = x.shape
    h_out, w_out = h + 2 * padding - 2, w + 2 * padding - 2
    V = np.einsum("pk,ntsckl,ql->ntscpq", BT, _tiles(x, padding), BT)
    U = np.einsum("pu,ocuv,qv->ocpq", G, W, G)
    y = np.einsum("ip,ntsopq,jq->notisj", AT, np.einsum("ntscpq,ocpq->ntsopq", V, U), AT)
    th, tw = V.shape[1], V.shape[2]
    y = y.reshape(n, -1, 2 * th, 2 * tw)[:, :, :h_out, :w_out]
    dy_tiles = np.zeros((n, dy.shape[1], 2 * th, 2 * tw))
    dy_tiles[:, :, :h_out, :w_out] = dy
    dy_tiles = dy_tiles.reshape(n, -1, th, 2, tw, 2).transpose(0, 2, 4, 1, 3, 5)
    Z = np.einsum("ip,ntsoij,jq->ntsopq", AT, dy_tiles, AT)  # A dY Aᵀ
    dW = np.einsum("pu,ocpq,qv->ocuv", G, np.einsum("ntsopq,ntscpq->ocpq", Z, V), G)
    dtiles = np.einsum("pk,ntscpq,ql->ntsckl", BT, np.einsum("ntsopq,ocpq->ntscpq", Z, U), BT)
    dx = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    for r in range(th):
        for s in range(tw):
            dx[:, :, 2 * r:2 * r + 4, 2 * s:2 * s + 4] += dtiles[:, r, s]
    return y, dx[:, :, padding:padding + h, padding:padding + w], dW


def test_numpy_winograd_is_the_im2col_convolution_in_float64():
    """The identity of docs/methods.md §1 (forward and both adjoints), to float64 rounding."""
    rng = np.random.default_rng(0)
    x, W = rng.standard_normal((2, 3, 7, 8)), rng.standard_normal((4, 3, 3, 3))
    y_ref, cache = ops.conv2d_forward(x, W, np.zeros(4), 1, 1)
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, dW_ref, _ = ops.conv2d_backward(dy, cache)
    for got, want in zip(winograd_numpy(x, W, dy, 1), (y_ref, dx_ref, dW_ref)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def _oracle_abs(x, W, dy, padding):
    """S of the oracle's bounds: its y, dx, dW evaluated on |x|, |W|, |dy|."""
    y, cache = ops.conv2d_forward(np.abs(x), np.abs(W), np.zeros(W.shape[0]), 1, padding)
    dx, dW, _ = ops.conv2d_backward(np.abs(dy), cache)
    return y, dx, dW


# --- Winograd against the oracle ----------------------------------------------------------------
WINOGRAD_SHAPES = [
    # N, C_in, H, W, C_out, padding: batch 1 and 3, odd and even sizes (a last tile overhangs)
    (1, 2, 3, 3, 1, 0),
    (3, 5, 8, 9, 6, 1),
    (1, 16, 11, 13, 8, 1),
    (3, 3, 6, 5, 4, 0),
    (3, 8, 13, 13, 16, 0),
    (1, 4, 4, 7, 3, 2),
]


@pytest.fixture
def winograd_path(monkeypatch):
    monkeypatch.setenv(tuning.CONV_ENV_VAR, "winograd")


@pytest.mark.parametrize("shape", WINOGRAD_SHAPES, ids=str)
def test_winograd_within_the_derived_float32_bound(winograd_path, shape):
    n, c_in, h, w, c_out, padding = shape
    rng = np.random.default_rng(sum(shape))
    x, W, b = (_random(rng, s, np.float32) for s in ((n, c_in, h, w), (c_out, c_in, 3, 3),
                                                      (c_out,)))
    y_ref, cache_ref = ops.conv2d_forward(x, W, b, 1, padding)
    y, cache = nb.conv2d_forward(x, W, b, 1, padding)
    assert isinstance(cache, conv.PathCache) and cache.path == "winograd"
    dy = _random(rng, y.shape, np.float32)
    dx_ref, dW_ref, db_ref = ops.conv2d_backward(dy, cache_ref)
    dx, dW, db = nb.conv2d_backward(dy, cache)
    np.testing.assert_array_equal(db, db_ref)  # the oracle's own sum of the same array

    x64, W64, dy64 = (a.astype(np.float64) for a in (x, W, dy))
    s_wino = winograd_numpy(np.abs(x64), np.abs(W64), np.abs(dy64), padding, np.abs(BT),
                            np.abs(G), np.abs(AT))
    s_oracle = _oracle_abs(x64, W64, dy64, padding)
    tiles = n * ((h + 2 * padding - 1) // 2) * ((w + 2 * padding - 1) // 2)
    bounds = (
        gamma(c_in + 8) * s_wino[0] + gamma(9 * c_in + 1) * (s_oracle[0] + np.abs(b)[:, None, None])
        + gamma(3) * np.abs(b)[:, None, None],
        gamma(c_out + 11) * s_wino[1] + gamma(c_out + 9) * s_oracle[1],
        gamma(tiles + 5) * s_wino[2] + gamma(n * y.shape[2] * y.shape[3]) * s_oracle[2],
    )
    for label, got, want, bound in zip(("y", "dx", "dW"), (y, dx, dW), (y_ref, dx_ref, dW_ref),
                                       bounds):
        error = np.abs(got.astype(np.float64) - want)
        assert (error <= bound).all(), f"{label}: max error/bound {np.max(error / bound):.3g}"
    # The scalar form of the bound (docs/methods.md §1): S̃ <= 64 C_in max|x| max|W|.
    assert s_wino[0].max() <= 64 * c_in * np.abs(x64).max() * np.abs(W64).max() * (1 + 1e-12)


@pytest.mark.parametrize("shape", WINOGRAD_SHAPES[1:3], ids=str)
@pytest.mark.parametrize("op", ["conv2d_relu", "conv2d_relu_maxpool2d"])
def test_winograd_fused_ops_agree_with_the_oracle(winograd_path, op, shape):
    """The relu and relu+pool steps on the Winograd path, at the project's float32 tolerance
    (1e-5 of the output scale); db is the oracle's sum of the same gradient array."""
    n, c_in, h, w, c_out, padding = shape
    rng = np.random.default_rng(7)
    extra = (2,) if op.endswith("maxpool2d") else ()
    args = (_random(rng, (n, c_in, h, w), np.float32),
            _random(rng, (c_out, c_in, 3, 3), np.float32), _random(rng, (c_out,), np.float32),
            1, padding, *extra)
    y_ref, cache_ref = getattr(ops, f"{op}_forward")(*args)
    y, cache = getattr(nb, f"{op}_forward")(*args)
    assert cache.path == "winograd"
    assert_close(y, y_ref, np.float32, f"{op} y")
    dy = _random(rng, y.shape, np.float32)
    for label, got, want in zip(("dx", "dW", "db"), getattr(nb, f"{op}_backward")(dy, cache),
                                getattr(ops, f"{op}_backward")(dy, cache_ref)):
        assert_close(got, want, np.float32, f"{op} {label}")


def test_winograd_is_never_taken_in_float64_or_off_its_shapes(winograd_path):
    """Forced Winograd still runs im2col where it does not apply: float64, stride 2, 5x5."""
    rng = np.random.default_rng(8)
    for x_shape, w_shape, stride, dtype in [((2, 3, 8, 8), (4, 3, 3, 3), 1, np.float64),
                                            ((2, 3, 8, 8), (4, 3, 3, 3), 2, np.float32),
                                            ((2, 3, 8, 8), (4, 3, 5, 5), 1, np.float32)]:
        x, W = _random(rng, x_shape, dtype), _random(rng, w_shape, dtype)
        _, cache = nb.conv2d_forward(x, W, np.zeros(w_shape[0], dtype), stride, 1)
        assert isinstance(cache, tuple) and not isinstance(cache, conv.PathCache)


# --- non-finite values ----------------------------------------------------------------------------
def _nonfinite_case(rng, c_in, path_value, where_x, where_dy):
    x = _random(rng, (2, c_in, 9, 9), np.float32)
    W = _random(rng, (3, c_in, 3, 3), np.float32)
    b = np.zeros(3, np.float32)
    for index in where_x:
        x[index] = path_value
    y_ref, cache_ref = ops.conv2d_forward(x, W, b, 1, 1)
    dy = _random(rng, y_ref.shape, np.float32)
    for index in where_dy:
        dy[index] = path_value
    return x, W, b, y_ref, cache_ref, dy


@pytest.mark.parametrize("path, c_in", [("winograd", 2), ("direct", 1)])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_reach_the_entries_the_oracle_reaches(monkeypatch, path, c_in, value):
    """A NaN or infinite input pixel (away from the border) or output gradient makes exactly the
    entries non-finite that it makes non-finite in the oracle; a NaN stays NaN. (An infinite
    input can come out as NaN where the oracle has ±inf: the transforms subtract it from
    itself. docs/methods.md §1.)"""
    monkeypatch.setenv(tuning.CONV_ENV_VAR, path)
    rng = np.random.default_rng(9)
    x, W, b, y_ref, cache_ref, dy = _nonfinite_case(rng, c_in, value, [(0, 0, 4, 3)],
                                                    [(1, 2, 5, 6)])
    y, cache = nb.conv2d_forward(x, W, b, 1, 1)
    assert cache.path == path
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(y_ref))
    if np.isnan(value):
        np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    with np.errstate(invalid="ignore"):
        want = ops.conv2d_backward(dy, cache_ref)
        got = nb.conv2d_backward(dy, cache)
    for label, g, r in zip(("dx", "dW", "db"), got, want):
        np.testing.assert_array_equal(np.isfinite(g), np.isfinite(r), err_msg=label)
        assert not np.isfinite(r).all(), label  # the case reaches every gradient


# --- the first layer: direct loops ----------------------------------------------------------------
DIRECT_SHAPES = [
    # N, H, W, C_out, kh, kw, padding, pooling k
    (1, 6, 6, 5, 3, 3, 0, 2),
    (3, 9, 8, 6, 3, 3, 1, 2),
    (3, 10, 9, 4, 3, 2, 1, 3),  # a non-square kernel; a row and a column no window covers
    (2, 8, 7, 3, 1, 1, 1, 2),
    (8, 28, 28, 8, 3, 3, 0, 2),  # N H_out W_out >= POOLED_DB_MIN_PIXELS: db from the pooled dy
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", DIRECT_SHAPES, ids=str)
@pytest.mark.parametrize("op", ["conv2d", "conv2d_relu", "conv2d_relu_maxpool2d"])
def test_direct_first_layer_agrees_with_the_oracle(monkeypatch, op, shape, dtype):
    monkeypatch.setenv(tuning.CONV_ENV_VAR, "direct")
    n, h, w, c_out, kh, kw, padding, k = shape
    rng = np.random.default_rng(sum(shape))
    extra = (k,) if op.endswith("maxpool2d") else ()
    args = (_random(rng, (n, 1, h, w), dtype), _random(rng, (c_out, 1, kh, kw), dtype),
            _random(rng, (c_out,), dtype), 1, padding, *extra)
    y_ref, cache_ref = getattr(ops, f"{op}_forward")(*args)
    y, cache = getattr(nb, f"{op}_forward")(*args)
    assert cache.path == "direct"
    assert_close(y, y_ref, dtype, f"{op} y")
    dy = _random(rng, y.shape, dtype)
    want = getattr(ops, f"{op}_backward")(dy, cache_ref)
    for need_dx in (True, False):
        got = getattr(nb, f"{op}_backward")(dy, cache, need_dx=need_dx)
        if not need_dx:
            assert got[0] is None
        for label, g, r in zip(("dx", "dW", "db"), got, want):
            if g is not None:
                assert_close(g, r, dtype, f"{op} {label} need_dx={need_dx}")


# --- the policy -----------------------------------------------------------------------------------
def test_candidates_by_shape():
    f32, f64 = np.float32, np.float64
    assert tuning.conv_candidates((8, 1, 28, 28), (64, 1, 3, 3), 1, f32) == ("im2col", "direct")
    assert tuning.conv_candidates((8, 1, 28, 28), (64, 1, 5, 5), 1, f64) == ("im2col", "direct")
    assert tuning.conv_candidates((8, 64, 13, 13), (128, 64, 3, 3), 1, f32) == \
        ("im2col", "winograd")
    assert tuning.conv_candidates((8, 64, 13, 13), (128, 64, 3, 3), 1, f64) == ("im2col",)
    assert tuning.conv_candidates((8, 64, 13, 13), (128, 64, 3, 3), 2, f32) == ("im2col",)
    assert tuning.conv_candidates((8, 64, 13, 13), (128, 64, 1, 1), 1, f32) == ("im2col",)


def test_another_path_is_chosen_only_when_clearly_faster():
    assert tuning.choose_conv_path({"im2col": 1.0, "winograd": 0.8}) == "winograd"
    assert tuning.choose_conv_path({"im2col": 1.0, "winograd": 0.95}) == "im2col"
    assert tuning.choose_conv_path({"im2col": 1.0, "direct": 1.3}) == "im2col"


def test_path_is_measured_once_per_shape_and_cached_on_disk(monkeypatch, tmp_path):
    monkeypatch.delenv(tuning.CONV_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(tuning, "_conv_chosen", {})
    measured = []

    def fake_measure(x_shape, w_shape, padding, dtype, candidates, repeats=5, pool=0):
        measured.append((x_shape, candidates))
        return {"path": candidates[-1], "seconds": {}, "measured": "now"}

    monkeypatch.setattr(tuning, "measure_conv_path", fake_measure)
    small = ((2, 8, 10, 10), (8, 8, 3, 3))
    assert tuning.conv_flops(*small, 1) < tuning.CONV_MEASURE_MIN_FLOPS
    assert tuning.conv_path(*small[:1], small[1], 1, 1, np.float32) == "im2col" and not measured
    big = ((64, 64, 13, 13), (128, 64, 3, 3))
    assert tuning.conv_path(big[0], big[1], 1, 0, np.float32) == "winograd"
    assert tuning.conv_path((60, 64, 13, 13), big[1], 1, 0, np.float32) == "winograd"
    assert len(measured) == 1  # batch 60 rounds up to the same key as 64
    record = json.loads(tuning.conv_cache_file().read_text())
    key = tuning.conv_policy_key(*big, 0, np.float32)
    assert record[key]["path"] == "winograd"
    monkeypatch.setattr(tuning, "_conv_chosen", {})  # a new process reads the disk cache
    assert tuning.conv_path(big[0], big[1], 1, 0, np.float32) == "winograd"
    assert len(measured) == 1
    monkeypatch.setenv(tuning.CONV_ENV_VAR, "direct")  # not a candidate here: im2col
    assert tuning.conv_path(big[0], big[1], 1, 0, np.float32) == "im2col"
    monkeypatch.setenv(tuning.CONV_ENV_VAR, "fastest")
    with pytest.raises(ValueError, match=tuning.CONV_ENV_VAR):
        tuning.conv_path(big[0], big[1], 1, 0, np.float32)


@pytest.mark.parametrize("pool", [0, 2])
def test_measurement_times_every_candidate_and_returns_a_choice(pool):
    record = tuning.measure_conv_path((2, 4, 8, 8), (4, 4, 3, 3), 1, np.float32,
                                      ("im2col", "winograd"), repeats=1, pool=pool)
    assert record["path"] in ("im2col", "winograd")
    assert set(record["seconds"]) == {"im2col", "winograd"}


def test_the_plan_runs_each_layer_on_the_path_the_policy_gives(monkeypatch):
    """lrpo_cnn in float32 on the numba backend with an injected policy (first conv direct,
    second Winograd, third im2col): each fused step runs its path, and the parameter
    gradients agree with the oracle model's."""
    from refimpl.model import get_model

    chosen = {1: "direct", 64: "winograd", 128: "im2col"}
    monkeypatch.setattr(tuning, "conv_path",
                        lambda x_shape, w_shape, stride, padding, dtype, pool=0:
                        chosen[w_shape[1]])
    fast = get_model("lrpo_cnn", seed=0, dtype=np.float32, backend="numba")
    oracle = get_model("lrpo_cnn", seed=0, dtype=np.float32, backend="numpy")
    x = np.random.default_rng(10).random((3, 1, 28, 28)).astype(np.float32)
    logits = fast.forward(x)
    convs = [step for step in fast.steps if hasattr(step, "conv")]
    paths = [step._cache.path if isinstance(step._cache, conv.PathCache) else "im2col"
             for step in convs]
    assert paths == ["direct", "winograd", "im2col"]
    assert_close(logits, oracle.forward(x), np.float32, "logits")
    dlogits = np.random.default_rng(11).standard_normal(logits.shape).astype(np.float32)
    fast.backward(dlogits, input_grad=False)
    oracle.backward(dlogits, input_grad=False)
    for k, (got, want) in enumerate(zip(fast.gradients(), oracle.gradients())):
        assert_close(got, want, np.float32, f"gradient {k}")


# --- the per-layer benchmark ----------------------------------------------------------------------
def test_conv_bench_prints_a_row_per_layer_and_path(capsys):
    from refimpl.bench import conv as bench

    layers = bench.conv_layers("lrpo_cnn", 2)
    assert [layer["w_shape"][1] for layer in layers] == [1, 64, 128]
    assert [layer["need_dx"] for layer in layers] == [False, True, True]
    assert bench.path_flops(layers[1], "winograd") < bench.direct_flops(layers[1])
    assert bench.main(["--batch", "2", "--repeats", "1", "--threads", "1,2"]) == 0
    out = capsys.readouterr().out
    tables = out.split("conv layers of lrpo_cnn at ")[1:]
    assert [table.split(" ")[0] for table in tables] == ["1", "2"]  # one table per count
    for table in tables:
        for path in ("im2col", "direct", "winograd"):
            assert f"| {path} |" in table
        assert table.count("| im2col |") == 3 and "effective GFLOPS" in table
        assert table.count("| torch |") == (3 if importlib.util.find_spec("torch") else 0)
    with pytest.raises(SystemExit) as bad:
        bench.main(["--threads", "0"])
    assert bad.value.code == 2
    assert "--threads must be" in capsys.readouterr().err
