"""Losses, each returning ``(loss, dinput)``: the mean loss as a Python float and its gradient."""

from __future__ import annotations

import numpy as np

from refimpl.ops.checks import check_cross_entropy_args, check_mse_args


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
    labels = check_cross_entropy_args(logits, labels)
    n = logits.shape[0]
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
    check_mse_args(pred, target)
    diff = pred - target.astype(pred.dtype, copy=False)
    loss = float(np.mean(diff * diff))
    return loss, diff * (2 / pred.size)
