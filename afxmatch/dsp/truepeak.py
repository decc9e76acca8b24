"""True-peak measurement (ITU-R BS.1770-4, Annex 2): 4x oversampling, absolute maximum, dBTP.

A digital signal's sample peak under-reads the peak of the waveform a DAC reconstructs
between the samples (up to 3 dB for a sine at a quarter of the sample rate, more for
clipped masters). BS.1770-4 estimates the reconstructed peak by interpolating to 4x the
sample rate with a low-pass polyphase FIR and taking the largest magnitude.

The interpolator here is a Kaiser-windowed sinc (cut-off at the original Nyquist
frequency, ``2 * HALF_TAPS`` taps per phase, beta ``KAISER_BETA``): longer and with more
stop-band rejection than the standard's 48-tap example filter (12 taps per phase), so it
reads within a few thousandths of a dB of the ideal interpolator for content up to about
0.4 fs. Phase 0 of a windowed sinc is the identity (the sinc vanishes at every other
integer), so only phases 1-3 are computed; each phase is normalised to unit DC gain.

Everything is numpy on ``(channels, samples)`` float arrays; long signals are processed
in chunks (``CHUNK`` samples) so the memory is bounded whatever the length. No scipy.signal
(its import alone costs ~0.8 s).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FACTOR = 4           # oversampling factor of BS.1770-4 Annex 2
HALF_TAPS = 16       # taps on each side of the interpolated point, per phase
KAISER_BETA = 8.0
CHUNK = 16384        # samples per matrix product (bounded memory, cache-friendly)


@lru_cache(maxsize=None)
def phase_taps() -> np.ndarray:
    """``(2 * HALF_TAPS, FACTOR - 1)`` float32 taps of phases 1..FACTOR-1.

    Column ``p - 1`` computes the waveform at ``n + p / FACTOR`` from the samples
    ``x[n - HALF_TAPS + 1], ..., x[n + HALF_TAPS]`` (row order).
    """
    k = np.arange(-HALF_TAPS + 1, HALF_TAPS + 1)        # sample offsets around n
    cols = []
    for p in range(1, FACTOR):
        t = p / FACTOR - k                               # distance of each sample to the point
        window = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (t / HALF_TAPS) ** 2, 0.0, None)))
        w = np.sinc(t) * window / np.i0(KAISER_BETA)
        cols.append(w / w.sum())
    return np.stack(cols, axis=1).astype(np.float32)


def _pad(x: np.ndarray, before, after) -> np.ndarray:
    """``x`` with ``HALF_TAPS - 1`` samples before and ``HALF_TAPS`` after (zeros when None)."""
    channels = x.shape[0]
    pre = np.zeros((channels, HALF_TAPS - 1), np.float32) if before is None else np.asarray(before, np.float32)
    post = np.zeros((channels, HALF_TAPS), np.float32) if after is None else np.asarray(after, np.float32)
    if pre.shape != (channels, HALF_TAPS - 1) or post.shape != (channels, HALF_TAPS):
        raise ValueError("before/after must hold HALF_TAPS - 1 and HALF_TAPS samples per channel")
    return np.concatenate([pre, x, post], axis=1)


def _phases(padded_row: np.ndarray) -> np.ndarray:
    """``(m, FACTOR - 1)``: phases 1.. of the ``m`` samples inside one padded channel
    (``m + 2 * HALF_TAPS - 1`` samples)."""
    view = sliding_window_view(padded_row, 2 * HALF_TAPS)
    return np.ascontiguousarray(view) @ phase_taps()


def interpolate(x: np.ndarray, before: np.ndarray | None = None,
                after: np.ndarray | None = None) -> np.ndarray:
    """The 4x oversampled waveform of ``x`` ``(channels, n)``: ``(channels, n, FACTOR)``,
    where ``[..., i, p]`` is the waveform at ``i + p / FACTOR`` (``p = 0`` is ``x`` itself).

    ``before`` / ``after``: the ``HALF_TAPS - 1`` samples preceding and the ``HALF_TAPS``
    samples following ``x`` (zeros, i.e. silence around the signal, when None).
    """
    x = np.asarray(x, dtype=np.float32)
    channels, n = x.shape
    padded = _pad(x, before, after)
    out = np.empty((channels, n, FACTOR), np.float32)
    out[..., 0] = x
    for c in range(channels):
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            out[c, start:stop, 1:] = _phases(padded[c, start:stop + 2 * HALF_TAPS - 1])
    return out


def interval_peaks(x: np.ndarray, before: np.ndarray | None = None,
                   after: np.ndarray | None = None) -> np.ndarray:
    """``(n,)`` linear true peak of each sample interval ``[i, i + 1)``: the largest of the
    interval's ``FACTOR`` oversampled magnitudes over all channels (channel-linked).

    ``before`` / ``after`` as for :func:`interpolate`. Works in chunks of ``CHUNK``
    samples, so the memory is bounded whatever the length.
    """
    x = np.asarray(x, dtype=np.float32)
    channels, n = x.shape
    padded = _pad(x, before, after)
    out = np.abs(x).max(axis=0) if channels else np.zeros(n, np.float32)
    for c in range(channels):
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            mag = np.abs(_phases(padded[c, start:stop + 2 * HALF_TAPS - 1]))
            seg = out[start:stop]
            for p in range(FACTOR - 1):
                np.maximum(seg, mag[:, p], out=seg)
    return out


class IntervalPeakStream:
    """:func:`interval_peaks` of a signal fed in ``(channels, n)`` blocks of any size: each
    call returns the peaks of the samples whose following context has arrived (all but the
    last ``HALF_TAPS``), :meth:`flush` the rest (silence after the end). The concatenation
    equals ``interval_peaks`` of the whole signal."""

    def __init__(self, channels: int):
        self.before = np.zeros((channels, HALF_TAPS - 1), np.float32)
        self.buf = np.zeros((channels, 0), np.float32)

    def add(self, block: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, np.asarray(block, dtype=np.float32)], axis=1)
        m = self.buf.shape[1] - HALF_TAPS
        if m <= 0:
            return np.zeros(0, np.float32)
        x = self.buf[:, :m]
        peaks = interval_peaks(x, self.before, self.buf[:, m:])
        self.before = np.concatenate([self.before, x], axis=1)[:, -(HALF_TAPS - 1):]
        self.buf = self.buf[:, m:]
        return peaks

    def flush(self) -> np.ndarray:
        if self.buf.shape[1] == 0:
            return np.zeros(0, np.float32)
        return interval_peaks(self.buf, self.before, None)


def true_peak(x: np.ndarray) -> float:
    """Linear true peak of ``(channels, n)`` audio (silence around it), all channels."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected (channels, samples), got shape {x.shape}")
    if x.shape[1] == 0:
        return 0.0
    return float(interval_peaks(x).max())


def true_peak_db(x: np.ndarray) -> float:
    """True peak of ``(channels, n)`` audio in dBTP (dB re full scale, 4x oversampled);
    ``-inf`` for silence."""
    peak = true_peak(x)
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")
