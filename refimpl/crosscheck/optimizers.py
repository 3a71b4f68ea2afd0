"""Check anyone's optimizer against ours: the same gradients in, the parameters compared
after every update, and the numbers of our update where they part.

:func:`check_optimizer` reads their parameters and ours before any update (step 0) and
after every update (step k), and stops at the first step where an element differs by more
than the tolerance. By default the bound is relative to the size of the parameter the
element belongs to (the norm-wise relative error of numerical linear algebra)::

    |ours - theirs| <= atol + rtol * max(|theirs|, max_j |theirs_j|)   (j over that parameter)

and ``relative_to="element"`` makes it element-wise, ``atol + rtol * |theirs|``.

The answer, an :class:`OptimizerCheckResult`, names the step, the parameter and the
element, both values, and ``explain(param, index)`` of our optimizer at that step and the
step before: the rule with its flags and the numbers that made the update
(docs/methods.md §2 states every rule).

A note on elements near zero: an entry of a parameter is computed from terms the size of
the parameter (``w - lr * update``), so two correct implementations that group the same
operations differently (torch's CPU kernels fuse some multiply-adds, optax adds in another
order) differ by about an ulp of *those terms*. For an entry that passes near zero that is
a large relative difference: ``1e-17`` on an entry of ``1e-6`` is ``1e-11`` relative. An
element-wise bound therefore fails correct implementations (torch's SGD, which rounds
``p + (-lr) g`` once where ours rounds ``lr g`` first, among them), which is why the default
bound is taken against the parameter's largest entry. With ``relative_to="element"`` the
report gives every difference in ulps of the parameter's largest entry, so such a case is
recognised at once.
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..optim.base import Optimizer
from ..schedulers.checks import check_int
from .compare import RTOL_FLOAT32, RTOL_FLOAT64, format_state

__all__ = ["OptimizerCheckResult", "check_optimizer"]

#: A difference of at most this many ulps of the parameter's largest entry is called
#: rounding-sized in the report; up to ``_ULPS_SHOWN`` the report gives the count.
_ROUNDING_ULPS = 4
_ULPS_SHOWN = 1000

Arrays = list  # a list of arrays, one per parameter


@dataclass(frozen=True)
class OptimizerCheckResult:
    """Outcome of :func:`check_optimizer`; truthy when ``ok``.

    Attributes
    ----------
    ok : bool
        Every element of every parameter agreed at every step compared.
    step : int or None
        First differing step (0 = before any update, k = after the k-th update); ``None``
        when ``ok``.
    param : int or None
        Index of the parameter there (groups concatenated, as ``ours.step`` takes them).
    index : tuple of int or None
        The element of that parameter that differs most.
    ours, theirs : float or None
        The two values of that element.
    bound : str
        Which bound failed: ``"rtol"`` (``atol`` is 0), ``"atol"`` (their value is 0, so
        only ``atol`` could pass it) or ``"atol + rtol"``; ``""`` when ok.
    rtol, atol : float
        The tolerance used.
    relative_to : str
        ``"param"`` (the bound is relative to ``max(|theirs|, scale)``) or ``"element"``.
    max_rel_diff : float
        Largest ``|ours - theirs| / |theirs|`` over every element and step compared.
    steps : int
        Number of updates fed to both (up to and including ``step``).
    subject : str
        ``"<our class> vs <their name>"``.
    explain : dict
        ``ours.explain(param, index)`` at that step: our rule and its numbers at that
        element (``ours.explain()`` after the last step when ``ok``).
    previous : dict
        The same one step earlier (empty at step 0).
    scale : float or None
        The largest ``|entry|`` of their parameter ``param`` at ``step``.
    ulp : float or None
        One ulp of ``scale`` (float32 when either side is float32).
    params : int
        Number of parameters compared.
    """

    ok: bool
    step: int | None
    param: int | None
    index: tuple[int, ...] | None
    ours: float | None
    theirs: float | None
    bound: str
    rtol: float
    atol: float
    max_rel_diff: float
    steps: int
    subject: str
    explain: dict
    previous: dict
    scale: float | None = None
    ulp: float | None = None
    params: int = 0
    relative_to: str = "param"

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return (f"{self.subject}: equal over {self.steps} steps, {self.params} parameters "
                    f"(max relative difference {self.max_rel_diff:.3g}; rtol {self.rtol:g}, "
                    f"atol {self.atol:g})")
        diff = abs(self.ours - self.theirs)
        reference = abs(self.theirs)
        term = "|theirs|"
        if self.relative_to == "param" and self.scale is not None:
            reference, term = max(reference, self.scale), "max(|theirs|, scale)"
        allowed = self.atol + self.rtol * reference
        rel = diff / abs(self.theirs) if self.theirs else math.inf
        when = ("before any update: the initial parameters differ" if self.step == 0
                else f"after update {self.step}")
        lines = [
            (f"{self.subject}: first difference at step {self.step} ({when}), "
             f"parameter {self.param}, element {self.index}"),
            f"  ours   = {self.ours!r}",
            f"  theirs = {self.theirs!r}",
            (f"  bound failed ({self.bound}): |ours - theirs| = {diff:.6g} > atol + rtol*{term}"
             f" = {self.atol:g} + {self.rtol:g}*{reference:.6g} = {allowed:.6g}"
             f" (relative difference {rel:.3g})"),
        ]
        ulps = diff / self.ulp if self.ulp and math.isfinite(diff) else math.inf
        if ulps <= _ULPS_SHOWN:  # near rounding: say how near
            line = (f"  |ours - theirs| = {ulps:.3g} ulps of the parameter's largest entry "
                    f"{self.scale:.6g}")
            if ulps <= _ROUNDING_ULPS:
                line += (" (rounding-sized: the entry is computed from terms of that size; "
                         f"atol = rtol * {self.scale:.3g} accepts it)")
            lines.append(line)
        lines.append(f"  rule (ours): {self.explain.get('rule', '(not stated)')}")
        lines.append(f"    {format_state(_numbers(self.explain))}")
        if self.step:
            lines.append(f"  before (step {self.step - 1}): "
                         f"{self.previous.get('rule', '(not stated)')}")
            lines.append(f"    {format_state(_numbers(self.previous))}")
        return "\n".join(lines)


def _numbers(explain: dict) -> dict:
    """An ``explain()`` dict for the report: what ``format_state`` prints, bookkeeping out."""
    return {key: value for key, value in explain.items()
            if key not in ("rule", "param", "group", "updated")}


# -- their side ---------------------------------------------------------------------------------
def _is_torch_optimizer(theirs: Any) -> bool:
    """Whether ``theirs`` is a ``torch.optim.Optimizer``; torch is not imported for this
    (an object of torch's cannot exist unless torch is imported already)."""
    torch = sys.modules.get("torch")
    optimizer = getattr(getattr(torch, "optim", None), "Optimizer", None)
    return isinstance(optimizer, type) and isinstance(theirs, optimizer)


def _tensor_array(tensor: Any) -> np.ndarray:
    tensor = tensor.detach().cpu()
    try:
        return tensor.numpy()
    except TypeError:  # a dtype NumPy lacks (bfloat16): compare in float32
        return tensor.float().numpy()


def _torch_feed(optimizer: Any) -> Callable[[Arrays], None]:
    """Set each tensor's ``.grad`` from the arrays (in their dtype and device), then
    ``optimizer.step()``; a ``None`` gradient leaves ``.grad`` unset (torch skips it)."""
    import torch  # already imported: `optimizer` is a torch object

    tensors = [p for group in optimizer.param_groups for p in group["params"]]

    def feed(grads: Arrays) -> None:
        for tensor, grad in zip(tensors, grads):
            tensor.grad = None if grad is None else torch.tensor(
                np.array(grad, copy=True), dtype=tensor.dtype, device=tensor.device)
        optimizer.step()
    return feed


def _function_side(theirs: Callable, initial: Arrays) -> tuple[Callable, Callable]:
    """``theirs(params, grads) -> new params``, started from copies of ours' parameters."""
    current = [p.copy() for p in initial]

    def read() -> Arrays:
        return current

    def feed(grads: Arrays) -> None:
        new = theirs(list(current), grads)
        if isinstance(new, np.ndarray) or not isinstance(new, Iterable):
            raise TypeError(f"their function returned a {type(new).__name__}; it must return "
                            "the new parameters as a list of arrays, one per parameter")
        current[:] = [np.asarray(p) for p in new]
    return read, feed


def _their_side(theirs: Any, read_params: Callable | None, feed: Callable | None,
                initial: Arrays) -> tuple[Callable[[], Any], Callable[[Arrays], None], str]:
    """``(read() -> their parameters, feed(grads), name)`` for every kind of ``theirs``."""
    name = type(theirs).__name__
    their_read = None if read_params is None else (lambda: read_params(theirs))
    their_feed = None if feed is None else (lambda grads: feed(theirs, grads))
    if _is_torch_optimizer(theirs):
        tensors = [p for group in theirs.param_groups for p in group["params"]]
        return (their_read or (lambda: [_tensor_array(t) for t in tensors]),
                their_feed or _torch_feed(theirs), f"{type(theirs).__module__}.{name}")
    if isinstance(theirs, Optimizer):  # another refimpl optimizer (a float32 copy, ...)
        arrays = [p for group in theirs.param_groups for p in group["params"]]
        return their_read or (lambda: arrays), their_feed or theirs.step, name
    if their_read is not None or their_feed is not None:
        if their_read is None or their_feed is None:
            raise ValueError("give read_params and feed together: read_params(theirs) -> "
                             "list of arrays, and feed(theirs, grads) applying one update")
        return their_read, their_feed, name
    if callable(theirs):
        read, function_feed = _function_side(theirs, initial)
        return read, function_feed, getattr(theirs, "__name__", name)
    raise TypeError(
        f"cannot read parameters from a {name}: pass a torch optimizer, a function "
        "theirs(params, grads) -> new params, or read_params= and feed=")


def _read(read: Callable[[], Any], ours: Arrays, when: str) -> Arrays:
    """Their parameters as arrays, checked against ours (count and shapes)."""
    value = read()
    if isinstance(value, np.ndarray) or not isinstance(value, (list, tuple)):
        raise TypeError(f"their parameters ({when}) are a {type(value).__name__}, not a list "
                        "of arrays (one per parameter)")
    arrays = [_tensor_array(v) if hasattr(v, "detach") else np.asarray(v) for v in value]
    if len(arrays) != len(ours):
        raise ValueError(f"they have {len(arrays)} parameters ({when}), ours {len(ours)}: "
                         "build ours over arrays equal to theirs, in the same order")
    for i, (their_param, our_param) in enumerate(zip(arrays, ours)):
        if their_param.shape != our_param.shape:
            raise ValueError(f"their parameter {i} has shape {their_param.shape} ({when}), "
                             f"ours {our_param.shape}: give ours the same parameters, in "
                             "the same order")
    return arrays


def _check_shared(theirs: Arrays, ours: Arrays) -> None:
    for i, (their_param, our_param) in enumerate(zip(theirs, ours)):
        if np.may_share_memory(their_param, our_param):
            raise ValueError(
                f"their parameter {i} shares memory with ours (torch.from_numpy?), so each "
                "update would be applied to both: give theirs a copy (torch.tensor(array))")


# -- the gradients ------------------------------------------------------------------------------
def _gradient_source(grads: Any, steps: int | None
                     ) -> tuple[int, Callable[[int, Arrays], Any], Callable[[int], str]]:
    """``(number of updates, gradients(k, our params), where(k))`` for a sequence or a
    function of the parameters."""
    if callable(grads):
        if steps is None:
            raise ValueError("grads is a function of the parameters: give steps=N, the "
                             "number of updates")
        n = check_int(steps, "steps", 0)
        return (n, lambda k, params: grads([p.copy() for p in params]),
                lambda k: f"grads(params) at update {k + 1}")
    if isinstance(grads, (str, bytes, np.ndarray)) or not isinstance(grads, Iterable):
        raise TypeError("grads must be a sequence (one list of arrays per update) or a "
                        f"function grads(params) -> list of arrays, got {type(grads).__name__}")
    sequence = list(grads)
    if steps is not None:
        n = check_int(steps, "steps", 0)
        if n > len(sequence):
            raise ValueError(f"steps={n} but only {len(sequence)} gradient lists were given")
        sequence = sequence[:n]
    return len(sequence), lambda k, params: sequence[k], lambda k: f"grads[{k}]"


def _check_grads(entry: Any, shapes: list[tuple[int, ...]], where: str) -> list:
    if isinstance(entry, np.ndarray) or not isinstance(entry, (list, tuple)):
        raise TypeError(f"{where} must be a list of arrays (one per parameter), got "
                        f"{type(entry).__name__}")
    if len(entry) != len(shapes):
        raise ValueError(f"{where} has {len(entry)} arrays but ours has {len(shapes)} "
                         "parameters")
    for i, (grad, shape) in enumerate(zip(entry, shapes)):
        if grad is not None and np.shape(grad) != shape:
            raise ValueError(f"{where}[{i}] has shape {np.shape(grad)} but parameter {i} has "
                             f"shape {shape}")
    return list(entry)


# -- the comparison -----------------------------------------------------------------------------
def _low_precision(arrays: Iterable[np.ndarray]) -> bool:
    return any(np.issubdtype(a.dtype, np.floating) and a.dtype.itemsize < 8 for a in arrays)


@dataclass
class _Walk:
    """The comparison done at each step, and the largest relative difference so far."""

    subject: str
    rtol: float
    atol: float
    low_precision: bool
    relative_to: str = "param"
    max_rel_diff: float = 0.0

    def _reference(self, yours: np.ndarray) -> np.ndarray:
        """What ``rtol`` multiplies: ``|theirs|``, raised to the parameter's largest finite
        entry when the bound is relative to the parameter."""
        reference = np.abs(np.nan_to_num(yours, nan=0.0, posinf=0.0, neginf=0.0))
        if self.relative_to == "param" and reference.size:
            reference = np.maximum(reference, reference.max())
        return reference

    def compare(self, ours: Arrays, theirs: Arrays) -> tuple | None:
        """``(diff, param, index, ours, theirs, scale)`` of the worst failing element, or
        ``None`` when every element passes."""
        worst = None
        for param, (our_param, their_param) in enumerate(zip(ours, theirs)):
            mine = np.asarray(our_param, dtype=np.float64)
            yours = np.asarray(their_param, dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                diff = np.abs(mine - yours)
                reference = self._reference(yours)
                if np.all(diff <= self.atol + self.rtol * reference):  # no NaN, no inf
                    rel = diff / np.abs(yours)  # 0/0 is NaN, which fmax skips
                    self.max_rel_diff = max(self.max_rel_diff,
                                            float(np.fmax.reduce(rel, axis=None, initial=0.0)))
                    continue
                equal = (mine == yours) | (np.isnan(mine) & np.isnan(yours))
                diff = np.where(equal, 0.0, np.where(np.isnan(diff), np.inf, diff))
                rel = np.where(diff == 0, 0.0, diff / np.abs(yours))
            self.max_rel_diff = max(self.max_rel_diff, float(rel.max()))
            bad = diff > self.atol + self.rtol * reference
            if not bad.any():
                continue
            flat = int(np.argmax(np.where(bad, diff, -1.0)))
            if worst is None or diff.flat[flat] > worst[0]:
                finite = np.abs(yours[np.isfinite(yours)])
                scale = float(finite.max()) if finite.size else 0.0
                index = tuple(int(i) for i in np.unravel_index(flat, mine.shape))
                worst = (float(diff.flat[flat]), param, index, float(mine.flat[flat]),
                         float(yours.flat[flat]), scale)
        return worst

    def failure(self, step: int, found: tuple, ours: Optimizer,
                previous: Callable[[int, tuple], dict], n_params: int) -> OptimizerCheckResult:
        _, param, index, mine, yours, scale = found
        relative = scale if self.relative_to == "param" else abs(yours)
        bound = "atol" if relative == 0 else "rtol" if self.atol == 0 else "atol + rtol"
        ulp = float(np.spacing(np.float32(scale) if self.low_precision else np.float64(scale)))
        return OptimizerCheckResult(
            ok=False, step=step, param=param, index=index, ours=mine, theirs=yours,
            bound=bound, rtol=self.rtol, atol=self.atol, max_rel_diff=self.max_rel_diff,
            steps=step, subject=self.subject, explain=ours.explain(param, index),
            previous=previous(param, index), scale=scale, ulp=ulp, params=n_params,
            relative_to=self.relative_to)

    def success(self, steps: int, ours: Optimizer, n_params: int) -> OptimizerCheckResult:
        return OptimizerCheckResult(
            ok=True, step=None, param=None, index=None, ours=None, theirs=None, bound="",
            rtol=self.rtol, atol=self.atol, max_rel_diff=self.max_rel_diff, steps=steps,
            subject=self.subject, explain=ours.explain(), previous={}, params=n_params,
            relative_to=self.relative_to)


def check_optimizer(theirs: Any, ours: Optimizer, grads: Sequence[Sequence[Any]] | Callable,
                    *, steps: int | None = None,
                    read_params: Callable[[Any], Sequence[Any]] | None = None,
                    feed: Callable[[Any, Arrays], None] | None = None,
                    rtol: float | None = None, atol: float = 0.0,
                    relative_to: str = "param",
                    label: str | None = None) -> OptimizerCheckResult:
    """Feed the same gradients to ``theirs`` and ``ours``; report the first update where a
    parameter differs.

    Parameters
    ----------
    theirs : object
        Their optimizer:

        * a ``torch.optim.Optimizer``: parameters read from its ``param_groups``' tensors in
          group order; fed by setting each tensor's ``.grad`` from the gradient arrays (in
          the tensor's dtype) and calling ``.step()``;
        * a function ``theirs(params, grads) -> new params`` (optax / JAX style: lists of
          arrays in, a list of arrays out; the function's closure keeps its own state). It
          starts from copies of ours' parameters and is handed its own last output;
        * a refimpl optimizer (over its own arrays): read from its groups, fed ``.step``;
        * any object, with ``read_params`` and ``feed``.
    ours : refimpl.optim.Optimizer
        Our optimizer, built over arrays equal to their initial parameters (step 0 checks
        this) and in the same order. It is stepped here, and left at the step where the
        check stopped (``ours.explain(param)`` then gives the whole arrays).
    grads : sequence or callable
        One list of arrays per update, one array per parameter (``None`` skips a
        parameter); or a function ``grads(params) -> list of arrays`` with ``steps``, for a
        closed loop. The function is evaluated at *our* current parameters (copies) and the
        same arrays go to both: up to the first difference the two sets of parameters are
        equal to the tolerance, so these are the gradients their own loop would have seen,
        and any difference found is one of the update rules, never of where a gradient was
        evaluated.
    steps : int, optional
        Number of updates (all of ``grads`` when omitted; required with a function).
    read_params : callable, optional
        ``read_params(theirs) -> list of arrays`` (or tensors).
    feed : callable, optional
        ``feed(theirs, grads)``: apply one update with the list of gradient arrays.
    rtol, atol : float
        Pass when ``|ours - theirs| <= atol + rtol * reference`` for every element. ``rtol``
        defaults to 1e-12, or 1e-5 when either side's parameters are float32; ``atol``
        defaults to 0.
    relative_to : {"param", "element"}
        ``reference`` is ``max(|theirs|, the parameter's largest |entry|)`` (default: the
        norm-wise bound, which accepts rounding-sized differences on entries near zero, see
        the module docstring) or ``|theirs|`` (element-wise).
    label : str, optional
        Their name in the report (default: their class or function name).

    Returns
    -------
    OptimizerCheckResult
        ``ok``, and at the first difference ``step``, ``param``, ``index``, both values,
        ``explain`` and ``previous``; a readable ``str()``.
    """
    if not isinstance(ours, Optimizer):
        raise TypeError(f"ours must be a refimpl optimizer (refimpl.optim), got "
                        f"{type(ours).__name__}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (isinstance(value, numbers.Real)
                                       and not isinstance(value, bool) and value >= 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if relative_to not in ("param", "element"):
        raise ValueError(f"relative_to must be 'param' or 'element', got {relative_to!r}")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a string, got {type(label).__name__}")
    params = [p for group in ours.param_groups for p in group["params"]]
    shapes = [p.shape for p in params]
    n_steps, gradients_at, where = _gradient_source(grads, steps)
    read, feed_theirs, their_name = _their_side(theirs, read_params, feed, params)
    first = _read(read, params, "before any update")
    _check_shared(first, params)
    if rtol is None:
        rtol = RTOL_FLOAT32 if _low_precision(first + params) else RTOL_FLOAT64
    walk = _Walk(f"{type(ours).__name__} vs {label or their_name}", float(rtol), float(atol),
                 _low_precision(first + params), relative_to)
    found = walk.compare(params, first)
    if found is not None:
        return walk.failure(0, found, ours, lambda param, index: {}, len(params))
    # `previous` (our numbers one step before a difference) comes from a replay: a copy of
    # ours as it starts, stepped with the same gradients up to that step (NumPy's arithmetic
    # is deterministic, so it is the same to the last bit), rather than a copy every step
    start, fed = copy.deepcopy(ours), []

    def previous(param: int, index: tuple) -> dict:
        for step_grads in fed[:-1]:
            start.step(step_grads)
        return start.explain(param, index)

    for k in range(n_steps):
        step_grads = _check_grads(gradients_at(k, params), shapes, where(k))
        fed.append([None if g is None else np.array(g, copy=True) for g in step_grads])
        ours.step(step_grads)
        feed_theirs(step_grads)
        found = walk.compare(params, _read(read, params, f"after update {k + 1}"))
        if found is not None:
            return walk.failure(k + 1, found, ours, previous, len(params))
    return walk.success(n_steps, ours, len(params))
