"""Element-wise activations as (forward, backward) pairs, collected in :data:`ACTIVATIONS`.

Each ``*_forward(x) -> (y, cache)`` accepts any shape; ``*_backward(dy, cache) -> dx``
returns ``dy * f'(x)`` in the same shape and dtype (docs/methods.md §1, (1.8)-(1.13)).
``dy`` must have the shape and dtype of ``y`` (no silent promotion), checked by
:func:`refimpl.ops.checks.check_elementwise_grad` as on every backend. Each forward's
docstring runs the pair on a few values whose results are exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from refimpl.ops.checks import check_elementwise_grad, check_float_any


def _check_grad(dy: np.ndarray, like: np.ndarray) -> None:
    """``dy`` against a cache that has the shape and dtype of ``y`` (x, y; relu: x's dtype)."""
    check_elementwise_grad(dy, like.shape, like.dtype)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = max(x, 0)`` (1.8).

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops import relu_backward, relu_forward
    >>> y, cache = relu_forward(np.array([-1.0, 0.0, 2.0]))
    >>> print(y)
    [0. 0. 2.]
    >>> print(relu_backward(np.array([5.0, 5.0, 5.0]), cache))  # relu'(0) is taken as 0
    [0. 0. 5.]
    """
    check_float_any("x", x)
    # np.maximum (not a mask product) keeps NaN visible to the trainer's NaN check.
    return np.maximum(x, 0), (x > 0, x.dtype)


def relu_backward(dy: np.ndarray, cache: tuple[np.ndarray, np.dtype]) -> np.ndarray:
    """``dx = dy`` where ``x > 0``, 0 elsewhere (1.8): a selection, not the product
    ``dy · [x > 0]``, so an infinite or NaN ``dy`` where ``x <= 0`` gives 0, as in torch and
    JAX; the derivative at 0 is taken as 0, like torch."""
    mask, dtype = cache  # the boolean mask x > 0, and the forward's dtype
    check_elementwise_grad(dy, mask.shape, dtype)
    return np.where(mask, dy, 0)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = tanh(x)`` (1.9).

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops import tanh_backward, tanh_forward
    >>> y, cache = tanh_forward(np.array([0.0]))
    >>> print(y, tanh_backward(np.array([3.0]), cache))  # 3 (1 - tanh(0)²)
    [0.] [3.]
    """
    check_float_any("x", x)
    y = np.tanh(x)
    return y, y


def tanh_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy (1 − y²)``."""
    _check_grad(dy, cache)
    return dy * (1 - cache * cache)


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = 1 / (1 + exp(−x))``, evaluated without overflow for large ``|x|`` (1.10).

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops import sigmoid_backward, sigmoid_forward
    >>> y, cache = sigmoid_forward(np.array([-1000.0, 0.0, 1000.0]))  # no overflow warning
    >>> print(y)
    [0.  0.5 1. ]
    >>> print(sigmoid_backward(np.array([4.0, 4.0, 4.0]), cache))  # 4 y (1 - y)
    [0. 1. 0.]
    """
    check_float_any("x", x)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return y, y


def sigmoid_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy · y (1 − y)``."""
    _check_grad(dy, cache)
    return dy * cache * (1 - cache)


def sin_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = sin(x)`` (1.11).

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops import sin_backward, sin_forward
    >>> y, cache = sin_forward(np.array([0.0]))
    >>> print(y, sin_backward(np.array([3.0]), cache))  # 3 cos(0)
    [0.] [3.]
    """
    check_float_any("x", x)
    return np.sin(x), x


def sin_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = dy cos(x)``."""
    _check_grad(dy, cache)
    return dy * np.cos(cache)


def cos_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = cos(x)`` (1.12).

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops import cos_backward, cos_forward
    >>> y, cache = cos_forward(np.array([0.0]))
    >>> print(y, cos_backward(np.array([3.0]), cache))  # -3 sin(0), a negative zero
    [1.] [-0.]
    """
    check_float_any("x", x)
    return np.cos(x), x


def cos_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``dx = −dy sin(x)``."""
    _check_grad(dy, cache)
    return -dy * np.sin(cache)


def identity_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``y = x`` (returned as is, not copied); cache: x's shape and dtype (1.13).

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops import identity_backward, identity_forward
    >>> x = np.array([1.0, -2.0])
    >>> y, cache = identity_forward(x)
    >>> y is x
    True
    >>> print(identity_backward(np.array([3.0, 4.0]), cache))
    [3. 4.]
    """
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
