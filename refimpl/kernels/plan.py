"""How a model's layers run on a backend: the steps, chosen once when the backend is set.

The layers (:mod:`refimpl.layers`) are the definition of a model; a :class:`Plan` is the
list of steps that runs them on one backend, with the loops that run the steps. It makes
three choices, none of which changes a number:

* **Fusion.** With ``fuse`` (by default on every backend but the oracle, which runs the
  layers exactly as written), a ``Dense`` or ``Conv2d`` directly followed by
  ``Activation("relu")`` runs as one :class:`DenseReLU` / :class:`Conv2dReLU` step, which
  calls the backend's fused op, and a :class:`Conv2dReLU` step directly followed by
  ``MaxPool2d`` as one :class:`Conv2dReLUPool` step. The fused ops are the compositions of
  the basic ones (:mod:`refimpl.ops.fused`, docs/methods.md §1), so the numbers are those of
  the layers in turn. A step shares its ``Dense``/``Conv2d`` layer's ``params`` and ``grads``
  dicts, so parameter names, order and arrays stay the layers'.
* **Gradient buffers.** A backend may name, in its ``GRADS_OUT``, backward ops that accept
  ``out=(dW, db)``: arrays that receive the parameter gradients (the numba backend's
  ``dense_backward`` and ``dense_relu_backward``). A fused step hands them its layer's
  gradient buffers, sparing a copy per step; other ops' gradients are copied in.
* **The input gradient.** No one reads the gradient with respect to a model's input during
  training: ``Plan.backward(dy, input_grad=False)`` passes ``need_dx=False`` (a keyword of
  every backward op with parameters, ``refimpl.kernels.NEED_DX``) to the first step with
  parameters, and runs no step before it.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import numpy as np

from refimpl import ops as oracle
from refimpl.layers import Activation, Conv2d, Dense, Layer, MaxPool2d


class FusedStep:
    """Runs a ``Dense`` or ``Conv2d`` layer and the layers fused after it as one op of the
    backend, ``{op}_forward(x, W, b, *options)`` / ``{op}_backward(dy, cache, need_dx=...)``.

    ``params`` and ``grads`` are the first layer's dicts (the same objects).
    """

    op: str

    def __init__(self, layers: Sequence[Layer], ops: types.ModuleType) -> None:
        self.layers = tuple(layers)
        self.params, self.grads = self.layers[0].params, self.layers[0].grads
        self.ops = ops
        self._cache = None

    def options(self) -> tuple:
        """The op's arguments after ``(x, W, b)``."""
        return ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        forward = getattr(self.ops, f"{self.op}_forward")
        y, self._cache = forward(x, self.params["W"], self.params["b"], *self.options())
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Fill ``grads`` (written in place when the backend can) and return ``dx``."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        cache, self._cache = self._cache, None
        name = f"{self.op}_backward"
        buffers = (self.grads["W"], self.grads["b"])
        out = {"out": buffers} if name in getattr(self.ops, "GRADS_OUT", ()) else {}
        dx, dW, db = getattr(self.ops, name)(dy, cache, need_dx=need_dx, **out)
        for buffer, value in zip(buffers, (dW, db)):
            if value is not buffer:  # else the op wrote it there
                np.copyto(buffer, value)
        return dx

    def clear_cache(self) -> None:
        """Drop the cache of the last ``forward`` (its ``backward`` will not run)."""
        self._cache = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(layer) for layer in self.layers)})"


class DenseReLU(FusedStep):
    """``y = max(x W + b, 0)``: a ``Dense`` and the relu after it (``dense_relu_*``)."""

    op = "dense_relu"

    @property
    def dense(self) -> Dense:
        return self.layers[0]


class Conv2dReLU(FusedStep):
    """``y = max(conv2d(x), 0)``: a ``Conv2d`` and the relu after it (``conv2d_relu_*``)."""

    op = "conv2d_relu"

    @property
    def conv(self) -> Conv2d:
        return self.layers[0]

    def options(self) -> tuple:
        return self.conv.stride, self.conv.padding


class Conv2dReLUPool(FusedStep):
    """``y = maxpool2d(max(conv2d(x), 0), k)``: a ``Conv2d``, its relu and the ``MaxPool2d``
    after them (``conv2d_relu_maxpool2d_*``)."""

    op = "conv2d_relu_maxpool2d"

    @property
    def conv(self) -> Conv2d:
        return self.layers[0]

    @property
    def pool(self) -> MaxPool2d:
        return self.layers[2]

    def options(self) -> tuple:
        return self.conv.stride, self.conv.padding, self.pool.k


def fuse_relu(layers: Sequence[Layer], ops: types.ModuleType) -> list:
    """The steps that run ``layers`` on backend module ``ops`` with fusion: each Dense/Conv2d
    directly followed by ``Activation("relu")`` becomes one :class:`DenseReLU`/
    :class:`Conv2dReLU` step, and a :class:`Conv2dReLU` step directly followed by
    ``MaxPool2d`` one :class:`Conv2dReLUPool` step; every other layer is its own step."""
    fused_with_relu = {Dense: DenseReLU, Conv2d: Conv2dReLU}
    steps: list = []
    for layer in layers:
        previous = steps[-1] if steps else None
        if isinstance(layer, Activation) and layer.name == "relu" and \
                type(previous) in fused_with_relu:
            steps[-1] = fused_with_relu[type(previous)]((previous, layer), ops)
        elif isinstance(layer, MaxPool2d) and type(previous) is Conv2dReLU:
            steps[-1] = Conv2dReLUPool((*previous.layers, layer), ops)
        else:
            steps.append(layer)
    return steps


class Plan:
    """The steps that run a model, and the loops over them.

    Parameters
    ----------
    steps : list
        Layers and :class:`FusedStep` s, in order; each has ``forward(x)``,
        ``backward(dy, need_dx)``, ``clear_cache()`` and ``params``.
    """

    def __init__(self, steps: list) -> None:
        self.steps = steps
        #: Index of the first step with parameters (0 when none has any).
        self.first_trainable = next((k for k, step in enumerate(steps) if step.params), 0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run every step in order."""
        for step in self.steps:
            x = step.forward(x)
        return x

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Run every step's backward in reverse order (after a ``forward``), filling grads.

        Returns the gradient with respect to the input of the first step; with
        ``input_grad=False`` it returns None and skips what only that gradient needs: the
        input gradient of the first step with parameters and every step before it.
        """
        start = 0 if input_grad else self.first_trainable
        for k in range(len(self.steps) - 1, start - 1, -1):
            dy = self.steps[k].backward(dy, need_dx=input_grad or k > start)
        for step in self.steps[:start]:
            step.clear_cache()  # nothing reads the gradients of the steps before
        return dy if input_grad else None


def make_plan(layers: Sequence[Layer], ops: types.ModuleType, *, fuse: bool | None = None
              ) -> Plan:
    """The plan that runs ``layers``, which already call backend module ``ops``.

    ``fuse=None`` fuses on every backend but the oracle (:mod:`refimpl.ops`), which runs
    the layers as written; ``True`` or ``False`` decides it for any backend.
    """
    if fuse is None:
        fuse = ops is not oracle
    return Plan(fuse_relu(layers, ops) if fuse else list(layers))
