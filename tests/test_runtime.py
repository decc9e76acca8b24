"""The CLI's allocator tuning: freed large arrays are reused instead of faulted in again."""

import subprocess
import sys

import pytest

# full-length arrays made and dropped in turn, like a render's intermediate steps
PROBE = r"""
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from afxmatch.runtime import tune_allocator
    assert tune_allocator() and tune_allocator()   # applied, and idempotent
x = np.random.default_rng(0).standard_normal((2, 2_000_000)).astype(np.float32)
for i in range(6):
    if i == 1:   # after the first pass: what the later passes fault in again
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = x * np.float32(0.5)
    z = np.abs(y).astype(np.float64)
    w = np.fft.rfft(y[0])
    del y, z, w
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt only")
def test_tuned_allocator_reuses_freed_memory():
    default, tuned = _faults("default"), _faults("tuned")
    per_pass = (16 + 32 + 16) * (1 << 20) // 4096   # pages of y, z and w
    # tuned: after the first pass, the freed blocks are reused from the heap, already mapped
    assert tuned < per_pass // 100, (default, tuned)
    # glibc's default maps large arrays afresh, so later passes fault pages in again (here
    # 2.7 passes' worth; far fewer faults, not none, where THP is "always")
    assert default > 10 * max(tuned, 1), (default, tuned)


HUGEPAGE_PROBE = r"""
import numpy as np
try:
    from numpy._core import multiarray
except ImportError:
    from numpy.core import multiarray
multiarray._set_madvise_hugepage(True)
from afxmatch.runtime import no_numpy_hugepages
assert no_numpy_hugepages()
print(multiarray._set_madvise_hugepage(True))   # returns the setting it replaces
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages: Linux only")
def test_numpy_huge_page_requests_are_turned_off():
    out = subprocess.run([sys.executable, "-c", HUGEPAGE_PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
