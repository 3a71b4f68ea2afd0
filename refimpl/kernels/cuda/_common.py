"""Shared plumbing of the CUDA backend: availability, launch shapes, device arrays, reductions.

Every kernel of the backend is launched through the helpers here, so the launch policy
(threads per block, grid size) lives in one place. The argument checks are the oracle's
(:mod:`refimpl.ops.checks`); the only check of this backend's own is that an array is on
the device (:func:`check_on_device`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import config, cuda, float64
from numba.cuda.cudadrv import devicearray

#: True when ``NUMBA_ENABLE_CUDASIM=1``: kernels run on Numba's CUDA simulator (Python
#: threads), which is exact but thousands of times slower than any real backend.
is_simulator: bool = bool(config.ENABLE_CUDASIM)

#: Most threads in a 1-D block. 128 keeps several blocks resident per SM on a GPU.
MAX_THREADS = 128
#: Threads of a reduction block (a power of two: the tree halves it); 32 on the simulator,
#: where each thread is a Python thread.
REDUCE_THREADS = 32 if is_simulator else 128
#: Most blocks of the first stage of a two-stage reduction.
MAX_PARTIALS = 1024


def is_available() -> bool:
    """True when a CUDA GPU is usable, or when the CUDA simulator is enabled."""
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 -- a broken driver install must not break ``kernels.available()``
        return False


def launch_1d(n: int) -> tuple[int, int]:
    """Return ``(blocks, threads)`` covering ``n`` elements, one thread per element.

    Small arrays get a small block (a multiple of the 32-thread warp), which also keeps
    the simulator, where every thread is a Python thread, fast on test shapes.
    """
    threads = min(MAX_THREADS, 32 * max(1, math.ceil(n / 32)))
    return max(1, math.ceil(n / threads)), threads


def for_dtypes(make: Callable[[type], Any]) -> dict[np.dtype, Any]:
    """Build one kernel per float dtype: ``make(np.float32)`` and ``make(np.float64)``.

    Kernels that accumulate use the scalar type to start their sums, so a float32 kernel
    adds in float32 (fast on every GPU) and a float64 kernel in float64.
    """
    return {np.dtype(t): make(t) for t in (np.float32, np.float64)}


def is_device_array(a: Any) -> bool:
    """True for a Numba CUDA device array (or the simulator's stand-in for one)."""
    return devicearray.is_cuda_ndarray(a)


def check_on_device(**arrays: Any) -> None:
    """Raise ``ValueError`` naming the first of ``arrays`` that is not a device array."""
    for name, a in arrays.items():
        if not is_device_array(a):
            raise ValueError(
                f"{name} must be a numba CUDA device array (use numba.cuda.to_device, or call "
                f"the NumPy-level function of refimpl.kernels.cuda), got {type(a).__name__}"
            )


def to_device(a: Any) -> Any:
    """A NumPy array copied to the device in C order (a device array is returned as is)."""
    return a if is_device_array(a) else cuda.to_device(np.ascontiguousarray(a))


# --- reductions ------------------------------------------------------------------------
# Two stages, both deterministic (no atomics): many blocks each write one partial sum,
# then one block adds the partials. Accumulation is in float64 for both input dtypes:
# reductions here produce scalars (losses, inner products) that steer the learning rate.


@cuda.jit(device=True)
def block_sum(shared, tid, value):
    """Tree-sum ``value`` over the block's ``REDUCE_THREADS`` threads into ``shared[0]``.

    Every thread of the block must call it (it synchronises); afterwards ``shared[0]`` holds
    the block's total, summed in the same order on every run (deterministic, no atomics).
    """
    shared[tid] = value
    cuda.syncthreads()
    half = REDUCE_THREADS // 2
    while half > 0:
        if tid < half:
            shared[tid] += shared[tid + half]
        cuda.syncthreads()
        half //= 2


@cuda.jit
def _partial_dot_kernel(x, y, use_y, partials):
    """partials[block] = sum over this block's grid-stride share of x*y (or x if not use_y)."""
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < x.size:
        if use_y:
            acc += np.float64(x[i]) * np.float64(y[i])
        else:
            acc += np.float64(x[i])
        i += stride
    block_sum(shared, tid, acc)
    if tid == 0:
        partials[cuda.blockIdx.x] = shared[0]


@cuda.jit
def _finish_sum_kernel(partials, n_partials, scale, out, index, accumulate):
    """out[index] = scale * sum(partials[:n_partials]) (+ out[index] when accumulate)."""
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    i = tid
    while i < n_partials:
        acc += partials[i]
        i += REDUCE_THREADS
    block_sum(shared, tid, acc)
    if tid == 0:
        total = scale * shared[0]
        if accumulate:
            out[index] += total
        else:
            out[index] = total


def reduce_sum(x, out, index: int = 0, y=None, scale: float = 1.0, accumulate: bool = False):
    """Write ``scale * sum(x * y)`` (``y=None``: ``scale * sum(x)``) into ``out[index]``.

    ``x``, ``y`` are 1-D device arrays (use ``.ravel()`` views), ``out`` a float64 device
    array; with ``accumulate`` the result is added to ``out[index]``. Nothing is copied to
    the host, so the result can feed the next kernel directly.
    """
    n = x.size
    blocks = max(1, min(MAX_PARTIALS, math.ceil(n / REDUCE_THREADS)))
    partials = cuda.device_array(blocks, dtype=np.float64)
    _partial_dot_kernel[blocks, REDUCE_THREADS](x, x if y is None else y, y is not None, partials)
    _finish_sum_kernel[1, REDUCE_THREADS](partials, blocks, scale, out, index, accumulate)
    return out
