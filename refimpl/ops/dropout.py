"""Inverted dropout (docs/methods.md §1, (1.22)): the keep mask, and the forward/backward pair.

The pair is pure: the random mask is an argument, drawn by :func:`dropout_mask` from a
generator the caller owns (:class:`refimpl.layers.Dropout` seeds one per call). It is not an
op of the backend contract (``refimpl.kernels.CONTRACT``): the mask must be the same bits on
every backend, so it is NumPy's draw, and what is left is one element-wise product; the
layer calls these functions whatever backend the model runs on.
"""

from __future__ import annotations

import numpy as np

from refimpl.ops.checks import check_float_any


def _check_p(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p < 1:
        raise ValueError(f"p must be a drop probability in [0, 1), got {p!r}")
    return float(p)


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float) -> np.ndarray:
    """The keep mask ``m ~ Bernoulli(1 − p)``, element-wise: ``m = [U >= p]``, ``U ~ U[0, 1)``.

    Parameters
    ----------
    rng : numpy.random.Generator, consumed (``rng.random(shape)``)
    shape : tuple of int
    p : float, the drop probability, ``0 <= p < 1``

    Returns
    -------
    keep : bool ndarray of ``shape``

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops import dropout_mask
    >>> print(dropout_mask(np.random.default_rng(0), (2, 3), 0.0))  # p = 0 keeps everything
    [[ True  True  True]
     [ True  True  True]]
    """
    return rng.random(shape) >= _check_p(p)


def dropout_forward(x: np.ndarray, p: float, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = x · m / (1 − p)`` with the keep mask ``m`` (so that ``E[y] = x``).

    Parameters
    ----------
    x : float32/float64 ndarray, any shape
    p : float, the drop probability, ``0 <= p < 1``
    keep : bool ndarray of ``x``'s shape, the mask ``m`` (:func:`dropout_mask`)

    Returns
    -------
    y : ndarray, the shape and dtype of ``x``
    cache : the scale ``m / (1 − p)`` in ``x``'s dtype, for :func:`dropout_backward`

    Examples
    --------
    With ``p = 0.5`` the kept entries are doubled, forward and backward:

    >>> import numpy as np
    >>> from refimpl.ops import dropout_backward, dropout_forward
    >>> keep = np.array([True, False, True, True])
    >>> y, cache = dropout_forward(np.array([1.0, 2.0, 3.0, 4.0]), 0.5, keep)
    >>> print(y)
    [2. 0. 6. 8.]
    >>> print(dropout_backward(np.ones(4), cache))
    [2. 0. 2. 2.]
    """
    check_float_any("x", x)
    p = _check_p(p)
    if not isinstance(keep, np.ndarray) or keep.dtype != bool or keep.shape != x.shape:
        got = f"{keep.dtype} {keep.shape}" if isinstance(keep, np.ndarray) else type(keep).__name__
        raise ValueError(
            f"keep must be a boolean ndarray of x's shape {x.shape}, got {got}; "
            "draw it with dropout_mask(rng, x.shape, p)"
        )
    scale = (keep / (1.0 - p)).astype(x.dtype)
    return x * scale, scale


def dropout_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy · m / (1 − p)``, the mask of the forward (exact: the map is linear)."""
    check_float_any("dy", dy)
    if dy.shape != cache.shape:
        raise ValueError(
            f"dy must have the shape of the forward output y {cache.shape}, got {dy.shape}"
        )
    if dy.dtype != cache.dtype:
        raise ValueError(
            f"dy has dtype {dy.dtype} but the forward ran in {cache.dtype}; "
            f"cast it with dy.astype(np.{cache.dtype})"
        )
    return dy * cache
