"""A small, valid afxmatch report (no audio needed) for the preset and apply tests."""

import json
from pathlib import Path

from afxmatch.params import ParamSpace, fingerprint
from afxmatch.report import SCHEMA, parameters_block

# Moderate settings, the kind ZamEQ2 can follow (peaks below 7 kHz, gains within +-8 dB).
MODERATE = {
    "ls_freq_hz": 110.0, "ls_gain_db": 4.0, "ls_q": 0.6,
    "p1_freq_hz": 420.0, "p1_gain_db": -5.0, "p1_q": 1.2,
    "p2_freq_hz": 1800.0, "p2_gain_db": 3.0, "p2_q": 2.0,
    "p3_freq_hz": 3500.0, "p3_gain_db": -4.0, "p3_q": 1.5,
    "p4_freq_hz": 6000.0, "p4_gain_db": 2.5, "p4_q": 0.9,
    "hs_freq_hz": 9000.0, "hs_gain_db": -3.0, "hs_q": 0.58,
    "comp_threshold_db": -24.0, "comp_ratio": 3.0, "comp_attack_ms": 5.0,
    "comp_release_ms": 120.0, "comp_knee_db": 6.0, "comp_makeup_db": 2.0, "out_gain_db": 1.5,
}


def write_report(path: Path, params: dict | None = None, sample_rate: int = 44100,
                 backend: str = "torch") -> Path:
    full = ParamSpace(sample_rate).validate(params or MODERATE)
    report = {"schema": SCHEMA, "method": "analysis", "backend": backend,
              "param_space": {"fingerprint": fingerprint(), "sample_rate": sample_rate},
              "parameters": parameters_block(full, sample_rate)}
    path.write_text(json.dumps(report, indent=2))
    return path
