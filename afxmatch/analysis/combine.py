"""The common style of several references: one :class:`Features` from many.

Each reference counts equally, whatever its length or level:

- Spectrum: the mean of the references' long-term spectra **in dB** (a geometric mean of
  the Welch power; likewise for the log-mean spectrum), on the frequency bins of the
  reference with the lowest sample rate (every reference covers them). In dB a level
  difference between references shifts the mean curve but does not bend it, so the
  shape is the average shape; and a trait that only one reference has is diluted by
  1/n whether it is a boost or a cut. A mean of power would let the reference with the
  most energy in a band decide that band (one bass-heavy track would set the low end),
  and matching works on dB curves anyway (the EQ fit is least squares in dB).
- Loudness: the mean integrated loudness (LUFS) of the references.
- Dynamics: every reference is first moved to that common loudness; the sample peak
  and RMS are then the mean peak-to-loudness and RMS-to-loudness ratios, and the 50 ms
  frame levels are an equal-weight mixture: ``FRAMES_PER_REFERENCE`` frames taken from
  each reference at evenly spaced ranks of its level distribution (so a long reference
  does not outvote a short one; each frame keeps its RMS and peak together).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .features import Features

FRAMES_PER_REFERENCE = 2000


def combine_features(features: Sequence[Features]) -> Features:
    """The common style of ``features`` (one per reference); a single one is returned as is."""
    items = list(features)
    if not items:
        raise ValueError("combine_features needs at least one Features")
    if len(items) == 1:
        return items[0]
    base = min(items, key=lambda f: f.sample_rate)
    freqs = base.freqs_hz

    def mean_in_db(spectra):
        return np.exp(np.mean([np.log(np.interp(freqs, f.freqs_hz, p) + 1e-30)
                               for f, p in zip(items, spectra)], axis=0))

    log_means = [f.log_power for f in items]

    louds = np.array([f.loudness_lufs for f in items], dtype=np.float64)
    finite = np.isfinite(louds)
    loudness = float(louds[finite].mean()) if finite.any() else float("-inf")
    shift = np.where(finite, loudness - louds, 0.0) if finite.any() else np.zeros(len(items))

    rms_frames, peak_frames = [], []
    for f, d in zip(items, shift):
        if f.frame_rms_db.size == 0:
            continue
        order = np.argsort(f.frame_rms_db, kind="stable")
        pick = order[np.linspace(0, len(order) - 1, FRAMES_PER_REFERENCE).round().astype(int)]
        rms_frames.append(f.frame_rms_db[pick] + d)
        peak_frames.append(f.frame_peak_db[pick] + d)

    return Features(
        sample_rate=base.sample_rate,
        loudness_lufs=loudness,
        peak_db=float(np.mean([f.peak_db + d for f, d in zip(items, shift)])),
        rms_db=float(np.mean([f.rms_db + d for f, d in zip(items, shift)])),
        freqs_hz=freqs,
        power=mean_in_db([f.power for f in items]),
        log_power=None if any(p is None for p in log_means) else mean_in_db(log_means),
        frame_rms_db=np.concatenate(rms_frames) if rms_frames else np.zeros(0),
        frame_peak_db=np.concatenate(peak_frames) if peak_frames else np.zeros(0),
    )


def measure_references(refs, rates, features=None) -> tuple[list[Features], Features]:
    """``(per-reference Features, combined Features)`` for one reference (an array) or
    several (a list of arrays, ``rates`` a list or one rate for all). ``features``: the
    same for references already measured (one Features or a list; None entries are
    measured here)."""
    from .features import measure

    many = isinstance(refs, (list, tuple))
    refs = list(refs) if many else [refs]
    rates = list(rates) if isinstance(rates, (list, tuple)) else [rates] * len(refs)
    if features is None:
        given = [None] * len(refs)
    else:
        given = list(features) if isinstance(features, (list, tuple)) else [features]
    if len(rates) != len(refs) or len(given) != len(refs):
        raise ValueError("one sample rate (and one Features or None) per reference")
    measured = [f if f is not None else measure(r, rate) for r, rate, f in zip(refs, rates, given)]
    return measured, combine_features(measured)
