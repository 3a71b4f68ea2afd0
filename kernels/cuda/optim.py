"""SGD with momentum on device arrays (torch.optim.SGD semantics, docs/methods.md §2).

Per element, with weight decay ``wd``, momentum ``μ``, dampening ``d``:

    g ← g + wd · w
    b ← g                       on the first step,   b ← μ b + (1 − d) g   after
    g ← g + μ b  (nesterov)     or   g ← b
    w ← w − lr · g

Parameters, gradients and momentum buffers stay on the device; the learning rate is read
from a float64 device array (``lrs[group]``) so a device scheduler can change it between
steps without a host round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import cuda

from ._common import check_device_float, check_same_dtype, check_shape, is_device_array, launch_1d


@cuda.jit
def _sgd_kernel(w, g, buf, lrs, group, momentum, dampening, weight_decay, nesterov, first):
    i = cuda.grid(1)
    if i >= w.size:
        return
    grad = g[i] + weight_decay * w[i]
    if momentum != 0:
        if first:
            velocity = grad
        else:
            velocity = momentum * buf[i] + (1 - dampening) * grad
        buf[i] = velocity
        if nesterov:
            grad = grad + momentum * velocity
        else:
            grad = velocity
    w[i] = w[i] - lrs[group] * grad


class SGD:
    """SGD (momentum, dampening, nesterov, weight decay) over device-resident parameters.

    Parameters
    ----------
    params : list of device arrays (float32/float64), updated in place by :meth:`step`
    lr : float, or a float64 device array of per-group rates shared with a device scheduler
    momentum, dampening, weight_decay : float
    nesterov : bool (needs ``momentum > 0`` and ``dampening == 0``, as torch)
    groups : list of int, the group of each parameter (default: all in group 0)
    """

    def __init__(
        self,
        params: Sequence,
        lr=0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        groups: Sequence[int] | None = None,
    ):
        for k, p in enumerate(params):
            check_device_float(f"params[{k}]", p)
        for name, value in (("momentum", momentum), ("weight_decay", weight_decay)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        self.params = list(params)
        self.groups = [0] * len(self.params) if groups is None else [int(g) for g in groups]
        if len(self.groups) != len(self.params):
            raise ValueError(f"groups has {len(self.groups)} entries for {len(self.params)} params")
        if is_device_array(lr):
            self.lrs = lr
        else:
            self.lrs = cuda.to_device(np.full(max(self.groups) + 1, float(lr)))
        if max(self.groups) >= self.lrs.size:
            raise ValueError(
                f"lr holds {self.lrs.size} group rates but groups uses {max(self.groups) + 1}"
            )
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)
        self.buffers = [cuda.device_array_like(p) for p in self.params] if momentum else None
        self.steps = 0

    def step(self, grads: Sequence) -> None:
        """Update every parameter in place from ``grads`` (same order), on the device."""
        if len(grads) != len(self.params):
            raise ValueError(f"grads has {len(grads)} arrays for {len(self.params)} params")
        for k, (w, g) in enumerate(zip(self.params, grads)):
            check_device_float(f"grads[{k}]", g)
            check_same_dtype(param=w, grad=g)
            check_shape(f"grads[{k}]", g, tuple(w.shape), f"the shape of params[{k}]")
            n = w.size
            buf = self.buffers[k].reshape(n) if self.buffers else w.reshape(n)
            _sgd_kernel[launch_1d(n)](
                w.reshape(n),
                g.reshape(n),
                buf,
                self.lrs,
                self.groups[k],
                self.momentum,
                self.dampening,
                self.weight_decay,
                self.nesterov,
                self.steps == 0,
            )
        self.steps += 1
