"""Batch throughput: files per minute with 1 and 2 (or more) workers, and the cost of one
file against its duration. Writes a markdown table (stdout, and ``--out FILE``).

    python benchmarks/batch.py [--files 32] [--seconds 10] [--runs 3] [--workers 1 2] [--method analysis]
                               [--durations 5 15 30 60 120] [--out docs/batch-benchmark.md]

Run it on an otherwise idle machine. The material is real: the bundled examples, tiled
with variations (``benchmarks/speed.py``). Each configuration runs in a fresh process
(``afxmatch batch ...``), timed from launch to exit, so worker start-up (spawn, imports,
model and reference loading) is included: that is what a user waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import ROOT, SR, tiled, timed  # noqa: E402  (the same material as the speed benchmark)


def make_inputs(folder: Path, count: int, seconds: float, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        sf.write(str(folder / f"take{i:03d}.wav"), tiled(ROOT / "examples" / "input.wav", seconds, 2, seed + i),
                 SR, subtype="PCM_24")


def run_batch_cli(src: Path, ref: Path, out: Path, workers: int, method: str) -> float:
    return timed([sys.executable, "-m", "afxmatch", "batch", str(src), "--ref", str(ref), "-o", str(out),
                  "--method", method, "--workers", str(workers), "-q"])


def throughput(d: Path, ref: Path, files: int, seconds: float, workers: list[int], method: str,
               runs: int) -> list[tuple[int, float, list[float]]]:
    src = d / "tput"
    make_inputs(src, files, seconds)
    times: dict[int, list[float]] = {w: [] for w in workers}
    for r in range(runs):   # interleaved, so a drift of the machine's speed hits every count alike
        for w in workers:
            times[w].append(run_batch_cli(src, ref, d / f"out-w{w}-r{r}", w, method))
    return [(w, files / statistics.median(times[w]) * 60.0, times[w]) for w in workers]


def cost_by_duration(d: Path, ref: Path, durations: list[float], method: str) -> list[tuple[float, dict]]:
    """One worker, one file per duration: the report's stage timings (load .. write)."""
    rows = []
    for s in durations:
        src = d / f"dur{s:g}"
        make_inputs(src, 1, s, seed=100)
        out = d / f"out-dur{s:g}"
        run_batch_cli(src, ref, out, 1, method)
        rows.append((s, json.loads((out / "take000.json").read_text())["timings_s"]))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput file")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--method", default="analysis")
    ap.add_argument("--durations", type=float, nargs="+", default=[5, 15, 30, 60, 120])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        ref = d / "ref.wav"
        sf.write(str(ref), tiled(ROOT / "examples" / "reference.flac", 30.0, 2, 1), SR, subtype="PCM_24")
        tput = throughput(d, ref, a.files, a.seconds, a.workers, a.method, a.runs)
        cost = cost_by_duration(d, ref, a.durations, a.method)
    base = tput[0][1]
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
             f"`--method {a.method}`, torch backend, 30 s stereo 44.1 kHz reference.", "",
             f"Throughput: {a.files} stereo 44.1 kHz files of {a.seconds:g} s, wall time from launch "
             "to exit of `afxmatch batch` (start-up included):", "",
             "| workers | files / minute | speed-up | wall s (runs) |", "|---|---|---|---|"]
    for w, fpm, times in tput:
        lines.append(f"| {w} | {fpm:.1f} | {fpm / base:.2f}x | {', '.join(f'{t:.1f}' for t in times)} |")
    lines += ["", "Cost of one file against its duration (1 worker; stage seconds from the report):", "",
              "| duration s | load | analyse | estimate | render | measure | write | total | s per audio min |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s, t in cost:
        lines.append(f"| {s:g} | {t.get('load', 0):.2f} | {t.get('analyse', 0):.2f} | {t.get('estimate', 0):.2f} | "
                     f"{t.get('render', 0):.2f} | {t.get('measure_output', 0):.2f} | {t.get('write', 0):.2f} | "
                     f"{t['total']:.2f} | {t['total'] / s * 60:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
