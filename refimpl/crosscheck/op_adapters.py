"""Make a torch or JAX function into the ``(forward, backward)`` pair :func:`check_op` drives.

``torch_op(fn)`` and ``jax_op(fn)`` return two functions on NumPy arrays: ``forward(*inputs,
**op_args)`` calls ``fn`` on tensors made from the inputs, and ``backward(dout, *inputs,
**op_args)`` returns the vector-Jacobian product -- ``torch.autograd.grad(out, inputs,
grad_outputs=dout)`` or ``jax.vjp`` -- for every floating-point input, in the order of the
inputs. dtypes are kept (float64 stays float64). So::

    import torch.nn.functional as F
    from refimpl.crosscheck import check_op, torch_op

    check_op("conv2d", *torch_op(F.conv2d), inputs=[x, W, b], stride=1, padding=1)

``fn`` is called in the oracle's order, layout and argument names (docs/methods.md §1).
Where the framework's function differs, a *layout* wraps it, inside the autodiff graph so
the gradients come back in our layout. Known functions get theirs by themselves; ``layout=``
names it for a function of your own with the same convention; ``fn`` may also be the name of
one of our ops, for the framework's function that computes it:

=========================  ======================================  =============================
ours (``check_op`` name)   torch (``torch_op``)                    JAX (``jax_op``)
=========================  ======================================  =============================
``dense``: x (N, in),      ``F.linear``, layout ``"linear"``: W     ``x @ W + b``
W (in, out), b             passed as ``W.T`` (torch's W is
                           (out, in)), so dW comes back (in, out)
``conv2d``: x NCHW, W      ``F.conv2d`` as is (``stride``,          ``lax.conv_general_dilated``,
(C_out, C_in, kh, kw), b,  ``padding`` keep their names)            layout
``stride``, ``padding``                                             ``"conv_general_dilated"``:
                                                                    ``window_strides=(s, s)``,
                                                                    ``padding=[(p, p), (p, p)]``,
                                                                    NCHW/OIHW/NCHW, ``+ b``
``maxpool2d``: x, ``k``    ``F.max_pool2d``, layout                 ``lax.reduce_window`` with
                           ``"max_pool2d"``: ``kernel_size=k,       ``lax.max``, window and
                           stride=k``                               strides (1, 1, k, k), VALID
relu, tanh, sigmoid, sin,  ``torch.relu``, ``torch.tanh``, ...      ``jax.nn.relu``,
cos, identity                                                       ``jnp.tanh``,
                                                                    ``jax.nn.sigmoid``, ...
``softmax_cross_entropy``  ``F.cross_entropy``, layout              ``optax.softmax_cross_``
(logits, int labels),      ``"cross_entropy"``: labels as int64,    ``entropy_with_integer_``
mean over N                gradient of logits only                  ``labels``, layout
                                                                    ``"per_example_loss"``:
                                                                    mean over N, logits only
``mse`` (pred, target),    ``F.mse_loss``, layout ``"mse_loss"``:   ``optax.squared_error``,
mean over elements         gradient of pred only                    layout ``"per_element_loss"``:
                                                                    mean, pred only
``dense_relu``,            compositions of the above                compositions of the above
``conv2d_relu``,
``conv2d_relu_maxpool2d``
=========================  ======================================  =============================

``wrt=(i, ...)`` chooses the inputs ``backward`` differentiates (default: the layout's, else
every floating-point input). JAX computes in 32 bits unless 64-bit mode is on: ``jax_op``
turns it on only around its own calls (the ``jax.enable_x64`` context; older JAX:
``jax.experimental.enable_x64``), so importing refimpl or building an adapter changes no
process-wide setting. On a GPU or TPU, JAX's default precision for float32 convolutions
and matrix products may be lower (TF32, bfloat16): give a function with
``precision="highest"`` to check the math rather than the hardware mode.

torch, JAX and optax are optional: they are imported when an adapter is built.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .ops import OP_NAMES

__all__ = ["JAX_LAYOUTS", "TORCH_LAYOUTS", "jax_op", "torch_op"]


@dataclass(frozen=True)
class _Layout:
    """How a framework function ``fn`` is called from our order, layout and argument names."""

    wrap: Callable[[Callable], Callable]  # fn -> a function taking our inputs and op_args
    wrt: tuple[int, ...] | None = None  # inputs differentiated (None: the floating-point ones)


def _linear(fn):
    """``fn(x, W (out, in), b)``; the transpose is inside the graph, so dW is (in, out)."""
    return lambda x, W, b: fn(x, W.T, b)


def _max_pool2d(fn):
    """``fn(x, kernel_size, stride)`` called with our window ``k`` (stride ``k``)."""
    return lambda x, k=2: fn(x, kernel_size=k, stride=k)


def _cross_entropy(fn):
    """``fn(logits, labels)`` with the labels as int64 tensors, as torch requires."""
    return lambda logits, labels: fn(logits, labels.long())


def _as_is(fn):
    """Our convention already."""
    return fn


def _conv_general_dilated(fn):
    """``lax.conv_general_dilated(x, W, ...)`` plus the bias, with our stride and padding."""
    def conv2d(x, W, b, stride=1, padding=0):
        y = fn(x, W, window_strides=(stride, stride), padding=[(padding, padding)] * 2,
               dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]
    return conv2d


def _mean(fn):
    """A loss per example (or per element), averaged as ours."""
    return lambda a, b: fn(a, b).mean()


#: torch layouts by name (the ``layout=`` of :func:`torch_op`).
TORCH_LAYOUTS = {
    "linear": _Layout(_linear),
    "max_pool2d": _Layout(_max_pool2d),
    "cross_entropy": _Layout(_cross_entropy, wrt=(0,)),
    "mse_loss": _Layout(_as_is, wrt=(0,)),
}
#: JAX layouts by name (the ``layout=`` of :func:`jax_op`).
JAX_LAYOUTS = {
    "conv_general_dilated": _Layout(_conv_general_dilated),
    "per_example_loss": _Layout(_mean, wrt=(0,)),
    "per_element_loss": _Layout(_mean, wrt=(0,)),
}


def _torch_known():
    """(function, layout) of the torch functions whose layout is known; our op -> function."""
    import torch
    import torch.nn.functional as F

    known = [(F.linear, "linear"), (F.max_pool2d, "max_pool2d"),
             (F.cross_entropy, "cross_entropy"), (F.mse_loss, "mse_loss")]
    relu = torch.relu

    def conv2d_relu(x, W, b, stride=1, padding=0):
        return relu(F.conv2d(x, W, b, stride=stride, padding=padding))

    def conv2d_relu_maxpool2d(x, W, b, stride=1, padding=0, k=2):
        return F.max_pool2d(conv2d_relu(x, W, b, stride, padding), kernel_size=k, stride=k)

    builtin = {
        "dense": (F.linear, "linear"), "conv2d": (F.conv2d, None),
        "maxpool2d": (F.max_pool2d, "max_pool2d"), "relu": (relu, None),
        "tanh": (torch.tanh, None), "sigmoid": (torch.sigmoid, None),
        "sin": (torch.sin, None), "cos": (torch.cos, None), "identity": (lambda t: t, None),
        "softmax_cross_entropy": (F.cross_entropy, "cross_entropy"),
        "mse": (F.mse_loss, "mse_loss"),
        "dense_relu": (lambda x, W, b: relu(F.linear(x, W.T, b)), None),
        "conv2d_relu": (conv2d_relu, None), "conv2d_relu_maxpool2d": (conv2d_relu_maxpool2d, None),
    }
    return known, builtin


def _jax_known():
    """(function, layout) of the JAX functions whose layout is known; our op -> function."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    known = [(lax.conv_general_dilated, "conv_general_dilated")]
    with contextlib.suppress(ImportError):
        import optax

        known += [(optax.softmax_cross_entropy_with_integer_labels, "per_example_loss"),
                  (optax.squared_error, "per_element_loss")]
    conv2d = _conv_general_dilated(lax.conv_general_dilated)

    def maxpool2d(x, k=2):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, k, k), "VALID")

    def conv2d_relu(x, W, b, stride=1, padding=0):
        return jax.nn.relu(conv2d(x, W, b, stride, padding))

    builtin = {
        "dense": (lambda x, W, b: x @ W + b, None),
        "conv2d": (lax.conv_general_dilated, "conv_general_dilated"),
        "maxpool2d": (maxpool2d, None), "relu": (jax.nn.relu, None), "tanh": (jnp.tanh, None),
        "sigmoid": (jax.nn.sigmoid, None), "sin": (jnp.sin, None), "cos": (jnp.cos, None),
        "identity": (lambda x: x, None),
        "softmax_cross_entropy": (_optax("softmax_cross_entropy_with_integer_labels"),
                                  "per_example_loss"),
        "mse": (_optax("squared_error"), "per_element_loss"),
        "dense_relu": (lambda x, W, b: jax.nn.relu(x @ W + b), None),
        "conv2d_relu": (conv2d_relu, None),
        "conv2d_relu_maxpool2d": (
            lambda x, W, b, stride=1, padding=0, k=2:
            maxpool2d(conv2d_relu(x, W, b, stride, padding), k), None),
    }
    return known, builtin


def _optax(name: str) -> Callable:
    """optax's ``name``, looked up when first called (optax is needed only for the losses)."""
    def call(*args):
        try:
            import optax
        except ImportError:
            raise ImportError(f"jax_op's loss uses optax.{name}; install it "
                              "(pip install 'refimpl[optax]')") from None
        return getattr(optax, name)(*args)
    call.__qualname__ = f"optax.{name}"
    return call


def _resolve(framework: str, fn: Callable | str, layout: str | None,
             wrt: Sequence[int] | None, known: list, builtin: dict, layouts: dict):
    """``(our-layout function, wrt, label)`` for ``fn`` given as a function or our op name."""
    if isinstance(fn, str):
        if fn not in builtin:
            raise ValueError(f"unknown op {fn!r} for {framework}_op; give a function or one "
                             f"of: {', '.join(OP_NAMES)}")
        label = f"{framework}:{fn}"
        fn, default = builtin[fn]
        layout = layout or default
    elif callable(fn):
        label = getattr(fn, "__name__", None) or type(fn).__name__
        layout = layout or next((name for f, name in known if f is fn), None)
    else:
        raise TypeError(f"fn must be a function or an op name, got {type(fn).__name__}")
    if layout is not None and layout not in layouts:
        raise ValueError(f"unknown {framework} layout {layout!r}; choose one of: "
                         f"{', '.join(sorted(layouts))}, or None for our layout")
    chosen = layouts[layout] if layout is not None else _Layout(_as_is)
    if wrt is not None:
        wrt = tuple(wrt)
        if not all(isinstance(i, int) and i >= 0 for i in wrt):
            raise ValueError(f"wrt must hold input positions (ints >= 0), got {wrt!r}")
    return chosen.wrap(fn), (wrt if wrt is not None else chosen.wrt), f"{framework}_op({label})"


def _differentiated(wrt: tuple[int, ...] | None, inputs: Sequence[np.ndarray]) -> list[int]:
    if wrt is None:
        return [i for i, a in enumerate(inputs) if np.issubdtype(np.asarray(a).dtype, np.floating)]
    if any(i >= len(inputs) for i in wrt):
        raise ValueError(f"wrt={wrt} names an input beyond the {len(inputs)} given")
    return list(wrt)


def _require(module: str, extra: str):
    """Import the optional ``module``, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module}_op needs {module}: pip install 'refimpl[{extra}]'") from None


def _named(label: str, forward: Callable, backward: Callable) -> tuple[Callable, Callable]:
    forward.__qualname__ = forward.__name__ = label
    backward.__qualname__ = backward.__name__ = f"{label}.backward"
    return forward, backward


def torch_op(fn: Callable | str, *, layout: str | None = None,
             wrt: Sequence[int] | None = None) -> tuple[Callable, Callable]:
    """``(forward, backward)`` on NumPy arrays for a torch function, for :func:`check_op`.

    Parameters
    ----------
    fn : callable or str
        A torch function taking our inputs in our order (``F.conv2d``, ``torch.tanh``), a
        known one with another layout (``F.linear``, ``F.max_pool2d``, ``F.cross_entropy``,
        ``F.mse_loss``; the table of the module docstring), or one of our op names for
        torch's function computing it (``"dense"``, ``"softmax_cross_entropy"``, ...).
    layout : str, optional
        A key of :data:`TORCH_LAYOUTS` for a function of yours with that convention, e.g.
        ``"linear"`` for a weight of shape (out, in).
    wrt : sequence of int, optional
        The inputs ``backward`` differentiates (default: the layout's, else every
        floating-point input).

    Returns
    -------
    forward : ``forward(*inputs, **op_args) -> ndarray`` (run under ``torch.no_grad()``)
    backward : ``backward(dout, *inputs, **op_args) -> tuple of ndarray``, by
        ``torch.autograd.grad(out, inputs, grad_outputs=dout)``; an input the output does
        not depend on gets zeros.
    """
    torch = _require("torch", "torch")
    call, wrt, label = _resolve("torch", fn, layout, wrt, *_torch_known(), TORCH_LAYOUTS)

    def forward(*inputs, **op_args):
        with torch.no_grad():
            return call(*[torch.tensor(a) for a in inputs], **op_args).numpy()

    def backward(dout, *inputs, **op_args):
        tensors = [torch.tensor(a) for a in inputs]
        chosen = _differentiated(wrt, inputs)
        for i in chosen:
            tensors[i].requires_grad_(True)
        out = call(*tensors, **op_args)
        grads = torch.autograd.grad(out, [tensors[i] for i in chosen],
                                    grad_outputs=torch.tensor(np.asarray(dout)),
                                    allow_unused=True)
        return tuple(np.zeros_like(inputs[i]) if g is None else g.numpy()
                     for i, g in zip(chosen, grads, strict=True))

    return _named(label, forward, backward)


def _x64(jax):
    """JAX's 64-bit mode for the duration of a ``with`` block (this thread only)."""
    scope = getattr(jax, "enable_x64", None)
    if callable(scope):
        return scope(True)
    from jax.experimental import enable_x64  # older JAX

    return enable_x64()


def jax_op(fn: Callable | str, *, layout: str | None = None,
           wrt: Sequence[int] | None = None) -> tuple[Callable, Callable]:
    """``(forward, backward)`` on NumPy arrays for a JAX function, for :func:`check_op`.

    Parameters
    ----------
    fn : callable or str
        A JAX function taking our inputs in our order (``jax.nn.relu``, ``jnp.sin``), a known
        one with another layout (``lax.conv_general_dilated``,
        ``optax.softmax_cross_entropy_with_integer_labels``, ``optax.squared_error``; the
        table of the module docstring), or one of our op names for a JAX function computing
        it (``"dense"``, ``"maxpool2d"``, ...).
    layout : str, optional
        A key of :data:`JAX_LAYOUTS` for a function of yours with that convention.
    wrt : sequence of int, optional
        The inputs ``backward`` differentiates (default: the layout's, else every
        floating-point input).

    Returns
    -------
    forward : ``forward(*inputs, **op_args) -> ndarray``
    backward : ``backward(dout, *inputs, **op_args) -> tuple of ndarray``, the cotangents
        of ``jax.vjp`` at ``dout``.

    Both run inside JAX's 64-bit mode, switched on for the call only (float32 inputs stay
    float32 there), so float64 inputs are computed in float64.
    """
    jax = _require("jax", "optax")
    call, wrt, label = _resolve("jax", fn, layout, wrt, *_jax_known(), JAX_LAYOUTS)

    def forward(*inputs, **op_args):
        with _x64(jax):
            return np.asarray(call(*[jax.numpy.asarray(a) for a in inputs], **op_args))

    def backward(dout, *inputs, **op_args):
        with _x64(jax):
            arrays = [jax.numpy.asarray(a) for a in inputs]
            chosen = _differentiated(wrt, inputs)

            def of_chosen(*values):
                full = list(arrays)
                for i, value in zip(chosen, values, strict=True):
                    full[i] = value
                return call(*full, **op_args)

            _, vjp = jax.vjp(of_chosen, *[arrays[i] for i in chosen])
            return tuple(np.asarray(g) for g in vjp(jax.numpy.asarray(dout)))

    return _named(label, forward, backward)
