"""Tuning of the numba backend: explicit calls, nothing at import.

Importing :mod:`refimpl.kernels.numba` changes no process-wide setting. Three kinds of tuning
exist; the thread policies change only the time, the convolution path only the rounding
(within the tolerances of docs/methods.md §1).

**Thread policy of the Numba loops** (im2col/col2im, layout copies, pooling, large
activations). These loops run between BLAS products. On some machines BLAS's worker threads
keep spinning for a while after a product, so a second Numba thread waits for a core that a
spinning BLAS thread holds and the loops are faster on one thread; on others the threads
pay. Which holds is measured, not assumed: at the first kernel call of a process,
:func:`loop_policy` times a small convolution forward and backward with the loops on one
thread (``"serial"``) and on Numba's thread count (``"parallel"``), interleaved, median of
7 (about half a second), and keeps the parallel loops only when they are at least 5% faster. The choice is cached on disk per machine
and thread configuration (:func:`cache_file`, under the user cache directory), so later
processes reuse it. Override it with the environment variable ``REFIMPL_NUMBA_LOOPS``
(``serial`` or ``parallel``) or ``tune(loops=...)``. The policy acts only inside the
kernels: :func:`loop_threads` sets Numba's thread count of the calling thread around a loop
and restores it.

**Convolution path per layer shape.** A convolution runs as im2col and one BLAS product,
as Winograd F(2x2, 3x3) (3x3, stride 1, float32: fewer multiplications) or, for a one-channel
input, as direct loops. Which is fastest depends on the shape and the machine, so it is
measured: the first call of a shape large enough to matter (:data:`CONV_MEASURE_MIN_FLOPS`)
times a forward + backward of that shape on each path (:func:`measure_conv_path`, a few
times the layer's own cost) and keeps another path only when it is at least 10% faster than
im2col. The choice is cached on disk per machine, shape and version of the kernels
(:func:`conv_cache_file`); the
environment variable ``REFIMPL_CONV_PATH`` (``im2col``, ``winograd`` or ``direct``) fixes it
where the shape allows that path. The paths agree with the oracle to their tolerances
(docs/methods.md §1); float64 never takes Winograd.

**Process-wide settings**, changed only when asked, by :func:`tune`: Numba's thread count,
Numba's threading layer, and glibc's malloc thresholds (``keep_large_blocks=True`` keeps freed
large buffers in the process, so each training step reuses the previous step's temporaries
instead of page-faulting fresh memory in). ``refimpl bench`` calls it; a user's program may.

**Environment read at start-up.** How the thread pools of Numba, OpenMP and OpenBLAS wait
while idle is fixed when they load, so it cannot be tuned from inside a running process:
:data:`SHARED_CORES_ENVIRONMENT` lists the variables that make them share the cores, and
:func:`shared_cores_environment` adds them to an environment for a subprocess
(docs/architecture.md, "Threads").
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np

#: The two policies of the Numba loops.
POLICIES = ("serial", "parallel")
#: Environment variable that fixes the policy without measuring.
ENV_VAR = "REFIMPL_NUMBA_LOOPS"

_chosen: dict[str, str] = {}  # configuration key -> policy, for this process
_forced: str | None = None  # set by tune(loops=...) or while measuring


def blas_threads() -> int:
    """The BLAS pool size as OpenBLAS reads it at start-up: its variables, else every core."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def configuration() -> str:
    """What the policy depends on: CPU model, cores, Numba and BLAS threads, threading layer."""
    return (
        f"{_cpu_model()} | cores={os.cpu_count()} | numba_threads={numba.get_num_threads()} | "
        f"blas_threads={blas_threads()} | layer={numba.config.THREADING_LAYER}"
    )


def cache_file() -> Path:
    """Where measured policies are kept: ``$XDG_CACHE_HOME/refimpl`` (else ``~/.cache/refimpl``)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "refimpl" / "numba_loop_policy.json"


def _read_cache(path: Path | None = None) -> dict:
    try:
        with open(path or cache_file(), encoding="utf-8") as handle:
            stored = json.load(handle)
        return stored if isinstance(stored, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, record: dict, path: Path | None = None) -> None:
    """Add ``record`` under ``key``, atomically; an unwritable cache is not an error."""
    path = path or cache_file()
    stored = _read_cache(path)
    stored[key] = record
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         suffix=".tmp") as handle:
            json.dump(stored, handle, indent=1, sort_keys=True)
        os.replace(handle.name, path)
    except OSError:
        pass


@contextlib.contextmanager
def _policy(policy: str) -> Iterator[None]:
    global _forced
    before, _forced = _forced, policy
    try:
        yield
    finally:
        _forced = before


#: ``"parallel"`` is kept only when its median is below this fraction of the serial one: the
#: serial loops never compete with BLAS's threads, so a tie (or a win inside the noise of a
#: sub-second measurement) goes to them.
PARALLEL_MARGIN = 0.95


def choose_policy(serial_s: float, parallel_s: float) -> str:
    """``"parallel"`` when it took less than :data:`PARALLEL_MARGIN` of the serial time."""
    return "parallel" if parallel_s < PARALLEL_MARGIN * serial_s else "serial"


def measure_loop_policy(repeats: int = 7) -> dict:
    """Time a conv forward + backward with each policy; return the choice and the times.

    The workload (float32, batch 32, 32 -> 64 channels, 14x14, 3x3 kernel, padding 1; about
    20 ms a pass) has the pattern and the size of a training step's middle layer: im2col, a
    BLAS product, layout copies, col2im. Each policy runs once to compile/warm up, then
    ``repeats`` times interleaved with the other; ``"parallel"`` must beat ``"serial"`` by
    :data:`PARALLEL_MARGIN` to be chosen. With one Numba thread there is nothing to choose.
    """
    from refimpl.kernels.numba.conv import conv2d_backward, conv2d_forward

    if numba.get_num_threads() == 1:
        return {"policy": "serial", "serial_s": None, "parallel_s": None,
                "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 32, 14, 14)).astype(np.float32)
    W = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    b = np.zeros(64, np.float32)

    def seconds(policy: str) -> float:
        with _policy(policy), _conv_policy("im2col"):  # the loops of im2col are what is timed
            start = time.perf_counter()
            y, cache = conv2d_forward(x, W, b, 1, 1)
            conv2d_backward(y, cache)
            return time.perf_counter() - start

    for policy in POLICIES:
        seconds(policy)
    times: dict[str, list[float]] = {policy: [] for policy in POLICIES}
    for _ in range(repeats):
        for policy in POLICIES:
            times[policy].append(seconds(policy))
    medians = {policy: statistics.median(values) for policy, values in times.items()}
    return {
        "policy": choose_policy(medians["serial"], medians["parallel"]),
        "serial_s": medians["serial"],
        "parallel_s": medians["parallel"],
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _from_environment() -> str | None:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return None
    if value not in POLICIES:
        raise ValueError(f"{ENV_VAR} must be one of {POLICIES}, got {value!r}; unset it to measure")
    return value


def loop_policy() -> str:
    """The policy in force: ``tune(loops=...)``, else ``$REFIMPL_NUMBA_LOOPS``, else the
    measured one (from the disk cache, or measured now and cached)."""
    if _forced is not None:
        return _forced
    if (policy := _from_environment()) is not None:
        return policy
    if numba.get_num_threads() == 1:
        return "parallel"  # one thread either way: nothing to decide
    key = configuration()
    if key not in _chosen:
        record = _read_cache().get(key)
        if not (isinstance(record, dict) and record.get("policy") in POLICIES):
            record = measure_loop_policy()
            _write_cache(key, record)
        _chosen[key] = record["policy"]
    return _chosen[key]


@contextlib.contextmanager
def loop_threads() -> Iterator[None]:
    """Run the Numba parallel loops inside on one thread when the policy is ``serial``.

    ``numba.set_num_threads`` acts on the calling thread and is restored on exit, so the
    caller's setting is untouched outside these kernels.
    """
    before = numba.get_num_threads()
    if before == 1 or loop_policy() == "parallel":
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


# -- the convolution path of each layer shape ---------------------------------------------------

#: The ways :mod:`refimpl.kernels.numba.conv` computes a convolution: im2col and one BLAS
#: product (every shape), Winograd F(2x2, 3x3) (:mod:`refimpl.kernels.numba.winograd`: 3x3,
#: stride 1, float32, more than one input channel) and direct loops
#: (:mod:`refimpl.kernels.numba.conv_first`: one input channel, stride 1).
CONV_PATHS = ("im2col", "winograd", "direct")
#: Environment variable that fixes the path (where the shape allows it) without measuring.
CONV_ENV_VAR = "REFIMPL_CONV_PATH"
#: Below this many floating-point operations of the direct convolution (``2 N H_out W_out C_out
#: C_in kh kw``, one forward) a layer stays on im2col unmeasured: a measurement would cost more
#: than it could save, and the small shapes keep the oracle's own products.
CONV_MEASURE_MIN_FLOPS = 2e7
#: Another path is chosen only when its median is below this fraction of im2col's.
CONV_MARGIN = 0.9

_conv_chosen: dict[str, str] = {}  # configuration and shape key -> path, for this process
_conv_forced: str | None = None  # set while measuring


def conv_cache_file() -> Path:
    """Where measured convolution paths are kept, beside :func:`cache_file`."""
    return cache_file().with_name("numba_conv_paths.json")


def conv_candidates(x_shape: tuple, w_shape: tuple, stride: int, dtype: object) -> tuple:
    """The paths that can compute this convolution, im2col first. Winograd needs float32:
    in float64 its rounding differs from the oracle's by more than the 1e-12 the backend
    promises (docs/methods.md §1)."""
    c_in, kh, kw = w_shape[1], w_shape[2], w_shape[3]
    if stride != 1:
        return ("im2col",)
    if c_in == 1:
        return ("im2col", "direct")
    if (kh, kw) == (3, 3) and np.dtype(dtype) == np.float32:
        return ("im2col", "winograd")
    return ("im2col",)


def conv_flops(x_shape: tuple, w_shape: tuple, padding: int) -> float:
    """``2 N H_out W_out C_out C_in kh kw``: the forward of the direct (im2col) definition."""
    n, c_in, height, width = x_shape
    c_out, _, kh, kw = w_shape
    h_out, w_out = height + 2 * padding - kh + 1, width + 2 * padding - kw + 1
    return 2.0 * n * h_out * w_out * c_out * c_in * kh * kw


def conv_shape_key(x_shape: tuple, w_shape: tuple, padding: int, dtype: object,
                   pool: int = 0) -> str:
    """The shape a measured path is kept under; the batch is rounded up to a power of two, so
    a short last batch reuses its epoch's choice."""
    n, c_in, height, width = x_shape
    c_out, _, kh, kw = w_shape
    batch = 1 << max(0, int(n) - 1).bit_length()
    return (f"N<={batch} C_in={c_in} {height}x{width} C_out={c_out} k={kh}x{kw} p={padding} "
            f"{np.dtype(dtype).name}" + (f" pool={pool}" if pool else ""))


def conv_policy_key(x_shape: tuple, w_shape: tuple, padding: int, dtype: object,
                    pool: int = 0) -> str:
    """The disk-cache key of a measured path: machine configuration, kernels, shape."""
    return (f"{configuration()} | {conv_kernels_digest()} | "
            f"{conv_shape_key(x_shape, w_shape, padding, dtype, pool)}")


@functools.cache
def conv_kernels_digest() -> str:
    """A digest of the paths' source files: a measurement made with other kernels is not reused."""
    digest = hashlib.sha256()
    for name in ("conv.py", "winograd.py", "conv_first.py"):
        digest.update((Path(__file__).parent / name).read_bytes())
    return f"kernels={digest.hexdigest()[:12]}"


@contextlib.contextmanager
def _conv_policy(path: str | None) -> Iterator[None]:
    global _conv_forced
    before, _conv_forced = _conv_forced, path
    try:
        yield
    finally:
        _conv_forced = before


def choose_conv_path(seconds: dict) -> str:
    """The fastest path when it took less than :data:`CONV_MARGIN` of im2col's time, else
    im2col."""
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[fastest] < CONV_MARGIN * seconds["im2col"] else "im2col"


def measure_conv_path(x_shape: tuple, w_shape: tuple, padding: int, dtype: object,
                      candidates: tuple, repeats: int = 5, pool: int = 0) -> dict:
    """Time a forward + backward of this shape on every candidate path: ``conv2d_relu``, or
    ``conv2d_relu_maxpool2d`` with window ``pool`` when the layer pools (the steps a model
    runs).

    Random data of the layer's shape; each path runs once to compile/warm up, then ``repeats``
    times interleaved with the others; the medians decide (:func:`choose_conv_path`). A
    one-channel input is a model's first layer, whose input gradient no one asks for
    (``need_dx=False``), and is timed so.
    """
    from refimpl.kernels.numba import conv

    op = "conv2d_relu_maxpool2d" if pool else "conv2d_relu"
    forward, backward = getattr(conv, f"{op}_forward"), getattr(conv, f"{op}_backward")
    options = (1, padding, pool) if pool else (1, padding)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    W = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(dtype)
    b = np.zeros(w_shape[0], dtype)
    need_dx = w_shape[1] > 1

    def seconds(path: str) -> float:
        with _conv_policy(path):
            start = time.perf_counter()
            y, cache = forward(x, W, b, *options)
            backward(y, cache, need_dx=need_dx)
            return time.perf_counter() - start

    for path in candidates:
        seconds(path)
    times: dict[str, list[float]] = {path: [] for path in candidates}
    for _ in range(repeats):
        for path in candidates:
            times[path].append(seconds(path))
    medians = {path: statistics.median(values) for path, values in times.items()}
    return {"path": choose_conv_path(medians), "seconds": medians,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _conv_from_environment() -> str | None:
    value = os.environ.get(CONV_ENV_VAR, "").strip().lower()
    if not value:
        return None
    if value not in CONV_PATHS:
        raise ValueError(f"{CONV_ENV_VAR} must be one of {CONV_PATHS}, got {value!r}; unset it to "
                         "measure")
    return value


def conv_path(x_shape: tuple, w_shape: tuple, stride: int, padding: int, dtype: object,
              pool: int = 0) -> str:
    """The path that computes a convolution of this shape (followed by a max pooling of window
    ``pool``, 0 for none): a forced one (``$REFIMPL_CONV_PATH``, or the measurement's own) where
    the shape allows it, else im2col below :data:`CONV_MEASURE_MIN_FLOPS`, else the measured
    fastest (from the disk cache, or measured now and cached). Every path gives the oracle's
    numbers to its tolerance."""
    candidates = conv_candidates(x_shape, w_shape, stride, dtype)
    forced = _conv_forced if _conv_forced is not None else _conv_from_environment()
    if forced is not None:
        return forced if forced in candidates else "im2col"
    if len(candidates) == 1 or conv_flops(x_shape, w_shape, padding) < CONV_MEASURE_MIN_FLOPS:
        return "im2col"
    key = conv_policy_key(x_shape, w_shape, padding, dtype, pool)
    if key not in _conv_chosen:
        record = _read_cache(conv_cache_file()).get(key)
        if not (isinstance(record, dict) and record.get("path") in candidates):
            record = measure_conv_path(x_shape, w_shape, padding, dtype, candidates, pool=pool)
            _write_cache(key, record, conv_cache_file())
        _conv_chosen[key] = record["path"]
    return _conv_chosen[key]


# -- explicit, process-wide tuning ------------------------------------------------------------

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit
TRIM_THRESHOLD = 1024 * 1024 * 1024


def raise_malloc_thresholds() -> bool:
    """Raise glibc's mmap threshold to 32 MiB and its trim threshold to 1 GiB; return whether set.

    glibc serves blocks above its mmap threshold with a fresh ``mmap`` and unmaps them on
    free, so a training step that allocates the same large temporaries every time
    page-faults them in again each step; with the raised thresholds they are reused from
    the heap. Peak memory is unchanged (the same blocks are live at the peak); the heap just
    does not shrink between steps. Does nothing when the user tunes malloc through
    ``MALLOC_*`` variables or the C library is not glibc.
    """
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    try:
        mallopt = ctypes.CDLL(path).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


#: Environment variables a process that runs the numba backend reads at start-up, with the
#: values that make its thread pools share the cores (docs/architecture.md, "Threads").
#: Numba's OpenMP layer runs a parallel loop on the calling thread and one woken helper per
#: extra thread, where the workqueue layer hands every loop, even on one thread, to its own
#: worker threads and waits (measured on a 2-core AMD EPYC, docs/benchmarks.md: one-thread
#: lrpo_cnn steps 13-18% shorter on OpenMP than on workqueue, and the workqueue's two-thread
#: loops no faster than one); OpenMP's idle threads
#: sleep (``passive``) instead of spinning on the cores BLAS needs; OpenBLAS's idle workers
#: spin 2^4 cycles after a product instead of its default 2^28 (about 0.1 s), so the cores are
#: free for the Numba loop that follows.
SHARED_CORES_ENVIRONMENT = {
    "NUMBA_THREADING_LAYER": "omp",
    "OMP_WAIT_POLICY": "passive",
    "OPENBLAS_THREAD_TIMEOUT": "4",
}


def openmp_available() -> bool:
    """Whether Numba's OpenMP threading layer can load here (it needs the system's libgomp)."""
    try:
        from numba.np.ufunc import omppool  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def shared_cores_environment(environ: dict | None = None) -> dict:
    """``environ`` (default: this process's) plus :data:`SHARED_CORES_ENVIRONMENT` where it sets
    none of those variables itself, for a subprocess that will run the numba backend. Without
    OpenMP, the workqueue layer's idle threads sleep too, so it takes the layer's place."""
    env = dict(os.environ if environ is None else environ)
    for name, value in SHARED_CORES_ENVIRONMENT.items():
        if name == "NUMBA_THREADING_LAYER" and not openmp_available():
            value = "workqueue"
        env.setdefault(name, value)
    return env


def _set_threading_layer(layer: str) -> None:
    from numba.np.ufunc import parallel

    if numba.config.THREADING_LAYER == layer:
        return
    if parallel._is_initialized:
        raise ValueError(
            f"threading_layer={layer!r} comes too late: Numba's threads already run with "
            f"{numba.threading_layer()!r}; call refimpl.kernels.numba.tune before the first kernel "
            "(or set NUMBA_THREADING_LAYER)"
        )
    numba.config.THREADING_LAYER = layer


def tune(
    threads: int | None = None,
    *,
    loops: str | None = None,
    threading_layer: str | None = None,
    keep_large_blocks: bool = False,
) -> dict:
    """Change process-wide settings for speed; every argument left at its default changes nothing.

    Parameters
    ----------
    threads : int, optional
        ``numba.set_num_threads(threads)`` (for the calling thread, 1 to
        ``NUMBA_NUM_THREADS``). BLAS reads its own pool size from ``OPENBLAS_NUM_THREADS`` /
        ``OMP_NUM_THREADS`` at start-up.
    loops : {"serial", "parallel", "measure"}, optional
        Fix the thread policy of the Numba loops for this process; ``"measure"`` measures
        it again now (ignoring and refreshing the disk cache).
    threading_layer : str, optional
        Numba's threading layer (``"omp"``, ``"workqueue"`` or ``"tbb"``); only before the first
        parallel kernel. ``NUMBA_THREADING_LAYER`` set before start-up does the same.
    keep_large_blocks : bool
        Raise glibc's malloc thresholds (:func:`raise_malloc_thresholds`).

    Returns
    -------
    dict with the settings in force: ``threads``, ``loops``, ``threading_layer``,
    ``large_blocks_kept`` (whether this call set the malloc thresholds).
    """
    global _forced
    most = numba.config.NUMBA_NUM_THREADS
    if threads is not None and not (
        isinstance(threads, int) and not isinstance(threads, bool) and 1 <= threads <= most
    ):
        raise ValueError(
            f"threads must be an integer in [1, {most}] (NUMBA_NUM_THREADS), got {threads!r}"
        )
    if loops is not None and loops not in (*POLICIES, "measure"):
        raise ValueError(f"loops must be one of {(*POLICIES, 'measure')} or None, got {loops!r}")
    if threading_layer is not None:
        _set_threading_layer(threading_layer)
    if threads is not None:
        numba.set_num_threads(threads)
    if loops == "measure":
        _forced = None
        record = measure_loop_policy()
        _write_cache(configuration(), record)
        _chosen[configuration()] = record["policy"]
    elif loops is not None:
        _forced = loops
    kept = raise_malloc_thresholds() if keep_large_blocks else False
    return {
        "threads": numba.get_num_threads(),
        "loops": loop_policy(),
        "threading_layer": numba.config.THREADING_LAYER,
        "large_blocks_kept": kept,
    }

