"""Numba kernels for the per-step scheduler math (TLR, hypergradient baselines).

The oracle is :mod:`refimpl.ops.sched` (same function names and signatures, as in
:mod:`refimpl.kernels.cuda.sched`); these kernels do the same arithmetic in one pass over each
parameter array instead of several NumPy passes with temporaries. The schedulers reach them
as ``kernels.get_backend("numba").sched`` when built with ``backend="numba"``.

All accumulation is in float64 whatever the parameter dtype, as in the oracle.

GreedyLR and DLRS have no kernel: their per-step work is a handful of scalar comparisons,
which costs about as much as the Numba dispatch itself (measured in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, fastmath=False)
def tlr_pass(weights, cached, u_prev, lr):  # pragma: no cover - compiled
    """One TLR update over one flattened parameter array, in place.

    For every element ``i``::

        u_i = (cached_i - w_i) / lr          # mean update direction of the last K steps
        a  += u_prev_i * u_i                 # <u_{k-1}, u_k>
        b  += u_prev_i * u_prev_i            # <u_{k-1}, u_{k-1}>
        cached_i = w_i ; u_prev_i = u_i      # roll the state forward

    Parameters
    ----------
    weights : 1-D float32/float64 array (the current weights, read only)
    cached, u_prev : 1-D float64 arrays of the same length (updated in place)
    lr : float, the rate in force during the last K steps

    Returns
    -------
    (a, b) : the two partial inner products of this array.
    """
    a = 0.0
    b = 0.0
    for i in range(weights.shape[0]):
        w = np.float64(weights[i])
        u = (cached[i] - w) / lr
        prev = u_prev[i]
        a += prev * u
        b += prev * prev
        cached[i] = w
        u_prev[i] = u
    return a, b


@njit(cache=True, fastmath=False)
def grad_pair_pass(grad, prev):  # pragma: no cover - compiled
    """Inner products of a gradient with the previous one, then store it as the previous.

    Returns ``(<g, g_prev>, <g, g>, <g_prev, g_prev>)`` accumulated in float64 and copies
    ``g`` into ``prev`` (a float64 buffer of the same length).
    """
    gp = 0.0
    gg = 0.0
    pp = 0.0
    for i in range(grad.shape[0]):
        g = np.float64(grad[i])
        p = prev[i]
        gp += g * p
        gg += g * g
        pp += p * p
        prev[i] = g
    return gp, gg, pp
