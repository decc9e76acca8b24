"""Mastering finish check: ``--loudness -14 --true-peak -1`` on every example and benchmark file.

    python benchmarks/finish.py --data /tmp/afx_corpus --pairs 25 [--out benchmarks/results/finish.md]

Files: the bundled example input (matched to the bundled reference) and the input of every
pair of the quality benchmark (``benchmarks/quality.py``: the same pairs, same seed, music
and speech), each matched to its pair's reference with the default method and the finish.
The output is rounded to 24-bit PCM as ``afxmatch`` writes it, then measured independently
of afxmatch: integrated loudness with pyloudnorm (on complete 400 ms blocks, as BS.1770
gates them: see :func:`whole_blocks`), true peak as the maximum of scipy's
``resample_poly`` 4x oversampling (Kaiser-windowed polyphase FIR). Pass: -14 +- 0.5 LUFS and
<= -1.0 dBTP on every file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyloudnorm
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from afxmatch.audio import load  # noqa: E402
from afxmatch.pipeline import match_arrays  # noqa: E402
from quality import SR, make_pairs  # noqa: E402

TARGET, CEILING, TOLERANCE = -14.0, -1.0, 0.5


def as_written(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to 24-bit PCM, as a WAV/FLAC output of afxmatch stores it."""
    return np.round(np.clip(x, -1.0, 1.0 - 2.0 ** -23) * 2.0 ** 23) / 2.0 ** 23


def whole_blocks(x: np.ndarray, rate: int) -> np.ndarray:
    """``x`` cut to 400 ms + a whole number of 100 ms steps. BS.1770 gates complete
    400 ms blocks; pyloudnorm rounds the block count, so on a file whose length is not
    such a multiple it adds a last, partial block (counted with a full block's length).
    On the 2.97 s benchmark files that moved its reading by up to 0.95 LU (speech pair
    15: -13.19 LUFS whole, -14.18 on complete blocks, afxmatch's meter -14.14)."""
    step, block = round(0.1 * rate), round(0.4 * rate)
    n = x.shape[-1]
    return x[..., : block + max(0, n - block) // step * step] if n >= block else x


def independent(x: np.ndarray, rate: int) -> tuple[float, float]:
    """``(LUFS, dBTP)`` of ``(channels, n)`` audio by pyloudnorm (complete blocks only) and
    scipy 4x oversampling."""
    lufs = pyloudnorm.Meter(rate).integrated_loudness(whole_blocks(x, rate).T.astype(np.float64))
    up = resample_poly(x.astype(np.float64), 4, 1, axis=-1)
    peak = max(float(np.abs(up).max()), float(np.abs(x).max()))
    return float(lufs), 20 * np.log10(peak)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/afx_corpus"))
    ap.add_argument("--pairs", type=int, default=25, help="pairs per kind, as in quality.py")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--length", type=int, default=131072)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)

    cases = []
    inp, ref = load(ROOT / "examples/input.wav"), load(ROOT / "examples/reference.flac")
    cases.append(("example", inp.samples, inp.sample_rate, ref.samples, ref.sample_rate))
    for kind in ("music", "speech"):
        for i, p in enumerate(make_pairs(a.data, kind, a.pairs, a.seed, a.length, 10.0)):
            cases.append((f"{kind} {i}", p["input"], SR, p["reference"], SR))

    rows = []
    for name, x, rate, r, r_rate in cases:
        res = match_arrays(x, rate, r, r_rate, loudness_lufs=TARGET, true_peak_dbtp=CEILING)
        lufs, tp = independent(as_written(res.output), rate)
        ok = abs(lufs - TARGET) <= TOLERANCE and tp <= CEILING
        raw = pyloudnorm.Meter(rate).integrated_loudness(as_written(res.output).T.astype(np.float64))
        rows.append((name, lufs, tp, raw, res.finish["limiter"]["max_gain_reduction_db"], ok))
        print(f"{name:10s} {lufs:7.2f} LUFS {tp:6.2f} dBTP {'ok' if ok else 'FAIL'}", file=sys.stderr)

    lufs_err = max(abs(r[1] - TARGET) for r in rows)
    worst_tp = max(r[2] for r in rows)
    failed = [r[0] for r in rows if not r[5]]
    lines = [f"`python benchmarks/finish.py --data CORPUS --pairs {a.pairs}`: "
             f"`--loudness {TARGET:g} --true-peak {CEILING:g}`, default method, on the example and "
             f"the {len(rows) - 1} quality-benchmark inputs (music and speech); output rounded to "
             "24-bit, measured with pyloudnorm (complete 400 ms blocks) and scipy `resample_poly` x4.", "",
             "| files | LUFS min | LUFS max | max abs LUFS error | same, pyloudnorm with its partial last block "
             "| worst true peak dBTP | max limiting dB | failed |",
             "|---|---|---|---|---|---|---|---|",
             f"| {len(rows)} | {min(r[1] for r in rows):.2f} | {max(r[1] for r in rows):.2f} | "
             f"{lufs_err:.2f} | {max(abs(r[3] - TARGET) for r in rows):.2f} | {worst_tp:.2f} | "
             f"{max(r[4] for r in rows):.1f} | "
             f"{', '.join(failed) if failed else 'none'} |", ""]
    table = "\n".join(lines)
    print(table)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(table)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
