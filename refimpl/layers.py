"""Thin layers over the ops contract, and :class:`Sequential`.

A layer holds ``params`` and ``grads`` (dicts of arrays with the same keys, allocated once)
and calls the ops of a backend module (``kernels.get_backend(name)``; the ``numpy`` backend
is :mod:`refimpl.ops`). ``forward`` keeps the op's cache; ``backward`` reads it, copies the
parameter gradients **into** ``grads`` and returns the input gradient. Because the arrays are
never re-bound, ``Sequential.parameters()`` / ``gradients()`` return the same objects on
every call and an optimizer may update them in place.

Two speed-ups change no number: a backend listing fused pairs in ``FUSED`` (``kernels.cpu``)
runs a ``Conv2d`` / ``Dense`` directly followed by ``Activation("relu")`` as one fused op
(bias and relu in one pass), and ``Sequential.backward(dlogits, input_grad=False)`` skips
the input gradient of the first layer with parameters (and every layer before it).
"""

from __future__ import annotations

import types
from collections.abc import Iterable

import numpy as np
from numpy.typing import DTypeLike

import kernels
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
    """Base class: no parameters, numpy backend, a cache slot filled by ``forward``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.backend: types.ModuleType = kernels.get_backend("numpy")
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Fill ``grads`` from ``dy`` and return the input gradient.

        ``need_dx=False`` lets a layer with parameters skip the input gradient and return
        None (:meth:`Sequential.backward` asks it of the first such layer only).
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def output_shape(self, input_shape: Shape) -> Shape:
        """Per-sample output shape for a per-sample ``input_shape`` (no batch axis)."""
        return input_shape

    def _take_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        cache, self._cache = self._cache, None
        return cache

    def _store_grads(self, **grads: np.ndarray) -> None:
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

    def forward(self, x: np.ndarray, *, relu: bool = False) -> np.ndarray:
        """``x W + b``; ``relu=True`` returns ``max(x W + b, 0)`` through the backend's fused
        ``dense_relu_forward`` (only :class:`Sequential` asks, when the backend has it)."""
        op = self.backend.dense_relu_forward if relu else self.backend.dense_forward
        y, cache = op(x, self.params["W"], self.params["b"])
        self._cache = (cache, relu)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        cache, relu = self._take_cache()
        op = self.backend.dense_relu_backward if relu else self.backend.dense_backward
        dx, dW, db = op(dy, cache, need_dx=need_dx)
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

    def forward(self, x: np.ndarray, *, relu: bool = False) -> np.ndarray:
        """The convolution; ``relu=True`` applies ``max(., 0)`` through the backend's fused
        ``conv2d_relu_forward`` (only :class:`Sequential` asks, when the backend has it)."""
        op = self.backend.conv2d_relu_forward if relu else self.backend.conv2d_forward
        y, cache = op(x, self.params["W"], self.params["b"], self.stride, self.padding)
        self._cache = (cache, relu)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        cache, relu = self._take_cache()
        op = self.backend.conv2d_relu_backward if relu else self.backend.conv2d_backward
        dx, dW, db = op(dy, cache, need_dx=need_dx)
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
        y, self._cache = self.backend.maxpool2d_forward(x, self.k)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
        return self.backend.maxpool2d_backward(dy, self._take_cache())

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

    def _pair(self):
        # 'identity' is not in kernels.CONTRACT; a backend without it uses the oracle's.
        fallback = ops.ACTIVATIONS[self.name]
        forward = getattr(self.backend, f"{self.name}_forward", fallback[0])
        backward = getattr(self.backend, f"{self.name}_backward", fallback[1])
        return forward, backward

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self._cache = self._pair()[0](x)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
        return self._pair()[1](dy, self._take_cache())

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


class Sequential:
    """A stack of layers applied in order.

    Parameters
    ----------
    layers : iterable of Layer
    backend : {"numpy", "numba", "cuda", "auto"}
        The ops module every layer calls (``kernels.get_backend``).

    Parameters are named ``"<layer index>.<param name>"`` (``"0.W"``, ``"0.b"``, ...), in layer
    order and, within a layer, in the order ``W``, ``b``. ``parameters()`` and ``gradients()``
    follow that order and return the same array objects on every call.
    """

    def __init__(self, layers: Iterable[Layer], backend: str = "numpy") -> None:
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout
                    f"layers[{i}] must be a refimpl.layers.Layer, got {layer!r}"
                )
        self._ran: list[Layer] | None = None  # set by forward: the layers run, in order
        self.set_backend(backend)

    # -- computation -------------------------------------------------------------------
    def _fuses_relu(self, i: int) -> bool:
        """Whether layer ``i`` (Dense or Conv2d) runs together with the relu after it."""
        layer = self.layers[i]
        if not isinstance(layer, (Dense, Conv2d)) or i + 1 == len(self.layers):
            return False
        after = self.layers[i + 1]
        if not (isinstance(after, Activation) and after.name == "relu"):
            return False
        op = "dense_relu_forward" if isinstance(layer, Dense) else "conv2d_relu_forward"
        return op in getattr(layer.backend, "FUSED", ())

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run every layer; returns the logits (or whatever the last layer outputs).

        A Dense/Conv2d followed by ``Activation("relu")`` runs as the backend's fused op
        when it has one; the result is identical to the two layers in turn.
        """
        self._ran = []
        i = 0
        while i < len(self.layers):
            layer = self.layers[i]
            if self._fuses_relu(i):
                x = layer.forward(x, relu=True)
                i += 2
            else:
                x = layer.forward(x)
                i += 1
            self._ran.append(layer)
        return x

    __call__ = forward

    def backward(self, dlogits: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Back-propagate ``dlogits`` through the layers (after a ``forward``), filling grads.

        Returns the gradient w.r.t. the model input; with ``input_grad=False`` it returns
        None and skips what only that gradient needs: the input gradient of the first layer
        with parameters and every layer before it (a training step wants ``input_grad=False``).
        """
        ran = self._ran
        if ran is None:
            raise RuntimeError("Sequential.backward called before forward")
        first = next((k for k, layer in enumerate(ran) if layer.params), 0)
        grad = dlogits
        for k in reversed(range(len(ran))):
            if input_grad or k > first:
                grad = ran[k].backward(grad)
            else:
                ran[k].backward(grad, need_dx=False)
                for earlier in ran[:k]:
                    earlier._cache = None  # their gradients are not needed
                return None
        return grad

    # -- parameters --------------------------------------------------------------------
    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        return [
            (f"{i}.{k}", p) for i, layer in enumerate(self.layers) for k, p in layer.params.items()
        ]

    def parameters(self) -> list[np.ndarray]:
        return [p for _, p in self.named_parameters()]

    def gradients(self) -> list[np.ndarray]:
        return [g for layer in self.layers for g in layer.grads.values()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    @property
    def dtype(self) -> np.dtype | None:
        params = self.parameters()
        return params[0].dtype if params else None

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters by name (later training does not change them)."""
        return {name: p.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` into the parameters in place, after checking names, shapes, dtypes."""
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise ValueError(
                f"state dict does not match the model: missing {missing}, unexpected "
                f"{unexpected}; build the model from the same spec as the saved one"
            )
        for name, p in own.items():
            value = np.asarray(state[name])
            if value.shape != p.shape:
                raise ValueError(
                    f"state[{name!r}] has shape {value.shape}, the model needs {p.shape}"
                )
            if value.dtype != p.dtype:
                raise ValueError(
                    f"state[{name!r}] has dtype {value.dtype}, the model has {p.dtype}; "
                    f"call model.astype({value.dtype}) first or cast the state"
                )
        for name, p in own.items():
            np.copyto(p, state[name])

    # -- configuration -----------------------------------------------------------------
    def set_backend(self, name: str) -> Sequential:
        """Route every op through backend ``name`` (``numpy | numba | cuda | auto``)."""
        module = kernels.get_backend(name)
        self.backend = name
        for layer in self.layers:
            layer.backend = module
        return self

    def astype(self, dtype: DTypeLike) -> Sequential:
        """Cast every parameter to ``dtype``. This re-binds the arrays: create the optimizer after."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(backend={self.backend!r},\n{inner}\n)"
