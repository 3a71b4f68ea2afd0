"""One-pass optimizer updates and the finite check of the gradients, for the numba backend.

The definition is :class:`refimpl.optim.SGD` (``_update``): its NumPy form makes a temporary
per operation (``lr * g``, ``momentum * b``, ...) and passes over the parameter several
times; :func:`sgd_update` does the same operations, in the same order and in the
parameter's dtype, element by element in one parallel pass, so the result is equal to the
definition bit for bit (``tests/optim/test_optim_kernels.py`` checks every flag in float32
and float64). The trainer reaches it through :func:`update_for` when the model runs on the
numba backend; every other optimizer (and SGD with ``maximize``, whose negated gradient the
base class makes) keeps its NumPy ``_update``.

:func:`array_finite` answers ``np.isfinite(a).all()`` in one read of ``a`` and no boolean
temporary (``x - x`` is 0 for a finite ``x`` and NaN otherwise).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

__all__ = ["array_finite", "sgd_update", "update_for"]

#: below this many elements one thread is faster than waking the pool
PARALLEL_MIN = 1 << 15


@njit(cache=True, fastmath=False, parallel=True)
def _sgd_parallel(p, g, buf, lr, momentum, damp, weight_decay, first, nesterov):  # pragma: no cover
    for i in prange(p.size):
        _sgd_element(p, g, buf, i, lr, momentum, damp, weight_decay, first, nesterov)


@njit(cache=True, fastmath=False)
def _sgd_serial(p, g, buf, lr, momentum, damp, weight_decay, first, nesterov):  # pragma: no cover
    for i in range(p.size):
        _sgd_element(p, g, buf, i, lr, momentum, damp, weight_decay, first, nesterov)


@njit(cache=True, fastmath=False, inline="always")
def _sgd_element(p, g, buf, i, lr, momentum, damp, weight_decay, first, nesterov):  # pragma: no cover
    grad = g[i]
    if weight_decay != 0:
        grad = grad + weight_decay * p[i]          # g + weight_decay * w
    if momentum != 0:
        if first:
            b = grad                               # b <- g
        else:
            b = buf[i] * momentum + damp * grad    # b *= momentum; b += (1 - dampening) g
        buf[i] = b
        grad = grad + momentum * b if nesterov else b
    p[i] = p[i] - lr * grad                        # w -= lr * g


def sgd_update(param: np.ndarray, grad: np.ndarray, buf: np.ndarray | None, lr: float,
               momentum: float, dampening: float, weight_decay: float, first: bool,
               nesterov: bool) -> None:
    """One SGD update of ``param`` (and of the momentum buffer ``buf``) in place.

    ``first``: the buffer's first step (``b <- g``). The scalars are rounded to the
    parameter's dtype first, as NumPy does when it multiplies an array by a Python float.
    """
    kind = param.dtype.type
    p, g = param.reshape(-1), grad.reshape(-1)
    b = p[:0] if buf is None else buf.reshape(-1)
    run = _sgd_parallel if p.size >= PARALLEL_MIN else _sgd_serial
    run(p, g, b, kind(lr), kind(momentum), kind(1 - dampening), kind(weight_decay),
        bool(first), bool(nesterov))


def _sgd(optimizer, param: np.ndarray, grad: np.ndarray, state: dict, group: dict):
    """:meth:`refimpl.optim.SGD._update` by :func:`sgd_update`, with the same ``used``."""
    contiguous = param.flags.c_contiguous and grad.flags.c_contiguous
    if not contiguous or grad.dtype != param.dtype or param.dtype.kind != "f":
        return NotImplemented
    momentum, weight_decay = group["momentum"], group["weight_decay"]
    used = {}
    if weight_decay != 0:
        used["decay_term"] = weight_decay * param  # for explain(), before the update
    buf = None
    first = False
    if momentum != 0:
        first = "momentum_buffer" not in state
        if first:
            state["momentum_buffer"] = np.empty_like(param)
            used["buffer_started"] = True
        buf = state["momentum_buffer"]
    sgd_update(param, grad, buf, group["lr"], momentum, group["dampening"], weight_decay,
               first, group["nesterov"])
    return used


def update_for(optimizer) -> Callable | None:
    """The one-pass update of ``optimizer`` (for ``Optimizer.step(update=...)``), or None
    where this backend has none (the optimizer's own NumPy update then runs)."""
    from refimpl.optim import SGD

    return _sgd if type(optimizer) is SGD else None


@njit(cache=True, fastmath=False, parallel=True)
def _non_finite_count(a):  # pragma: no cover - compiled
    bad = 0
    for i in prange(a.size):
        x = a[i]
        if x - x != 0:  # NaN for inf and NaN, 0 for every finite x
            bad += 1
    return bad


def array_finite(array: np.ndarray) -> bool:
    """``np.isfinite(array).all()`` in one read of a float array."""
    if array.dtype.kind != "f" or array.size < PARALLEL_MIN or not array.flags.c_contiguous:
        return bool(np.isfinite(array).all())
    return _non_finite_count(array.reshape(-1)) == 0
