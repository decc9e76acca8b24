"""Black-box search through the VST3 plugins vs gradient optimisation, on the style distance.

Pairs come from the quality benchmark's generator (``benchmarks/quality.make_pairs``:
held-out validation files, DeepAFx-ST protocol). For each pair, every system matches the
input to the reference through ``afxmatch.pipeline.match_arrays`` (so the output gain and
peak safety are the pipeline's), and the style distance of the output to the reference is
measured as the report does (``analysis.style_distances``): spectral_db, loudness_lu,
dynamics_db and their sum.

Systems: ``input`` (unprocessed), ``analysis``, ``model``, ``blackbox`` (CMA-ES through ZamEQ2 +
ZamComp, started from the better of the ``analysis`` and model estimates) and ``optimise`` (when ``optimise`` is a method of this
afxmatch; otherwise the table says so and compares with ``analysis`` only).

    python benchmarks/blackbox.py --data /tmp/afx_corpus --pairs 4 --out benchmarks/results/blackbox.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from afxmatch import analysis  # noqa: E402
from afxmatch.choices import METHODS  # noqa: E402
from afxmatch.pipeline import match_arrays  # noqa: E402
from afxmatch.render import vst3_backend  # noqa: E402
from quality import SR, make_pairs  # noqa: E402

PARTS = ("spectral_db", "loudness_lu", "dynamics_db")


def distances(y: np.ndarray, ref_features) -> dict[str, float]:
    d = analysis.style_distances(analysis.measure(y, SR), ref_features)
    d = {k: float(d[k]) if d[k] is not None else float("nan") for k in PARTS}
    d["sum"] = sum(d[k] for k in PARTS)
    return d


def run(pairs: list[dict], systems: list[str]) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {s: [] for s in systems}
    for i, pair in enumerate(pairs):
        ref = pair["reference"]
        f_ref = analysis.measure(ref, SR)
        for system in systems:
            t = time.perf_counter()
            if system == "input":
                y = pair["input"]
            else:
                y = match_arrays(pair["input"], SR, ref, SR, method=system, ref_features=f_ref).output
            d = distances(y, f_ref)
            d["seconds"] = time.perf_counter() - t
            rows[system].append(d)
            print(f"pair {i} {system:9s} " + " ".join(f"{k} {v:.3f}" for k, v in d.items()), flush=True)
    return rows


def table(rows: dict[str, list[dict]], kind: str) -> str:
    head = "| system | spectral_db | loudness_lu | dynamics_db | sum | sum vs input | s/pair |"
    lines = [f"**{kind}** (mean over pairs; lower is closer to the reference)", "", head,
             "|---|---|---|---|---|---|---|"]
    base = np.mean([r["sum"] for r in rows["input"]])
    for system, rs in rows.items():
        m = {k: float(np.mean([r[k] for r in rs])) for k in (*PARTS, "sum", "seconds")}
        lines.append(f"| {system} | {m['spectral_db']:.3f} | {m['loudness_lu']:.3f} | {m['dynamics_db']:.3f} "
                     f"| {m['sum']:.3f} | {100 * (m['sum'] / base - 1):+.0f} % | {m['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/afx_corpus"))
    ap.add_argument("--pairs", type=int, default=4, help="pairs per kind")
    ap.add_argument("--kinds", default="music,speech")
    ap.add_argument("--length", type=int, default=131072, help="samples per half (44.1 kHz)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not vst3_backend.available():
        sys.exit("zam-plugins not installed (scripts/install_zam_plugins.sh)")
    systems = ["input", "analysis", "model", "blackbox"]
    note = ""
    if "optimise" in METHODS:
        systems.append("optimise")
    else:
        note = ("`optimise` is not a method of this afxmatch build yet, so `blackbox` is compared "
                "with `analysis` (its starting point) and `model` instead.\n\n")
    out = [f"Pairs: {args.pairs} per kind from held-out validation files, {args.length} samples "
           f"({args.length / SR:.2f} s) per half at 44.1 kHz, seed {args.seed}. Command: "
           f"`python benchmarks/blackbox.py --pairs {args.pairs}`. Style distance as in the report "
           "(output vs reference); `sum` = spectral_db + loudness_lu + dynamics_db.\n", note]
    summary = []
    for kind in args.kinds.split(","):
        pairs = make_pairs(args.data, kind, args.pairs, args.seed, args.length, balance_db=10.0)
        rows = run(pairs, systems)
        out.append(table(rows, kind) + "\n")
        bb = np.mean([r["sum"] for r in rows["blackbox"]])
        for other in ("optimise", "model", "analysis"):
            if other in rows:
                op = np.mean([r["sum"] for r in rows[other]])
                summary.append(f"- {kind}: blackbox / {other} style distance = {bb / op:.2f} "
                               f"({'within' if bb <= 1.2 * op else 'outside'} 20 %)")
    text = "\n".join(out + summary) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
