"""Long-term average spectra on a logarithmic frequency grid, fractionally smoothed."""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

GRID_POINTS = 240
MAX_SEGMENTS = 256
LOW_HZ = 20.0


def frequency_grid(top_hz: float, points: int = GRID_POINTS, low_hz: float = LOW_HZ) -> np.ndarray:
    """Log-spaced frequencies from ``low_hz`` to ``top_hz`` (inclusive), shape (points,)."""
    return np.geomspace(low_hz, top_hz, points)


def welch_power(samples: np.ndarray, sample_rate: float,
                max_segments: int = MAX_SEGMENTS) -> tuple[np.ndarray, np.ndarray]:
    """Average power spectrum over all channels: ``(freqs_hz, power)``.

    ``samples`` is ``(channels, n)``. Hann-windowed segments of about 0.37 s (16384 samples
    at 44.1 kHz, so the resolution in Hz is the same at every rate) with 50 % overlap; for
    long files at most ``max_segments`` segments, spread evenly over the whole file, so the
    cost is bounded and the estimate still covers the file from start to end.
    """
    nper, starts, window = welch_plan(samples.shape[-1], sample_rate, max_segments)
    x = np.asarray(samples, dtype=np.float32)
    power = np.zeros(nper // 2 + 1)
    for chunk in welch_chunks(starts):
        power += frames_power(np.stack([x[:, s:s + nper] for s in chunk], axis=1), window)
    return welch_density(power, len(starts), x.shape[0], sample_rate, window)


def welch_plan(n: int, sample_rate: float, max_segments: int = MAX_SEGMENTS):
    """``(nper, starts, window)`` of :func:`welch_power` for a signal of ``n`` samples: the
    segment length, the segments' start indices and the float32 Hann window."""
    nper = int(2 ** np.round(np.log2(sample_rate * 16384 / 44100.0)))
    nper = max(256, min(nper, n))
    starts = np.arange(0, n - nper + 1, nper // 2)
    if len(starts) > max_segments:
        starts = starts[np.linspace(0, len(starts) - 1, max_segments).round().astype(int)]
    return nper, starts, np.hanning(nper + 1)[:-1].astype(np.float32)


def welch_chunks(starts: np.ndarray) -> list[np.ndarray]:
    """The groups of segment starts transformed together (~32 segments each). A streamed
    measurement uses the same groups, so its sums are bit-identical to :func:`welch_power`'s
    (the least-squares EQ fit downstream amplifies even 1e-15 differences)."""
    return [c for c in np.array_split(starts, max(1, len(starts) // 32)) if len(c)]


def frames_power(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Sum over channels and segments of the windowed ``(channels, k, nper)`` float32
    frames' squared FFT magnitudes, float64 ``(nper // 2 + 1,)``."""
    spec = sp_fft.rfft(frames * window, axis=-1)
    return (spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2).sum(axis=(0, 1))


def welch_density(power: np.ndarray, segments: int, channels: int, sample_rate: float,
                  window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(freqs_hz, one-sided power density)`` from the :func:`frames_power` sum over
    ``segments`` segments of ``channels`` channels."""
    power = power / (segments * channels * sample_rate * float(np.sum(window.astype(np.float64) ** 2)))
    power[1:-1] *= 2  # one-sided density
    return np.fft.rfftfreq(len(window), 1.0 / sample_rate), power


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
