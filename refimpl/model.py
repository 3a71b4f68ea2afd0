"""Build a :class:`~refimpl.layers.Sequential` from a short spec string, and the named models.

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

import numpy as np
from numpy.typing import DTypeLike

from refimpl import ops
from refimpl.layers import Activation, Conv2d, Dense, Flatten, Layer, MaxPool2d, Sequential

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
