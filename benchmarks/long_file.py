"""Long files in bounded memory: peak RSS and wall time of one ``match_file`` on a
60-minute stereo 48 kHz file (streamed), and the streamed output against the in-memory
one on a shorter file. Writes a markdown report (stdout, and ``--out FILE``).

    python benchmarks/long_file.py [--minutes 60] [--method model] [--backend torch]
                                   [--compare-seconds 120] [--memory-minutes 10]
                                   [--out benchmarks/results/long_file.md]

The material is real: the bundled example input, resampled to 48 kHz and tiled with random
gain and polarity, written block by block (the generator holds one tile, not the file).
The files go to a temporary folder (``--tmp``; the 60-minute input is 0.7 GB as PCM_16
and the output 1 GB as PCM_24): check ``df -h`` first. Every run is a fresh process;
its peak RSS is the kernel's ``ru_maxrss`` for that child (``os.wait4``; the same figure
``resource.getrusage(RUSAGE_CHILDREN)`` gives when it is the only child).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SR = 48000

RUN = """
import json, sys
from afxmatch.pipeline import MatchOptions, match_file
a = json.loads(sys.argv[1])
r = match_file(a["input"], a["ref"], a["out"], MatchOptions(method=a["method"], backend=a["backend"],
               subtype=a["subtype"], force=True, stream_above_s=a["stream_above_s"]))
print(json.dumps(r["timings_s"]))
"""


def write_long_input(path: Path, seconds: float, seed: int = 0) -> None:
    """A stereo 48 kHz PCM_16 file of ``seconds``: the example input tiled, in bounded memory."""
    from scipy.signal import resample_poly

    x, sr = sf.read(str(ROOT / "examples" / "input.wav"), dtype="float32", always_2d=True)
    if sr != SR:
        x = resample_poly(x, SR, sr, axis=0).astype(np.float32)
    x = np.repeat(x, 2, axis=1)[:, :2] if x.shape[1] < 2 else x[:, :2]
    x = 0.9 * x / np.max(np.abs(x))
    rng = np.random.default_rng(seed)
    total, n = int(seconds * SR), 0
    with sf.SoundFile(str(path), "w", SR, 2, subtype="PCM_16") as fh:
        while n < total:
            part = (x * rng.uniform(0.3, 1.0) * rng.choice([-1.0, 1.0]))[: total - n]
            fh.write(part)
            n += len(part)


def run(inp: Path, ref: Path, out: Path, method: str, backend: str, subtype: str,
        stream_above_s: float | None) -> dict:
    """One match in a fresh process: wall s, peak RSS MiB and the report's stage timings."""
    args = json.dumps({"input": str(inp), "ref": str(ref), "out": str(out), "method": method,
                       "backend": backend, "subtype": subtype, "stream_above_s": stream_above_s})
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", RUN, args], stdout=out, stderr=err,
                                text=True, cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)   # this child's own peak RSS
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"match failed:\n{stderr}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024.0,
            "timings": json.loads(stdout.strip().splitlines()[-1])}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--method", default="model")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--compare-seconds", type=float, default=120.0,
                    help="length of the file on which streamed and in-memory outputs are compared (0: skip)")
    ap.add_argument("--memory-minutes", type=float, default=0.0,
                    help="also measure the in-memory path's peak RSS on a file this long (0: skip)")
    ap.add_argument("--tmp", default=None, help="folder for the temporary files (default: the system's)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="afxmatch-long-", dir=a.tmp))
    lines = []
    try:
        ref = ROOT / "examples" / "reference.flac"
        free = shutil.disk_usage(tmp).free / 2 ** 30
        need = a.minutes * 60 * SR * 2 * (2 + 3) / 2 ** 30
        if free < need + 1:
            raise SystemExit(f"{tmp}: {free:.1f} GiB free, {need:.1f} GiB needed")
        lines.append(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
                     f"{platform.python_version()}; `--method {a.method}`, {a.backend} backend, "
                     f"reference `examples/reference.flac`.")
        lines.append("")
        lines.append("| run | input | path | wall s | peak RSS MiB | analyse | estimate | render | write |")
        lines.append("|---|---|---|---|---|---|---|---|---|")

        def row(name, seconds, path, r):
            t = r["timings"]
            lines.append(f"| {name} | {seconds / 60:.1f} min stereo 48 kHz | {path} | {r['wall_s']:.1f} | "
                         f"{r['peak_rss_mib']:.0f} | {t.get('analyse', 0):.1f} | {t.get('estimate', 0):.1f} | "
                         f"{t.get('render', 0):.1f} | {t.get('write', 0):.1f} |")
            print(lines[-1], flush=True)

        diff = None
        if a.compare_seconds:
            short = tmp / "short.wav"
            write_long_input(short, a.compare_seconds, seed=1)
            mem = run(short, ref, tmp / "mem.wav", a.method, a.backend, "FLOAT", 1e12)
            row("compare", a.compare_seconds, "in memory", mem)
            stream = run(short, ref, tmp / "stream.wav", a.method, a.backend, "FLOAT", 0.0)
            row("compare", a.compare_seconds, "streamed", stream)
            x, _ = sf.read(str(tmp / "mem.wav"), dtype="float32")
            y, _ = sf.read(str(tmp / "stream.wav"), dtype="float32")
            diff = float(np.max(np.abs(x - y))) if x.shape == y.shape else float("inf")
            for f in ("short.wav", "mem.wav", "stream.wav", "mem.json", "stream.json"):
                (tmp / f).unlink(missing_ok=True)
        if a.memory_minutes:
            mid = tmp / "mid.wav"
            write_long_input(mid, a.memory_minutes * 60, seed=2)
            row("in-memory cost", a.memory_minutes * 60, "in memory", run(
                mid, ref, tmp / "mid_out.wav", a.method, a.backend, "PCM_24", 1e12))
            for f in ("mid.wav", "mid_out.wav", "mid_out.json"):
                (tmp / f).unlink(missing_ok=True)

        long_in = tmp / "long.wav"
        t = time.perf_counter()
        write_long_input(long_in, a.minutes * 60)
        print(f"wrote {long_in} ({long_in.stat().st_size / 2 ** 20:.0f} MiB) in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        r = run(long_in, ref, tmp / "long_out.wav", a.method, a.backend, "PCM_24", None)
        from afxmatch.stream_pipeline import STREAM_ABOVE_CHANNEL_S
        row("long file", a.minutes * 60, "streamed" if a.minutes * 60 * 2 > STREAM_ABOVE_CHANNEL_S
            else "in memory (below the threshold)", r)
        info = sf.info(str(tmp / "long_out.wav"))
        report = json.loads((tmp / "long_out.json").read_text())
        lines.append("")
        lines.append(f"Long file: output {info.frames} frames ({info.frames == int(a.minutes * 60 * SR)} "
                     f"that it equals the input's), {info.channels} channels; output "
                     f"{report['output']['integrated_lufs']} LUFS, peak {report['output']['sample_peak_dbfs']} "
                     f"dBFS; reference {report['reference']['integrated_lufs']} LUFS.")
        lines.append(f"Peak RSS {r['peak_rss_mib']:.0f} MiB (target <= 1024 MiB), wall {r['wall_s']:.0f} s "
                     f"({r['wall_s'] / a.minutes:.1f} s per audio minute).")
        if diff is not None:
            lines.append(f"Streamed vs in-memory output on the {a.compare_seconds:.0f} s file: max |difference| "
                         f"= {diff:.2e} (target <= 1e-4).")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = ("Command: `python benchmarks/long_file.py " + " ".join(argv if argv is not None else sys.argv[1:])
            + "`\n\n" + "\n".join(lines) + "\n")
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
