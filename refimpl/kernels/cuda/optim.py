"""Optimizer updates on device arrays: :class:`refimpl.optim.SGD` and :class:`~refimpl.optim.Adam`
(and :class:`~refimpl.optim.AdamW`) as one kernel each, one thread per element.

The definition is the NumPy ``_update`` of each class (docs/methods.md §2). Each kernel does
the same operations in the same order, in the parameter's dtype, with every scalar computed
on the host in float64 exactly as ``_update`` computes it and rounded to the parameter's
dtype, as NumPy does when it multiplies an array by a Python float; ``maximize`` negates the
gradient first, as :meth:`refimpl.optim.Optimizer.step` does. On the CUDA simulator the
result is the definition's bit for bit. On a GPU, NVVM may contract ``a * b + c`` into one
fused multiply-add (its default; ``fastmath=False`` does not turn that off), which rounds
once where NumPy rounds twice, so the update agrees to rounding rather than bit for bit.

:func:`step` is ``optimizer.step(grads)`` for parameters, gradients and state that live on
the device; :class:`refimpl.kernels.cuda.train.DeviceStep` calls it. The host-array step
(``Optimizer.step(update=...)``, :func:`update_for`) has no CUDA form: a parameter on the host
is updated by the optimizer's own NumPy code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda

from refimpl.optim import SGD, Adam, AdamW

from ._common import for_dtypes, launch_1d

__all__ = ["array_finite", "step", "supports", "update_for"]


def _make_sgd(scalar: type):
    @cuda.jit
    def sgd(p, g, buf, lr, momentum, damp, weight_decay, first, nesterov, negate):
        """SGD._update for element i (``damp`` is ``1 - dampening``)."""
        i = cuda.grid(1)
        if i >= p.size:
            return
        grad = -g[i] if negate else g[i]
        if weight_decay != 0:
            grad = grad + scalar(weight_decay) * p[i]              # g + weight_decay * w
        if momentum != 0:
            if first:
                b = grad                                           # b <- g
            else:
                b = buf[i] * scalar(momentum) + scalar(damp) * grad  # b *= m; b += (1 - d) g
            buf[i] = b
            grad = grad + scalar(momentum) * b if nesterov else b
        p[i] = p[i] - scalar(lr) * grad                            # w -= lr * g

    return sgd


def _make_adam(scalar: type):
    @cuda.jit
    def adam(p, g, m, v, v_max, negate, decoupled, weight_decay, decay_factor, lerp_weight,
             lerp_rest, beta2, rest2, amsgrad, bias_correction2_sqrt, eps, step_size):
        """Adam._update for element i; the scalars are those of ``_adam_scalars``."""
        i = cuda.grid(1)
        if i >= p.size:
            return
        grad = -g[i] if negate else g[i]
        w = p[i]
        if weight_decay != 0:
            if decoupled:
                w = w * scalar(decay_factor)                       # w *= 1 - lr wd
            else:
                grad = grad + scalar(weight_decay) * w             # g + wd * w
        # m <- lerp(m, g, 1 - beta1), rounded as torch's lerp_ (refimpl.optim.base._lerp_)
        if lerp_weight < 0.5:
            m_i = m[i] + scalar(lerp_weight) * (grad - m[i])
        else:
            m_i = grad - (grad - m[i]) * scalar(lerp_rest)
        m[i] = m_i
        v_i = v[i] * scalar(beta2) + scalar(rest2) * grad * grad   # v *= b2; v += (1 - b2) g g
        v[i] = v_i
        if amsgrad:  # v_max <- max(v_max, v), NaN propagating as np.maximum
            if v_i > v_max[i] or math.isnan(v_i):
                v_max[i] = v_i
            v_i = v_max[i]
        denom = scalar(math.sqrt(v_i)) / scalar(bias_correction2_sqrt) + scalar(eps)
        p[i] = w - scalar(step_size) * (m_i / denom)

    return adam


@cuda.jit
def _zero_kernel(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 0


_SGD = for_dtypes(_make_sgd)
_ADAM = for_dtypes(_make_adam)


def _flat(a: Any) -> Any:
    return a.reshape(a.size)


def zero_(a: Any) -> Any:
    """Fill device array ``a`` with zeros on the device (no copy); returns ``a``."""
    if a.size:
        _zero_kernel[launch_1d(a.size)](_flat(a))
    return a


def zeros_like(a: Any) -> Any:
    """A device array of zeros shaped like device array ``a``, filled on the device."""
    return zero_(cuda.device_array(a.shape, dtype=a.dtype))


def sgd_update(param: Any, grad: Any, host_state: dict, state: dict, group: dict) -> None:
    """:meth:`refimpl.optim.SGD._update` on device arrays; ``state`` holds the device
    ``momentum_buffer`` (made at the first step with momentum, as ``_update`` makes it) and
    ``host_state`` (the optimizer's own state dict of the parameter) nothing of SGD's."""
    momentum = group["momentum"]
    first = momentum != 0 and "momentum_buffer" not in state
    if first:
        state["momentum_buffer"] = cuda.device_array(param.shape, dtype=param.dtype)
    buf = state.get("momentum_buffer", param)  # read only when momentum != 0
    _SGD[np.dtype(param.dtype)][launch_1d(param.size)](
        _flat(param), _flat(grad), _flat(buf), group["lr"], momentum, 1 - group["dampening"],
        group["weight_decay"], first, group["nesterov"], group["maximize"])


def _adam_scalars(group: dict, step: int) -> dict[str, float]:
    """The host scalars of :meth:`refimpl.optim.Adam._update` at step ``step`` (1-based),
    computed by the same expressions in float64."""
    lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
    lerp_weight = 1 - beta1
    return {
        "decay_factor": 1 - lr * weight_decay,
        "lerp_weight": lerp_weight, "lerp_rest": 1 - lerp_weight,
        "beta2": beta2, "rest2": 1 - beta2,
        "bias_correction2_sqrt": (1 - beta2**step) ** 0.5,
        "eps": group["eps"],
        "step_size": lr / (1 - beta1**step),
    }


def adam_update(param: Any, grad: Any, host_state: dict, state: dict, group: dict) -> None:
    """:meth:`refimpl.optim.Adam._update` on device arrays.

    ``host_state`` is the optimizer's own state dict of the parameter, where the step count
    ``step`` stays; ``state`` holds the device moments ``exp_avg``, ``exp_avg_sq`` (and
    ``max_exp_avg_sq`` under amsgrad), made as zeros at the first step as ``_update`` makes
    them.
    """
    if "step" not in host_state:
        host_state["step"] = 0
    for name in ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ()):
        if name not in state:
            state[name] = zeros_like(param)
    host_state["step"] += 1
    scalars = _adam_scalars(group, host_state["step"])
    v_max = state.get("max_exp_avg_sq", param)  # read only under amsgrad
    _ADAM[np.dtype(param.dtype)][launch_1d(param.size)](
        _flat(param), _flat(grad), _flat(state["exp_avg"]), _flat(state["exp_avg_sq"]),
        _flat(v_max), group["maximize"], group["decoupled_weight_decay"],
        group["weight_decay"], scalars["decay_factor"], scalars["lerp_weight"],
        scalars["lerp_rest"], scalars["beta2"], scalars["rest2"], group["amsgrad"],
        scalars["bias_correction2_sqrt"], scalars["eps"], scalars["step_size"])


#: The per-parameter update of each optimizer class that runs on the device.
_UPDATES = {SGD: sgd_update, Adam: adam_update, AdamW: adam_update}


def supports(optimizer: Any) -> bool:
    """True for the optimizers :func:`step` runs: SGD, Adam and AdamW (not their subclasses,
    whose ``_update`` may differ)."""
    return type(optimizer) in _UPDATES


def step(optimizer: Any, params: list, grads: list, state: dict[int, dict]) -> None:
    """``optimizer.step(grads)`` with parameters, gradients and moments on the device.

    Parameters
    ----------
    optimizer : refimpl.optim.SGD, Adam or AdamW
        Its ``param_groups`` give the hyper-parameters (read at every call, so a scheduler's
        rates apply); ``optimizer.state[k]`` keeps the host part of parameter ``k``'s state
        (Adam's ``step``).
    params, grads : lists of device arrays
        In the optimizer's parameter order (groups concatenated); a ``None`` gradient skips
        its parameter, as in :meth:`refimpl.optim.Optimizer.step`.
    state : dict
        ``{k: {name: device array}}``, the device part of the state; updated in place.

    ``explain()`` describes host steps only: after this step it reports no update.
    """
    if not supports(optimizer):
        raise ValueError(f"optimizer must be SGD, Adam or AdamW for the CUDA update, got "
                         f"{type(optimizer).__name__}")
    if len(grads) != len(params):
        raise ValueError(f"grads has {len(grads)} arrays but there are {len(params)} parameters")
    optimizer._steps += 1  # what Optimizer.step counts; it has no numbers for explain()
    optimizer._used = {}
    update = _UPDATES[type(optimizer)]
    index = 0
    for group in optimizer.param_groups:
        for _ in group["params"]:
            if grads[index] is not None:
                update(params[index], grads[index], optimizer.state.setdefault(index, {}),
                       state.setdefault(index, {}), group)
            index += 1


def update_for(optimizer: Any) -> None:
    """None: this backend has no update of host arrays (``Optimizer.step(update=...)``), so
    the optimizer's NumPy update runs; the device-resident step calls :func:`step`."""


def array_finite(array: np.ndarray) -> bool:
    """``np.isfinite(array).all()`` of a host array (the trainer's check of host gradients)."""
    return bool(np.isfinite(array).all())
