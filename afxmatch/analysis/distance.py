"""Style distances between two signals: spectral envelope, loudness and dynamics.

These are content-light summaries (long-term, level-normalised), so they can compare an
output with a reference of different material.
"""

from __future__ import annotations

import numpy as np

from .features import Features
from .spectrum import frequency_grid

DISTANCE_FRACTION = 1.0 / 3.0   # third-octave smoothing for the spectral distance
DISTANCE_LOW_HZ, DISTANCE_HIGH_HZ = 50.0, 16000.0


def spectral_difference_db(a: Features, b: Features, fraction: float, low_hz: float,
                           high_hz: float, points: int = 160):
    """``(grid, b_db - a_db)`` with the mean level difference removed."""
    top = min(high_hz, a.top_hz, b.top_hz)
    grid = frequency_grid(top, points, low_hz)
    diff = b.spectrum_db(grid, fraction) - a.spectrum_db(grid, fraction)
    return grid, diff - diff.mean()


def style_distances(out: Features, ref: Features) -> dict[str, float]:
    """Distances of ``out`` to ``ref``; all in dB (LU for loudness), 0 = identical style.

    - ``spectral_db``: RMS over 50 Hz-16 kHz of the difference of third-octave smoothed,
      level-normalised long-term spectra.
    - ``loudness_lu``: absolute difference of integrated loudness.
    - ``dynamics_db``: mean absolute difference of the level-distribution shape
      (10th/90th/99th percentile of 50 ms frame levels and the sample peak, each relative
      to the median frame level).
    """
    _, diff = spectral_difference_db(out, ref, DISTANCE_FRACTION, DISTANCE_LOW_HZ, DISTANCE_HIGH_HZ)
    loud = abs(out.loudness_lufs - ref.loudness_lufs)
    dyn = float(np.mean(np.abs(out.profile() - ref.profile())))
    return {"spectral_db": round(float(np.sqrt(np.mean(diff ** 2))), 3),
            "loudness_lu": round(float(loud), 3) if np.isfinite(loud) else None,
            "dynamics_db": round(dyn, 3)}


def distances_at_output_gain(rendered: Features, ref: Features, ceiling_db: float | None = None,
                             gain_range_db: tuple[float, float] | None = None) -> dict[str, float]:
    """:func:`style_distances` of a render made with output gain 0, at the gain the
    pipeline will give it (:func:`~afxmatch.analysis.loudness.safe_output_gain_db`): the
    reference's loudness (solved with BS.1770's gates) within the output gain's range
    (default: the parameter space's), lowered where the sample peak would pass
    ``ceiling_db`` (default: :data:`afxmatch.params.PEAK_CEILING_DB`) -- ``loudness_lu`` is
    then what the range or the cut costs. This is what the report measures on the output,
    for searches that score candidates before anything is written."""
    from ..params import PEAK_CEILING_DB, ParamSpace
    from .loudness import safe_output_gain_db

    if gain_range_db is None:
        spec = ParamSpace(rendered.sample_rate)["out_gain_db"]
        gain_range_db = (spec.min, spec.max)
    ceiling_db = PEAK_CEILING_DB if ceiling_db is None else ceiling_db
    gain, _, _ = safe_output_gain_db(rendered.loudness_lufs, rendered.peak_db, ref.loudness_lufs,
                                     rendered.sample_rate, rendered.loudness_hops, gain_range_db, ceiling_db)
    return style_distances(rendered.scaled(gain), ref)
