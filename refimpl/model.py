""":class:`Sequential`, a model built from a short spec string, and the named models.

Grammar (tokens separated by commas, spaces ignored)::

    spec    := token ("," token)*
    token   := "dense:" OUT                  Dense layer with OUT outputs
             | "conv:" OUT "x" K [ "s" S ] [ "p" P ]
                                             Conv2d, OUT channels, K x K kernel,
                                             stride S (default 1), zero padding P (default 0)
             | "pool" K                      MaxPool2d with window and stride K
             | "flatten"                     Flatten (N, ...) -> (N, features)
             | ACTIVATION                    relu | tanh | sigmoid | sin | cos | identity

Example: ``"conv:64x3,relu,pool2,conv:128x3s2p1,relu,flatten,dense:10"``.

Initialisation (docs/methods.md §1): a dense or conv layer whose next activation (before the next
dense/conv layer) is ``relu`` gets He-uniform weights, every other one Glorot-uniform;
biases are zero. All weights come from one ``numpy.random.default_rng(seed)``, drawn in
layer order, so the same seed gives the same bits.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable

import numpy as np
from numpy.typing import DTypeLike

from refimpl import kernels, ops
from refimpl.kernels.plan import Plan, make_plan
from refimpl.layers import Activation, Conv2d, Dense, Flatten, Layer, MaxPool2d


class Sequential:
    """A stack of layers applied in order.

    Parameters
    ----------
    layers : iterable of Layer
    backend : str
        Where the ops run: a name of :func:`refimpl.kernels.available`, or ``"auto"``
        (:func:`refimpl.kernels.get_backend`).

    Parameters are named ``"<layer index>.<param name>"`` (``"0.W"``, ``"0.b"``, ...), in layer
    order and, within a layer, in the order ``W``, ``b``. ``parameters()`` and ``gradients()``
    follow that order and return the same array objects on every call.

    ``backend`` is the backend's name as given (``"auto"`` stays ``"auto"``) and ``ops`` the
    module it stands for; every layer carries the same pair. ``plan`` (and its ``steps``) is
    how the layers run on that backend (:mod:`refimpl.kernels.plan`; see :meth:`set_backend`).
    """

    def __init__(self, layers: Iterable[Layer], backend: str = "numpy") -> None:
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout
                    f"layers[{i}] must be a refimpl.layers.Layer, got {layer!r}"
                )
        self.set_backend(backend)

    # -- computation -------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the layers in order; returns the logits (or what the last layer outputs)."""
        return self.plan.forward(x)

    __call__ = forward

    def backward(self, dlogits: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Back-propagate ``dlogits`` through the layers (after a ``forward``), filling grads.

        Returns the gradient w.r.t. the model input; with ``input_grad=False`` it returns
        None and skips what only that gradient needs (a training step wants
        ``input_grad=False``; :meth:`refimpl.kernels.plan.Plan.backward`).
        """
        return self.plan.backward(dlogits, input_grad=input_grad)

    @property
    def steps(self) -> list:
        """What ``forward`` runs: the layers, or on a fused plan fewer steps for the same math."""
        return self.plan.steps

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
        """Route every op through backend ``name`` (see :func:`refimpl.kernels.get_backend`).

        This sets ``backend``, ``ops`` and ``plan``: with ``fuse`` (default: on every backend
        but the ``numpy`` oracle, which runs the layers exactly as written) a Dense/Conv2d
        followed by relu runs as one fused op; the numbers are the same either way
        (:func:`refimpl.kernels.plan.make_plan`).
        """
        module: types.ModuleType = kernels.get_backend(name)
        self.backend, self.ops = name, module
        for layer in self.layers:
            layer.backend, layer.ops = name, module
        self.plan: Plan = make_plan(self.layers, module, fuse=fuse)
        return self

    def astype(self, dtype: DTypeLike) -> Sequential:
        """Cast every parameter to ``dtype``. This re-binds the arrays: create the optimizer after."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(backend={self.backend!r},\n{inner}\n)"


#: Named models: name -> (spec string, per-sample input shape).
MODELS: dict[str, tuple[str, tuple[int, ...]]] = {
    # 784-1000-10 relu MLP; the leading flatten also accepts (N, 1, 28, 28) images.
    "mlp": ("flatten,dense:1000,relu,dense:10", (784,)),
    # docs/methods.md §7 (the LRPO paper): 3x3 convs without padding, exactly 245,290 parameters.
    "lrpo_cnn": (
        (
            "conv:64x3,relu,pool2,conv:128x3,relu,conv:32x3,relu,pool2,"
            "flatten,dense:256,relu,dense:10"
        ),
        (1, 28, 28),
    ),
}

_DENSE = re.compile(r"dense:(\d+)")
_CONV = re.compile(r"conv:(\d+)x(\d+)(?:s(\d+))?(?:p(\d+))?")
_POOL = re.compile(r"pool(\d+)")


def parse(spec: str) -> list[tuple[str, tuple[int, ...] | str]]:
    """Split ``spec`` into ``(kind, args)`` tuples; raise ``ValueError`` on a bad token."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"spec must be a non-empty string like 'dense:10', got {spec!r}")
    tokens = [t.strip() for t in spec.split(",")]
    parsed = []
    for position, token in enumerate(tokens):
        if (m := _DENSE.fullmatch(token)) is not None:
            parsed.append(("dense", (int(m[1]),)))
        elif (m := _CONV.fullmatch(token)) is not None:
            stride = int(m[3]) if m[3] else 1
            padding = int(m[4]) if m[4] else 0
            parsed.append(("conv", (int(m[1]), int(m[2]), stride, padding)))
        elif (m := _POOL.fullmatch(token)) is not None:
            parsed.append(("pool", (int(m[1]),)))
        elif token == "flatten":
            parsed.append(("flatten", ()))
        elif token in ops.ACTIVATIONS:
            parsed.append(("activation", token))
        else:
            raise ValueError(
                f"spec token {position} {token!r} is not understood; use dense:OUT, "
                f"conv:OUTxK[sS][pP], poolK, flatten or one of {sorted(ops.ACTIVATIONS)} "
                "(see refimpl.model's docstring)"
            )
        if _has_empty_size(parsed[-1]):
            raise ValueError(f"spec token {position} {token!r}: sizes must be >= 1")
    return parsed


def _has_empty_size(item: tuple[str, tuple[int, ...] | str]) -> bool:
    """True when a size in a parsed token is 0 (padding may be 0)."""
    kind, args = item
    if kind == "conv":
        return min(args[:3]) < 1
    return kind in ("dense", "pool") and args[0] < 1


def _init_for(parsed: list, index: int) -> str:
    """He-uniform when the next activation before the next weight layer is relu."""
    for kind, args in parsed[index + 1 :]:
        if kind in ("dense", "conv"):
            break
        if kind == "activation":
            return "he_uniform" if args == "relu" else "glorot_uniform"
    return "glorot_uniform"


def build(
    spec: str,
    input_shape: tuple[int, ...],
    seed: int = 0,
    dtype: DTypeLike = np.float32,
    backend: str = "numpy",
) -> Sequential:
    """Build the model described by ``spec`` for per-sample ``input_shape`` (no batch axis).

    ``input_shape`` is ``(features,)`` for a dense first layer or ``(C, H, W)`` for a conv
    first layer. Shapes are followed through the stack and a layer that cannot take its
    input (dense on images without ``flatten``, a window larger than the image) is refused.
    """
    shape = tuple(int(d) for d in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(
            f"input_shape must be a tuple of sizes >= 1 without the batch axis, got {input_shape}"
        )
    rng = np.random.default_rng(seed)
    parsed = parse(spec)
    layers: list[Layer] = []
    for index, (kind, args) in enumerate(parsed):
        where = f"spec token {index} ({kind}) with input shape {shape}"
        if kind == "dense":
            if len(shape) != 1:
                raise ValueError(f"{where}: dense needs flat input; put 'flatten' before it")
            layer = Dense(shape[0], args[0], init=_init_for(parsed, index), rng=rng, dtype=dtype)
        elif kind == "conv":
            if len(shape) != 3:
                raise ValueError(f"{where}: conv needs (C, H, W) input")
            out, k, stride, padding = args
            layer = Conv2d(
                shape[0],
                out,
                k,
                stride,
                padding,
                init=_init_for(parsed, index),
                rng=rng,
                dtype=dtype,
            )
        elif kind == "pool":
            if len(shape) != 3:
                raise ValueError(f"{where}: pool needs (C, H, W) input")
            layer = MaxPool2d(args[0])
        elif kind == "flatten":
            layer = Flatten()
        else:
            layer = Activation(args)
        shape = layer.output_shape(shape)
        if min(shape) < 1:
            raise ValueError(f"{where}: the output shape {shape} is empty; the input is too small")
        layers.append(layer)
    return Sequential(layers, backend=backend)


def get_model(
    name: str, seed: int = 0, dtype: DTypeLike = np.float32, backend: str = "numpy"
) -> Sequential:
    """Build a named model from :data:`MODELS` (``mlp``, ``lrpo_cnn``)."""
    if name not in MODELS:
        raise ValueError(f"name must be one of {sorted(MODELS)}, got {name!r}")
    spec, input_shape = MODELS[name]
    return build(spec, input_shape, seed=seed, dtype=dtype, backend=backend)
