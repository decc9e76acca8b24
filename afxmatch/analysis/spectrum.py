"""Long-term average spectra on a logarithmic frequency grid, fractionally smoothed.

Two statistics of the same Welch segments (Hann, ~0.37 s, 50 % overlap):

- the *power mean* (Welch's estimate): the mean over segments of each bin's power. Loud
  passages dominate it: a few segments 20 dB up decide the curve.
- the *log mean*: the mean over the active segments (those within ``ACTIVE_SEGMENT_DB``
  of the loudest) of each bin's power **in dB**, returned as a power (the geometric mean
  of the segments' powers). Every active segment counts alike, so it depends less on
  which sounds a passage happens to contain (on the quality benchmark's speech pairs,
  the same effects on two halves of one recording, a similar statistic over 1/3-octave
  bands differed by 2.6 dB between reference and target, the power mean by 4.9 dB; see
  ``estimate/optimise.py``). Being a mean of dB it sits below the power mean by the bias
  of a log periodogram: -2.5 dB for one channel, -1.1 dB for two uncorrelated ones.
  Curves compared by shape do not see a constant; where a stereo signal's channels are
  correlated at some frequencies and not at others, the bias varies by up to ~1.4 dB
  across them.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

GRID_POINTS = 240
MAX_SEGMENTS = 256
LOW_HZ = 20.0
ACTIVE_SEGMENT_DB = 60.0   # log mean: segments more than this below the loudest are left out
TINY_POWER = 1e-30
BAND_FRACTION = 1.0 / 6.0   # triangular_bands: spacing in octaves
BAND_LOW_HZ = 30.0


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
    freqs, power, _ = welch_spectra(samples, sample_rate, max_segments)
    return freqs, power


def welch_spectra(samples: np.ndarray, sample_rate: float,
                  max_segments: int = MAX_SEGMENTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(freqs_hz, power_mean, log_mean)`` densities of ``(channels, n)`` samples over the
    segments of :func:`welch_power` (see the module docstring for the two statistics)."""
    nper, starts, window = welch_plan(samples.shape[-1], sample_rate, max_segments)
    x = np.asarray(samples, dtype=np.float32)
    sums = WelchSums(nper)
    for chunk in welch_chunks(starts):
        sums.add(segment_powers(np.stack([x[:, s:s + nper] for s in chunk], axis=1), window))
    return sums.result(x.shape[0], sample_rate, window)


class WelchSums:
    """What the two spectra need from the segments, fed in groups (whole-array and
    streamed measurement feed the same groups, so their results are bit-identical): the
    sum of the segments' powers, and each segment's log power and total power."""

    def __init__(self, nper: int):
        self.power = np.zeros(nper // 2 + 1)
        self.logs: list[np.ndarray] = []     # (k, bins) float32 log powers per group
        self.totals: list[np.ndarray] = []   # (k,) total power per segment

    def add(self, powers: np.ndarray) -> None:
        """Feed :func:`segment_powers` of the next group of segments."""
        self.power += powers.sum(axis=0)
        self.logs.append(np.log(powers + TINY_POWER).astype(np.float32))
        self.totals.append(powers.sum(axis=1))

    def result(self, channels: int, sample_rate: float, window: np.ndarray):
        """``(freqs_hz, power_mean, log_mean)`` one-sided densities."""
        segments = sum(len(t) for t in self.totals)
        freqs, power = welch_density(self.power, segments, channels, sample_rate, window)
        totals = 10 * np.log10(np.concatenate(self.totals) + TINY_POWER)
        active = totals >= totals.max() - ACTIVE_SEGMENT_DB
        logs = np.concatenate(self.logs)[active]
        mean_log = logs.astype(np.float64).sum(axis=0) / len(logs)
        _, log_mean = welch_density(np.exp(mean_log), 1, channels, sample_rate, window)
        return freqs, power, log_mean


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


def segment_powers(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The windowed ``(channels, k, nper)`` float32 frames' squared FFT magnitudes, summed
    over channels: float64 ``(k, nper // 2 + 1)``, one row per segment."""
    spec = sp_fft.rfft(frames * window, axis=-1)
    return (spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2).sum(axis=0)


def welch_density(power: np.ndarray, segments: int, channels: int, sample_rate: float,
                  window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(freqs_hz, one-sided power density)`` from the :func:`segment_powers` sum over
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


def triangular_bands(n_fft: int, sample_rate: float, top_hz: float, low_hz: float = BAND_LOW_HZ,
                     fraction: float = BAND_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Triangular bands ``(n_bands, n_fft // 2 + 1)`` centred on a ``fraction``-octave grid
    from ``low_hz`` to ``top_hz`` (edges at the neighbouring centres), each row summing to
    1; a band narrower than a bin takes its nearest bin. Returns ``(matrix, centres_hz)``,
    float64 (the ``optimise`` method's band statistics and the training loss's long-term
    term)."""
    n_bands = int(np.floor(np.log2(top_hz / low_hz) / fraction)) + 1
    centres = low_hz * 2.0 ** (fraction * np.arange(n_bands))
    edges = np.concatenate([[centres[0] * 2 ** -fraction], centres, [centres[-1] * 2 ** fraction]])
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lo, c, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0.0, None)
    empty = fb.sum(1) == 0
    fb[empty, np.argmin(np.abs(freqs[None] - centres[empty, None]), axis=1)] = 1.0
    return fb / fb.sum(1, keepdims=True), centres
