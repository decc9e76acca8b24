"""Quality benchmark on synthetic style pairs from held-out validation files.

    python benchmarks/quality.py --data /tmp/afx_corpus --pairs 25 --out benchmarks/results/quality.md

Pairs follow DeepAFx-ST's protocol (afxmatch.model.pairs, effects made with scipy /
pedalboard, not with afxmatch's renderer): input = corrupted half A, reference = styled
half B, target = styled half A. Each system turns (input, reference) into an output that
is compared with the target, mono-mixed, with the metrics of DESIGN.md §5:

- MR-STFT: FFT 32 ... 32768, hop 50 %, Hann; L1 of linear + L1 of natural-log magnitude,
  mean over resolutions;
- MSD: one 65536-sample frame, 128 mel bands, L1 linear + log;
- SCE: mean |spectral-centroid difference| in Hz (n_fft 2048, hop 512);
- RMS: |RMS difference| in dB (20 log10); LUFS: |integrated loudness difference| (BS.1770);
- PESQ (wide-band, 16 kHz) for speech when the ``pesq`` package is installed.

Pair selection (since session 2): both halves of the clean excerpt must be active and
within ``--half-balance-db`` (10 dB) RMS of each other, and half B is then scaled to half
A's integrated loudness before the effects. The speech corpus stitches KLettres clips
recorded at different levels, so without this a reference half could be near-silent or
many LU away from its target (on 25 speech pairs |LUFS(reference) − LUFS(target)| was
3.7 LU on average, up to 34.6 LU; now 1.5 LU; music 1.0 → 0.8 LU): a loudness-matching
system cannot know the target's level from such a reference. DeepAFx-ST's speech (DAPS)
is continuous read speech. ``--raw-halves`` gives the old protocol.

Systems: ``input`` (unprocessed), ``analysis``, ``model``, ``optimise`` (the model's
estimate refined by gradient steps, default limits) and ``matchering`` when installed
(``pip install afxmatch[bench]``). All are measured in one run on the same pairs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyloudnorm
import torch
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from afxmatch.model.features import mel_filterbank  # noqa: E402
from afxmatch.model.pairs import PairConfig, make_pair, load_audio  # noqa: E402
from afxmatch.pipeline import match_arrays  # noqa: E402

SR = 44100
MRSTFT_FFTS = [2 ** k for k in range(5, 16)]  # 32 .. 32768
EPS = 1e-8


def _mag(x: torch.Tensor, n_fft: int, hop: int, center: bool = True) -> torch.Tensor:
    win = torch.hann_window(n_fft, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, window=win, center=center, return_complex=True)
    return torch.sqrt(torch.clamp(spec.real ** 2 + spec.imag ** 2, min=EPS))


def mr_stft(out: np.ndarray, tgt: np.ndarray) -> float:
    a, b = torch.from_numpy(out).double(), torch.from_numpy(tgt).double()
    losses = []
    for n in MRSTFT_FFTS:
        ma, mb = _mag(a, n, n // 2), _mag(b, n, n // 2)
        losses.append(float((ma - mb).abs().mean() + (ma.log() - mb.log()).abs().mean()))
    return float(np.mean(losses))


def msd(out: np.ndarray, tgt: np.ndarray, n_fft: int = 65536, n_mels: int = 128) -> float:
    fb = torch.as_tensor(mel_filterbank(n_fft, n_mels, SR)).double()  # (n_mels, bins)
    a, b = (torch.from_numpy(v[:n_fft]).double() for v in (out, tgt))
    ma, mb = (fb @ _mag(v, n_fft, n_fft, center=False) for v in (a, b))
    return float((ma - mb).abs().mean() + (torch.log(ma + EPS) - torch.log(mb + EPS)).abs().mean())


def centroid(x: np.ndarray, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    m = _mag(torch.from_numpy(x).double(), n_fft, hop)
    f = torch.linspace(0, SR / 2, m.shape[0], dtype=torch.float64)[:, None]
    return ((f * m).sum(0) / m.sum(0)).numpy()


def sce(out: np.ndarray, tgt: np.ndarray) -> float:
    return float(np.mean(np.abs(centroid(out) - centroid(tgt))))


def rms_db(x: np.ndarray) -> float:
    return 20 * math.log10(math.sqrt(float(np.mean(x.astype(np.float64) ** 2))) + 1e-12)


def lufs(x: np.ndarray) -> float:
    return float(pyloudnorm.Meter(SR).integrated_loudness(x.astype(np.float64)))


def pesq_wb(out: np.ndarray, tgt: np.ndarray) -> float | None:
    try:
        from pesq import pesq
    except ImportError:
        return None
    a, b = (resample_poly(v, 160, 441) for v in (tgt, out))
    try:
        return float(pesq(16000, a, b, "wb"))
    except Exception:  # noqa: BLE001 - PESQ refuses e.g. silent excerpts
        return None


def metrics(out: np.ndarray, tgt: np.ndarray, speech: bool) -> dict:
    o, t = out.mean(0), tgt.mean(0)  # mono mix
    row = {"MR-STFT": mr_stft(o, t), "MSD": msd(o, t), "SCE_Hz": sce(o, t),
           "RMS_dB": abs(rms_db(o) - rms_db(t)), "LUFS": abs(lufs(o) - lufs(t))}
    if speech:
        row["PESQ"] = pesq_wb(o, t)
    return row


def third_octave_db(x: np.ndarray, n_fft: int = 4096) -> np.ndarray:
    """Long-term power in 1/3-octave bands 50 Hz - 16 kHz (dB), relative to the band mean."""
    f = np.fft.rfftfreq(n_fft, 1 / SR)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 4] * np.hanning(n_fft)
    power = (np.abs(np.fft.rfft(frames)) ** 2).mean(0)
    edges = 50 * 2 ** (np.arange(0, 25.01) / 3)   # 50 Hz ... 16.1 kHz
    db = np.array([10 * np.log10(power[(f >= lo) & (f < hi)].mean() + 1e-20)
                   for lo, hi in zip(edges[:-1], edges[1:])])
    return db - db.mean()


def content_gap(pairs: list[dict]) -> dict:
    """How far each pair's reference is from its target in what a style matcher copies:
    ``LUFS``: mean |LUFS(reference) - LUFS(target)| (a system that matches the reference's
    loudness exactly misses the target by this much); ``spectrum_dB``: mean |difference|
    of their level-normalised 1/3-octave spectra. Both are content, not style: reference
    and target went through the same effects."""
    lu = [abs(lufs(p["reference"].mean(0)) - lufs(p["target"].mean(0))) for p in pairs]
    sp = [np.abs(third_octave_db(p["reference"].mean(0)) - third_octave_db(p["target"].mean(0))).mean()
          for p in pairs]
    return {"LUFS": float(np.mean(lu)), "spectrum_dB": float(np.mean(sp))}


def run_matchering(inp: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    try:
        import matchering as mg
        import soundfile as sf
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / n for n in ("in.wav", "ref.wav", "out.wav")]
        for p, x in zip(paths, (inp, ref)):
            sf.write(str(p), np.atleast_2d(x).T if x.shape[0] > 1 else np.repeat(x, 2, 0).T, SR, subtype="FLOAT")
        mg.log(lambda *a: None)
        mg.process(target=str(paths[0]), reference=str(paths[1]), results=[mg.pcm24(str(paths[2]))])
        y, _ = sf.read(str(paths[2]), dtype="float32", always_2d=True)
    y = y.T
    return y if inp.shape[0] == 2 else y.mean(0, keepdims=True)


def make_pairs(data: Path, kind: str, n: int, seed: int, length: int,
               balance_db: float | None = None) -> list[dict]:
    manifest = json.loads((data / "manifest.json").read_text())
    files = [data / f["path"] for f in manifest["files"] if f["split"] == "valid" and f["kind"] == kind]
    rng = np.random.default_rng(seed)
    cfg = PairConfig(sample_rate=SR, length=length, half_balance_db=balance_db,
                     equal_half_loudness=balance_db is not None)
    cache, pairs = {}, []
    while len(pairs) < n:
        path = files[rng.integers(len(files))]
        if path not in cache:
            cache[path] = load_audio(path, SR)
        try:
            pairs.append(make_pair(cache[path], rng, cfg))
        except ValueError:
            continue
    return pairs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/afx_corpus"))
    ap.add_argument("--pairs", type=int, default=25, help="pairs per kind (music, speech)")
    ap.add_argument("--length", type=int, default=131072, help="samples per half (44.1 kHz)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    ap.add_argument("--systems", default="input,analysis,model,optimise,matchering")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--half-balance-db", type=float, default=10.0,
                    help="each half of a pair's excerpt must be active and within this many dB "
                         "RMS of the other; the clean halves are then loudness-equalised")
    ap.add_argument("--raw-halves", action="store_true",
                    help="session-1 protocol: neither the balance check nor the equalisation")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    systems = a.systems.split(",")
    results: dict = {}
    timing: dict = {}
    gaps: dict = {}
    for kind in ("music", "speech"):
        pairs = make_pairs(a.data, kind, a.pairs, a.seed, a.length,
                           None if a.raw_halves else a.half_balance_db)
        gaps[kind] = content_gap(pairs)
        for system in systems:
            rows, t0 = [], time.perf_counter()
            for p in pairs:
                if system == "input":
                    out = p["input"]
                elif system == "matchering":
                    out = run_matchering(p["input"], p["reference"])
                    if out is None:
                        break
                else:
                    out = match_arrays(p["input"], SR, p["reference"], SR, method=system,
                                       model_path=a.model).output
                rows.append(metrics(out, p["target"], kind == "speech"))
            if rows:
                results[(kind, system)] = rows
                timing[(kind, system)] = (time.perf_counter() - t0) / len(rows)
            print(f"{kind:6s} {system:10s} done ({len(rows)} pairs)", file=sys.stderr)
    table = render_table(results, timing, a, gaps)
    print(table)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(table)


def render_table(results: dict, timing: dict, a, gaps: dict | None = None) -> str:
    cols = ["MR-STFT", "MSD", "SCE_Hz", "RMS_dB", "LUFS", "PESQ"]
    lines = [f"Pairs: {a.pairs} per kind from held-out validation files, {a.length} samples "
             f"({a.length / SR:.2f} s) per half at 44.1 kHz, seed {a.seed}, "
             + ("raw halves (no balance check). " if a.raw_halves else
                f"halves active and within {a.half_balance_db:g} dB RMS, clean halves "
                "loudness-equalised. ")
             + 
             f"Command: `python benchmarks/quality.py --data CORPUS --pairs {a.pairs}"
             f"{' --model ' + a.model if a.model else ''}{' --raw-halves' if a.raw_halves else ''}`.", ""]
    for kind in ("music", "speech"):
        lines += [f"**{kind}** (mean over pairs; lower is better except PESQ)", "",
                  "| system | " + " | ".join(cols) + " | MR-STFT vs input | s/pair |",
                  "|---" * (len(cols) + 3) + "|"]
        base = None
        for (k, system), rows in results.items():
            if k != kind:
                continue
            means = {}
            for c in cols:
                vals = [r[c] for r in rows if r.get(c) is not None]
                means[c] = float(np.mean(vals)) if vals else None
            if system == "input":
                base = means["MR-STFT"]
            rel = f"{100 * (means['MR-STFT'] / base - 1):+.0f} %" if base else ""
            cells = ["n/a" if means[c] is None else f"{means[c]:.3f}" for c in cols]
            lines.append(f"| {system} | " + " | ".join(cells) + f" | {rel} | {timing[(k, system)]:.2f} |")
        if gaps and kind in gaps:
            g = gaps[kind]
            lines += ["", f"Content gap of these pairs (reference vs target, same effects, different "
                          f"excerpt halves): loudness {g['LUFS']:.2f} LU, 1/3-octave spectrum "
                          f"{g['spectrum_dB']:.2f} dB mean |difference|. A system that copies the "
                          f"reference's loudness misses the target's by the first."]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
