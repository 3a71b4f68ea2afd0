"""Thin layers over the ops contract: each holds its parameters and calls an op pair.

A layer holds ``params`` and ``grads`` (dicts of arrays with the same keys, allocated once)
and calls the ops of a backend: ``layer.ops`` is the module (:mod:`refimpl.ops`, the oracle,
until :meth:`refimpl.model.Sequential.set_backend` sets another) and ``layer.backend`` its
name. ``forward`` keeps the op's cache; ``backward`` reads it, copies the parameter
gradients **into** ``grads`` and returns the input gradient. Because the arrays are never
re-bound, a model's ``parameters()`` / ``gradients()`` return the same objects on every call
and an optimizer may update them in place.

How a model runs its layers on a backend (which ops are fused, where gradients are
written) is decided beside the kernels, in :mod:`refimpl.kernels.plan`.
"""

from __future__ import annotations

import types

import numpy as np
from numpy.typing import DTypeLike

from refimpl import ops
from refimpl.init import init_weight
from refimpl.ops.conv import conv2d_output_size

Shape = tuple[int, ...]


def _check_dtype(dtype: DTypeLike) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be np.float32 or np.float64, got {dtype}")
    return dtype


class Layer:
    """Base class: no parameters, the oracle's ops, a cache slot filled by ``forward``.

    ``backend`` is the name of the backend the layer runs on and ``ops`` its module (the
    same pair as :class:`refimpl.model.Sequential`'s); both start as ``"numpy"`` and
    :mod:`refimpl.ops`.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.backend: str = "numpy"
        self.ops: types.ModuleType = ops
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Fill ``grads`` from ``dy`` and return the input gradient.

        ``need_dx=False`` lets a layer with parameters skip the input gradient and return
        None, as the backward ops of the contract do (docs/methods.md §1).
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def output_shape(self, input_shape: Shape) -> Shape:
        """Per-sample output shape for a per-sample ``input_shape`` (no batch axis)."""
        return input_shape

    def clear_cache(self) -> None:
        """Drop the cache of the last ``forward`` (its ``backward`` will not run)."""
        self._cache = None

    def _take_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        cache, self._cache = self._cache, None
        return cache

    def _store_grads(self, **grads: np.ndarray) -> None:
        """Copy each gradient into its buffer in ``grads`` (never re-binding it)."""
        for name, value in grads.items():
            np.copyto(self.grads[name], value)

    def astype(self, dtype: DTypeLike) -> Layer:
        """Cast parameters and gradient buffers (this re-binds them: build optimizers after)."""
        dtype = _check_dtype(dtype)
        for name in self.params:
            self.params[name] = self.params[name].astype(dtype)
            self.grads[name] = np.zeros_like(self.params[name])
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Dense(Layer):
    """``y = x W + b`` with ``W`` (in_features, out_features), ``b`` (out_features,).

    Parameters
    ----------
    in_features, out_features : int
    init : {"glorot_uniform", "he_uniform"}
        Weight initialisation (:mod:`refimpl.init`); the bias starts at zero.
    rng : numpy.random.Generator or int seed
    dtype : np.float32 or np.float64
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str = "glorot_uniform",
        rng: np.random.Generator | int | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {in_features}, {out_features}"
            )
        dtype = _check_dtype(dtype)
        rng = np.random.default_rng(rng)
        self.params["W"] = init_weight(init, rng, (in_features, out_features), dtype)
        self.params["b"] = np.zeros(out_features, dtype=dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``y = x W + b``."""
        y, self._cache = self.ops.dense_forward(x, self.params["W"], self.params["b"])
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """``dx = dy Wᵀ`` (None unless ``need_dx``), ``dW = xᵀ dy``, ``db = Σ_n dy``."""
        dx, dW, db = self.ops.dense_backward(dy, self._take_cache(), need_dx=need_dx)
        self._store_grads(W=dW, b=db)
        return dx

    def output_shape(self, input_shape: Shape) -> Shape:
        return (self.params["W"].shape[1],)

    def __repr__(self) -> str:
        return f"Dense({self.params['W'].shape[0]}, {self.params['W'].shape[1]})"


class Conv2d(Layer):
    """Cross-correlation with ``W`` (C_out, C_in, k, k), ``b`` (C_out,), NCHW input.

    Parameters
    ----------
    in_channels, out_channels, kernel_size : int
    stride : int, default 1
    padding : int, default 0 (zeros on each side of H and W)
    init, rng, dtype : as for :class:`Dense` (fan_in = C_in k², fan_out = C_out k²)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        init: str = "glorot_uniform",
        rng: np.random.Generator | int | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, kernel_size, stride) < 1 or padding < 0:
            raise ValueError(
                "in_channels, out_channels, kernel_size, stride must be >= 1 and padding >= 0, "
                f"got {in_channels}, {out_channels}, {kernel_size}, {stride}, {padding}"
            )
        dtype = _check_dtype(dtype)
        rng = np.random.default_rng(rng)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.params["W"] = init_weight(init, rng, shape, dtype)
        self.params["b"] = np.zeros(out_channels, dtype=dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.stride, self.padding = stride, padding

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``y[n, o] = b[o] + Σ_c W[o, c] ⋆ x[n, c]`` (cross-correlation, stride, zero padding)."""
        W, b = self.params["W"], self.params["b"]
        y, self._cache = self.ops.conv2d_forward(x, W, b, self.stride, self.padding)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """``(dx, dW, db)`` of :func:`refimpl.ops.conv.conv2d_backward`; dx None unless
        ``need_dx``."""
        dx, dW, db = self.ops.conv2d_backward(dy, self._take_cache(), need_dx=need_dx)
        self._store_grads(W=dW, b=db)
        return dx

    def output_shape(self, input_shape: Shape) -> Shape:
        c_out, _, k, _ = self.params["W"].shape
        _, h, w = input_shape
        return (
            c_out,
            conv2d_output_size(h, k, self.stride, self.padding),
            conv2d_output_size(w, k, self.stride, self.padding),
        )

    def __repr__(self) -> str:
        c_out, c_in, k, _ = self.params["W"].shape
        return f"Conv2d({c_in}, {c_out}, k={k}, stride={self.stride}, padding={self.padding})"


class MaxPool2d(Layer):
    """Max pooling with window and stride ``k`` (first max on ties, floor mode)."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        self.k = k

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self._cache = self.ops.maxpool2d_forward(x, self.k)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
        return self.ops.maxpool2d_backward(dy, self._take_cache())

    def output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = input_shape
        return (c, h // self.k, w // self.k)

    def __repr__(self) -> str:
        return f"MaxPool2d({self.k})"


class Activation(Layer):
    """Element-wise activation by name: one of ``refimpl.ops.ACTIVATIONS``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in ops.ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ops.ACTIVATIONS)}, got {name!r}")
        self.name = name

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self._cache = getattr(self.ops, f"{self.name}_forward")(x)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
        return getattr(self.ops, f"{self.name}_backward")(dy, self._take_cache())

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 d2 ...); the backward restores the input shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim < 1:
            raise ValueError(f"x must be an ndarray with a batch axis, got {type(x).__name__}")
        self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
        return dy.reshape(self._take_cache())

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)


class Dropout(Layer):
    """Inverted dropout: ``y = x · m / (1 − p)`` with ``m ~ Bernoulli(1 − p)`` while training,
    ``y = x`` in evaluation (``training = False``); docs/methods.md §1.

    Backward: ``dx = dy · m / (1 − p)`` with the mask of the last forward (exact).
    The mask of the ``n``-th training forward comes from ``default_rng([seed, n])``, so a run
    is reproducible from ``seed``. :meth:`refimpl.train.Trainer.evaluate` switches every layer
    with a ``training`` attribute off while it evaluates. The layer calls
    :func:`refimpl.ops.dropout_forward` / ``dropout_backward`` on every backend: dropout is not
    an op of the backend contract (:mod:`refimpl.ops.dropout` says why).

    Parameters
    ----------
    p : float
        Drop probability, ``0 <= p < 1``.
    seed : int
        Seeds the masks.
    """

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p must be a probability in [0, 1), got {p!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.p, self.seed = float(p), int(seed)
        self.training = True
        self.calls = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._cache = None
            return x
        keep = ops.dropout_mask(np.random.default_rng([self.seed, self.calls]), x.shape, self.p)
        self.calls += 1
        y, self._cache = ops.dropout_forward(x, self.p, keep)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
        if self._cache is None:  # evaluation mode or p = 0: the identity
            return dy
        return ops.dropout_backward(dy, self._take_cache())

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}, seed={self.seed})"
