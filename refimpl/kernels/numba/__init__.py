"""The ``numba`` backend: Numba-compiled CPU kernels for every name of ``kernels.CONTRACT``.

Each op has the name, signature and result of its oracle in :mod:`refimpl.ops`, and calls
the same argument checks (:mod:`refimpl.ops.checks`); caches are private to this backend.
Kernels are ``@njit(cache=True, fastmath=False)``, ``parallel=True`` where a loop over
images, channels or elements pays, and matrix products go to BLAS through ``np.dot``.
The fused pairs (``dense_relu_*``, ``conv2d_relu_*``) add bias and relu in one pass over
the output, and ``conv2d_relu_maxpool2d_*`` also pools in that pass, with the pooling loops
of :mod:`refimpl.kernels.numba.pool` (its oracle is
:func:`refimpl.ops.fused.conv2d_relu_maxpool2d_forward`); ``profile`` times the phases
of every kernel on request (:mod:`refimpl.kernels.numba.profile`, ``refimpl bench --profile``). ``sched`` holds
the scheduler kernels (:mod:`refimpl.kernels.numba.sched`), ``optim`` the one-pass SGD
update and finite check the trainer uses on this backend (:mod:`refimpl.kernels.numba.optim`).

Importing this module changes no process-wide setting. How many threads the parallel
loops use is decided per machine by a short measurement at the first kernel call, cached
on disk, and overridable; the process-wide speed settings (Numba's thread count and
threading layer, glibc's malloc thresholds) change only through :func:`tune` (see
:mod:`refimpl.kernels.numba.tuning`).

Compiled code is cached on disk (``__pycache__`` beside the sources, or
``$NUMBA_CACHE_DIR``), so only the first process on a machine pays the compile time;
:func:`warmup` compiles (or loads) every kernel up front and returns the time it took.
"""

from __future__ import annotations

import time

import numpy as np

from refimpl.kernels.numba import optim as optim  # beside the contract: the trainer's updates
from refimpl.kernels.numba import sched, tuning
from refimpl.kernels.numba.activations import (
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
from refimpl.kernels.numba.conv import (
    conv2d_backward,
    conv2d_forward,
    conv2d_relu_backward,
    conv2d_relu_forward,
    conv2d_relu_maxpool2d_backward,
    conv2d_relu_maxpool2d_forward,
)
from refimpl.kernels.numba.dense import (
    dense_backward,
    dense_forward,
    dense_relu_backward,
    dense_relu_forward,
)
from refimpl.kernels.numba.losses import mse, softmax_cross_entropy
from refimpl.kernels.numba.pool import maxpool2d_backward, maxpool2d_forward

# y = x has nothing to compile: the oracle's pair is this backend's.
from refimpl.ops.activations import identity_backward, identity_forward

# Beside the contract, so not in __all__: the explicit tuning (refimpl.kernels.numba.tuning).
tune, loop_policy = tuning.tune, tuning.loop_policy

#: Backward ops that accept ``out=(dW, db)``, arrays the parameter gradients are written into
#: (:mod:`refimpl.kernels.plan` passes a layer's gradient buffers, sparing a copy per step).
GRADS_OUT = ("dense_backward", "dense_relu_backward")

#: Real hardware, never the CUDA simulator (``kernels.get_backend("auto")`` asks).
is_simulator = False


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
        y, cache = conv2d_relu_maxpool2d_forward(x, W, b, 1, 1, 2)
        conv2d_relu_maxpool2d_backward(y, cache)
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
        flat = x.reshape(-1)
        sched.tlr_pass(flat, np.zeros(flat.size), np.zeros(flat.size), 0.1)
        sched.grad_pair_pass(flat, np.zeros(flat.size))
    return time.perf_counter() - start


def dispatchers() -> dict:
    """Every Numba dispatcher of this backend by qualified name (for cache statistics)."""
    from numba.core.registry import CPUDispatcher

    from refimpl.kernels.numba import (
        activations,
        conv,
        conv_first,
        dense,
        losses,
        pinn,
        pool,
        winograd,
    )

    found = {}
    for module in (activations, conv, conv_first, dense, losses, optim, pinn, pool, sched,
                   winograd):
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher):
                found[f"{module.__name__}.{name}"] = obj
    return found


#: The contract's top-level names (``refimpl.kernels.CONTRACT``), as in every backend; the
#: tuning and cache helpers above (``tune``, ``warmup``, ``dispatchers``, ...) are outside it.
__all__ = [
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_relu_backward",
    "conv2d_relu_forward",
    "conv2d_relu_maxpool2d_backward",
    "conv2d_relu_maxpool2d_forward",
    "cos_backward",
    "cos_forward",
    "dense_backward",
    "dense_forward",
    "dense_relu_backward",
    "dense_relu_forward",
    "identity_backward",
    "identity_forward",
    "maxpool2d_backward",
    "maxpool2d_forward",
    "mse",
    "relu_backward",
    "relu_forward",
    "sched",
    "sigmoid_backward",
    "sigmoid_forward",
    "sin_backward",
    "sin_forward",
    "softmax_cross_entropy",
    "tanh_backward",
    "tanh_forward",
]
