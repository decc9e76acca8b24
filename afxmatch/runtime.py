"""Process-level tuning for the command-line tool (not applied when used as a library).

glibc's malloc serves every allocation above 128 kB-32 MB with a fresh ``mmap`` and gives
it back to the kernel on ``free``. A 3-minute stereo file passes through dozens of
full-length float32/float64/complex arrays (loading, K-weighting, FFT filtering, the
compressor's gain curve), so each one is page-faulted in anew: on this project's 2-core
machine that was 1.7-3.1 s of *system* time in a 5 s run. Keeping freed memory in the
heap (no mmap for large blocks, no trimming) lets the next array reuse pages that are
already mapped. Measured on the 3-minute track: wall 5.0-5.6 s -> 4.2-4.6 s, system
time 1.7-3.1 s -> 0.8-1.1 s.

The cost: memory freed during a run is kept by the process until it exits, so the peak
resident size is the peak of what was live plus fragmentation (checked by the
60-minute bounded-memory test). Elsewhere than glibc this does nothing.

NumPy also asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on
every array of 4 MB or more. Where THP is in ``madvise`` mode with ``defrag=madvise`` (this
machine, and a common default), each first touch of such a page may compact memory
synchronously and zeroes 2 MB at once: the first file a process matches paid 1.2-1.4 s of
system time instead of 0.3-0.5 s (3-minute track, one FFT thread, 3 fresh processes
each: 2.94-3.33 s against 2.14-2.58 s wall; later files the same, 1.8-2.2 s, as their
memory is already mapped). A short-lived process gains nothing from huge pages that
makes up for that, so :func:`tune_allocator` turns NumPy's request off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
TOP_PAD_BYTES = 64 << 20        # grow the heap in 64 MB steps (fewer brk calls)
TRIM_THRESHOLD_BYTES = 2**31 - 1  # never give the top of the heap back during a run

_DONE = False


def no_numpy_hugepages() -> bool:
    """Stop NumPy from ``madvise``-ing its large arrays for transparent huge pages (see the
    module docstring); the same as ``NUMPY_MADVISE_HUGEPAGE=0`` before NumPy is imported.
    Returns False when this NumPy has no such switch."""
    try:
        from numpy._core import multiarray
    except ImportError:   # NumPy 1.x
        from numpy.core import multiarray
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if setter is None:
        return False
    setter(False)
    return True


def tune_allocator() -> bool:
    """Make glibc malloc keep freed memory for reuse, and NumPy ask for no huge pages
    (see the module docstring).

    Returns True when the settings were applied; False on other platforms or C
    libraries, or when ``mallopt`` refused. Idempotent.
    """
    global _DONE
    if _DONE:
        return True
    if not sys.platform.startswith("linux"):
        return False
    no_numpy_hugepages()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in
             ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES), (M_TOP_PAD, TOP_PAD_BYTES)))
    _DONE = ok
    return ok
