"""EasyEffects output preset (JSON) for EasyEffects 7.2.x: equalizer + compressor.

Pinned version: EasyEffects 7.2 (GTK 4 / C++ series). The key set is the one written by
``EqualizerPreset::save`` and ``CompressorPreset::save`` in wwmm/easyeffects
``src/equalizer_preset.cpp`` / ``src/compressor_preset.cpp`` (2025 sources, which write a
per-band ``width`` and the equalizer's ``balance``/``pitch-left``/``pitch-right``; 7.1 and
older lack some of these). ``tests/test_presets.py`` asserts exactly this key set.

- Equalizer: 6 bands, every band in mode ``"APO (DR)"`` (LSP's implementation of Equalizer
  APO's RBJ cookbook biquads), types ``Lo-shelf``/``Bell``/``Hi-shelf``, ``q`` = afxmatch's
  Q: the EQ is the report's EQ. ``width`` is not used by these band types (written as 4.0).
- Compressor (LSP): downward, peak sidechain, attack/release/threshold/ratio/make-up as
  in the report. Approximate: LSP's knee parameter is a level (dB below threshold where
  the knee starts, <= 0), written as minus half of afxmatch's knee width; detection and
  ballistics are LSP's, not afxmatch's. The output gain goes in the compressor's
  ``output-gain`` (the chain's last stage). ``bypass`` is true when the ratio is 1:1.
"""

from __future__ import annotations

import json

from ..params import EQ_BANDS

EASYEFFECTS_VERSION = "7.2"
EE_TYPES = {"low_shelf": "Lo-shelf", "peak": "Bell", "high_shelf": "Hi-shelf"}


def _band(kind: str, freq: float, gain: float, q: float) -> dict:
    return {"type": EE_TYPES[kind], "mode": "APO (DR)", "slope": "x1", "solo": False,
            "mute": False, "gain": round(gain, 4), "frequency": round(freq, 3),
            "q": round(q, 5), "width": 4.0}


def easyeffects_preset(settings) -> dict:
    p = settings.params
    bands = {f"band{i}": _band(kind, p[f"{prefix}_freq_hz"], p[f"{prefix}_gain_db"], p[f"{prefix}_q"])
             for i, (prefix, kind) in enumerate(EQ_BANDS)}
    equalizer = {"bypass": False, "input-gain": 0.0, "output-gain": 0.0, "mode": "IIR",
                 "split-channels": False, "balance": 0.0, "pitch-left": 0.0, "pitch-right": 0.0,
                 "num-bands": len(EQ_BANDS), "left": bands, "right": json.loads(json.dumps(bands))}
    compressor = {
        "bypass": p["comp_ratio"] <= 1.0, "input-gain": 0.0,
        "output-gain": round(p["out_gain_db"], 4), "dry": -100.0, "wet": 0.0,
        "mode": "Downward", "attack": round(p["comp_attack_ms"], 4),
        "release": round(p["comp_release_ms"], 4), "release-threshold": -100.0,
        "threshold": round(p["comp_threshold_db"], 4), "ratio": round(p["comp_ratio"], 4),
        "knee": round(-p["comp_knee_db"] / 2, 4), "makeup": round(p["comp_makeup_db"], 4),
        "boost-threshold": -72.0, "boost-amount": 6.0, "stereo-split": False,
        "sidechain": {"type": "Feed-forward", "mode": "Peak", "source": "Middle",
                      "stereo-split-source": "Left/Right", "preamp": 0.0, "reactivity": 10.0,
                      "lookahead": 0.0},
        "hpf-mode": "off", "hpf-frequency": 10.0, "lpf-mode": "off", "lpf-frequency": 20000.0,
    }
    return {"output": {"blocklist": [], "plugins_order": ["equalizer#0", "compressor#0"],
                       "equalizer#0": equalizer, "compressor#0": compressor}}


def easyeffects_json(settings) -> tuple[str, list[str]]:
    notes = [f"EasyEffects {EASYEFFECTS_VERSION} output preset; the EQ is exact (APO (DR) "
             "mode), the compressor is LSP's (knee and ballistics approximate)"]
    return json.dumps(easyeffects_preset(settings), indent=4) + "\n", notes
