"""Scheduler kernels on the GPU: the inner products of the TLR and hypergradient rules.

The same functions, names and signatures as the oracle :mod:`refimpl.ops.sched` and the CPU
kernels :mod:`refimpl.kernels.numba.sched`; the schedulers reach them as
``kernels.get_backend("cuda").sched`` when built with ``backend="cuda"``. The arrays may be
NumPy arrays (copied to the device and the updated state copied back into them) or device
arrays (updated in place on the device). Every product is accumulated in float64 by the
deterministic two-stage reduction of :func:`refimpl.kernels.cuda._common.reduce_sum`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from ._common import is_device_array, launch_1d, reduce_sum, to_device


@cuda.jit
def _direction_kernel(cached, w, lr, direction):
    """direction = (cached − w) / lr in float64."""
    i = cuda.grid(1)
    if i < w.size:
        direction[i] = (cached[i] - np.float64(w[i])) / lr


@cuda.jit
def _widen_kernel(source, target):
    """target = source, widened to float64 (exact for float32)."""
    i = cuda.grid(1)
    if i < source.size:
        target[i] = np.float64(source[i])


def _copy_back(device_array: Any, host: Any) -> None:
    if not is_device_array(host):
        host[...] = device_array.copy_to_host()


def tlr_pass(weights: Any, cached: Any, u_prev: Any, lr: float) -> tuple[float, float]:
    """One TLR update over one flattened parameter array; returns ``(a, b)``.

    ``u = (cached − w) / lr``, ``a = <u_prev, u>``, ``b = <u_prev, u_prev>``; then
    ``cached ← w`` and ``u_prev ← u`` (in place). ``weights`` is 1-D float32/float64,
    ``cached`` and ``u_prev`` are float64 of the same length.
    """
    w, cached_d, u_prev_d = to_device(weights), to_device(cached), to_device(u_prev)
    u = cuda.device_array(w.size, dtype=np.float64)
    _direction_kernel[launch_1d(w.size)](cached_d, w, float(lr), u)
    products = cuda.device_array(2, dtype=np.float64)
    reduce_sum(u_prev_d, products, 0, y=u)
    reduce_sum(u_prev_d, products, 1, y=u_prev_d)
    _widen_kernel[launch_1d(w.size)](w, cached_d)
    _widen_kernel[launch_1d(w.size)](u, u_prev_d)
    _copy_back(cached_d, cached)
    _copy_back(u_prev_d, u_prev)
    a, b = products.copy_to_host()
    return float(a), float(b)


def grad_pair_pass(grad: Any, prev: Any) -> tuple[float, float, float]:
    """``(<g, g_prev>, <g, g>, <g_prev, g_prev>)`` of one flattened gradient, then ``prev ← g``.

    ``grad`` is 1-D float32/float64, ``prev`` float64 of the same length.
    """
    g, prev_d = to_device(grad), to_device(prev)
    g64 = cuda.device_array(g.size, dtype=np.float64)
    _widen_kernel[launch_1d(g.size)](g, g64)
    products = cuda.device_array(3, dtype=np.float64)
    reduce_sum(g64, products, 0, y=prev_d)
    reduce_sum(g64, products, 1, y=g64)
    reduce_sum(prev_d, products, 2, y=prev_d)
    _widen_kernel[launch_1d(g.size)](g64, prev_d)
    _copy_back(prev_d, prev)
    gp, gg, pp = products.copy_to_host()
    return float(gp), float(gg), float(pp)
