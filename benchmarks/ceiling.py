"""What the effect chain could reach on the quality benchmark's pairs if it knew the target.

    python benchmarks/ceiling.py --data /tmp/afx_corpus --kind speech --pairs 8

A diagnostic, not a system: for each pair it starts from the model's estimate and runs
Adam through the differentiable chain on an MR-STFT loss against the *target* itself
(which no real system has), keeping the best iterate. The gap between this and the
systems of ``quality.py`` is what estimating from the reference costs (content differs
between the reference and target halves); the gap between this and zero is what the
chain itself cannot express.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from afxmatch import dsp  # noqa: E402
from afxmatch.params import ParamSpace  # noqa: E402
from afxmatch.pipeline import match_arrays  # noqa: E402
from quality import SR, _mag, make_pairs, metrics  # noqa: E402

FFTS = (256, 1024, 4096, 16384)


def mrstft_loss(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Differentiable MR-STFT (the benchmark's L1 linear + L1 log magnitude, fewer sizes)."""
    total = 0.0
    for n in FFTS:
        a, b = _mag(y, n, n // 2), _mag(t, n, n // 2)   # quality.py's magnitudes (same floor)
        total = total + (a - b).abs().mean() + (a.log() - b.log()).abs().mean()
    return total / len(FFTS)


def fit_to_target(x: np.ndarray, target: np.ndarray, start: dict, steps: int, lr: float) -> np.ndarray:
    space = ParamSpace(SR)
    z = torch.logit(torch.tensor(space.normalise(start)).clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    xt = torch.from_numpy(x).double()[None]
    tt = torch.from_numpy(target.mean(0)).double()
    best, best_params = float("inf"), start
    for _ in range(steps):
        params = dsp.denormalise(space, torch.sigmoid(z)[None])
        loss = mrstft_loss(dsp.process(xt, SR, params)[0].mean(0), tt)
        if loss.item() < best:
            best, best_params = float(loss), {k: float(v) for k, v in params.items()}
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return dsp.process(xt, SR, dsp.params_to_tensors(best_params))[0].numpy().astype(np.float32)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/afx_corpus"))
    ap.add_argument("--kind", choices=("music", "speech"), default="speech")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--lr", type=float, default=0.05)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    pairs = make_pairs(a.data, a.kind, a.pairs, 1234, 131072, 10.0)   # quality.py's first pairs
    rows: dict[str, list] = {"input": [], "model": [], "target-fitted chain": []}
    for p in pairs:
        res = match_arrays(p["input"], SR, p["reference"], SR, method="model")
        fitted = fit_to_target(p["input"], p["target"], res.params, a.steps, a.lr)
        for name, out in zip(rows, (p["input"], res.output, fitted)):
            rows[name].append(metrics(out, p["target"], a.kind == "speech")["MR-STFT"])
    base = float(np.mean(rows["input"]))
    print(f"{a.kind}, first {a.pairs} pairs of quality.py (seed 1234), MR-STFT:")
    for name, v in rows.items():
        m = float(np.mean(v))
        print(f"  {name:20s} {m:.3f}  ({100 * (m / base - 1):+.0f} % vs input)")


if __name__ == "__main__":
    main()
