"""Central-difference gradient checks in float64, reusable by every module with a backward.

``numerical_gradient`` perturbs one entry at a time,
``∂f/∂x_i ≈ (f(x + ε e_i) − f(x − ε e_i)) / (2 ε)``, whose truncation error is O(ε²) and
whose rounding error is O(u |f| / ε) (u = 2⁻⁵³); ε = 1e-6 balances the two for O(1) values.

The error metric is :func:`relative_error`: the largest entry-wise difference divided by
the largest gradient entry, ``max_i |a_i − n_i| / max(max_i |a_i|, max_i |n_i|)``. Dividing
by the scale of the whole gradient (not by each entry) keeps entries that are zero or tiny
from turning rounding noise into a large ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of ``f()`` with respect to the float64 array ``x``.

    ``x`` is perturbed **in place** (one entry at a time) and restored exactly, so ``f``
    should read it, e.g. through a closure or because ``x`` is a model parameter.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"x must be a float64 ndarray (checks need float64), got {got}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous so that it can be perturbed in place")
    grad = np.zeros_like(x)
    flat, grad_flat = x.reshape(-1), grad.reshape(-1)  # views of x and grad
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        f_plus = float(f())
        flat[i] = original - eps
        f_minus = float(f())
        flat[i] = original
        grad_flat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``max_i |a_i − n_i| / max(max_i |a_i|, max_i |n_i|)``; 0 when both are all zero."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"analytic {analytic.shape} and numeric {numeric.shape} shapes differ")
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0))
    if scale == 0:
        return 0.0
    return float(np.abs(analytic - numeric).max() / scale)


def gradcheck(
    f: Callable[[], float],
    arrays: Sequence[np.ndarray],
    analytic: Sequence[np.ndarray],
    eps: float = 1e-6,
) -> float:
    """Largest :func:`relative_error` between ``analytic[k]`` and the numerical gradient of
    ``f()`` with respect to ``arrays[k]``, over all ``k``.

    Parameters
    ----------
    f : callable returning the scalar loss; it must read ``arrays`` (perturbed in place)
    arrays : float64 arrays the loss depends on (inputs, parameters)
    analytic : the gradients to check, one per array, same shapes
    """
    if len(arrays) != len(analytic):
        raise ValueError(f"got {len(arrays)} arrays but {len(analytic)} analytic gradients")
    errors = [relative_error(g, numerical_gradient(f, x, eps)) for x, g in zip(arrays, analytic)]
    return max(errors, default=0.0)


def check_op(
    forward: Callable[..., tuple],
    backward: Callable[..., object],
    inputs: Sequence[np.ndarray],
    seed: int = 0,
    eps: float = 1e-6,
    **kwargs,
) -> float:
    """Check a ``forward(*inputs, **kwargs) -> (y, cache)`` / ``backward(dy, cache)`` pair.

    The scalar probed is ``f = Σ y ⊙ dy`` for a fixed random ``dy``, whose gradient with
    respect to each input is exactly what ``backward(dy, cache)`` returns (one array, or a
    tuple in the order of ``inputs``). Returns the largest relative error.
    """
    y, cache = forward(*inputs, **kwargs)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    grads = backward(dy, cache)
    if isinstance(grads, np.ndarray):
        grads = (grads,)

    def probe() -> float:
        return float(np.sum(forward(*inputs, **kwargs)[0] * dy))

    return gradcheck(probe, list(inputs), list(grads), eps)
