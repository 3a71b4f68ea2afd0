"""Tuning of the numba backend: explicit calls, nothing at import.

Importing :mod:`refimpl.kernels.numba` changes no process-wide setting. Two kinds of tuning exist;
neither changes a number, only the time.

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

**Process-wide settings**, changed only when asked, by :func:`tune`: Numba's thread count,
Numba's threading layer (``"workqueue"`` threads sleep while idle instead of spinning
beside BLAS's), and glibc's malloc thresholds (``keep_large_blocks=True`` keeps freed large
buffers in the process, so each training step reuses the previous step's temporaries
instead of page-faulting fresh memory in). ``refimpl bench`` calls it; a user's program may.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
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


def _read_cache() -> dict:
    try:
        with open(cache_file(), encoding="utf-8") as handle:
            stored = json.load(handle)
        return stored if isinstance(stored, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, record: dict) -> None:
    """Add ``record`` under ``key``, atomically; an unwritable cache is not an error."""
    path = cache_file()
    stored = _read_cache()
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
        with _policy(policy):
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
        Numba's threading layer, e.g. ``"workqueue"``; only before the first parallel kernel.
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

