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
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
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
    # glibc's default maps each large array afresh: every pass faults its pages in again
    assert default >= 2 * per_pass, default
    # tuned: the freed blocks are reused from the heap, already mapped
    assert tuned * 3 < default, (default, tuned)
