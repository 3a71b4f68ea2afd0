"""Per-step scheduler math: the inner products of the TLR and hypergradient rules.

:class:`refimpl.schedulers.NewtonLR` and the hypergradient schedulers reduce each step to
a few inner products over every parameter array (docs/methods.md §5). These two functions
compute them for one flattened array and roll the stored state forward in place; every
backend provides the same functions under the same names, reached as
``kernels.get_backend(name).sched``. Everything is accumulated in float64 whatever the
parameter dtype.
"""

from __future__ import annotations

import numpy as np


def tlr_pass(
    weights: np.ndarray, cached: np.ndarray, u_prev: np.ndarray, lr: float
) -> tuple[float, float]:
    """One TLR update over one flattened parameter array; returns ``(a, b)``.

    ``u = (cached − w) / lr`` (the mean update direction of the last K steps),
    ``a = <u_prev, u>``, ``b = <u_prev, u_prev>``; then ``cached ← w`` and ``u_prev ← u``.

    Parameters
    ----------
    weights : 1-D float32/float64 array, the current weights (read only)
    cached, u_prev : 1-D float64 arrays of the same length, updated in place
    lr : float, the rate in force during the last K steps

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops.sched import tlr_pass
    >>> cached, u_prev = np.array([2.0, 4.0]), np.array([1.0, 1.0])
    >>> tlr_pass(np.array([1.0, 2.0]), cached, u_prev, 0.5)  # u = (cached − w) / lr = [2, 4]
    (6.0, 2.0)
    >>> print(cached, u_prev)  # rolled forward: cached ← w, u_prev ← u
    [1. 2.] [2. 4.]
    """
    w64 = np.asarray(weights, dtype=np.float64)
    u = (cached - w64) / lr
    a = float(u_prev @ u)
    b = float(u_prev @ u_prev)
    cached[...] = w64
    u_prev[...] = u
    return a, b


def grad_pair_pass(grad: np.ndarray, prev: np.ndarray) -> tuple[float, float, float]:
    """``(<g, g_prev>, <g, g>, <g_prev, g_prev>)`` of one flattened gradient, then ``prev ← g``.

    ``grad`` is a 1-D float32/float64 array, ``prev`` a float64 array of the same length.

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops.sched import grad_pair_pass
    >>> prev = np.array([3.0, 0.0])
    >>> grad_pair_pass(np.array([1.0, 2.0]), prev)
    (3.0, 5.0, 9.0)
    >>> print(prev)  # prev ← g
    [1. 2.]
    """
    g64 = np.asarray(grad, dtype=np.float64)
    products = (float(g64 @ prev), float(g64 @ g64), float(prev @ prev))
    prev[...] = g64
    return products
