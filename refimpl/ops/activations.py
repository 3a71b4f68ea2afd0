"""Element-wise activations as (forward, backward) pairs, collected in :data:`ACTIVATIONS`.

Each ``*_forward(x) -> (y, cache)`` accepts any shape; ``*_backward(dy, cache) -> dx``
returns ``dy * f'(x)`` in the same shape and dtype. ``dy`` must have the shape and dtype of
``y`` (docs/methods.md §1: no silent promotion), checked by
:func:`refimpl.ops.checks.check_elementwise_grad` as on every backend.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from refimpl.ops.checks import check_elementwise_grad, check_float_any


def _check_grad(dy: np.ndarray, like: np.ndarray) -> None:
    """``dy`` against a cache that has the shape and dtype of ``y`` (x, y; relu: x's dtype)."""
    check_elementwise_grad(dy, like.shape, like.dtype)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = max(x, 0)``."""
    check_float_any("x", x)
    # np.maximum (not a mask product) keeps NaN visible to the trainer's NaN check.
    return np.maximum(x, 0), (x > 0, x.dtype)


def relu_backward(dy: np.ndarray, cache: tuple[np.ndarray, np.dtype]) -> np.ndarray:
    """``dx = dy · [x > 0]`` (the derivative at 0 is taken as 0, like torch)."""
    mask, dtype = cache  # the boolean mask x > 0, and the forward's dtype
    check_elementwise_grad(dy, mask.shape, dtype)
    return dy * mask


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = tanh(x)``."""
    check_float_any("x", x)
    y = np.tanh(x)
    return y, y


def tanh_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy (1 − y²)``."""
    _check_grad(dy, cache)
    return dy * (1 - cache * cache)


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = 1 / (1 + exp(−x))``, evaluated without overflow for large ``|x|``."""
    check_float_any("x", x)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return y, y


def sigmoid_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy · y (1 − y)``."""
    _check_grad(dy, cache)
    return dy * cache * (1 - cache)


def sin_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = sin(x)``."""
    check_float_any("x", x)
    return np.sin(x), x


def sin_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy cos(x)``."""
    _check_grad(dy, cache)
    return dy * np.cos(cache)


def cos_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = cos(x)``."""
    check_float_any("x", x)
    return np.cos(x), x


def cos_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = −dy sin(x)``."""
    _check_grad(dy, cache)
    return -dy * np.sin(cache)


def identity_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``y = x`` (returned as is, not copied); cache: x's shape and dtype."""
    check_float_any("x", x)
    return x, (x.shape, x.dtype)


def identity_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    """``dx = dy``."""
    shape, dtype = cache
    check_elementwise_grad(dy, shape, dtype)
    return dy


Forward = Callable[[np.ndarray], tuple]
Backward = Callable[[np.ndarray, object], np.ndarray]

#: Activation name -> (forward, backward); the names the model builder accepts.
ACTIVATIONS: dict[str, tuple[Forward, Backward]] = {
    "relu": (relu_forward, relu_backward),
    "tanh": (tanh_forward, tanh_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "sin": (sin_forward, sin_backward),
    "cos": (cos_forward, cos_backward),
    "identity": (identity_forward, identity_backward),
}
