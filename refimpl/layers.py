"""Thin layers over the ops contract, and :class:`Sequential`.

A layer holds ``params`` and ``grads`` (dicts of arrays with the same keys, allocated once)
and calls the ops of a backend module (``kernels.get_backend(name)``; the ``numpy`` backend
is :mod:`refimpl.ops`). ``forward`` keeps the op's cache; ``backward`` reads it, copies the
parameter gradients **into** ``grads`` and returns the input gradient. Because the arrays are
never re-bound, ``Sequential.parameters()`` / ``gradients()`` return the same objects on
every call and an optimizer may update them in place.

``Sequential.forward`` and ``backward`` are plain loops over a list of steps. The steps are
chosen once, when the model is set to a backend (:meth:`Sequential.set_backend`): on a fast
backend a ``Dense`` or ``Conv2d`` directly followed by ``Activation("relu")`` becomes one
:class:`DenseReLU` / :class:`Conv2dReLU` step that runs the backend's fused op (bias and
relu in one pass; the numbers are those of the two layers in turn). The layers themselves,
and so the parameter names, are unchanged.
"""

from __future__ import annotations

import types
from collections.abc import Iterable

import numpy as np
from numpy.typing import DTypeLike

from refimpl import kernels, ops
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

    def clear_cache(self) -> None:
        """Drop the cache of the last ``forward`` (its ``backward`` will not run)."""
        self._cache = None

    def _take_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        cache, self._cache = self._cache, None
        return cache

    def _store_grads(self, **grads: np.ndarray) -> None:
        for name, value in grads.items():
            if value is not self.grads[name]:  # else the op wrote it in place (out=)
                np.copyto(self.grads[name], value)

    def _grads_out(self, op: str) -> dict:
        """``{"out": (grads["W"], grads["b"])}`` for a backend op listed in the backend's
        ``GRADS_OUT`` (it writes the gradients into them), else nothing."""
        if op in getattr(self.backend, "GRADS_OUT", ()):
            return {"out": (self.grads["W"], self.grads["b"])}
        return {}

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
        y, self._cache = self.backend.dense_forward(x, self.params["W"], self.params["b"])
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        dx, dW, db = self.backend.dense_backward(dy, self._take_cache(), need_dx=need_dx,
                                                 **self._grads_out("dense_backward"))
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
        y, self._cache = self.backend.conv2d_forward(x, W, b, self.stride, self.padding)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        dx, dW, db = self.backend.conv2d_backward(dy, self._take_cache(), need_dx=need_dx)
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

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self._cache = getattr(self.backend, f"{self.name}_forward")(x)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
        return getattr(self.backend, f"{self.name}_backward")(dy, self._take_cache())

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


class _FusedStep(Layer):
    """A step of :class:`Sequential` that runs a :class:`Dense` or :class:`Conv2d` layer and
    what follows it as one op of the backend, ``{op}_forward``/``{op}_backward``; it shares
    ``params`` and ``grads`` with that layer (the same dicts), so the parameters are still
    the layer's."""

    op: str

    def __init__(self, layer: Layer) -> None:
        super().__init__()
        self.params, self.grads, self.backend = layer.params, layer.grads, layer.backend

    def _options(self) -> tuple:
        """The op's arguments after ``(x, W, b)``."""
        return ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        forward = getattr(self.backend, f"{self.op}_forward")
        y, self._cache = forward(x, self.params["W"], self.params["b"], *self._options())
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        name = f"{self.op}_backward"
        dx, dW, db = getattr(self.backend, name)(dy, self._take_cache(), need_dx=need_dx,
                                                 **self._grads_out(name))
        self._store_grads(W=dW, b=db)
        return dx


class DenseReLU(_FusedStep):
    """``y = max(x W + b, 0)``: a :class:`Dense` and the relu after it, as one op of the backend
    (``dense_relu_forward``/``backward``)."""

    op = "dense_relu"

    def __init__(self, dense: Dense) -> None:
        super().__init__(dense)
        self.dense = dense

    def __repr__(self) -> str:
        return f"DenseReLU({self.dense!r})"


class Conv2dReLU(_FusedStep):
    """``y = max(conv2d(x), 0)``: a :class:`Conv2d` and the relu after it, as one op of the backend
    (``conv2d_relu_forward``/``backward``)."""

    op = "conv2d_relu"

    def __init__(self, conv: Conv2d) -> None:
        super().__init__(conv)
        self.conv = conv

    def _options(self) -> tuple:
        return self.conv.stride, self.conv.padding

    def __repr__(self) -> str:
        return f"Conv2dReLU({self.conv!r})"


class Conv2dReLUPool(_FusedStep):
    """``y = maxpool2d(max(conv2d(x), 0), k)``: a :class:`Conv2dReLU` step and the
    :class:`MaxPool2d` after it, as one op of the backend
    (``conv2d_relu_maxpool2d_forward``/``backward``; the numba kernel never stores the relu
    output). The numbers are those of the three layers in turn; ``params`` and ``grads`` are
    the ``Conv2d`` layer's.
    """

    op = "conv2d_relu_maxpool2d"

    def __init__(self, conv: Conv2d, pool: MaxPool2d) -> None:
        super().__init__(conv)
        self.conv, self.pool = conv, pool

    def _options(self) -> tuple:
        return self.conv.stride, self.conv.padding, self.pool.k

    def __repr__(self) -> str:
        return f"Conv2dReLUPool({self.conv!r}, {self.pool!r})"


#: Layer type -> the fused step that runs it together with the relu after it.
_FUSED_WITH_RELU = {Dense: DenseReLU, Conv2d: Conv2dReLU}


def fuse_relu(layers: list[Layer]) -> list[Layer]:
    """The steps that run ``layers``: each Dense/Conv2d directly followed by
    ``Activation("relu")`` becomes one :class:`DenseReLU`/:class:`Conv2dReLU` step, and a
    :class:`Conv2dReLU` step directly followed by :class:`MaxPool2d` one
    :class:`Conv2dReLUPool` step."""
    steps: list[Layer] = []
    for layer in layers:
        is_relu = isinstance(layer, Activation) and layer.name == "relu"
        if is_relu and steps and type(steps[-1]) in _FUSED_WITH_RELU:
            steps[-1] = _FUSED_WITH_RELU[type(steps[-1])](steps[-1])
        elif isinstance(layer, MaxPool2d) and steps and type(steps[-1]) is Conv2dReLU:
            steps[-1] = Conv2dReLUPool(steps[-1].conv, layer)
        else:
            steps.append(layer)
    return steps


class Sequential:
    """A stack of layers applied in order.

    Parameters
    ----------
    layers : iterable of Layer
    backend : {"numpy", "numba", "cuda", "auto"}
        The ops module every layer calls (``kernels.get_backend``).

    Parameters are named ``"<layer index>.<param name>"`` (``"0.W"``, ``"0.b"``, ...), in layer
    order and, within a layer, in the order ``W``, ``b``. ``parameters()`` and ``gradients()``
    follow that order and return the same array objects on every call. ``steps`` is what
    ``forward`` runs: the layers, with relu fused into the layer before it on a fast backend
    (see :meth:`set_backend`).
    """

    def __init__(self, layers: Iterable[Layer], backend: str = "numpy") -> None:
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout
                    f"layers[{i}] must be a refimpl.layers.Layer, got {layer!r}"
                )
        self.steps: list[Layer] = self.layers
        self._first_trainable = 0  # index in steps of the first step with parameters
        self.set_backend(backend)

    # -- computation -------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run every step; returns the logits (or whatever the last layer outputs)."""
        for step in self.steps:
            x = step.forward(x)
        return x

    __call__ = forward

    def backward(self, dlogits: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Back-propagate ``dlogits`` through the steps (after a ``forward``), filling grads.

        Returns the gradient w.r.t. the model input; with ``input_grad=False`` it returns
        None and skips what only that gradient needs: the input gradient of the first layer
        with parameters and every layer before it (a training step wants ``input_grad=False``).
        """
        start = 0 if input_grad else self._first_trainable
        grad = dlogits
        for k in range(len(self.steps) - 1, start - 1, -1):
            grad = self.steps[k].backward(grad, need_dx=input_grad or k > start)
        for step in self.steps[:start]:
            step.clear_cache()  # nothing reads the gradients of the layers before
        return grad if input_grad else None

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
    def set_backend(self, name: str, *, fuse: bool | None = None) -> Sequential:
        """Route every op through backend ``name`` (``numpy | numba | cuda | auto``).

        This is where the steps are chosen: with ``fuse`` (default: on every backend but the
        ``numpy`` oracle, which runs the layers exactly as written) a Dense/Conv2d followed
        by relu runs as one fused op; the numbers are the same either way.
        """
        resolved = kernels.resolve(name)
        module = kernels.get_backend(resolved)
        self.backend = name
        for layer in self.layers:
            layer.backend = module
        fuse = resolved != "numpy" if fuse is None else fuse
        self.steps = fuse_relu(self.layers) if fuse else list(self.layers)
        self._first_trainable = next((k for k, s in enumerate(self.steps) if s.params), 0)
        return self

    def astype(self, dtype: DTypeLike) -> Sequential:
        """Cast every parameter to ``dtype``. This re-binds the arrays: create the optimizer after."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(backend={self.backend!r},\n{inner}\n)"


class Dropout(Layer):
    """Inverted dropout: ``y = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` while training,
    ``y = x`` in evaluation (``training = False``).

    Backward: ``dx = dy * m / (1 - p)`` with the mask of the last forward (exact).
    The mask of the ``n``-th training forward comes from ``default_rng([seed, n])``, so a run
    is reproducible from ``seed``. :meth:`refimpl.train.Trainer.evaluate` switches every layer
    with a ``training`` attribute off while it evaluates.

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
        keep = np.random.default_rng([self.seed, self.calls]).random(x.shape) >= self.p
        self.calls += 1
        scale = (keep / (1.0 - self.p)).astype(x.dtype)
        self._cache = scale
        return x * scale

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
        if self._cache is None:  # evaluation mode or p = 0: the identity
            return dy
        return dy * self._take_cache()

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}, seed={self.seed})"
