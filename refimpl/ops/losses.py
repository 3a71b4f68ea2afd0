"""Losses, each returning ``(loss, dinput)``: the mean loss as a Python float and its gradient."""

from __future__ import annotations

import numpy as np

from refimpl.ops.checks import check_cross_entropy_args, check_mse_args


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy with integer class labels (docs/methods.md §1).

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

    Examples
    --------
    Equal logits over four classes: the loss is ``log 4`` and each row of the gradient is
    ``(1/4 − onehot) / N``:

    >>> import numpy as np
    >>> from refimpl.ops import softmax_cross_entropy
    >>> loss, dlogits = softmax_cross_entropy(np.zeros((2, 4)), np.array([1, 3]))
    >>> print(f"{loss:.6f}")  # log 4
    1.386294
    >>> print(dlogits)
    [[ 0.125 -0.375  0.125  0.125]
     [ 0.125  0.125  0.125 -0.375]]
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
    """Mean squared error over all elements: ``L = mean((pred − target)²)`` (docs/methods.md §1).

    ``dpred = 2 (pred − target) / pred.size``, as ``torch.nn.functional.mse_loss``.

    Parameters
    ----------
    pred : ndarray, any shape, float32 or float64
    target : ndarray, the same shape (cast to ``pred``'s dtype)

    Returns
    -------
    loss : float
    dpred : ndarray, the shape and dtype of ``pred``

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.ops import mse
    >>> loss, dpred = mse(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))
    >>> loss  # (1² + 2²) / 2
    2.5
    >>> print(dpred)  # 2 (pred − target) / 2
    [[1. 2.]]
    """
    check_mse_args(pred, target)
    diff = pred - target.astype(pred.dtype, copy=False)
    loss = float(np.mean(diff * diff))
    return loss, diff * (2 / pred.size)
