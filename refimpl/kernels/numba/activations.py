"""Element-wise activations on the CPU: one parallel loop over the flattened array.

Same math as :mod:`refimpl.ops.activations`; each ``*_forward(x) -> (y, cache)`` accepts
any shape and ``*_backward(dy, cache) -> dx`` returns ``dy · f'(x)``. A cache holds what its
backward reads: relu, sin and cos the input ``x``, tanh and sigmoid the output ``y``. The
oracle's caches are the same but for relu's, which is the mask ``x > 0`` and ``x``'s dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from refimpl.kernels.numba import profile
from refimpl.kernels.numba.tuning import loop_threads
from refimpl.ops.checks import check_elementwise_grad, check_float_any

# Kernel codes, so that one compiled loop per direction serves every activation.
RELU, TANH, SIGMOID, SIN, COS = range(5)
#: Arrays at least this large use the multi-threaded loops (measured: docs/benchmarks.md).
PARALLEL_MIN_SIZE = 1 << 18


@njit(cache=True, inline="always", fastmath=False)
def _forward_one(v, kind):
    if kind == RELU:
        return 0 if v < 0 else v  # noqa: FURB136 -- keeps NaN, as np.maximum(x, 0)
    if kind == TANH:
        return math.tanh(v)
    if kind == SIGMOID:
        e = math.exp(-abs(v))  # in (0, 1]: never overflows
        return 1 / (1 + e) if v >= 0 else e / (1 + e)
    if kind == SIN:
        return math.sin(v)
    return math.cos(v)


@njit(cache=True, inline="always", fastmath=False)
def _backward_one(g, c, kind):
    if kind == RELU:
        return g if c > 0 else 0  # relu'(0) = 0
    if kind == TANH:
        return g * (1 - c * c)
    if kind == SIGMOID:
        return g * c * (1 - c)
    if kind == SIN:
        return g * math.cos(c)
    return -g * math.sin(c)


# Two loops per direction: threads pay only on large arrays (conv feature maps); on small ones
# (dense layers) waking a second thread costs more than the loop.
@njit(cache=True, parallel=True, fastmath=False)
def _forward_parallel(x, kind):
    y = np.empty_like(x)
    for i in prange(x.size):
        y[i] = _forward_one(x[i], kind)
    return y


@njit(cache=True, fastmath=False)
def _forward_serial(x, kind):
    y = np.empty_like(x)
    for i in range(x.size):
        y[i] = _forward_one(x[i], kind)
    return y


@njit(cache=True, parallel=True, fastmath=False)
def _backward_parallel(dy, cache, kind):
    dx = np.empty_like(dy)
    for i in prange(dy.size):
        dx[i] = _backward_one(dy[i], cache[i], kind)
    return dx


@njit(cache=True, fastmath=False)
def _backward_serial(dy, cache, kind):
    dx = np.empty_like(dy)
    for i in range(dy.size):
        dx[i] = _backward_one(dy[i], cache[i], kind)
    return dx


def _apply_forward(x: np.ndarray, kind: int) -> np.ndarray:
    check_float_any("x", x)
    flat = np.ascontiguousarray(x).reshape(-1)
    forward = _forward_parallel if flat.size >= PARALLEL_MIN_SIZE else _forward_serial
    with loop_threads(), profile.phase("activation"):
        return forward(flat, kind).reshape(x.shape)


def _apply_backward(dy: np.ndarray, cache: np.ndarray, kind: int) -> np.ndarray:
    check_elementwise_grad(dy, cache.shape, cache.dtype)  # the cache has y's shape and dtype
    flat = np.ascontiguousarray(dy).reshape(-1)
    backward = _backward_parallel if flat.size >= PARALLEL_MIN_SIZE else _backward_serial
    with loop_threads(), profile.phase("activation"):
        return backward(flat, cache.reshape(-1), kind).reshape(dy.shape)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = max(x, 0)``; cache: x."""
    y = _apply_forward(x, RELU)
    return y, np.ascontiguousarray(x)


def relu_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy`` where ``x > 0``, 0 elsewhere (an inf or NaN ``dy`` at ``x <= 0`` gives 0)."""
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
    return _apply_forward(x, SIN), np.ascontiguousarray(x)


def sin_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy cos(x)``."""
    return _apply_backward(dy, cache, SIN)


def cos_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = cos(x)``; cache: x."""
    return _apply_forward(x, COS), np.ascontiguousarray(x)


def cos_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = −dy sin(x)``."""
    return _apply_backward(dy, cache, COS)
