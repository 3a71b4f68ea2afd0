"""Opt-in timing of the phases inside the numba kernels (im2col, GEMM, col2im, pooling, ...).

Off unless a caller asks: :func:`phase` then returns one shared no-op context manager, so a
kernel pays a function call per phase and nothing else. Inside :func:`recording` every
phase appends one event ``(layer, phase, detail, flops, wall_s, cpu_s)``: the label set by
:func:`layer` around it, the phase name, a detail such as a GEMM's ``m x k x n``, its
floating-point operations (``2 m k n`` for a product, 0 otherwise), wall-clock seconds
(``time.perf_counter``) and process CPU seconds (``time.process_time``, every thread of
the process summed). ``refimpl bench --profile`` prints them as tables.

Recording changes no number and no setting; it is meant for one thread of Python at a
time (the profiler's own), like the kernels' callers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

_events: list | None = None
_layer = ""
_NULL = contextlib.nullcontext()


class _Phase:
    __slots__ = ("cpu", "detail", "flops", "name", "wall")

    def __init__(self, name: str, detail: str, flops: float) -> None:
        self.name, self.detail, self.flops = name, detail, flops

    def __enter__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc) -> None:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        if _events is not None:
            _events.append((_layer, self.name, self.detail, self.flops, wall, cpu))


def phase(name: str, detail: str = "", flops: float = 0.0):
    """A context manager timing one phase while :func:`recording`; a no-op otherwise."""
    if _events is None:
        return _NULL
    return _Phase(name, detail, flops)


def gemm(name: str, m: int, k: int, n: int):
    """:func:`phase` for a product of an (m, k) and a (k, n) matrix: ``2 m k n`` flops."""
    if _events is None:
        return _NULL
    return _Phase(name, f"{m}x{k}x{n}", 2.0 * m * k * n)


@contextlib.contextmanager
def layer(label: str) -> Iterator[None]:
    """Label the phases inside (and time the whole block as phase ``"total"``)."""
    global _layer
    before, _layer = _layer, label
    try:
        with phase("total"):
            yield
    finally:
        _layer = before


@contextlib.contextmanager
def recording() -> Iterator[list]:
    """Collect the events of every phase inside into the yielded list."""
    global _events
    before, _events = _events, []
    try:
        yield _events
    finally:
        _events = before
