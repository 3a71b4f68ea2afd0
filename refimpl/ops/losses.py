"""Losses, each returning ``(loss, dinput)``: the mean loss as a Python float and its gradient."""

from __future__ import annotations

import numpy as np

from refimpl.ops._checks import check_float_any, check_float_array


def _check_labels(labels: object, n: int, n_classes: int) -> np.ndarray:
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


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy with integer class labels.

    ``L = (1/N) Σ_n [logsumexp(z_n) − z_{n, y_n}]``, evaluated after subtracting the row
    maximum so no ``exp`` overflows; ``dlogits = (softmax(z) − onehot(y)) / N``.

    Parameters
    ----------
    logits : ndarray, shape (N, C), float32 or float64
    labels : ndarray of int, shape (N,), values in [0, C)

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (N, C), dtype of ``logits``
    """
    check_float_array("logits", logits, "(N, C)")
    n, n_classes = logits.shape
    if n == 0:
        raise ValueError("logits must hold at least one row (N >= 1), got shape (0, C)")
    labels = _check_labels(labels, n, n_classes)
    rows = np.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    log_likelihood = shifted[rows, labels] - np.log(sum_exp[:, 0])
    loss = -float(log_likelihood.mean())
    dlogits = exp / sum_exp
    dlogits[rows, labels] -= 1
    dlogits /= n
    return loss, dlogits


def mse(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over all elements: ``L = mean((pred − target)²)``.

    ``dpred = 2 (pred − target) / pred.size``, as ``torch.nn.functional.mse_loss``.

    Parameters
    ----------
    pred : ndarray, any shape, float32 or float64
    target : ndarray, the same shape (cast to ``pred``'s dtype)

    Returns
    -------
    loss : float
    dpred : ndarray, the shape and dtype of ``pred``
    """
    check_float_any("pred", pred)
    if not isinstance(target, np.ndarray) or not np.issubdtype(target.dtype, np.number):
        raise ValueError(
            "target must be a numeric numpy.ndarray with the shape of pred; "
            "convert it with np.asarray(target, dtype=pred.dtype)"
        )
    if target.shape != pred.shape:
        raise ValueError(f"target must have the shape of pred {pred.shape}, got {target.shape}")
    if pred.size == 0:
        raise ValueError("pred must hold at least one element")
    diff = pred - target.astype(pred.dtype, copy=False)
    loss = float(np.mean(diff * diff))
    return loss, diff * (2 / pred.size)
