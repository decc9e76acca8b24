"""An independent reference for the EQ: RBJ Audio-EQ-Cookbook biquads in plain numpy/scipy.

Written directly from Robert Bristow-Johnson's "Cookbook formulae for audio EQ biquad
filter coefficients", one scalar filter at a time, with every formula spelled out (no
shared shelf code, no sign trick). Only ``math`` is used for the coefficients; responses
come from ``scipy.signal.sosfreqz`` and filtering from ``scipy.signal.sosfilt``, so nothing
here shares code with ``afxmatch.dsp``.

As in pedalboard/JUCE, the shelves take a quality factor Q (``alpha = sin(w0) / (2 Q)``),
not the cookbook's shelf slope S.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

# (prefix, kind) in chain order; written out here rather than imported from afxmatch.
BANDS = (
    ("ls", "low_shelf"),
    ("p1", "peak"),
    ("p2", "peak"),
    ("p3", "peak"),
    ("p4", "peak"),
    ("hs", "high_shelf"),
)


def _intermediates(freq_hz: float, gain_db: float, q: float, sample_rate: float):
    big_a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    return big_a, math.cos(w0), math.sin(w0) / (2.0 * q)


def peaking_eq(freq_hz: float, gain_db: float, q: float, sample_rate: float) -> list[float]:
    """peakingEQ: H(s) = (s^2 + s*(A/Q) + 1) / (s^2 + s/(A*Q) + 1). Returns an SOS row."""
    big_a, cos_w0, alpha = _intermediates(freq_hz, gain_db, q, sample_rate)
    b0 = 1.0 + alpha * big_a
    b1 = -2.0 * cos_w0
    b2 = 1.0 - alpha * big_a
    a0 = 1.0 + alpha / big_a
    a1 = -2.0 * cos_w0
    a2 = 1.0 - alpha / big_a
    return [b0 / a0, b1 / a0, b2 / a0, 1.0, a1 / a0, a2 / a0]


def low_shelf(freq_hz: float, gain_db: float, q: float, sample_rate: float) -> list[float]:
    """lowShelf: H(s) = A * (s^2 + (sqrt(A)/Q)*s + A) / (A*s^2 + (sqrt(A)/Q)*s + 1)."""
    big_a, cos_w0, alpha = _intermediates(freq_hz, gain_db, q, sample_rate)
    two_sqrt_a_alpha = 2.0 * math.sqrt(big_a) * alpha
    b0 = big_a * ((big_a + 1.0) - (big_a - 1.0) * cos_w0 + two_sqrt_a_alpha)
    b1 = 2.0 * big_a * ((big_a - 1.0) - (big_a + 1.0) * cos_w0)
    b2 = big_a * ((big_a + 1.0) - (big_a - 1.0) * cos_w0 - two_sqrt_a_alpha)
    a0 = (big_a + 1.0) + (big_a - 1.0) * cos_w0 + two_sqrt_a_alpha
    a1 = -2.0 * ((big_a - 1.0) + (big_a + 1.0) * cos_w0)
    a2 = (big_a + 1.0) + (big_a - 1.0) * cos_w0 - two_sqrt_a_alpha
    return [b0 / a0, b1 / a0, b2 / a0, 1.0, a1 / a0, a2 / a0]


def high_shelf(freq_hz: float, gain_db: float, q: float, sample_rate: float) -> list[float]:
    """highShelf: H(s) = A * (A*s^2 + (sqrt(A)/Q)*s + 1) / (s^2 + (sqrt(A)/Q)*s + A)."""
    big_a, cos_w0, alpha = _intermediates(freq_hz, gain_db, q, sample_rate)
    two_sqrt_a_alpha = 2.0 * math.sqrt(big_a) * alpha
    b0 = big_a * ((big_a + 1.0) + (big_a - 1.0) * cos_w0 + two_sqrt_a_alpha)
    b1 = -2.0 * big_a * ((big_a - 1.0) + (big_a + 1.0) * cos_w0)
    b2 = big_a * ((big_a + 1.0) + (big_a - 1.0) * cos_w0 - two_sqrt_a_alpha)
    a0 = (big_a + 1.0) - (big_a - 1.0) * cos_w0 + two_sqrt_a_alpha
    a1 = 2.0 * ((big_a - 1.0) - (big_a + 1.0) * cos_w0)
    a2 = (big_a + 1.0) - (big_a - 1.0) * cos_w0 - two_sqrt_a_alpha
    return [b0 / a0, b1 / a0, b2 / a0, 1.0, a1 / a0, a2 / a0]


DESIGNERS = {"peak": peaking_eq, "low_shelf": low_shelf, "high_shelf": high_shelf}


def eq_sos(params: dict, sample_rate: float) -> np.ndarray:
    """The 6-band cascade as a ``(6, 6)`` second-order-sections array for one setting."""
    rows = []
    for prefix, kind in BANDS:
        rows.append(DESIGNERS[kind](float(params[f"{prefix}_freq_hz"]),
                                    float(params[f"{prefix}_gain_db"]),
                                    float(params[f"{prefix}_q"]), float(sample_rate)))
    return np.array(rows, dtype=np.float64)


def magnitude_db(sos: np.ndarray, freqs_hz: np.ndarray, sample_rate: float) -> np.ndarray:
    """Magnitude of the SOS cascade in dB at ``freqs_hz``."""
    _, h = signal.sosfreqz(sos, worN=np.asarray(freqs_hz, dtype=np.float64), fs=sample_rate)
    return 20.0 * np.log10(np.abs(h))


def filter_signal(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Time-domain IIR filtering with zero initial state along the last axis (float64)."""
    return signal.sosfilt(sos, np.asarray(x, dtype=np.float64), axis=-1)


def log_grid(sample_rate: float, n: int = 400, lo_hz: float = 20.0) -> np.ndarray:
    """Log-spaced frequencies from 20 Hz to 0.45 * sample_rate."""
    return np.geomspace(lo_hz, 0.45 * sample_rate, n)


def random_eq_params(rng: np.random.Generator, space) -> dict:
    """Random EQ settings over the full ranges of ``space`` (log-uniform for log specs).

    Uses only the specs' ``min``/``max``/``scale``, not afxmatch's (de)normalisation.
    """
    out = {}
    for prefix, _ in BANDS:
        for suffix in ("freq_hz", "gain_db", "q"):
            spec = space[f"{prefix}_{suffix}"]
            if spec.scale == "log":
                out[spec.name] = math.exp(rng.uniform(math.log(spec.min), math.log(spec.max)))
            else:
                out[spec.name] = rng.uniform(spec.min, spec.max)
    return out
