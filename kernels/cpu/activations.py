"""Element-wise activations on the CPU: one parallel loop over the flattened array.

Same math as :mod:`refimpl.ops.activations`; each ``*_forward(x) -> (y, cache)`` accepts
any shape and ``*_backward(dy, cache) -> dx`` returns ``dy · f'(x)``. The caches hold what
the oracle's do (relu: the input, tanh/sigmoid: the output, sin/cos: the input).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from refimpl.ops._checks import check_float_any

# Kernel codes, so that one compiled forward and one backward serve every activation.
RELU, TANH, SIGMOID, SIN, COS = range(5)


@njit(cache=True, parallel=True, fastmath=False)
def _forward(x, kind):
    y = np.empty_like(x)
    for i in prange(x.size):
        v = x[i]
        if kind == RELU:
            y[i] = 0 if v < 0 else v  # noqa: FURB136 -- keeps NaN, as np.maximum(x, 0)
        elif kind == TANH:
            y[i] = math.tanh(v)
        elif kind == SIGMOID:
            e = math.exp(-abs(v))  # in (0, 1]: never overflows
            y[i] = 1 / (1 + e) if v >= 0 else e / (1 + e)
        elif kind == SIN:
            y[i] = math.sin(v)
        else:
            y[i] = math.cos(v)
    return y


@njit(cache=True, parallel=True, fastmath=False)
def _backward(dy, cache, kind):
    dx = np.empty_like(dy)
    for i in prange(dy.size):
        g = dy[i]
        c = cache[i]
        if kind == RELU:
            dx[i] = g if c > 0 else 0  # relu'(0) = 0
        elif kind == TANH:
            dx[i] = g * (1 - c * c)
        elif kind == SIGMOID:
            dx[i] = g * c * (1 - c)
        elif kind == SIN:
            dx[i] = g * math.cos(c)
        else:
            dx[i] = -g * math.sin(c)
    return dx


def _apply_forward(x: np.ndarray, kind: int) -> np.ndarray:
    check_float_any("x", x)
    return _forward(np.ascontiguousarray(x).reshape(-1), kind).reshape(x.shape)


def _apply_backward(dy: np.ndarray, cache: np.ndarray, kind: int) -> np.ndarray:
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
    flat = np.ascontiguousarray(dy).reshape(-1)
    return _backward(flat, cache.reshape(-1), kind).reshape(dy.shape)


def _stash(x: np.ndarray) -> np.ndarray:
    """A contiguous copy-free view of ``x`` when possible (the cache of relu/sin/cos)."""
    return np.ascontiguousarray(x)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = max(x, 0)``; cache: x."""
    y = _apply_forward(x, RELU)
    return y, _stash(x)


def relu_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy · [x > 0]``."""
    return _apply_backward(dy, cache, RELU)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = tanh(x)``; cache: y."""
    y = _apply_forward(x, TANH)
    return y, y


def tanh_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy (1 − y²)``."""
    return _apply_backward(dy, cache, TANH)


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = 1 / (1 + exp(−x))`` without overflow; cache: y."""
    y = _apply_forward(x, SIGMOID)
    return y, y


def sigmoid_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy · y (1 − y)``."""
    return _apply_backward(dy, cache, SIGMOID)


def sin_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = sin(x)``; cache: x."""
    return _apply_forward(x, SIN), _stash(x)


def sin_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy cos(x)``."""
    return _apply_backward(dy, cache, SIN)


def cos_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = cos(x)``; cache: x."""
    return _apply_forward(x, COS), _stash(x)


def cos_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = −dy sin(x)``."""
    return _apply_backward(dy, cache, COS)
