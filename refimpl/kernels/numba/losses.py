"""Losses on the CPU: softmax cross-entropy fused with its gradient, and mse.

Same math as :mod:`refimpl.ops.losses`:
``L = (1/N) Σ_n [logsumexp(z_n) − z_{n, y_n}]``, ``dlogits = (softmax(z) − onehot(y)) / N``
(row maximum subtracted first, so no ``exp`` overflows); ``L = mean((pred − target)²)``,
``dpred = 2 (pred − target) / pred.size``. The label and shape checks are the oracle's.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from refimpl.kernels.numba import profile
from refimpl.ops.checks import check_cross_entropy_args, check_mse_args


@njit(cache=True, fastmath=False)
def _softmax_cross_entropy(logits, labels):
    """One pass per row: max, exp, sum, log; the row losses are summed in order after."""
    n, n_classes = logits.shape
    dlogits = np.empty_like(logits)
    row_loss = np.empty(n, dtype=logits.dtype)
    for r in range(n):
        top = logits[r, 0]
        for c in range(1, n_classes):
            top = max(top, logits[r, c])
        total = logits[r, 0] * 0
        for c in range(n_classes):
            e = math.exp(logits[r, c] - top)
            dlogits[r, c] = e
            total += e
        row_loss[r] = math.log(total) - (logits[r, labels[r]] - top)
        for c in range(n_classes):
            p = dlogits[r, c] / total
            if c == labels[r]:
                p -= 1
            dlogits[r, c] = p / n
    return row_loss.sum() / n, dlogits


@njit(cache=True, fastmath=False)
def _mse(pred, target):
    """Serial float64 accumulation: deterministic, and accurate for float32 inputs too."""
    scale = 2 / pred.size
    dpred = np.empty_like(pred)
    total = 0.0
    for i in range(pred.size):
        diff = pred[i] - target[i]
        total += float(diff) * float(diff)
        dpred[i] = diff * scale
    return total / pred.size, dpred


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy; logits (N, C), integer labels (N,) -> (loss, dlogits)."""
    labels = check_cross_entropy_args(logits, labels)
    with profile.phase("softmax cross-entropy"):
        loss, dlogits = _softmax_cross_entropy(
            np.ascontiguousarray(logits), np.ascontiguousarray(labels, dtype=np.int64)
        )
    return float(loss), dlogits


def mse(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over all elements -> (loss, dpred)."""
    check_mse_args(pred, target)
    flat_pred = np.ascontiguousarray(pred).reshape(-1)
    flat_target = np.ascontiguousarray(target, dtype=pred.dtype).reshape(-1)
    loss, dpred = _mse(flat_pred, flat_target)
    return float(loss), dpred.reshape(pred.shape)
