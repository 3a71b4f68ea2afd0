"""The ``numba`` backend: Numba-compiled CPU kernels for every op of ``kernels.CONTRACT``.

Each op has the name, signature and result of its oracle in :mod:`refimpl.ops` (argument
checks included: they are the oracle's own helpers); caches are private to this backend.
Kernels are ``@njit(cache=True, fastmath=False)``, ``parallel=True`` where a loop over
images, channels or elements pays, and matrix products go to BLAS through ``np.dot``.
While the BLAS pool is threaded those loops run on one thread (``kernels.cpu._threads``:
OpenBLAS's spinning workers hold the other core; measured in docs/benchmarks.md).
Compiled code is cached on disk (``__pycache__`` beside the sources, or
``$NUMBA_CACHE_DIR``), so only the first process on a machine pays the compile time;
:func:`warmup` compiles (or loads) every kernel up front and returns the time it took.

Beyond the contract, fused pairs compute two oracle ops in one pass and agree with their
composition: ``dense_relu_forward/backward`` and ``conv2d_relu_forward/backward``.
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np


def _prefer_workqueue_threads() -> None:
    """Use Numba's ``workqueue`` thread pool unless the user chose a threading layer.

    Measured on the 2-core target machine (docs/benchmarks.md): the OpenMP layer's idle
    threads spin and fight OpenBLAS's pool, which our BLAS products share the cores with;
    the workqueue layer's threads sleep, and an lrpo_cnn step ran 2x faster. The workqueue
    layer refuses concurrent parallel launches, which cannot happen through this backend:
    its kernels hold the GIL. Set ``NUMBA_THREADING_LAYER`` to override.
    """
    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"


_prefer_workqueue_threads()

from kernels.cpu._memory import keep_large_blocks

#: Whether glibc keeps freed large blocks for reuse (kernels/cpu/_memory.py, measured).
MALLOC_TUNED = keep_large_blocks()

from kernels.cpu.activations import (
    PARALLEL_MIN_SIZE,
    cos_backward,
    cos_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    sin_backward,
    sin_forward,
    tanh_backward,
    tanh_forward,
)
from kernels.cpu.conv import (
    conv2d_backward,
    conv2d_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
)
from kernels.cpu.dense import dense_backward, dense_forward, dense_relu_backward, dense_relu_forward
from kernels.cpu.losses import mse, softmax_cross_entropy
from kernels.cpu.pool import maxpool2d_backward, maxpool2d_forward

#: Real hardware, never the CUDA simulator (``kernels.get_backend("auto")`` asks).
is_simulator = False

#: Extra ops beyond ``kernels.CONTRACT``: (forward, backward) pairs fusing two oracle ops.
FUSED = ("dense_relu_forward", "dense_relu_backward", "conv2d_relu_forward", "conv2d_relu_backward")


def is_available() -> bool:
    """Numba imported (this module would not have), so the backend is usable."""
    return True


def warmup(dtypes=(np.float32, np.float64)) -> float:
    """Compile, or load from the on-disk cache, every kernel for ``dtypes``; return seconds.

    A first process on a machine pays the JIT compile here; later processes only load the
    cached machine code (see :func:`dispatchers` to inspect cache hits and misses).
    """
    start = time.perf_counter()
    for dtype in dtypes:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 3, 5, 5)).astype(dtype)
        W = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
        b = np.zeros(4, dtype)
        for forward, backward in (
            (conv2d_forward, conv2d_backward),
            (conv2d_relu_forward, conv2d_relu_backward),
        ):
            y, cache = forward(x, W, b, 1, 1)
            backward(y, cache)
        y, cache = maxpool2d_forward(x, 2)
        maxpool2d_backward(y, cache)
        x2 = x.reshape(2, -1)
        W2 = rng.standard_normal((x2.shape[1], 3)).astype(dtype)
        for forward, backward in (
            (dense_forward, dense_backward),
            (dense_relu_forward, dense_relu_backward),
        ):
            y, cache = forward(x2, W2, np.zeros(3, dtype))
            backward(y, cache)
        for forward, backward in (
            (relu_forward, relu_backward),
            (tanh_forward, tanh_backward),
            (sigmoid_forward, sigmoid_backward),
            (sin_forward, sin_backward),
            (cos_forward, cos_backward),
        ):
            for size in (x.size, PARALLEL_MIN_SIZE):  # the serial and the threaded loops
                y, cache = forward(np.zeros(size, dtype))
                backward(y, cache)
        softmax_cross_entropy(x2, np.array([0, 1]))
        mse(x2, x2 * 0)
    return time.perf_counter() - start


def dispatchers() -> dict:
    """Every Numba dispatcher of this backend by qualified name (for cache statistics)."""
    from numba.core.registry import CPUDispatcher

    from kernels.cpu import activations, conv, dense, losses, pool

    found = {}
    for module in (activations, conv, dense, losses, pool):
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher):
                found[f"{module.__name__}.{name}"] = obj
    return found


__all__ = [
    "FUSED",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_relu_backward",
    "conv2d_relu_forward",
    "cos_backward",
    "cos_forward",
    "dense_backward",
    "dense_forward",
    "dense_relu_backward",
    "dense_relu_forward",
    "dispatchers",
    "is_available",
    "is_simulator",
    "maxpool2d_backward",
    "maxpool2d_forward",
    "mse",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "sin_backward",
    "sin_forward",
    "softmax_cross_entropy",
    "tanh_backward",
    "tanh_forward",
    "warmup",
]
