"""Check anyone's op -- forward and backward -- against the oracle, element by element.

:func:`check_op` runs *their* ``forward(*inputs, **op_args)`` and ``backward(dout, *inputs,
**op_args)`` (NumPy in, NumPy out; :func:`~refimpl.crosscheck.op_adapters.torch_op` and
:func:`~refimpl.crosscheck.op_adapters.jax_op` make them from a torch or JAX function) and
the oracle of :mod:`refimpl.ops` on the same inputs, and compares the output and every
gradient, named after the oracle's order (``out``, then e.g. ``dx``, ``dW``, ``db``).

The bound
---------
An element passes when ::

    |ours - theirs| <= atol + rtol * scale                                       (1)

where ``scale`` is the size of the *terms* the element is made of, computed by the oracle
in float64 from the inputs (so their answer cannot loosen it), never below ``|value|``, plus
``tiny / eps`` of the dtype (about 1e-292 for float64, 1e-31 for float32) for results that
underflow: a difference below the smallest normal number ``tiny`` is that of a flush to
zero, which XLA does on the CPU where NumPy keeps subnormals. Per op:

============================  ================================================================
op                            scale of each element
============================  ================================================================
dense, conv2d (and fused)     the same op on absolute values: ``Σ |a| |b|`` over the products
                              the element sums, e.g. ``|x| |W| + |b|`` for ``y``,
                              ``|dy| |W|ᵀ`` for ``dx``, ``|x|ᵀ |dy|`` for ``dW``
maxpool2d                     ``|y|`` and ``|dx|`` (the op only selects and routes: exact)
element-wise ``f``            ``|f(x)| + |x f'(x)|`` for ``y``, ``|dy| (terms of f'(x) +
                              |x f''(x)|)`` for ``dx`` (table ``_ELEMENTWISE`` below)
softmax_cross_entropy         ``mean_n K_n`` for the loss, ``|dout| (p (1 + K_n) + onehot) / N``
                              for ``dlogits``, with ``K_n = 4 max_c |z_nc| + log C``
mse                           ``3 mean(|p - t| (|p| + |t|))`` for the loss,
                              ``|dout| 2 (|p| + |t|) / size`` for ``dpred``
============================  ================================================================

Why terms and not ``|theirs|``: a sum of products that cancels (a convolution output near
0, a gradient entry summed over a batch) is computed to an error of a few ulps of
``Σ |a| |b|`` (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1), not of its
own tiny value; two correct implementations that add in different orders (im2col + BLAS
against a direct convolution) differ by that much. A pure relative bound would fail them;
a bound on the largest element of the output would let a wrong small element pass. For an
element-wise ``f``, ``|f(x)| + |x f'(x)|`` is the change of an output correct to a relative
``u`` in both its input and its value (what vectorised libms reach: after their range
reduction ``sin`` near a multiple of π may be accurate to ``u |x|`` only, not to
``u |sin x|``); ``1 − y²`` of tanh's derivative adds
the terms ``1 + y²`` of its subtraction. For the losses, ``K_n`` bounds the terms of
``logsumexp(z_n) − z_{n,y}`` (the shift by the row maximum, the log-sum, the label's logit).

``rtol`` defaults to 1e-12 for float64 and 1e-5 for float32 (the project's bounds): relative
to the terms, 1e-12 is about 10⁴ units of roundoff of float64, room for sums of thousands
of terms in any order, and 1e-5 about 170 of float32. A relu decision on a value within
rounding of 0 (or a fused max-pool's on values within rounding of each other) is a genuine
fork: such inputs are the caller's to avoid.

Every element-wise op's derivative convention is part of the check: relu's derivative at 0
is 0 (as torch and ``jax.nn.relu``), the max-pool gradient goes to the first maximum of a
window in row-major order, and a window holding NaN passes no gradient (torch sends it to
the NaN) -- docs/methods.md §1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .. import ops as oracle
from .compare import RTOL_FLOAT32, RTOL_FLOAT64

__all__ = ["OP_NAMES", "OpCheckResult", "check_op"]


# -- the scale of every element (the bound (1) of the module docstring) ------------------------
def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _abs(a) -> np.ndarray:
    return np.abs(_f64(a))


def _dense_scale(x, W, b, dy) -> list[np.ndarray]:
    """``[|x||W| + |b|, |dy||W|ᵀ, |x|ᵀ|dy|, Σ_n |dy|]``: (1.1)-(1.2) on absolute values."""
    y, cache = oracle.dense_forward(_abs(x), _abs(W), _abs(b))
    return [y, *oracle.dense_backward(_abs(dy), cache)]


def _conv2d_scale(x, W, b, dy, stride=1, padding=0) -> list[np.ndarray]:
    """(1.3)-(1.5) on absolute values: every element's ``Σ |W| |x̃|`` (and ``|b|``)."""
    y, cache = oracle.conv2d_forward(_abs(x), _abs(W), _abs(b), stride, padding)
    return [y, *oracle.conv2d_backward(_abs(dy), cache)]


def _dense_relu_scale(x, W, b, dy) -> list[np.ndarray]:
    """The dense terms; the backward's ``dy`` masked by the oracle's own relu decision."""
    z, _ = oracle.dense_forward(x, W, b)
    y, cache = oracle.dense_forward(_abs(x), _abs(W), _abs(b))
    return [y, *oracle.dense_backward(_abs(dy) * (z > 0), cache)]


def _conv2d_relu_scale(x, W, b, dy, stride=1, padding=0) -> list[np.ndarray]:
    z, _ = oracle.conv2d_forward(x, W, b, stride, padding)
    y, cache = oracle.conv2d_forward(_abs(x), _abs(W), _abs(b), stride, padding)
    return [y, *oracle.conv2d_backward(_abs(dy) * (z > 0), cache)]


def _conv2d_relu_maxpool2d_scale(x, W, b, dy, stride=1, padding=0, k=2) -> list[np.ndarray]:
    """The largest convolution scale of each window; ``|dy|`` routed as the oracle routes it."""
    z, _ = oracle.conv2d_relu_forward(x, W, b, stride, padding)
    _, pool_cache = oracle.maxpool2d_forward(z, k)
    # Routed in the forward's dtype (the oracle's backward requires it); |dy| is exact there.
    dz = _f64(oracle.maxpool2d_backward(np.abs(dy), pool_cache)) * (z > 0)
    s, cache = oracle.conv2d_forward(_abs(x), _abs(W), _abs(b), stride, padding)
    return [oracle.maxpool2d_forward(s, k)[0], *oracle.conv2d_backward(dz, cache)]


def _maxpool2d_scale(x, dy, k=2) -> list[np.ndarray]:
    y, cache = oracle.maxpool2d_forward(x, k)
    return [_abs(y), _abs(oracle.maxpool2d_backward(np.abs(dy), cache))]


def _tanh_terms(x):
    t = np.tanh(x)
    return np.abs(t) + np.abs(x) * (1 - t * t), 1 + t * t + 2 * np.abs(x * t) * (1 - t * t)


def _sigmoid_terms(x):
    e = np.exp(-np.abs(x))  # (1.10)'s evaluation: never overflows
    s = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return s + np.abs(x) * s * (1 - s), s * (1 + s) + np.abs(x) * s * (1 - s) * np.abs(1 - 2 * s)


#: name -> x (float64) -> (scale of f(x), scale of f'(x)); dx's scale is |dy| times the second.
_ELEMENTWISE: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "relu": lambda x: (2 * np.maximum(x, 0), (x > 0).astype(np.float64)),
    "tanh": _tanh_terms,
    "sigmoid": _sigmoid_terms,
    "sin": lambda x: (np.abs(np.sin(x)) + np.abs(x * np.cos(x)),
                      np.abs(np.cos(x)) + np.abs(x * np.sin(x))),
    "cos": lambda x: (np.abs(np.cos(x)) + np.abs(x * np.sin(x)),
                      np.abs(np.sin(x)) + np.abs(x * np.cos(x))),
    "identity": lambda x: (np.abs(x), np.ones_like(x)),
}


def _elementwise_scale(name: str) -> Callable:
    def scale(x, dy) -> list[np.ndarray]:
        of_y, of_derivative = _ELEMENTWISE[name](_f64(x))
        return [of_y, _abs(dy) * of_derivative]
    return scale


def _cross_entropy_scale(logits, labels, dout) -> list[np.ndarray]:
    """``K_n = 4 max_c |z_nc| + log C`` bounds the terms of row n's loss (1.14)."""
    z = _f64(logits)
    n, n_classes = z.shape
    k = 4 * np.abs(z).max(axis=1) + math.log(n_classes)
    exp = np.exp(z - z.max(axis=1, keepdims=True))
    p = exp / exp.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), labels] = 1
    return [np.asarray(k.mean()), _abs(dout) * (p * (1 + k[:, None]) + onehot) / n]


def _mse_scale(pred, target, dout) -> list[np.ndarray]:
    """Terms of (1.16): ``p − t`` is computed to ``u (|p| + |t|)``, its square to
    ``3 u |p − t| (|p| + |t|)``; ``dpred = 2 (p − t) / size`` to ``2 u (|p| + |t|) / size``."""
    p, t = _f64(pred), _f64(target)
    size = np.abs(p) + np.abs(t)
    return [np.asarray(3 * np.mean(np.abs(p - t) * size)), _abs(dout) * 2 * size / p.size]


# -- the contract ops as check_op drives them --------------------------------------------------
@dataclass(frozen=True)
class _Op:
    """One op of ``refimpl.kernels.CONTRACT``: the oracle's order of inputs and gradients."""

    inputs: tuple[str, ...]
    grads: tuple[str, ...]
    args: tuple[str, ...]
    forward: Callable  # (*inputs, **args) -> (out, cache)
    backward: Callable  # (dout, cache) -> tuple of gradients
    scale: Callable  # (*inputs, dout, **args) -> [scale of out, scale of each gradient]
    layout: str  # the shapes, for error messages
    loss: bool = False


def _one_grad(backward: Callable) -> Callable:
    return lambda dout, cache: (backward(dout, cache),)


def _loss(fn: Callable) -> tuple[Callable, Callable]:
    """A loss ``fn(a, b) -> (L, dL/da)`` as ``forward -> (L as a 0-d array, dL/da)`` and
    ``backward(dout, dL/da) -> (dout · dL/da,)``."""
    def forward(a, b):
        value, grad = fn(a, b)
        return np.asarray(value, dtype=a.dtype), grad

    return forward, (lambda dout, grad: (dout * grad,))


_LAYER = ("x", "W", "b")
_LAYER_GRADS = ("dx", "dW", "db")
_DENSE = "x (N, in), W (in, out), b (out,): y = x @ W + b"
_CONV = "x (N, C_in, H, W), W (C_out, C_in, kh, kw), b (C_out,); NCHW"

_OPS: dict[str, _Op] = {
    "dense": _Op(_LAYER, _LAYER_GRADS, (), oracle.dense_forward, oracle.dense_backward,
                 _dense_scale, _DENSE),
    "conv2d": _Op(_LAYER, _LAYER_GRADS, ("stride", "padding"), oracle.conv2d_forward,
                  oracle.conv2d_backward, _conv2d_scale, _CONV),
    "dense_relu": _Op(_LAYER, _LAYER_GRADS, (), oracle.dense_relu_forward,
                      oracle.dense_relu_backward, _dense_relu_scale, _DENSE),
    "conv2d_relu": _Op(_LAYER, _LAYER_GRADS, ("stride", "padding"), oracle.conv2d_relu_forward,
                       oracle.conv2d_relu_backward, _conv2d_relu_scale, _CONV),
    "conv2d_relu_maxpool2d": _Op(
        _LAYER, _LAYER_GRADS, ("stride", "padding", "k"), oracle.conv2d_relu_maxpool2d_forward,
        oracle.conv2d_relu_maxpool2d_backward, _conv2d_relu_maxpool2d_scale, _CONV),
    "maxpool2d": _Op(("x",), ("dx",), ("k",), oracle.maxpool2d_forward,
                     _one_grad(oracle.maxpool2d_backward), _maxpool2d_scale,
                     "x (N, C, H, W); window k, stride k"),
    **{name: _Op(("x",), ("dx",), (), forward, _one_grad(backward), _elementwise_scale(name),
                 "x of any shape")
       for name, (forward, backward) in oracle.ACTIVATIONS.items()},
    "softmax_cross_entropy": _Op(("logits", "labels"), ("dlogits",), (),
                                 *_loss(oracle.softmax_cross_entropy), _cross_entropy_scale,
                                 "logits (N, C), integer labels (N,); mean over N", loss=True),
    "mse": _Op(("pred", "target"), ("dpred",), (), *_loss(oracle.mse), _mse_scale,
               "pred and target of one shape; mean over all elements", loss=True),
}
#: The op names check_op accepts.
OP_NAMES = tuple(sorted(_OPS))


# -- the result --------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpCheckResult:
    """Outcome of :func:`check_op`; true when every element passed (1).

    Attributes
    ----------
    ok : bool
        Every element of every output passed.
    op : str
        The op name.
    subject : str
        ``"<op>: refimpl vs <their forward's name>"``.
    dtype : str
        The inputs' float dtype.
    outputs : tuple of str
        The outputs compared: ``"out"``, then the gradients in the oracle's order (none
        when no ``backward`` was given).
    output : str or None
        The first output that parted; ``None`` when ``ok``.
    index : tuple of int or None
        Its worst element: the largest ``|ours - theirs| / bound``, a difference where the
        bound is 0 counting as infinite (the largest such difference first); ``()`` for a
        loss.
    ours, theirs : float or None
        The two values there.
    scale, bound : float or None
        That element's scale and ``atol + rtol * scale``.
    failed : tuple of str
        Every output that parted.
    max_rel_diff : dict
        Per output, ``max |ours - theirs| / scale`` (0 where both are equal): ``ok`` iff
        each is ``<= rtol`` when ``atol`` is 0.
    rtol, atol : float
        The tolerance used.
    """

    ok: bool
    op: str
    subject: str
    dtype: str
    outputs: tuple[str, ...]
    output: str | None
    index: tuple[int, ...] | None
    ours: float | None
    theirs: float | None
    scale: float | None
    bound: float | None
    failed: tuple[str, ...]
    max_rel_diff: dict
    rtol: float
    atol: float

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        worst = ", ".join(f"{name} {value:.3g}" for name, value in self.max_rel_diff.items())
        tolerance = f"rtol {self.rtol:g}, atol {self.atol:g}"
        head = f"{self.subject} ({self.dtype})"
        if self.ok:
            return (f"{head}: equal in {', '.join(self.outputs)} "
                    f"(max |ours - theirs|/scale: {worst}; {tolerance})")
        diff = abs(self.ours - self.theirs)
        diff = math.inf if math.isnan(diff) else diff  # one NaN: as _compare counts it
        return "\n".join([
            f"{head}: {self.output} parts at index {self.index}",
            f"  ours   = {self.ours!r}",
            f"  theirs = {self.theirs!r}",
            (f"  |ours - theirs| = {diff:.6g} > atol + rtol*scale = {self.atol:g} + "
             f"{self.rtol:g}*{self.scale:.6g} = {self.bound:.6g}"),
            f"  outputs that part: {', '.join(self.failed)}",
            f"  max |ours - theirs|/scale: {worst} ({tolerance})",
        ])


@dataclass(frozen=True)
class _Parting:
    """Where one output parts: its worst element."""

    index: tuple[int, ...]
    ours: float
    theirs: float
    scale: float
    bound: float


def _compare(ours: np.ndarray, theirs: np.ndarray, scale: np.ndarray, rtol: float,
             atol: float) -> tuple[float, _Parting | None]:
    """``(max |ours − theirs| / scale, the worst failing element or None)`` by (1)."""
    mine, yours = _f64(ours), _f64(theirs)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(mine - yours)
        # Equal values (NaN and NaN, inf and inf) are equal; one NaN is an infinite difference.
        diff = np.where((mine == yours) | (np.isnan(mine) & np.isnan(yours)), 0.0,
                        np.where(np.isnan(diff), np.inf, diff))
        bound = atol + rtol * scale
        rel = np.where(diff == 0, 0.0, diff / scale)
        bad = (diff > 0) & ~(diff <= bound)  # a NaN bound (NaN inputs) passes only equal values
        excess = np.where(bad, np.where(bound > 0, diff / bound, np.inf), -np.inf)
    max_rel = float(np.where(np.isnan(rel), np.inf, rel).max(initial=0.0))
    if not bad.any():
        return max_rel, None
    worst = excess == excess.max()
    flat = int(np.argmax(np.where(worst, diff, -1.0)))
    index = tuple(int(i) for i in np.unravel_index(flat, diff.shape))
    return max_rel, _Parting(index, float(mine[index]), float(yours[index]), float(scale[index]),
                             float(bound[index]))


# -- check_op ----------------------------------------------------------------------------------
def _lookup(name: object) -> _Op:
    if name not in _OPS:
        hint = ""
        if isinstance(name, str) and name.endswith(("_forward", "_backward")):
            hint = " (give the name without _forward/_backward)"
        raise ValueError(f"unknown op {name!r}{hint}; choose one of: {', '.join(OP_NAMES)}")
    return _OPS[name]


def _their_array(value: object, what: str, name: str, ours: np.ndarray, op: str,
                 spec: _Op) -> np.ndarray:
    """Their ``name`` as a NumPy array of the oracle's shape and dtype, or a clear error."""
    if value is None:
        raise ValueError(f"{what} returned None for {name}; return the array")
    scalar = isinstance(value, (float, int)) and not isinstance(value, bool)
    try:
        theirs = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{what} must return NumPy arrays; {name} is a "
                        f"{type(value).__name__} ({error})") from None
    if theirs.shape != ours.shape:
        raise ValueError(f"{what} returned {name} of shape {theirs.shape}, but the oracle's "
                         f"{name} has shape {ours.shape} ({op}: {spec.layout})")
    if not scalar and theirs.dtype != ours.dtype:
        raise ValueError(f"{what} returned {name} as {theirs.dtype} for {ours.dtype} inputs; "
                         f"compute in {ours.dtype} (a JAX function needs 64-bit mode for "
                         "float64: jax_op enables it)")
    return theirs


def _their_grads(returned: object, spec: _Op, op: str) -> list:
    if isinstance(returned, np.ndarray) or not isinstance(returned, (tuple, list)):
        returned = [returned]
    returned = list(returned)
    if len(returned) != len(spec.grads):
        raise ValueError(
            f"backward returned {len(returned)} gradient(s), but {op} has "
            f"{len(spec.grads)}: ({', '.join(spec.grads)}) in this order, one per input "
            f"{', '.join(spec.inputs[:len(spec.grads)])}; an adapter differentiates only "
            "those with wrt=(...)")
    return returned


def _default_dout(spec: _Op, out: np.ndarray, seed: int) -> np.ndarray:
    """Standard normal of the output's shape from ``seed`` (drawn in float64, then cast);
    1 for a loss, so the gradients are those of the loss itself."""
    if spec.loss:
        return np.asarray(1.0, dtype=out.dtype)
    return np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)


def _check_dout(dout: object, out: np.ndarray) -> np.ndarray:
    dout = np.asarray(dout)
    if dout.shape != out.shape:
        raise ValueError(f"dout must have the shape of the op's output {out.shape}, got "
                         f"{dout.shape}")
    if dout.dtype != out.dtype:
        raise ValueError(f"dout has dtype {dout.dtype} but the inputs are {out.dtype}; "
                         f"pass dout.astype(np.{out.dtype})")
    return dout


def _check_call(spec: _Op, op: str, inputs: object, op_args: dict) -> list[np.ndarray]:
    if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
        raise TypeError(f"inputs must be a list of arrays in the oracle's order, "
                        f"[{', '.join(spec.inputs)}], got {type(inputs).__name__}")
    if len(inputs) != len(spec.inputs):
        raise ValueError(f"{op} takes {len(spec.inputs)} input(s), [{', '.join(spec.inputs)}] "
                         f"({spec.layout}); got {len(inputs)}")
    unknown = sorted(set(op_args) - set(spec.args))
    if unknown:
        takes = ", ".join(spec.args) if spec.args else "no keyword arguments"
        raise TypeError(f"{op} takes {takes}; got unknown argument(s) {', '.join(unknown)}")
    return list(inputs)


def check_op(name: str, forward: Callable, backward: Callable | None = None, *,
             inputs: Sequence[np.ndarray], dout: np.ndarray | None = None, seed: int = 0,
             rtol: float | None = None, atol: float = 0.0, **op_args) -> OpCheckResult:
    """Compare their op's output and gradients with the oracle's on the same inputs.

    Every element must satisfy ``|ours - theirs| <= atol + rtol * scale``, where ``scale``
    is the size of the terms the element is computed from (the module docstring gives it
    per op and says why), at least ``|value|``.

    Parameters
    ----------
    name : str
        A contract op without ``_forward``/``_backward`` (:data:`OP_NAMES`): ``"dense"``,
        ``"conv2d"``, ``"maxpool2d"``, ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"sin"``,
        ``"cos"``, ``"identity"``, ``"softmax_cross_entropy"``, ``"mse"``, ``"dense_relu"``,
        ``"conv2d_relu"``, ``"conv2d_relu_maxpool2d"`` (docs/methods.md §1).
    forward : callable
        ``forward(*inputs, **op_args) -> out`` (a NumPy array; a loss returns a 0-d array
        or a float).
    backward : callable, optional
        ``backward(dout, *inputs, **op_args) -> gradients`` in the oracle's order (``(dx,
        dW, db)`` for a layer, ``dx`` for an element-wise op or max-pool, ``dlogits`` /
        ``dpred`` for a loss). Without it only the output is compared.
    inputs : list of ndarray
        The oracle's inputs in its order and layout: ``[x, W, b]`` with dense ``W`` of shape
        (in, out) and conv ``W`` of shape (C_out, C_in, kh, kw); ``[x]``; ``[logits,
        labels]`` with integer labels; ``[pred, target]``. Float32 or float64, one dtype.
    dout : ndarray, optional
        The gradient of the output fed to both backwards; default a standard normal draw
        of the output's shape from ``seed`` (1 for a loss: the loss's own gradient).
    seed : int
        Seed of the default ``dout``.
    rtol : float, optional
        Default 1e-12 for float64 inputs, 1e-5 for float32.
    atol : float
        Default 0.
    **op_args
        The op's keyword arguments, passed to both: ``stride``, ``padding`` (conv2d),
        ``k`` (maxpool2d).

    Returns
    -------
    OpCheckResult
        True when all agree; else names the first output that parted (``"out"``, ``"dx"``,
        ``"dW"``, ...), its worst element, both values and the bound; ``str()`` reads.

    Raises
    ------
    ValueError
        An unknown op, the wrong number of inputs, bad inputs (the oracle's messages), a
        negative tolerance, or a ``forward``/``backward`` that returns the wrong number of
        gradients or an array of the wrong shape or dtype (the message names it).
    TypeError
        ``inputs`` not a list, or a keyword argument the op does not take.
    """
    spec = _lookup(name)
    inputs = _check_call(spec, name, inputs, op_args)
    if not atol >= 0 or (rtol is not None and not rtol >= 0):
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol!r}, atol={atol!r}")
    ours_out, cache = spec.forward(*inputs, **op_args)  # the oracle checks the inputs
    dtype = ours_out.dtype
    if rtol is None:
        rtol = RTOL_FLOAT32 if dtype == np.float32 else RTOL_FLOAT64
    dout = _default_dout(spec, ours_out, seed) if dout is None else _check_dout(dout, ours_out)
    # Copies for them: an in-place change to an input must not reach the oracle's cache.
    theirs_out = forward(*[np.array(a) for a in inputs], **op_args)
    names, ours, theirs = ["out"], [ours_out], [
        _their_array(theirs_out, "forward", "out", ours_out, name, spec)]
    if backward is not None:
        ours_grads = spec.backward(dout, cache)
        returned = backward(np.array(dout), *[np.array(a) for a in inputs], **op_args)
        for grad_name, mine, yours in zip(spec.grads, ours_grads,
                                          _their_grads(returned, spec, name), strict=True):
            names.append(grad_name)
            ours.append(mine)
            theirs.append(_their_array(yours, "backward", grad_name, mine, name, spec))
    # The floor tiny/eps: a result that underflows (XLA flushes subnormals to zero) is off
    # by up to the smallest normal number, the rounding of a value tiny/eps.
    floor = np.finfo(dtype).tiny / np.finfo(dtype).eps
    scales = [scale + floor for scale in spec.scale(*inputs, dout, **op_args)]
    return _result(name, forward, str(dtype), names, ours, theirs, scales, float(rtol),
                   float(atol))


def _result(op: str, forward: Callable, dtype: str, names: list[str], ours: list, theirs: list,
            scales: list, rtol: float, atol: float) -> OpCheckResult:
    max_rel, partings = {}, {}
    for name, mine, yours, scale in zip(names, ours, theirs, scales[:len(names)], strict=True):
        max_rel[name], parting = _compare(mine, yours, _f64(scale), rtol, atol)
        if parting is not None:
            partings[name] = parting
    label = getattr(forward, "__qualname__", None) or type(forward).__name__
    common = {"op": op, "subject": f"{op}: refimpl vs {label}", "dtype": dtype,
              "outputs": tuple(names), "failed": tuple(partings), "max_rel_diff": max_rel,
              "rtol": rtol, "atol": atol}
    if not partings:
        return OpCheckResult(ok=True, output=None, index=None, ours=None, theirs=None,
                             scale=None, bound=None, **common)
    first = next(iter(partings))
    where = partings[first]
    return OpCheckResult(ok=False, output=first, index=where.index, ours=where.ours,
                         theirs=where.theirs, scale=where.scale, bound=where.bound, **common)
