"""refimpl.kernels.numba (the numba backend) beyond the agreement suite of test_backends.py
(which checks every op of the contract, bad input and edge values on every backend): the
threaded loops, random shapes (hypothesis), views, the fused conv+relu+pool step at training
sizes with NaN, inf and ties, the ``out=`` buffers, the paths taken only at training sizes,
the profiler, the on-disk JIT cache across processes, and the explicit tuning (thread
policy, threading layer, malloc).

Tolerances are those of test_backends.py (float64 1e-12, float32 1e-5, relative to the
largest magnitude of the oracle's result) and are justified there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refimpl.kernels.numba as nb
from refimpl import ops
from tests.backends.test_backends import DTYPES, _random, assert_close


# --- threaded loops ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "sin", "cos"])
def test_threaded_activation_loops_agree_with_oracle(activation, dtype):
    """Arrays from PARALLEL_MIN_SIZE up take the multi-threaded loops."""
    from refimpl.kernels.numba.activations import PARALLEL_MIN_SIZE

    rng = np.random.default_rng(13)
    x = 3 * _random(rng, (PARALLEL_MIN_SIZE + 5,), dtype)
    y_ref, cache_ref = getattr(ops, f"{activation}_forward")(x)
    y, cache = getattr(nb, f"{activation}_forward")(x)
    assert_close(y, y_ref, dtype, f"{activation} forward")
    dy = _random(rng, x.shape, dtype)
    assert_close(getattr(nb, f"{activation}_backward")(dy, cache),
                 getattr(ops, f"{activation}_backward")(dy, cache_ref), dtype,
                 f"{activation} backward")


# --- random shapes ------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
    h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
    stride=st.integers(1, 3), padding=st.integers(0, 3), seed=st.integers(0, 2**16),
    dtype=st.sampled_from(DTYPES),
)
def test_conv2d_random_shapes_agree_with_oracle(n, c_in, c_out, h, w, kh, kw, stride, padding,
                                                seed, dtype):
    if h + 2 * padding < kh or w + 2 * padding < kw:
        return  # no output pixel: both backends refuse it (tested below)
    rng = np.random.default_rng(seed)
    args = (_random(rng, (n, c_in, h, w), dtype), _random(rng, (c_out, c_in, kh, kw), dtype),
            _random(rng, (c_out,), dtype), stride, padding)
    y_ref, cache_ref = ops.conv2d_forward(*args)
    y, cache = nb.conv2d_forward(*args)
    assert_close(y, y_ref, dtype, "conv forward")
    dy = _random(rng, y.shape, dtype)
    for got, want in zip(nb.conv2d_backward(dy, cache), ops.conv2d_backward(dy, cache_ref)):
        assert_close(got, want, dtype, "conv backward")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       k=st.integers(1, 4), seed=st.integers(0, 2**16), dtype=st.sampled_from(DTYPES))
def test_maxpool2d_random_shapes_agree_with_oracle(n, c, h, w, k, seed, dtype):
    if h < k or w < k:
        return
    x = np.random.default_rng(seed).integers(-2, 3, size=(n, c, h, w)).astype(dtype)
    y_ref, cache_ref = ops.maxpool2d_forward(x, k)
    y, cache = nb.maxpool2d_forward(x, k)
    np.testing.assert_array_equal(y, y_ref)  # a max is exact: no rounding anywhere
    np.testing.assert_array_equal(nb.maxpool2d_backward(y, cache),
                                  ops.maxpool2d_backward(y_ref, cache_ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, w_shape, stride, padding, k", [
    ((3, 2, 9, 9), (4, 2, 3, 3), 1, 1, 2),    # 9x9 output: a row and a column no window covers
    ((2, 1, 12, 11), (5, 1, 3, 3), 2, 1, 3),
    ((16, 1, 28, 28), (8, 1, 3, 3), 1, 0, 2),  # lrpo_cnn's first layer, fewer channels
])
def test_conv2d_relu_maxpool2d_equals_the_oracle_composition(dtype, shape, w_shape, stride,
                                                            padding, k):
    """The fused step equals conv2d_relu then maxpool2d of the oracle: the same maxima, and
    gradients within the tolerance (dx, dW and db come from the same products)."""
    rng = np.random.default_rng(14)
    x, W, b = _random(rng, shape, dtype), _random(rng, w_shape, dtype), \
        _random(rng, (w_shape[0],), dtype)
    z, conv_cache = ops.conv2d_relu_forward(x, W, b, stride, padding)
    y_ref, pool_cache = ops.maxpool2d_forward(z, k)
    y, cache = nb.conv2d_relu_maxpool2d_forward(x, W, b, stride, padding, k)
    np.testing.assert_array_equal(y, y_ref)
    assert (y == 0).any() and (y > 0).any()  # windows whose maximum relu cuts, and others
    dy = _random(rng, y.shape, dtype)
    want = ops.conv2d_relu_backward(ops.maxpool2d_backward(dy, pool_cache), conv_cache)
    for label, got, ref in zip(("dx", "dW", "db"), nb.conv2d_relu_maxpool2d_backward(dy, cache),
                               want):
        assert_close(got, ref, dtype, f"fused conv+relu+pool {label}")


def test_conv2d_relu_maxpool2d_nan_in_input_and_gradient_as_the_oracle():
    """A NaN pixel makes its windows NaN with no arg-max; a NaN in dy reaches its window's
    arg-max only when the maximum passed the relu, exactly as pool-then-relu backward of
    the oracle."""
    rng = np.random.default_rng(15)
    x, W, b = _random(rng, (2, 1, 8, 8), np.float64), _random(rng, (3, 1, 1, 1), np.float64), \
        np.zeros(3)
    x[0, 0, 2, 3] = np.nan
    z, conv_cache = ops.conv2d_relu_forward(x, W, b, 1, 0)
    y_ref, pool_cache = ops.maxpool2d_forward(z, 2)
    y, cache = nb.conv2d_relu_maxpool2d_forward(x, W, b, 1, 0, 2)
    np.testing.assert_array_equal(y, y_ref)
    dy = _random(rng, y.shape, np.float64)
    passed = tuple(np.argwhere(y > 0)[0])  # a window whose maximum passed the relu ...
    cut = next(tuple(i) for i in np.argwhere(y <= 0) if i[1] != passed[1])  # ... and a cut one
    dy[passed] = dy[cut] = np.nan
    pooled_grad = ops.maxpool2d_backward(dy, pool_cache)
    rows_ref = ops.relu_backward(pooled_grad, conv_cache[1])
    _, dW, db = nb.conv2d_relu_maxpool2d_backward(dy, cache)
    _, dW_ref, db_ref = ops.conv2d_backward(rows_ref, conv_cache[0])
    np.testing.assert_array_equal(np.isnan(dW), np.isnan(dW_ref))
    np.testing.assert_array_equal(np.isnan(db), np.isnan(db_ref))
    np.testing.assert_array_equal(np.isnan(db), np.arange(3) == passed[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["dense", "dense_relu"])
def test_dense_backward_writes_into_out_with_the_same_numbers(op, dtype):
    rng = np.random.default_rng(16)
    x, W, b = _random(rng, (9, 13), dtype), _random(rng, (13, 7), dtype), _random(rng, (7,), dtype)
    y, cache = getattr(nb, f"{op}_forward")(x, W, b)
    dy = _random(rng, y.shape, dtype)
    backward = getattr(nb, f"{op}_backward")
    assert f"{op}_backward" in nb.GRADS_OUT
    dx, dW, db = backward(dy, cache)
    out = (np.full_like(W, np.nan), np.full_like(b, np.nan))
    dx2, dW2, db2 = backward(dy, cache, out=out)
    assert dW2 is out[0] and db2 is out[1]
    np.testing.assert_array_equal(dW2, dW)  # the same BLAS call and reduction
    np.testing.assert_array_equal(db2, db)
    np.testing.assert_array_equal(dx2, dx)
    wrong = (np.zeros_like(W, dtype=np.float16), np.zeros_like(b))  # does not fit: ignored
    _, dW3, db3 = backward(dy, cache, out=wrong)
    assert dW3 is not wrong[0] and db3 is not wrong[1]
    np.testing.assert_array_equal(dW3, dW)


def test_conv2d_relu_maxpool2d_bias_grad_from_the_pooled_gradient_with_inf_and_nan():
    """From POOLED_DB_MIN_PIXELS on, db is summed over the pooled gradient: an inf or a NaN
    in dy at a window whose maximum passed the relu reaches db as it does the oracle's sum
    (inf and NaN), and one at a window the relu cut does not."""
    from refimpl.kernels.numba import conv

    rng = np.random.default_rng(17)
    x, W, b = _random(rng, (8, 1, 28, 28), np.float32), _random(rng, (4, 1, 3, 3), np.float32), \
        np.zeros(4, np.float32)
    assert 8 * 26 * 26 >= conv.POOLED_DB_MIN_PIXELS
    z, conv_cache = ops.conv2d_relu_forward(x, W, b, 1, 0)
    _, pool_cache = ops.maxpool2d_forward(z, 2)
    y, cache = nb.conv2d_relu_maxpool2d_forward(x, W, b, 1, 0, 2)
    dy = _random(rng, y.shape, np.float32)
    dy[0, 1, 3, 3], dy[5, 2, 0, 7] = np.inf, np.nan
    assert y[0, 1, 3, 3] > 0 and y[5, 2, 0, 7] > 0  # both windows pass the relu
    dy[2, 3, 1, 1] = np.nan if not y[2, 3, 1, 1] > 0 else dy[2, 3, 1, 1]  # a cut window
    with np.errstate(invalid="ignore"):  # inf - inf in no sum here; guard the oracle's anyway
        want = ops.conv2d_relu_backward(ops.maxpool2d_backward(dy, pool_cache), conv_cache,
                                        need_dx=False)[2]
    got = nb.conv2d_relu_maxpool2d_backward(dy, cache, need_dx=False)[2]
    np.testing.assert_array_equal(np.isnan(want), [False, False, True, False])
    np.testing.assert_array_equal(np.isinf(want), [False, True, False, False])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)])
    finite = np.isfinite(want)
    assert_close(got[finite], want[finite], np.float32, "db")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("plane", [(13, 13), (2, 2), (1, 3)])  # 169 = 4·42 + 1: a tail; none; only a tail
def test_pooled_bias_grad_sums_dy_where_the_pooled_output_passed_the_relu(dtype, plane):
    from refimpl.kernels.numba import conv

    rng = np.random.default_rng(3)
    y = _random(rng, (64, 8, *plane), dtype)
    y[0, 0, 0, 0] = np.nan  # a NaN maximum passes nothing, as in the oracle's relu
    dy = _random(rng, y.shape, dtype)
    want = np.where(y > 0, dy, 0).sum(axis=(0, 2, 3))
    got = conv._pooled_bias_grad(y, dy)
    assert_close(got, want, dtype, "db")
    np.testing.assert_array_equal(conv._pooled_bias_grad(y, dy), got)  # the same bits again


# --- the paths taken only at training sizes --------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
def test_conv_backward_at_sizes_of_the_transposed_weight_gradient(dtype, relu):
    """From TRANSPOSED_DW_MIN_ROWS column rows and TRANSPOSED_DW_MIN_PIXELS output pixels the
    weight gradient is (cols dYᵀ)ᵀ, a product the random shapes above never reach."""
    from refimpl.kernels.numba import conv

    rng = np.random.default_rng(21)
    x, W, b = _random(rng, (32, 8, 14, 14), dtype), _random(rng, (4, 8, 3, 3), dtype), \
        _random(rng, (4,), dtype)
    assert 8 * 3 * 3 >= conv.TRANSPOSED_DW_MIN_ROWS
    assert 32 * 12 * 12 >= conv.TRANSPOSED_DW_MIN_PIXELS
    name = "conv2d_relu" if relu else "conv2d"
    y_ref, cache_ref = getattr(ops, f"{name}_forward")(x, W, b, 1, 0)
    y, cache = getattr(nb, f"{name}_forward")(x, W, b, 1, 0)
    assert_close(y, y_ref, dtype, f"{name} forward")
    dy = _random(rng, y.shape, dtype)
    got = getattr(nb, f"{name}_backward")(dy, cache)
    want = getattr(ops, f"{name}_backward")(dy, cache_ref)
    for label, g, w in zip(("dx", "dW", "db"), got, want):
        assert_close(g, w, dtype, f"{name} backward {label}")


@pytest.mark.parametrize("shape", [(16, 8, 26, 26), (16, 8, 9, 9), (4, 3, 11, 7)])
def test_maxpool2d_k2_at_training_sizes_with_ties_and_nan(shape):
    """The k = 2 forward (selects, int8 arg-max) and the backward that writes every element
    once, including the rows and columns no window covers (odd sizes), equal the oracle."""
    rng = np.random.default_rng(22)
    x = rng.integers(-2, 3, size=shape).astype(np.float32)  # many ties
    x.reshape(-1)[rng.choice(x.size, 20, replace=False)] = np.nan
    y_ref, cache_ref = ops.maxpool2d_forward(x, 2)
    y, cache = nb.maxpool2d_forward(x, 2)
    np.testing.assert_array_equal(y, y_ref)
    dy = _random(rng, y.shape, np.float32)
    np.testing.assert_array_equal(nb.maxpool2d_backward(dy, cache),
                                  ops.maxpool2d_backward(dy, cache_ref))


def test_profile_records_only_inside_recording_and_changes_no_result():
    from refimpl.kernels.numba import profile

    rng = np.random.default_rng(23)
    x, W, b = _random(rng, (2, 3, 8, 8), np.float32), _random(rng, (4, 3, 3, 3), np.float32), \
        np.zeros(4, np.float32)
    assert profile.phase("gemm") is profile.phase("im2col")  # one shared no-op when off
    y_plain, _ = nb.conv2d_forward(x, W, b, 1, 1)
    with profile.recording() as events, profile.layer("conv"):
        y_timed, _ = nb.conv2d_forward(x, W, b, 1, 1)
    np.testing.assert_array_equal(y_timed, y_plain)
    names = [event[1] for event in events]
    assert names == ["im2col", "gemm Y=W.cols", "bias, to NCHW", "total"]
    gemm = events[1]
    assert gemm[0] == "conv" and gemm[2] == "4x27x128" and gemm[3] == 2 * 4 * 27 * 128
    assert all(event[4] >= 0 and event[5] >= 0 for event in events)
    nb.conv2d_forward(x, W, b, 1, 1)
    assert len(events) == 4  # nothing is recorded after the block


# --- views -------------------------------------------------------------------------------------
def test_non_contiguous_inputs_give_the_same_results():
    rng = np.random.default_rng(12)
    x = _random(rng, (4, 6, 9, 9), np.float64)[:, ::2, ::2, 1:]  # strided view
    W = _random(rng, (2, 3, 3, 3), np.float64)
    b = np.zeros(2)
    y, _ = nb.conv2d_forward(x, W, b, 1, 1)
    assert_close(y, ops.conv2d_forward(np.ascontiguousarray(x), W, b, 1, 1)[0], np.float64,
                 "conv on a view")
    x2 = _random(rng, (7, 5), np.float64).T  # Fortran-ordered
    y2, _ = nb.tanh_forward(x2)
    assert_close(y2, np.tanh(x2), np.float64, "tanh on a transposed view")


# --- JIT cache ----------------------------------------------------------------------------------
_CACHE_PROBE = """
import json, refimpl.kernels.numba as nb
seconds = nb.warmup()
stats = {name: [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())]
         for name, d in nb.dispatchers().items()}
print(json.dumps({"seconds": seconds, "stats": stats}))
"""


def _probe() -> dict:
    done = subprocess.run([sys.executable, "-c", _CACHE_PROBE], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_process_loads_every_kernel_from_the_disk_cache():
    """Run 1 compiles what is not cached yet (and writes it); run 2 must compile nothing.

    Numba's own per-dispatcher counters say whether a signature was loaded from the cache
    (hit) or compiled (miss), so the check does not depend on timing.
    """
    _probe()
    second = _probe()
    misses = {name: hits_misses[1] for name, hits_misses in second["stats"].items()
              if hits_misses[1]}
    assert not misses, f"recompiled in a second process: {misses}"
    hits = sum(hits_misses[0] for hits_misses in second["stats"].values())
    assert hits >= 2 * 10  # every top-level kernel, float32 and float64


def test_warmup_reports_seconds_and_dispatchers_are_listed():
    assert nb.warmup(dtypes=(np.float64,)) >= 0
    names = nb.dispatchers()
    assert "refimpl.kernels.numba.conv._im2col" in names and "refimpl.kernels.numba.pool._forward" in names


# --- tuning (refimpl/kernels/numba/tuning.py) -------------------------------------------------------
def test_blas_threads_reads_the_openblas_then_omp_variables(monkeypatch):
    from refimpl.kernels.numba import tuning

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert tuning.blas_threads() == 3
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    assert tuning.blas_threads() == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert tuning.blas_threads() == (os.cpu_count() or 1)


def _two_numba_threads():
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread here (NUMBA_NUM_THREADS=1)")
    numba.set_num_threads(2)
    return numba


def test_loop_threads_follows_the_policy_and_restores(monkeypatch):
    from refimpl.kernels.numba import tuning

    numba = _two_numba_threads()
    monkeypatch.setenv(tuning.ENV_VAR, "serial")
    with tuning.loop_threads():
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == 2
    with pytest.raises(KeyError), tuning.loop_threads():
        raise KeyError("restored on errors too")
    assert numba.get_num_threads() == 2
    monkeypatch.setenv(tuning.ENV_VAR, "parallel")
    with tuning.loop_threads():
        assert numba.get_num_threads() == 2
    monkeypatch.setenv(tuning.ENV_VAR, "sometimes")
    with pytest.raises(ValueError, match=tuning.ENV_VAR):
        tuning.loop_policy()


def test_policy_is_measured_once_per_machine_and_cached_on_disk(monkeypatch, tmp_path):
    from refimpl.kernels.numba import tuning

    _two_numba_threads()
    monkeypatch.delenv(tuning.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(tuning, "_chosen", {})
    measured = []
    real = tuning.measure_loop_policy

    def counting(repeats=7):
        measured.append(repeats)
        return real(repeats=1)

    monkeypatch.setattr(tuning, "measure_loop_policy", counting)
    policy = tuning.loop_policy()
    assert policy in tuning.POLICIES and measured == [7]
    stored = json.loads(tuning.cache_file().read_text())
    record = stored[tuning.configuration()]
    assert record["policy"] == policy and record["serial_s"] > 0 and record["parallel_s"] > 0
    assert str(tuning.cache_file()).startswith(str(tmp_path))
    monkeypatch.setattr(tuning, "_chosen", {})  # a new process: read from disk, no measurement
    assert tuning.loop_policy() == policy and measured == [7]
    other = "serial" if policy == "parallel" else "parallel"
    stored[tuning.configuration()]["policy"] = other
    tuning.cache_file().write_text(json.dumps(stored))
    monkeypatch.setattr(tuning, "_chosen", {})
    assert tuning.loop_policy() == other and measured == [7]  # the cache is what decides


def test_parallel_loops_are_chosen_only_when_clearly_faster():
    from refimpl.kernels.numba import tuning

    assert tuning.choose_policy(1.0, 0.90) == "parallel"
    assert tuning.choose_policy(1.0, 0.97) == "serial"  # inside the margin: a tie
    assert tuning.choose_policy(1.0, 1.20) == "serial"


def test_tune_changes_only_what_it_is_asked_and_checks_its_arguments(monkeypatch):
    from refimpl.kernels.numba import tuning

    numba = _two_numba_threads()
    monkeypatch.setattr(tuning, "_forced", None)
    monkeypatch.setenv(tuning.ENV_VAR, "parallel")
    layer = numba.config.THREADING_LAYER
    settings_now = nb.tune()
    assert settings_now == {"threads": 2, "loops": "parallel", "threading_layer": layer,
                            "large_blocks_kept": False}
    assert nb.tune(threads=1, loops="serial")["loops"] == "serial"
    assert numba.get_num_threads() == 1 and tuning.loop_policy() == "serial"
    numba.set_num_threads(2)
    with pytest.raises(ValueError, match="^threads must be"):
        nb.tune(threads=0)
    with pytest.raises(ValueError, match="^loops must be"):
        nb.tune(loops="fast")
    nb.relu_forward(np.zeros(nb.activations.PARALLEL_MIN_SIZE))  # Numba's threads now run
    other = "workqueue" if numba.threading_layer() != "workqueue" else "omp"
    with pytest.raises(ValueError, match="comes too late"):
        nb.tune(threading_layer=other)


def test_shared_cores_environment_adds_only_what_the_caller_did_not_set(monkeypatch):
    from refimpl.kernels.numba import tuning

    caller = {"PATH": "/bin", "OMP_WAIT_POLICY": "active"}
    env = tuning.shared_cores_environment(caller)
    assert caller == {"PATH": "/bin", "OMP_WAIT_POLICY": "active"}  # the argument is not changed
    assert env["PATH"] == "/bin" and env["OMP_WAIT_POLICY"] == "active"  # the caller's value wins
    assert env["OPENBLAS_THREAD_TIMEOUT"] == "4"
    layer = "omp" if tuning.openmp_available() else "workqueue"
    assert env["NUMBA_THREADING_LAYER"] == layer
    monkeypatch.setattr(tuning, "openmp_available", lambda: False)
    assert tuning.shared_cores_environment({})["NUMBA_THREADING_LAYER"] == "workqueue"
    assert tuning.shared_cores_environment({"NUMBA_THREADING_LAYER": "tbb"})[
        "NUMBA_THREADING_LAYER"] == "tbb"


def test_bench_workers_of_refimpl_get_the_shared_cores_environment_and_torch_its_own(monkeypatch):
    from refimpl.bench.epochs import _thread_env
    from refimpl.kernels.numba import tuning

    for name in tuning.SHARED_CORES_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for backend in ("numba", "numpy"):
        env = _thread_env(2, backend=backend)
        assert env["OPENBLAS_THREAD_TIMEOUT"] == "4" and env["OMP_WAIT_POLICY"] == "passive"
        assert env["OMP_NUM_THREADS"] == env["NUMBA_NUM_THREADS"] == "2"
    torch_env = _thread_env(1, backend="torch")
    assert not set(tuning.SHARED_CORES_ENVIRONMENT) & set(torch_env)
    assert torch_env["OMP_NUM_THREADS"] == "1"


def test_a_process_started_with_the_shared_cores_environment_runs_numba_on_openmp():
    from refimpl.kernels.numba import tuning

    if not tuning.openmp_available():
        pytest.skip("Numba's OpenMP layer cannot load here (no libgomp)")
    code = ("import numpy as np, numba, refimpl.kernels.numba as nb\n"
            "nb.relu_forward(np.ones(nb.activations.PARALLEL_MIN_SIZE))\n"
            "print(numba.threading_layer())")
    env = tuning.shared_cores_environment({k: v for k, v in os.environ.items()
                                           if k != "NUMBA_THREADING_LAYER"})
    env["NUMBA_NUM_THREADS"] = "2"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    assert done.stdout.split()[-1] == "omp"


def test_malloc_thresholds_only_on_request_and_not_when_the_user_tunes_malloc(monkeypatch):
    import platform

    from refimpl.kernels.numba import tuning

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert tuning.raise_malloc_thresholds() is False
    assert nb.tune(keep_large_blocks=True)["large_blocks_kept"] is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    for name in [n for n in os.environ if n.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    assert nb.tune(keep_large_blocks=True)["large_blocks_kept"] is True
