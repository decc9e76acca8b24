"""Equalizer APO ``ParametricEQ.txt``: ``Preamp:`` and ``Filter N: ON PK|LSC|HSC`` lines.

Mapping (all six bands are exact): ``PK`` is the RBJ cookbook peaking filter with Q;
``LSC``/``HSC`` written with ``Q`` are the cookbook's shelves in their Q form
(alpha = sin(w0) / (2 Q)), which is how afxmatch (and pedalboard) use a shelf's ``q``.
Equalizer APO's ``LS``/``HS`` (no C) are fixed-slope shelves and would not match, and a
shelf written with a slope (``LSC 12 dB``) is a different parametrisation; neither is used.

Preamp: minus the highest point of the whole EQ's magnitude response (0 dB when the EQ
only cuts), so the EQ cannot raise any frequency above the input's level and cannot clip.
The compressor and the output gain cannot be represented in a ParametricEQ file; a
``#`` comment says what was left out.
"""

from __future__ import annotations

import numpy as np

from .. import __version__
from ..dsp.numpy_chain import eq_magnitude_db
from ..params import EQ_BANDS

APO_TYPES = {"low_shelf": "LSC", "peak": "PK", "high_shelf": "HSC"}


def eq_max_db(params: dict, sample_rate: float, n: int = 4000) -> float:
    """Highest point of the EQ's magnitude response (dB) on a dense log grid to Nyquist."""
    freqs = np.geomspace(5.0, sample_rate / 2 * 0.9999, n)
    return float(eq_magnitude_db(params, sample_rate, freqs).max())


def apo_text(settings) -> tuple[str, list[str]]:
    p, sr = settings.params, settings.sample_rate
    preamp = -max(0.0, eq_max_db(p, sr))
    lost = []
    if p["comp_ratio"] > 1.0:
        lost.append(f"compressor (threshold {p['comp_threshold_db']:.1f} dBFS, ratio "
                    f"{p['comp_ratio']:.2f}:1, attack {p['comp_attack_ms']:.1f} ms, release "
                    f"{p['comp_release_ms']:.0f} ms, knee {p['comp_knee_db']:.1f} dB, make-up "
                    f"{p['comp_makeup_db']:.1f} dB)")
    lost.append(f"output gain {p['out_gain_db']:+.2f} dB")
    notes = ["not representable in Equalizer APO's ParametricEQ format: " + "; ".join(lost)]
    src = f" from {settings.path.name}" if settings.path else ""
    lines = [
        f"# afxmatch {__version__}: EQ{src}, estimated at {sr:g} Hz (RBJ cookbook biquads)",
        "# LSC/HSC use Q as in the RBJ cookbook (alpha = sin(w0)/(2Q)), the same Q as afxmatch.",
        f"# Preamp = -(EQ's highest gain, {-preamp:.2f} dB) so the EQ cannot clip.",
        "# " + notes[0],
        f"Preamp: {preamp:.3f} dB",
    ]
    for i, (prefix, kind) in enumerate(EQ_BANDS, start=1):
        lines.append(f"Filter {i}: ON {APO_TYPES[kind]} Fc {p[f'{prefix}_freq_hz']:.3f} Hz "
                     f"Gain {p[f'{prefix}_gain_db']:.3f} dB Q {p[f'{prefix}_q']:.5f}")
    return "\n".join(lines) + "\n", notes
