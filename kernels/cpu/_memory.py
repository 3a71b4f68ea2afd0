"""Keep freed large buffers in the process instead of handing them back to the kernel.

Every training step allocates the same large temporaries (lrpo_cnn: im2col matrices of
18-24 MB, their gradients, layer outputs). glibc serves blocks above its mmap threshold
with a fresh ``mmap`` and unmaps them on free, so every step page-faults ~100 MB of new
pages in again. Raising the mmap threshold to its 32 MiB maximum and the trim threshold
to 1 GiB lets those blocks be reused from the heap: a single-thread lrpo_cnn step went
from 140-160 ms to 107-123 ms (docs/benchmarks.md, 2026-11-23 14:37, load ~0.3).
Peak RSS is unchanged (the same blocks are live at the peak); the heap just does not
shrink between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_large_blocks() -> bool:
    """Set glibc's mmap and trim thresholds (see module docstring); return whether set.

    Does nothing when the user tunes malloc through ``MALLOC_*_`` variables or the C
    library is not glibc (no ``mallopt``).
    """
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    try:
        mallopt = ctypes.CDLL(path).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
