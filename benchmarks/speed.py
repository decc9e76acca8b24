"""Wall time of one default match on a 3-minute stereo 44.1 kHz track with a 30 s reference,
start-up included, against matchering (when installed) doing the same job.

    python benchmarks/speed.py [--runs 3] [--method model]

The material is real: the bundled examples, tiled with variations to the target lengths.
Each run is a fresh process (``afxmatch ...`` / ``python -c 'matchering.process(...)'``),
timed from launch to exit. Prints the median and all runs as a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parent.parent
SR = 44100


def tiled(path: Path, seconds: float, channels: int, seed: int) -> np.ndarray:
    """``(n, channels)`` audio at 44.1 kHz: the file repeated with random gain and polarity."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != SR:
        x = resample_poly(x, SR, sr, axis=0).astype(np.float32)
    x = np.repeat(x, channels, axis=1)[:, :channels] if x.shape[1] < channels else x[:, :channels]
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    while n < seconds * SR:
        part = x * rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0])
        parts.append(part)
        n += len(part)
    y = np.concatenate(parts)[: int(seconds * SR)]
    return (0.98 * y / np.max(np.abs(y))).astype(np.float32)


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{proc.stderr}")
    return dt


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--method", default="model")
    ap.add_argument("--seconds", type=float, default=180.0)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        inp, ref = d / "track.wav", d / "ref.wav"
        sf.write(str(inp), tiled(ROOT / "examples" / "input.wav", a.seconds, 2, 0), SR, subtype="PCM_24")
        sf.write(str(ref), tiled(ROOT / "examples" / "reference.flac", 30.0, 2, 1), SR, subtype="PCM_24")
        afx = [sys.executable, "-m", "afxmatch", str(inp), "--ref", str(ref), "-o", str(d / "afx.wav"),
               "--method", a.method, "--force", "-q"]
        rows = {f"afxmatch --method {a.method}": [timed(afx) for _ in range(a.runs)]}
        try:
            import matchering  # noqa: F401
            mg = [sys.executable, "-c",
                  "import matchering as mg; mg.log(lambda *a: None); "
                  f"mg.process(target={str(inp)!r}, reference={str(ref)!r}, "
                  f"results=[mg.pcm24({str(d / 'mg.wav')!r})])"]
            rows["matchering 2 (pcm24 output)"] = [timed(mg) for _ in range(a.runs)]
        except ImportError:
            print("matchering not installed (pip install afxmatch[bench]); skipped", file=sys.stderr)
    print(f"{a.seconds:.0f} s stereo 44.1 kHz input, 30 s reference, {a.runs} runs each, fresh process per run:\n")
    print("| system | median wall s | runs |")
    print("|---|---|---|")
    for name, times in rows.items():
        print(f"| {name} | {statistics.median(times):.2f} | {', '.join(f'{t:.2f}' for t in times)} |")


if __name__ == "__main__":
    main()
