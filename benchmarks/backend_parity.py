"""Measure how the torch and pedalboard backends differ; prints a markdown table.

    python benchmarks/backend_parity.py            # on the bundled examples

EQ-only: max |difference| of third-octave band levels. With compression: integrated
loudness (BS.1770, pyloudnorm) of each backend's output for several settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import signal

from afxmatch import analysis, audio, dsp
from afxmatch.params import ParamSpace
from afxmatch.render import render

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "examples" / "input.wav", ROOT / "examples" / "reference.flac"]
SETTINGS = [(-20, 4, 1, 100), (-30, 10, 1, 100), (-25, 3, 10, 200), (-35, 2, 30, 500),
            (-20, 8, 0.5, 50), (-40, 20, 0.1, 10)]


def third_octave_levels(y: np.ndarray, sr: int) -> np.ndarray:
    f, p = analysis.spectrum.welch_power(y, sr)
    centres = 1000 * 2.0 ** (np.arange(-17, 14) / 3)
    centres = centres[centres < 0.45 * sr]
    return np.array([10 * np.log10(p[(f >= c * 2 ** (-1 / 6)) & (f < c * 2 ** (1 / 6))].sum() + 1e-20)
                     for c in centres])


def float64_reference(x: np.ndarray, sr: int, params: dict) -> np.ndarray:
    """The same RBJ cascade run by scipy's sosfilt in float64: the ground truth."""
    sos = [np.concatenate([b[0, i].numpy(), a[0, i].numpy()])
           for b, a in dsp.eq.band_coefficients(dsp.params_to_tensors(params), sr) for i in range(b.shape[1])]
    return signal.sosfilt(np.array(sos), x.astype(np.float64), axis=-1)


def _typical(space: ParamSpace, rng) -> dict:
    params = space.denormalise(rng.uniform(0.05, 0.95, len(space)))
    for name in params:
        if name.endswith("_gain_db") and not name.startswith(("out", "comp")):
            params[name] = float(rng.uniform(-12, 12))
        elif name.endswith("_q"):
            params[name] = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
    return params


def _full(space: ParamSpace, rng) -> dict:
    return space.denormalise(rng.uniform(0.0, 1.0, len(space)))


def main(files: list[Path]) -> None:
    print("| file | test | torch | pedalboard | difference |")
    print("|---|---|---|---|---|")
    for path in files:
        a = audio.load(path)
        x, sr = a.samples, a.sample_rate
        space = ParamSpace(sr)
        for label, draw in (("typical: gains +-12 dB, Q 0.3-3", _typical), ("full ranges", _full)):
            rng = np.random.default_rng(0)
            worst = {"torch": 0.0, "pedalboard": 0.0, "between": 0.0}
            for _ in range(10):
                params = draw(space, rng)
                truth = third_octave_levels(float64_reference(x, sr, params), sr)
                levels = {b: third_octave_levels(render(x, sr, params, b, ("eq",)), sr) for b in ("torch", "pedalboard")}
                for b in levels:
                    worst[b] = max(worst[b], float(np.abs(levels[b] - truth).max()))
                worst["between"] = max(worst["between"], float(np.abs(levels["torch"] - levels["pedalboard"]).max()))
            print(f"| {path.name} | EQ only, 10 random settings ({label}): max third-octave band error "
                  f"vs float64 IIR | {worst['torch']:.4f} dB | {worst['pedalboard']:.4f} dB | "
                  f"{worst['between']:.4f} dB |")
        for thr, ratio, att, rel in SETTINGS:
            params = space.defaults()
            params.update(comp_threshold_db=thr, comp_ratio=ratio, comp_attack_ms=att, comp_release_ms=rel)
            lt = analysis.features.integrated_loudness(render(x, sr, params, "torch"), sr)
            lp = analysis.features.integrated_loudness(render(x, sr, params, "pedalboard"), sr)
            print(f"| {path.name} | compressor T {thr} dB, R {ratio}, A {att} ms, R {rel} ms | "
                  f"{lt:.2f} LUFS | {lp:.2f} LUFS | {lt - lp:+.2f} LU |")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]] or FILES)
