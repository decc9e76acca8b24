"""Per-file measurements used for matching and for the report.

All functions take ``(channels, samples)`` float arrays and a sample rate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..params import top_hz
from . import loudness, spectrum

FRAME_S = 0.05          # short-term level frames for the level distribution
GATE_DB = -70.0         # frames quieter than this (dBFS RMS) are ignored
PERCENTILES = (10, 50, 90, 99)


def integrated_loudness(samples: np.ndarray, sample_rate: float) -> float:
    """BS.1770-4 integrated loudness (LUFS); ``-inf`` for silence (see ``loudness.py``)."""
    return loudness.integrated_loudness(samples, sample_rate)


def sample_peak_db(samples: np.ndarray) -> float:
    peak = max(float(np.max(samples)), -float(np.min(samples)))  # = max |x|, no |x| copy
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def frame_levels(samples: np.ndarray, sample_rate: float, frame_s: float = FRAME_S, gate: bool = True):
    """RMS and peak level (dBFS) of non-overlapping frames, all channels pooled.

    Returns ``(rms_db, peak_db)``, each shape (n_frames,), gated at ``GATE_DB`` (every
    frame with ``gate=False``; :func:`gate_frames` gates them later).
    """
    hop = max(1, int(round(frame_s * sample_rate)))
    n = samples.shape[-1] // hop
    if n == 0:
        return np.zeros(0), np.zeros(0)
    frames = np.asarray(samples[:, : n * hop], dtype=np.float32).reshape(samples.shape[0], n, hop)
    ms = np.einsum("cnh,cnh->n", frames, frames, dtype=np.float64) / (samples.shape[0] * hop)
    pk = np.abs(frames).max(axis=(0, 2))
    rms_db = 10 * np.log10(ms + 1e-20)
    peak_db = 20 * np.log10(pk + 1e-10)
    return gate_frames(rms_db, peak_db) if gate else (rms_db, peak_db)


def gate_frames(rms_db: np.ndarray, peak_db: np.ndarray, gain_db: float = 0.0):
    """The frames of :func:`frame_levels` (``gate=False``) whose RMS, raised by
    ``gain_db``, is above ``GATE_DB``; both arrays raised by ``gain_db``."""
    rms, peak = rms_db + gain_db, peak_db + gain_db
    keep = rms > GATE_DB
    return rms[keep], peak[keep]


def level_profile(rms_db: np.ndarray, peak_db: float) -> np.ndarray:
    """Shape of the level distribution relative to its median: ``[p10, p90, p99, peak] - p50`` in dB."""
    if rms_db.size == 0:
        return np.zeros(len(PERCENTILES))
    p = np.percentile(rms_db, PERCENTILES)
    median = p[1]
    return np.array([p[0] - median, p[2] - median, p[3] - median, peak_db - median])


@dataclass
class Features:
    """What afxmatch measures on one signal."""

    sample_rate: float
    loudness_lufs: float
    peak_db: float
    rms_db: float
    freqs_hz: np.ndarray          # Welch bins
    power: np.ndarray             # Welch power (all channels averaged)
    frame_rms_db: np.ndarray      # gated 50 ms frame levels
    frame_peak_db: np.ndarray
    loudness_hops: np.ndarray | None = None   # K-weighted 100 ms hop energies (channels, n)
    # every 50 ms frame before the GATE_DB gate, (rms_db, peak_db): a gain re-gates them
    frames_ungated: tuple[np.ndarray, np.ndarray] | None = None
    # Welch log-mean power (spectrum.py) on ``freqs_hz``; None: only the power mean is known
    log_power: np.ndarray | None = None

    @property
    def top_hz(self) -> float:
        return top_hz(self.sample_rate)

    def spectrum_db(self, grid: np.ndarray, fraction: float) -> np.ndarray:
        """The long-term (power-mean) spectrum in dB, smoothed on ``grid``."""
        return spectrum.smooth_on_grid(self.freqs_hz, self.power, grid, fraction)

    def match_spectrum_db(self, grid: np.ndarray, fraction: float) -> np.ndarray:
        """The spectrum the analysis EQ fit matches, in dB smoothed on ``grid``: per bin the
        mean of the power mean's and the log mean's dB (their geometric mean), or the power
        mean alone where no log mean was measured.

        Chosen on the quality benchmark (analysis method, MR-STFT to the target; README
        "Quality"): the power mean alone scored music 0.510, speech 0.821; this blend 0.481
        and 0.677; the log mean alone (an experiment) was better still on speech but worse
        on music's MR-STFT, centroid and MSD."""
        if self.log_power is None:
            return self.spectrum_db(grid, fraction)
        return spectrum.smooth_on_grid(self.freqs_hz, np.sqrt(self.power * self.log_power), grid, fraction)

    def profile(self) -> np.ndarray:
        return level_profile(self.frame_rms_db, self.peak_db)

    def scaled(self, gain_db: float) -> "Features":
        """The features of this signal multiplied by ``gain_db``, without re-measuring.

        Exact for every field, gates included: a gain moves BS.1770 blocks across the
        loudness's absolute gate (re-gated from ``loudness_hops``) and 50 ms frames across
        ``GATE_DB`` (re-gated from ``frames_ungated``; in the quiet gaps of speech these
        frames move the level distribution's low percentiles by several dB). Features
        without those fields (e.g. combined references) shift instead.
        """
        g = float(gain_db)
        hops = None if self.loudness_hops is None else self.loudness_hops * 10 ** (g / 10)
        loud = self.loudness_at(g)
        if self.frames_ungated is None:
            frames = (self.frame_rms_db + g, self.frame_peak_db + g)
            ungated = None
        else:
            frames = gate_frames(*self.frames_ungated, g)
            ungated = (self.frames_ungated[0] + g, self.frames_ungated[1] + g)
        return replace(self, loudness_lufs=loud, loudness_hops=hops, peak_db=self.peak_db + g,
                       rms_db=self.rms_db + g, power=self.power * 10 ** (g / 10),
                       log_power=None if self.log_power is None else self.log_power * 10 ** (g / 10),
                       frame_rms_db=frames[0], frame_peak_db=frames[1], frames_ungated=ungated)

    def loudness_at(self, gain_db: float) -> float:
        """The integrated loudness of this signal multiplied by ``gain_db``: re-gated from
        ``loudness_hops`` (finite for a signal whose blocks all lie under the absolute gate
        once the gain lifts them), else shifted."""
        if self.loudness_hops is None:
            return self.loudness_lufs + float(gain_db)
        return loudness.loudness_from_hops(self.loudness_hops * 10 ** (float(gain_db) / 10), self.sample_rate)

    def summary(self) -> dict:
        return {"integrated_lufs": _round(self.loudness_lufs), "sample_peak_dbfs": _round(self.peak_db),
                "rms_dbfs": _round(self.rms_db)}


def _round(x: float, nd: int = 2):
    return None if not np.isfinite(x) else round(float(x), nd)


def measure(samples: np.ndarray, sample_rate: float) -> Features:
    """Measure ``(channels, samples)`` audio."""
    freqs, power, log_power = spectrum.welch_spectra(samples, sample_rate)
    ungated = frame_levels(samples, sample_rate, gate=False)
    rms_frames, peak_frames = gate_frames(*ungated)
    x = np.asarray(samples)   # mean square accumulated in float64 without a float64 copy
    ms = float(np.einsum("ij,ij->", x, x, dtype=np.float64)) / x.size if x.size else 0.0
    hops = loudness.hop_energies(samples, sample_rate)
    return Features(
        sample_rate=float(sample_rate),
        loudness_lufs=loudness.loudness_from_hops(hops, sample_rate), loudness_hops=hops,
        peak_db=sample_peak_db(samples),
        rms_db=10 * np.log10(ms) if ms > 0 else float("-inf"),
        freqs_hz=freqs, power=power, log_power=log_power, frame_rms_db=rms_frames,
        frame_peak_db=peak_frames, frames_ungated=ungated,
    )
