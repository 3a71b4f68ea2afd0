"""Input validation shared by the ops: every message names the argument and the fix."""

from __future__ import annotations

import numpy as np

#: The dtypes every op accepts; the output keeps the input's dtype.
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_array(name: str, a: object, shape_doc: str) -> np.ndarray:
    """Check that ``a`` is a float32/float64 ndarray with as many axes as ``shape_doc``.

    ``shape_doc`` is the expected shape written for people, e.g. ``"(N, in_features)"``;
    its number of comma-separated entries is the required ``ndim``.
    """
    if not isinstance(a, np.ndarray):
        # ValueError, not TypeError: the ops contract promises ValueError for any bad input.
        raise ValueError(  # noqa: TRY004
            f"{name} must be a numpy.ndarray of shape {shape_doc}, got {type(a).__name__}; "
            f"convert it with np.asarray({name}, dtype=np.float32)"
        )
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{name} must have dtype float32 or float64, got {a.dtype}; "
            f"cast it with {name}.astype(np.float32)"
        )
    ndim = len([part for part in shape_doc.strip("()").split(",") if part.strip()])
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D with shape {shape_doc}, got shape {a.shape}")
    return a


def check_same_dtype(name: str, a: np.ndarray, ref_name: str, ref: np.ndarray) -> None:
    """Refuse mixed precision: NumPy would silently promote float32 to float64."""
    if a.dtype != ref.dtype:
        raise ValueError(
            f"{name} has dtype {a.dtype} but {ref_name} has dtype {ref.dtype}; "
            f"cast one of them, e.g. {name}.astype({ref_name}.dtype)"
        )


def check_shape(name: str, a: np.ndarray, expected: tuple[int, ...], why: str) -> None:
    """Check an exact shape; ``why`` says what the expected shape is derived from."""
    if a.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} ({why}), got {a.shape}")


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Check an integer hyper-parameter such as a stride or a window size."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float_any(name: str, a: object) -> np.ndarray:
    """Check that ``a`` is a float32/float64 ndarray of any shape (element-wise ops)."""
    if not isinstance(a, np.ndarray):
        # ValueError, not TypeError: the ops contract promises ValueError for any bad input.
        raise ValueError(  # noqa: TRY004
            f"{name} must be a numpy.ndarray, got {type(a).__name__}; "
            f"convert it with np.asarray({name}, dtype=np.float32)"
        )
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{name} must have dtype float32 or float64, got {a.dtype}; "
            f"cast it with {name}.astype(np.float32)"
        )
    return a
