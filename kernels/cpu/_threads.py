"""How many threads the Numba loops of this backend use (a measured policy).

The loops here (im2col/col2im, layout copies, pooling, large activations) run between BLAS
products. OpenBLAS's worker threads keep spinning for a while after each product, so on a
2-core machine a second Numba thread mostly waits for a core that a spinning BLAS thread
holds: with both pools at 2 threads an lrpo_cnn step took 126-134 ms, with Numba's loops on
one thread and BLAS on two 103-110 ms (docs/benchmarks.md, 2026-11-23). So while the BLAS
pool is threaded, :func:`loop_threads` runs the Numba loops on the calling thread alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numba


def blas_threads() -> int:
    """The BLAS pool size as OpenBLAS reads it at start-up: its variables, else every core."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


#: True when the Numba loops run single-threaded (the BLAS pool has more than one thread).
SERIAL_LOOPS = blas_threads() > 1


@contextlib.contextmanager
def loop_threads() -> Iterator[None]:
    """Run the Numba parallel loops inside on one thread when :data:`SERIAL_LOOPS`.

    ``numba.set_num_threads`` is per calling thread and restored on exit, so a user's own
    setting is untouched outside these kernels.
    """
    if not SERIAL_LOOPS:
        yield
        return
    before = numba.get_num_threads()
    if before == 1:
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
