"""A training step that stays on the GPU: :class:`DeviceStep`, which ``Trainer`` runs for a
model on the ``cuda`` backend.

What lives where
----------------
* **device**: the parameters, the gradients of the last step, the optimizer's moments
  (SGD's ``momentum_buffer``; Adam's ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``), the
  batch, and the step's result: the loss, the count of correct predictions and a
  non-finite flag, three float64 numbers.
* **host**: the scalars that steer the step (the rates and other hyper-parameters, read from
  ``optimizer.param_groups`` at every step, so a scheduler's rates apply at once; Adam's
  step count), and the model's and optimizer's own arrays, which are refreshed from the
  device by :meth:`DeviceStep.pull` when something reads them (the trainer's
  ``state_dict``, checkpoints, evaluation, callbacks, a scheduler that reads parameters or
  gradients, the end of ``fit``).

Copies per step: **one in**, x and y packed into one pinned staging buffer and copied
together; **one out**, the three result numbers, which is also the step's one
synchronisation with the host. The trainer needs the loss at every step: it records it in
the history, passes it to the callbacks and to a scheduler that reads it, and checks it,
with the gradients' flag, against its NaN policy. The optimizer's kernels are launched
after that copy, only when the loss and every gradient are finite, as the host step skips
them; they then run while the host prepares the next batch.

A step runs the model's plan (:mod:`refimpl.kernels.plan`: the same fused steps as on the
host) through :mod:`refimpl.kernels.cuda.device`, and the update through
:mod:`refimpl.kernels.cuda.optim`. :func:`supports` says which models and optimizers it
covers (layers Dense, Conv2d, MaxPool2d, Flatten and the activations; SGD, Adam, AdamW);
anything else trains as before, op by op on host arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float64

from refimpl.kernels.plan import Conv2dReLU, Conv2dReLUPool, DenseReLU
from refimpl.layers import Activation, Conv2d, Dense, Flatten, MaxPool2d
from refimpl.ops import checks

from . import device, optim
from ._common import REDUCE_THREADS, block_sum, launch_1d, to_device

__all__ = ["DeviceStep", "resident_step", "supports"]


def _losses() -> list[str]:
    """The trainer's losses (both run on the device), from the name table."""
    from refimpl.registry import loss_names

    return loss_names()

#: Batch shapes whose staging buffers a step keeps (a full batch and an epoch's last one).
_KEPT_BATCH_SHAPES = 4


# --- the kernels of the step's result ---------------------------------------------------


@cuda.jit
def _count_hits_kernel(logits, labels, out, index):
    """out[index] = number of rows whose first arg-max (np.argmax's rule: the first NaN, else
    the first maximum) is their label. One block; rows are shared among its threads."""
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    hits = 0.0
    for n in range(tid, logits.shape[0], REDUCE_THREADS):
        best = 0
        for c in range(1, logits.shape[1]):
            value, top = logits[n, c], logits[n, best]
            if value > top or (math.isnan(value) and not math.isnan(top)):
                best = c
        if best == labels[n]:
            hits += 1.0
    block_sum(shared, tid, hits)
    if tid == 0:
        out[index] = shared[0]


@cuda.jit
def _flag_non_finite_kernel(a, out, index):
    """out[index] = 1 when an element of ``a`` is NaN or inf (every writer writes the same 1)."""
    i = cuda.grid(1)
    if i < a.size and (math.isinf(a[i]) or math.isnan(a[i])):
        out[index] = 1.0


# --- the model's steps on device arrays -------------------------------------------------


class _WeightOp:
    """A Dense or Conv2d step, or a fused one: ``device.{op}_forward(x, W, b, *options)``."""

    def __init__(self, op: str, options: tuple, weight: int, bias: int) -> None:
        self.forward_op = getattr(device, f"{op}_forward")
        self.backward_op = getattr(device, f"{op}_backward")
        self.options, self.weight, self.bias = options, weight, bias

    def forward(self, x, params: list):
        return self.forward_op(x, params[self.weight], params[self.bias], *self.options)

    def backward(self, dy, cache, need_dx: bool, grads: list):
        dx, grads[self.weight], grads[self.bias] = self.backward_op(dy, cache, need_dx=need_dx)
        return dx


class _Op:
    """A step without parameters: ``forward(x, *options) -> (y, cache)``, ``backward(dy, cache)``."""

    weight = None

    def __init__(self, forward, backward, options: tuple = ()) -> None:
        self.forward_op, self.backward_op, self.options = forward, backward, options

    def forward(self, x, params: list):
        return self.forward_op(x, *self.options)

    def backward(self, dy, cache, need_dx: bool, grads: list):
        return self.backward_op(dy, cache)


def _flatten_forward(x):
    """(N, d1, d2, ...) -> (N, d1 d2 ...): a view of the same device memory."""
    return x.reshape(x.shape[0], x.size // x.shape[0]), tuple(x.shape)


def _flatten_backward(dy, shape):
    return dy.reshape(shape)


_FUSED = (DenseReLU, Conv2dReLU, Conv2dReLUPool)


def _device_op(step: Any, position: dict[int, int]) -> _WeightOp | _Op | None:
    """The device form of one step of a model's plan, or None for a kind it does not cover.

    Types are matched exactly: a subclass may compute something else."""
    kind = type(step)
    if kind in _FUSED or kind in (Dense, Conv2d):
        if set(step.params) != {"W", "b"}:
            return None
        if kind in _FUSED:
            op, options = step.op, step.options()
        elif kind is Dense:
            op, options = "dense", ()
        else:
            op, options = "conv2d", (step.stride, step.padding)
        return _WeightOp(op, options, position[id(step.params["W"])],
                         position[id(step.params["b"])])
    if kind is MaxPool2d:
        return _Op(device.maxpool2d_forward, device.maxpool2d_backward, (step.k,))
    if kind is Activation:
        return _Op(getattr(device, f"{step.name}_forward"), getattr(device, f"{step.name}_backward"))
    if kind is Flatten:
        return _Op(_flatten_forward, _flatten_backward)
    return None


def _device_ops(model: Any) -> list | None:
    """The device form of every step of ``model.plan``, or None when one is not covered."""
    position = {id(p): k for k, p in enumerate(model.parameters())}
    ops = [_device_op(step, position) for step in model.plan.steps]
    return None if any(op is None for op in ops) else ops


def supports(model: Any, optimizer: Any, loss: str) -> bool:
    """True when :class:`DeviceStep` covers ``model`` (every step of its plan), ``optimizer``
    (:func:`refimpl.kernels.cuda.optim.supports`) and ``loss``."""
    return (loss in _losses() and optim.supports(optimizer) and hasattr(model, "plan")
            and _device_ops(model) is not None)


# --- the batch: one copy in -------------------------------------------------------------


class _Batch:
    """Staging buffers for batches of one shape: x and y side by side in one pinned host
    buffer and one device buffer of bytes, so one copy moves both. y starts at an 8-byte
    boundary; on the device, x and y are views of the buffer with their own dtypes."""

    def __init__(self, x_shape: tuple, x_dtype: np.dtype, y_shape: tuple, y_dtype: np.dtype):
        x_bytes = math.prod(x_shape) * x_dtype.itemsize
        y_start = -(-x_bytes // 8) * 8
        total = y_start + math.prod(y_shape) * y_dtype.itemsize
        self.host = cuda.pinned_array(total, dtype=np.uint8)
        self.device = cuda.device_array(total, dtype=np.uint8)
        parts = ((0, x_bytes, x_dtype, x_shape), (y_start, total, y_dtype, y_shape))
        self.x_host, self.y_host = (self.host[a:b].view(t).reshape(s) for a, b, t, s in parts)
        self.x, self.y = (self.device[a:b].view(t).reshape(s) for a, b, t, s in parts)

    def copy_in(self, xb: np.ndarray, yb: np.ndarray) -> tuple[Any, Any]:
        """Stage ``xb`` and ``yb`` (cast to the buffer's dtypes) and copy both to the device."""
        self.x_host[...] = xb
        self.y_host[...] = yb
        self.device.copy_to_device(self.host)
        return self.x, self.y


# --- the step ----------------------------------------------------------------------------


class DeviceStep:
    """Parameters, gradients and optimizer state of one model on the device, and its step.

    Parameters
    ----------
    model : refimpl.model.Sequential
        On the ``cuda`` backend; its plan's steps must all be covered (:func:`supports`).
    optimizer : refimpl.optim.SGD, Adam or AdamW
        Built over ``model.parameters()``.
    loss : {"cross_entropy", "mse"}

    The device copies are made at the first :meth:`step` (or after :meth:`invalidate`) from
    the host arrays; :meth:`pull` copies back what the device holds newer.
    """

    def __init__(self, model: Any, optimizer: Any, loss: str) -> None:
        if not supports(model, optimizer, loss):
            raise ValueError(
                "DeviceStep needs a model of Dense, Conv2d, MaxPool2d, Flatten and activation "
                f"layers, an SGD, Adam or AdamW optimizer and a loss in {tuple(_losses())}; got "
                f"{type(optimizer).__name__} and {loss!r}")
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self._plan = model.plan
        self._host_params = model.parameters()
        self._ops = _device_ops(model)
        self._first_trainable = next(
            (k for k, op in enumerate(self._ops) if op.weight is not None), 0)
        self._result = cuda.device_array(3, dtype=np.float64)   # loss, hits, non-finite
        self._result_host = cuda.pinned_array(3, dtype=np.float64)
        self._batches: dict[tuple, _Batch] = {}
        self.invalidate()

    # -- where the numbers are ----------------------------------------------------------
    def fits(self, model: Any, optimizer: Any, loss: str) -> bool:
        """True while this step serves ``model`` (same plan and arrays), ``optimizer``, ``loss``."""
        params = model.parameters()
        return (model is self.model and optimizer is self.optimizer and loss == self.loss
                and model.plan is self._plan and len(params) == len(self._host_params)
                and all(a is b for a, b in zip(params, self._host_params)))

    def invalidate(self) -> None:
        """The host arrays changed (a loaded state, a new run): the next step copies them to
        the device again, and what the device held is dropped."""
        self._params: list | None = None
        self._grads: list = [None] * len(self._host_params)
        self._state: dict[int, dict[str, Any]] = {}
        self._stale: set[str] = set()   # host parts older than the device's

    def push(self) -> None:
        """Copy the model's parameters and the optimizer's state arrays to the device."""
        self._params = [to_device(p) for p in self._host_params]
        self._state = {index: {name: to_device(value) for name, value in entry.items()
                               if isinstance(value, np.ndarray)}
                       for index, entry in self.optimizer.state.items()}
        self._grads = [None] * len(self._host_params)
        self._stale = set()

    def pull(self, *parts: str) -> None:
        """Copy to the host what the device holds newer: ``"params"`` (into the model's
        arrays, in place), ``"state"`` (into ``optimizer.state``) and ``"grads"`` (into
        ``model.gradients()``); no parts means params and state. A part the host already
        holds is not copied."""
        parts = set(parts or ("params", "state")) & self._stale
        if "params" in parts:
            for on_device, host in zip(self._params, self._host_params):
                on_device.copy_to_host(host)
        if "state" in parts:
            for index, entry in self._state.items():
                host = self.optimizer.state.setdefault(index, {})
                host.update({name: on_device.copy_to_host() for name, on_device in entry.items()})
        if "grads" in parts:
            for on_device, host in zip(self._grads, self.model.gradients()):
                if on_device is not None:
                    on_device.copy_to_host(host)
        self._stale -= parts

    # -- the step -------------------------------------------------------------------------
    def step(self, xb: np.ndarray, yb: np.ndarray) -> tuple[float, int, bool]:
        """One training step on the batch ``(xb, yb)``: ``(loss, correct, finite)``.

        Forward, loss, backward and the finite check of the gradients run on the device;
        then the three result numbers come back (the one copy out); when the loss and every
        gradient are finite the optimizer's kernels are launched, else nothing is updated
        (``finite`` is False). ``correct`` counts the rows whose arg-max is their label
        (0 for ``mse``).
        """
        if self._params is None:
            self.push()
        self._check_targets(xb, yb)
        x, target = self._batch(xb, yb).copy_in(xb, yb)   # the one copy in
        optim.zero_(self._result)
        logits, caches = self._forward(x)
        if self.loss == "cross_entropy":
            checks.check_cross_entropy_args(logits, yb)
            _, dlogits = device.softmax_cross_entropy(logits, target, self._result, 0)
            _count_hits_kernel[1, REDUCE_THREADS](logits, target, self._result, 1)
        else:
            checks.check_mse_args(logits, yb)
            _, dlogits = device.mse(logits, target, self._result, 0)
        self._backward(dlogits, caches)
        for grad in self._grads:
            _flag_non_finite_kernel[launch_1d(grad.size)](grad.reshape(grad.size), self._result, 2)
        self._result.copy_to_host(self._result_host)       # the one copy out; waits for the step
        loss, correct, non_finite = (float(v) for v in self._result_host)
        finite = math.isfinite(loss) and non_finite == 0
        self._stale.add("grads")
        if finite:
            optim.step(self.optimizer, self._params, self._grads, self._state)
            self._stale |= {"params", "state"}
        return loss, int(correct), finite

    def _check_targets(self, xb: np.ndarray, yb: np.ndarray) -> None:
        """What must hold before y is staged (the rest is checked against the logits):
        integer labels of shape (N,), or a numeric target; x of the parameters' dtype."""
        checks.check_float_any("x", xb)
        checks.check_same_dtype("x", xb, "W", self._host_params[0])
        n = len(xb)
        if self.loss == "cross_entropy":
            if not (isinstance(yb, np.ndarray) and yb.dtype.kind in "iu" and yb.shape == (n,)):
                checks.check_labels(yb, n, 1)  # raises the oracle's error for these labels
        elif not (isinstance(yb, np.ndarray) and np.issubdtype(yb.dtype, np.number)):
            checks.check_mse_args(xb, yb)      # raises the oracle's error for this target

    def _batch(self, xb: np.ndarray, yb: np.ndarray) -> _Batch:
        y_dtype = np.dtype(np.int64) if self.loss == "cross_entropy" else xb.dtype
        key = (xb.shape, xb.dtype, yb.shape, y_dtype)
        if key not in self._batches:
            if len(self._batches) >= _KEPT_BATCH_SHAPES:
                self._batches.clear()
            self._batches[key] = _Batch(xb.shape, xb.dtype, yb.shape, y_dtype)
        return self._batches[key]

    def _forward(self, x) -> tuple[Any, list]:
        caches = []
        for op in self._ops:
            x, cache = op.forward(x, self._params)
            caches.append(cache)
        return x, caches

    def _backward(self, dy, caches: list) -> None:
        """Every step's backward in reverse order, filling the device gradients; as
        :meth:`refimpl.kernels.plan.Plan.backward` with ``input_grad=False``, nothing before
        the first step with parameters runs, nor that step's input gradient."""
        start = self._first_trainable
        for k in range(len(self._ops) - 1, start - 1, -1):
            dy = self._ops[k].backward(dy, caches[k], k > start, self._grads)


def resident_step(model: Any, optimizer: Any, loss: str,
                  previous: DeviceStep | None = None) -> DeviceStep | None:
    """The :class:`DeviceStep` for ``model``, ``optimizer`` and ``loss``: ``previous`` while it
    still fits them, else a new one (``previous`` first copies its newer arrays back), or
    None when they are not covered (:func:`supports`)."""
    if previous is not None:
        if previous.fits(model, optimizer, loss):
            return previous
        previous.pull()
    return DeviceStep(model, optimizer, loss) if supports(model, optimizer, loss) else None
