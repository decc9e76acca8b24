"""Long-term average spectra on a logarithmic frequency grid, fractionally smoothed."""

from __future__ import annotations

import numpy as np
from scipy import signal

GRID_POINTS = 240
LOW_HZ = 20.0


def frequency_grid(top_hz: float, points: int = GRID_POINTS, low_hz: float = LOW_HZ) -> np.ndarray:
    """Log-spaced frequencies from ``low_hz`` to ``top_hz`` (inclusive), shape (points,)."""
    return np.geomspace(low_hz, top_hz, points)


def welch_power(samples: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Average power spectrum over all channels: ``(freqs_hz, power)``.

    ``samples`` is ``(channels, n)``. The segment length scales with the sample rate
    (about 0.37 s, 16384 samples at 44.1 kHz) so the resolution in Hz is the same at every rate.
    """
    nper = int(2 ** np.round(np.log2(sample_rate * 16384 / 44100.0)))
    nper = max(256, min(nper, samples.shape[-1]))
    freqs, power = signal.welch(samples.astype(np.float64), fs=sample_rate, window="hann",
                                nperseg=nper, noverlap=nper // 2, axis=-1, average="mean")
    return freqs, power.mean(axis=0)


def smooth_on_grid(freqs: np.ndarray, power: np.ndarray, grid: np.ndarray,
                   fraction: float) -> np.ndarray:
    """Mean power in bands ``grid * 2**(+-fraction/2)`` (fractional-octave smoothing), in dB.

    Bands narrower than one FFT bin fall back to linear interpolation of the power.
    """
    edges_lo = grid * 2.0 ** (-fraction / 2)
    edges_hi = grid * 2.0 ** (fraction / 2)
    csum = np.concatenate([[0.0], np.cumsum(power)])
    i_lo = np.searchsorted(freqs, edges_lo, side="left")
    i_hi = np.searchsorted(freqs, edges_hi, side="right")
    count = i_hi - i_lo
    mean = np.where(count > 0, (csum[i_hi] - csum[i_lo]) / np.maximum(count, 1), 0.0)
    interp = np.interp(grid, freqs, power)
    banded = np.where(count >= 2, mean, interp)
    return 10.0 * np.log10(banded + 1e-20)
