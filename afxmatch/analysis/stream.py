"""Measure a signal block by block, in bounded memory: the same :class:`Features` as
:func:`afxmatch.analysis.measure` on the whole array.

``FeatureAccumulator(sample_rate, channels, n_samples)``: :meth:`~FeatureAccumulator.add`
``(channels, n)`` blocks of any size in order, then :meth:`~FeatureAccumulator.result`.
No file I/O here: the caller reads the blocks (``afxmatch.audio.iter_blocks``).

What is kept while streaming, whatever the length:
- Welch spectrum: the segment plan depends only on the length (known up front), so each
  segment is copied out as soon as its samples have arrived and each group of ~32
  segments is transformed as the whole-array function does (bit-identical sums); only
  the running sum of powers, one group's segments and one segment of samples are kept.
- BS.1770 loudness: the K-weighting runs as a time-domain IIR (scipy's ``sosfilt``) whose
  state is carried across blocks; only each channel's 100 ms hop energies are kept (36 000
  numbers per channel for an hour); the gating then runs on them as in
  :func:`afxmatch.analysis.loudness.loudness_from_hops`.
- 50 ms frame levels (the level distribution; an hour is 72 000 frames), the peak and the
  sum of squares.

Results equal the whole-array ones up to float rounding (sums taken in another order; the
K-weighting in float64 instead of float32 FFT filtering): see ``tests/test_stream_pipeline.py``.
"""

from __future__ import annotations

import numpy as np

from . import loudness, spectrum
from .features import FRAME_S, Features, frame_levels, gate_frames, sample_peak_db


class KWeightedEnergies:
    """K-weighted energies (sums of squares) of consecutive frames, ``(channels, n_frames)``,
    block by block; the frames are BS.1770's 100 ms hops unless ``frame`` (samples) is
    given. A trailing part frame is left out."""

    def __init__(self, sample_rate: float, channels: int, frame: int | None = None):
        from scipy.signal import sosfilt  # ~0.8 s to import: only on the streamed path

        self._sosfilt = sosfilt
        self.sr = float(sample_rate)
        self.sos = loudness.k_weighting_sos(sample_rate)
        self.zi = np.zeros((self.sos.shape[0], channels, 2))
        self.hop = int(frame) if frame else loudness.hop_length(sample_rate)[0]
        self.rest = np.zeros((channels, 0))
        self.hops: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        y, self.zi = self._sosfilt(self.sos, block.astype(np.float64), axis=-1, zi=self.zi)
        y = np.concatenate([self.rest, y], axis=1)
        k = y.shape[1] // self.hop
        if k:
            frames = y[:, : k * self.hop].reshape(y.shape[0], k, self.hop)
            self.hops.append(np.einsum("cnh,cnh->cn", frames, frames))
        self.rest = y[:, k * self.hop:]

    def energies(self) -> np.ndarray:
        return np.concatenate(self.hops, axis=1) if self.hops else np.zeros((self.rest.shape[0], 0))


class _Welch:
    """:func:`spectrum.welch_spectra` of a signal of known length ``n``, block by block.

    Each segment is copied out as soon as its samples have arrived; a group of segments
    (:func:`spectrum.welch_chunks`, ~32) is transformed when complete, exactly as the
    whole-array function does, so the result is bit-identical. Held at most: one group's
    segments (32 x 16384 samples per channel) and one segment of samples."""

    def __init__(self, sample_rate: float, channels: int, n: int):
        self.sr, self.channels = float(sample_rate), channels
        self.nper, self.starts, self.window = spectrum.welch_plan(n, sample_rate)
        self.chunks = spectrum.welch_chunks(self.starts)
        self.sums = spectrum.WelchSums(self.nper)
        self.segments: list[np.ndarray] = []    # the current group's segments so far
        self.buf = np.zeros((channels, 0), np.float32)
        self.buf_start = 0                       # sample index of buf[:, 0]

    def add(self, block: np.ndarray) -> None:
        self.buf = np.concatenate([self.buf, block], axis=1)
        end = self.buf_start + self.buf.shape[1]
        while self.chunks:
            chunk = self.chunks[0]
            done = len(self.segments)
            while done < len(chunk) and chunk[done] + self.nper <= end:
                s = chunk[done] - self.buf_start
                self.segments.append(self.buf[:, s:s + self.nper].copy())
                done += 1
            if done < len(chunk):
                break
            self.sums.add(spectrum.segment_powers(np.stack(self.segments, axis=1), self.window))
            self.segments, self.chunks = [], self.chunks[1:]
        keep_from = self.chunks[0][len(self.segments)] if self.chunks else end
        drop = min(max(0, keep_from - self.buf_start), self.buf.shape[1])
        self.buf, self.buf_start = self.buf[:, drop:], self.buf_start + drop

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.chunks:
            raise ValueError("the signal ended before its last spectrum segment")
        return self.sums.result(self.channels, self.sr, self.window)


class FeatureAccumulator:
    """Mergeable measurements of a ``(channels, n_samples)`` signal fed in blocks."""

    def __init__(self, sample_rate: float, channels: int, n_samples: int):
        self.sr, self.channels, self.n = float(sample_rate), int(channels), int(n_samples)
        self.seen = 0
        self.peak = 0.0
        self.sum_sq = 0.0
        self.frame_hop = max(1, int(round(FRAME_S * sample_rate)))
        self.frame_rest = np.zeros((channels, 0), np.float32)
        self.frame_rms: list[np.ndarray] = []
        self.frame_peak: list[np.ndarray] = []
        self.welch = _Welch(sample_rate, channels, n_samples)
        self.kw = KWeightedEnergies(sample_rate, channels)

    def add(self, block: np.ndarray) -> None:
        """Feed the next ``(channels, n)`` block (float32)."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, samples), got shape {block.shape}")
        if block.shape[1] == 0:
            return
        if self.seen + block.shape[1] > self.n:
            raise ValueError(f"more than the announced {self.n} samples")
        self.seen += block.shape[1]
        self.peak = max(self.peak, float(np.max(np.abs(block))))
        b64 = block.astype(np.float64)
        self.sum_sq += float(np.einsum("cn,cn->", b64, b64))
        x = np.concatenate([self.frame_rest, block], axis=1)
        k = x.shape[1] // self.frame_hop
        if k:
            rms, pk = frame_levels(x[:, : k * self.frame_hop], self.sr, FRAME_S, gate=False)
            self.frame_rms.append(rms)
            self.frame_peak.append(pk)
        self.frame_rest = x[:, k * self.frame_hop:]
        self.welch.add(block)
        self.kw.add(block)

    def result(self) -> Features:
        """The :class:`Features` of everything fed; all ``n_samples`` must have come."""
        if self.seen != self.n:
            raise ValueError(f"got {self.seen} of the announced {self.n} samples")
        freqs, power, log_power = self.welch.result()
        ms = self.sum_sq / (self.n * self.channels)
        cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
        hops = self.kw.energies()
        ungated = (cat(self.frame_rms), cat(self.frame_peak))
        rms_frames, peak_frames = gate_frames(*ungated)
        return Features(
            sample_rate=self.sr,
            loudness_lufs=loudness.loudness_from_hops(hops, self.sr), loudness_hops=hops,
            peak_db=sample_peak_db(np.array([self.peak])),
            rms_db=10 * np.log10(ms) if ms > 0 else float("-inf"),
            freqs_hz=freqs, power=power, log_power=log_power, frame_rms_db=rms_frames,
            frame_peak_db=peak_frames, frames_ungated=ungated,
        )
