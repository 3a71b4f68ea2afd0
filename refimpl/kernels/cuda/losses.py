"""Losses on device arrays; each returns the loss as a 1-element float64 device array.

softmax cross-entropy (integer labels, mean over the batch; docs/methods.md §1):

    m_n = max_c z[n, c],   lse_n = m_n + log Σ_c e^(z[n, c] − m_n)
    L   = (1/N) Σ_n (lse_n − z[n, label_n])
    dz[n, c] = (e^(z[n, c] − lse_n) − [c = label_n]) / N

mean squared error over all elements: ``L = mean((y − t)²)``, ``dy = 2 (y − t) / y.size``.

The loss stays on the device (``loss_out[index]``) so a device scheduler can read it
without a host round trip; the NumPy-level functions of ``refimpl.kernels.cuda`` copy it out.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from refimpl.ops.checks import check_float_array, check_mse_args, check_shape

from ._common import check_on_device, is_device_array, launch_1d, reduce_sum


@cuda.jit
def _softmax_cross_entropy_kernel(logits, labels, row_loss, dlogits):
    """One thread per row: stable log-sum-exp, the row's loss, and its gradient row.

    A label outside ``[0, C)`` makes the row's loss and gradient NaN, so the error is
    visible in the loss without a host check.
    """
    n = cuda.grid(1)
    n_rows, n_classes = logits.shape
    if n >= n_rows:
        return
    label = labels[n]
    if label < 0 or label >= n_classes:
        row_loss[n] = math.nan
        for c in range(n_classes):
            dlogits[n, c] = math.nan
        return
    peak = logits[n, 0]
    for c in range(1, n_classes):
        peak = max(peak, logits[n, c])
    total = 0.0
    for c in range(n_classes):
        total += math.exp(np.float64(logits[n, c]) - peak)
    lse = peak + math.log(total)
    row_loss[n] = lse - logits[n, label]
    for c in range(n_classes):
        prob = math.exp(np.float64(logits[n, c]) - lse)
        dlogits[n, c] = (prob - (1.0 if c == label else 0.0)) / n_rows


@cuda.jit
def _squared_error_kernel(pred, target, squared, dpred):
    """One thread per element: squared[i] = (y − t)², dpred[i] = 2 (y − t) / size."""
    i = cuda.grid(1)
    if i < pred.size:
        diff = pred[i] - target[i]
        squared[i] = np.float64(diff) * np.float64(diff)
        dpred[i] = 2 * diff / pred.size


def _loss_slot(loss_out, index: int):
    if loss_out is None:
        return cuda.device_array(1, dtype=np.float64), 0
    if not is_device_array(loss_out) or np.dtype(loss_out.dtype) != np.float64:
        raise ValueError("loss_out must be a float64 numba device array (or None)")
    if not 0 <= index < loss_out.size:
        raise ValueError(f"index must be in [0, {loss_out.size}) for loss_out, got {index}")
    return loss_out, index


def softmax_cross_entropy(logits, labels, loss_out=None, index: int = 0):
    """Mean softmax cross-entropy and its gradient (equations in the module docstring).

    Parameters
    ----------
    logits : device array (N, C), float32 or float64
    labels : integer device array (N,), values in ``[0, C)`` (others give a NaN loss)
    loss_out : float64 device array or None
        Where to write the loss (``loss_out[index]``), e.g. an epoch's batch-loss buffer;
        ``None`` allocates a 1-element array.

    Returns
    -------
    loss : float64 device array holding the loss at ``[index]``
    dlogits : device array (N, C), dtype of ``logits``
    """
    check_on_device(logits=logits, labels=labels)
    check_float_array("logits", logits, "(N, C)")
    n_rows = logits.shape[0]
    if n_rows == 0:
        raise ValueError("logits must hold at least one row (N >= 1), got shape (0, C)")
    # Labels stay on the device, so their values are not checked here (the NumPy-level
    # function checks them as the oracle does); an out-of-range label gives a NaN loss.
    if np.dtype(labels.dtype).kind not in "iu":
        raise ValueError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    check_shape("labels", labels, (n_rows,), "one label per row of logits")
    loss_out, index = _loss_slot(loss_out, index)
    row_loss = cuda.device_array(n_rows, dtype=np.float64)
    dlogits = cuda.device_array(logits.shape, dtype=logits.dtype)
    _softmax_cross_entropy_kernel[launch_1d(n_rows)](logits, labels, row_loss, dlogits)
    reduce_sum(row_loss, loss_out, index, scale=1.0 / n_rows)
    return loss_out, dlogits


def mse(pred, target, loss_out=None, index: int = 0):
    """Mean squared error over all elements and its gradient.

    Parameters
    ----------
    pred, target : device arrays of the same shape and dtype
    loss_out, index : as in :func:`softmax_cross_entropy`

    Returns
    -------
    loss : float64 device array holding the loss at ``[index]``
    dpred : device array, shape and dtype of ``pred``
    """
    check_on_device(pred=pred, target=target)
    check_mse_args(pred, target)
    if target.dtype != pred.dtype:
        raise ValueError(f"target has dtype {target.dtype}; cast it to pred's {pred.dtype}")
    n = pred.size
    loss_out, index = _loss_slot(loss_out, index)
    squared = cuda.device_array(n, dtype=np.float64)
    dpred = cuda.device_array(pred.shape, dtype=pred.dtype)
    _squared_error_kernel[launch_1d(n)](
        pred.reshape(n), target.reshape(n), squared, dpred.reshape(n)
    )
    reduce_sum(squared, loss_out, index, scale=1.0 / n)
    return loss_out, dpred
