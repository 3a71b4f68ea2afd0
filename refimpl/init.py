"""Weight initialisation (docs/methods.md §1): He-uniform before relu, Glorot-uniform otherwise.

Weights are drawn in float64 from the given ``numpy.random.Generator`` and then cast, so a
float32 and a float64 model built from the same seed hold the same numbers up to rounding.
Biases start at zero.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike

#: Initialisation schemes by name.
SCHEMES = ("he_uniform", "glorot_uniform")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight array.

    Dense ``W`` (in, out): ``(in, out)``. Conv ``W`` (C_out, C_in, kh, kw):
    ``(C_in kh kw, C_out kh kw)``.
    """
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        receptive_field = shape[2] * shape[3]
        return shape[1] * receptive_field, shape[0] * receptive_field
    raise ValueError(
        f"shape must be a dense (in, out) or conv (C_out, C_in, kh, kw) shape, got {shape}"
    )


def he_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """``W ~ U(−a, a)`` with ``a = sqrt(6 / fan_in)`` (He et al. 2015, for relu layers)."""
    fan_in, _ = fans(shape)
    bound = math.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def glorot_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """``W ~ U(−a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010)."""
    fan_in, fan_out = fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def init_weight(
    scheme: str, rng: np.random.Generator, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """Draw a weight array with the named ``scheme`` (one of :data:`SCHEMES`)."""
    if scheme == "he_uniform":
        return he_uniform(rng, shape, dtype)
    if scheme == "glorot_uniform":
        return glorot_uniform(rng, shape, dtype)
    raise ValueError(f"init must be one of {SCHEMES}, got {scheme!r}")
