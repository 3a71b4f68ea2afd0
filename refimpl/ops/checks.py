"""Argument checks of every op, shared by all backends: each message names the argument and the fix.

The oracle (:mod:`refimpl.ops`) and every backend of :mod:`refimpl.kernels` call these same
functions, so a bad call raises the same ``ValueError`` whichever backend runs it. The checks
read only ``shape``, ``ndim`` and ``dtype``, so they accept NumPy arrays and device arrays
alike; where the data must live (host or GPU) is the backend's own check.
"""

from __future__ import annotations

import numpy as np

#: The dtypes every op accepts; the output keeps the input's dtype.
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_array(a: object) -> bool:
    """True for a NumPy array, or an array-like with ``shape``, ``ndim`` and a NumPy ``dtype``
    (a CUDA device array)."""
    if isinstance(a, np.ndarray):
        return True
    return hasattr(a, "shape") and hasattr(a, "ndim") and isinstance(getattr(a, "dtype", None),
                                                                       np.dtype)


def check_float_array(name: str, a: object, shape_doc: str) -> np.ndarray:
    """Check that ``a`` is a float32/float64 ndarray with as many axes as ``shape_doc``.

    ``shape_doc`` is the expected shape written for people, e.g. ``"(N, in_features)"``;
    its number of comma-separated entries is the required ``ndim``.
    """
    _check_float(name, a, f" of shape {shape_doc}")
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


def check_grad_dtype(dy: np.ndarray, dtype: object) -> None:
    """``dy`` of a backward must have the dtype ``dtype`` the forward ran in.

    docs/methods.md §1: all arrays of one call share one dtype, with no silent promotion. A
    float64 ``dy`` after a float32 forward would make NumPy return float64 gradients while a
    compiled kernel refuses the mix; every backend calls this check instead, so every backend
    refuses it with this one message.
    """
    dtype = np.dtype(dtype)
    if dy.dtype != dtype:
        raise ValueError(
            f"dy has dtype {dy.dtype} but the forward ran in {dtype}; "
            f"cast it with dy.astype(np.{dtype})"
        )


def check_elementwise_grad(dy: object, shape: tuple[int, ...], dtype: object) -> None:
    """``dy`` of an element-wise backward (the activations): a float array with the shape and
    the dtype of the forward output ``y``."""
    check_float_any("dy", dy)
    check_shape("dy", dy, shape, "the shape of the forward output y")
    check_grad_dtype(dy, dtype)


def check_shape(name: str, a: np.ndarray, expected: tuple[int, ...], why: str) -> None:
    """Check an exact shape; ``why`` says what the expected shape is derived from."""
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} ({why}), got {a.shape}")


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Check an integer hyper-parameter such as a stride or a window size."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float_any(name: str, a: object) -> np.ndarray:
    """Check that ``a`` is a float32/float64 ndarray of any shape (element-wise ops)."""
    return _check_float(name, a, "")


def _check_float(name: str, a: object, of_shape: str) -> np.ndarray:
    """An array (see :func:`is_array`) of dtype float32 or float64; ``of_shape`` is put in
    the message after "numpy.ndarray" (``" of shape (N, C)"``, or empty)."""
    if not is_array(a):
        # ValueError, not TypeError: the ops contract promises ValueError for any bad input.
        raise ValueError(
            f"{name} must be a numpy.ndarray{of_shape}, got {type(a).__name__}; "
            f"convert it with np.asarray({name}, dtype=np.float32)"
        )
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{name} must have dtype float32 or float64, got {a.dtype}; "
            f"cast it with {name}.astype(np.float32)"
        )
    return a


# -- per-op argument checks -----------------------------------------------------------------


def conv2d_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length along one axis: ``(size + 2 padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def check_dense_args(x: object, W: object, b: object) -> None:
    """Arguments of ``dense_forward``: x (N, in), W (in, out), b (out,), one float dtype."""
    check_float_array("x", x, "(N, in_features)")
    check_float_array("W", W, "(in_features, out_features)")
    check_float_array("b", b, "(out_features,)")
    if W.shape[0] != x.shape[1]:
        raise ValueError(
            f"W must have shape (in_features={x.shape[1]}, out_features) to match x of shape "
            f"{x.shape}, got {W.shape}"
        )
    check_shape("b", b, (W.shape[1],), "out_features of W")
    check_same_dtype("W", W, "x", x)
    check_same_dtype("b", b, "x", x)


def check_dense_grad(dy: object, x: np.ndarray, W: np.ndarray) -> None:
    """``dy`` of ``dense_backward``: the shape (N, out) and dtype of the forward output."""
    check_float_array("dy", dy, "(N, out_features)")
    check_shape("dy", dy, (x.shape[0], W.shape[1]), "the shape of the forward output y")
    check_grad_dtype(dy, x.dtype)


def check_conv2d_args(
    x: object, W: object, b: object, stride: object, padding: object
) -> tuple[int, int, int, int]:
    """Arguments of ``conv2d_forward``; returns ``(stride, padding, H_out, W_out)``."""
    check_float_array("x", x, "(N, C_in, H, W)")
    check_float_array("W", W, "(C_out, C_in, kh, kw)")
    check_float_array("b", b, "(C_out,)")
    stride = check_positive_int("stride", stride, 1)
    padding = check_positive_int("padding", padding, 0)
    c_out, c_in, kh, kw = W.shape
    if c_in != x.shape[1]:
        raise ValueError(
            f"W must have shape (C_out, C_in={x.shape[1]}, kh, kw) to match x of shape "
            f"{x.shape}, got {W.shape}"
        )
    check_shape("b", b, (c_out,), "C_out of W")
    check_same_dtype("W", W, "x", x)
    check_same_dtype("b", b, "x", x)
    h_out = conv2d_output_size(x.shape[2], kh, stride, padding)
    w_out = conv2d_output_size(x.shape[3], kw, stride, padding)
    if h_out < 1 or w_out < 1:
        raise ValueError(
            f"x of shape {x.shape} is smaller than the kernel {kh}x{kw} with padding "
            f"{padding}; use a larger input or more padding"
        )
    return stride, padding, h_out, w_out


def check_conv2d_grad(
    dy: object, x_shape: tuple[int, ...], W: np.ndarray, stride: int, padding: int
) -> tuple[int, int]:
    """``dy`` of ``conv2d_backward`` for input shape ``x_shape``; returns ``(H_out, W_out)``."""
    c_out, _, kh, kw = W.shape
    n, _, h, w = x_shape
    h_out = conv2d_output_size(h, kh, stride, padding)
    w_out = conv2d_output_size(w, kw, stride, padding)
    check_float_array("dy", dy, "(N, C_out, H_out, W_out)")
    check_shape("dy", dy, (n, c_out, h_out, w_out), "the shape of the forward output y")
    check_grad_dtype(dy, W.dtype)
    return h_out, w_out


def check_labels(labels: object, n: int, n_classes: int) -> np.ndarray:
    """Integer class labels of shape (n,) with values in [0, n_classes)."""
    if (
        not isinstance(labels, np.ndarray)
        or labels.dtype == bool
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        got = labels.dtype if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(
            f"labels must be an integer numpy.ndarray of shape (N,), got {got}; "
            "convert class indices with np.asarray(labels, dtype=np.int64)"
        )
    if labels.shape != (n,):
        raise ValueError(
            f"labels must have shape (N,) = ({n},) to match logits, got {labels.shape}"
        )
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}) for logits with {n_classes} classes, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    return labels


def check_cross_entropy_args(logits: object, labels: object) -> np.ndarray:
    """Arguments of ``softmax_cross_entropy``: logits (N >= 1, C), labels; returns labels."""
    check_float_array("logits", logits, "(N, C)")
    n, n_classes = logits.shape
    if n == 0:
        raise ValueError("logits must hold at least one row (N >= 1), got shape (0, C)")
    return check_labels(labels, n, n_classes)


def check_mse_args(pred: object, target: object) -> None:
    """Arguments of ``mse``: a non-empty float ``pred`` and a numeric ``target`` of its shape."""
    check_float_any("pred", pred)
    if not is_array(target) or not np.issubdtype(target.dtype, np.number):
        raise ValueError(
            "target must be a numeric numpy.ndarray with the shape of pred; "
            "convert it with np.asarray(target, dtype=pred.dtype)"
        )
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"target must have the shape of pred {pred.shape}, got {target.shape}")
    if pred.size == 0:
        raise ValueError("pred must hold at least one element")


def check_maxpool2d_args(x: object, k: object) -> tuple[int, int, int]:
    """Arguments of ``maxpool2d_forward``; returns ``(k, H_out, W_out)`` (floor mode)."""
    check_float_array("x", x, "(N, C, H, W)")
    k = check_positive_int("k", k, 1)
    h_out, w_out = x.shape[2] // k, x.shape[3] // k
    if h_out < 1 or w_out < 1:
        raise ValueError(
            f"x of shape {x.shape} is smaller than the pooling window k={k}; use a smaller k"
        )
    return k, h_out, w_out


def check_maxpool2d_grad(
    dy: object, x_shape: tuple[int, ...], k: int, dtype: object
) -> tuple[int, int]:
    """``dy`` of ``maxpool2d_backward`` for an input of shape ``x_shape`` and dtype ``dtype``;
    returns (H_out, W_out)."""
    n, c, h, w = x_shape
    h_out, w_out = h // k, w // k
    check_float_array("dy", dy, "(N, C, H_out, W_out)")
    check_shape("dy", dy, (n, c, h_out, w_out), "the shape of the forward output y")
    check_grad_dtype(dy, dtype)
    return h_out, w_out
