"""Render block by block in bounded memory, equal to :func:`afxmatch.render.render` on the
whole signal (to float32 rounding).

``StreamRenderer(sample_rate, channels, params, backend)``: feed ``(channels, n)`` blocks of
any size to :meth:`~StreamRenderer.process`, then call :meth:`~StreamRenderer.flush`. The
output is delayed (the EQ works in FFT blocks, the compressor's gain interpolation needs
the next control frame), but in total it has exactly the input's length.

- torch (the built-in chain; numpy, imports no torch): the chain of
  :func:`afxmatch.dsp.numpy_chain.process` with its helpers. The EQ is the same FFT
  convolution with the cascade's impulse response (``tail`` samples long), in the
  overlap-add blocks of :func:`~afxmatch.dsp.numpy_chain.convolve`; each block's tail is
  carried and added to the next block. The compressor carries its ballistics state (the
  last smoothed gain), the last gain frame (for interpolation) and the samples of the one
  frame whose gain still needs the next frame's. The compressor and gain stages give the
  in-memory chain's values bit for bit on the same input; the EQ equals it to float32
  FFT rounding (the in-memory one filters short signals in one FFT).
- pedalboard and vst3: the same plugin chain, ``process(block, reset=False)``: every plugin keeps
  its filter and envelope state across blocks. Blocks are re-cut to a fixed size
  (``PEDALBOARD_BLOCK``): pedalboard 0.9.26 re-prepares its plugins, losing their state,
  when a block is larger than the ones before.

Memory is a few FFT blocks (``max(4 * tail, 32768)`` samples) per channel, whatever the
file length.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping

import numpy as np

from ..choices import BACKENDS
from ..dsp import formulas, numpy_chain
from ..errors import InvalidParameterError

STAGES = ("eq", "comp", "gain")
PEDALBOARD_BLOCK = 8192


def _empty(channels: int) -> np.ndarray:
    return np.zeros((channels, 0), np.float32)


class _EqStream:
    """Overlap-add FFT convolution with the EQ cascade, block by block."""

    def __init__(self, sample_rate: float, channels: int, params: Mapping[str, float]):
        ir = numpy_chain.eq_impulse_response(params, sample_rate)
        self.tail = len(ir)
        self.n_fft, self.block = numpy_chain.overlap_add_sizes(self.tail)
        self.spectrum = numpy_chain.ir_spectrum(ir, self.n_fft)
        self.pending: list[np.ndarray] = [_empty(channels)]   # input not yet filtered (< one block)
        self.count = 0
        self.carry = np.zeros((channels, self.tail), np.float32)

    def _filter(self, frames: np.ndarray) -> np.ndarray:
        """``(ch, k, block)`` consecutive blocks -> their output; the last one's tail carried."""
        y, carry = numpy_chain.overlap_add(frames, self.spectrum, self.n_fft, self.tail, self.carry)
        self.carry = carry.copy()
        return y

    def process(self, x: np.ndarray) -> np.ndarray:
        self.pending.append(x.copy())   # (the caller may reuse its buffer)
        self.count += x.shape[1]
        if self.count < self.block:   # (tiny blocks are gathered without re-copying)
            return x[:, :0]
        buf = np.concatenate(self.pending, axis=1)
        k = buf.shape[1] // self.block
        ready, rest = buf[:, : k * self.block], buf[:, k * self.block:].copy()
        self.pending, self.count = [rest], rest.shape[1]
        return self._filter(ready.reshape(ready.shape[0], k, self.block))

    def flush(self) -> np.ndarray:
        buf = np.concatenate(self.pending, axis=1)
        r = buf.shape[1]
        if r == 0:
            return buf
        last = np.zeros((buf.shape[0], 1, self.block), np.float32)
        last[:, 0, :r] = buf
        return self._filter(last)[:, :r]   # the tail past the end is dropped, as in convolve


class _CompressorStream:
    """The linked compressor of :func:`afxmatch.dsp.numpy_chain.compressor_gain_db`, block
    by block."""

    def __init__(self, sample_rate: float, channels: int, params: Mapping[str, float]):
        self.sr, self.params, self.hop = sample_rate, params, formulas.control_hop(sample_rate)
        self.makeup = float(params["comp_makeup_db"])
        self.state = None                 # ballistics: the last smoothed gain (dB); 0 dB first
        self.new = _empty(channels)       # samples not yet detected (< one frame)
        self.held = _empty(channels)      # the last detected frame's samples
        self.held_gain = None             # its gain (dB, with make-up), (1,) float64
        self.prev_gain = None             # the gain of the frame before it

    def _gains(self, frames: np.ndarray) -> np.ndarray:
        """``(ch, k * hop)`` -> the k frames' smoothed gains + make-up, ``(k,)`` float64."""
        g = numpy_chain.smoothed_reduction_db(numpy_chain.frame_peaks(frames, self.hop), self.sr,
                                              self.params, self.state)
        self.state = float(g[-1])
        return g + self.makeup

    def _emit(self, audio: np.ndarray, gains: np.ndarray, next_gain) -> np.ndarray:
        """Apply ``gains`` (k,) to ``audio`` (ch, k * hop): interpolated exactly as
        :func:`formulas.frames_to_samples` does with the neighbours on both sides."""
        prev = gains[:1] if self.prev_gain is None else self.prev_gain
        ext = np.concatenate([prev, gains, gains[-1:] if next_gain is None else next_gain])
        g = formulas.frames_to_samples(ext.astype(np.float32)[None], self.hop)[0, self.hop: -self.hop]
        self.prev_gain = gains[-1:]
        return audio * numpy_chain.db_to_gain(g)

    def process(self, x: np.ndarray) -> np.ndarray:
        self.new = np.concatenate([self.new, x], axis=1)
        k = self.new.shape[1] // self.hop
        if k == 0:
            return x[:, :0]
        frames, self.new = self.new[:, : k * self.hop], self.new[:, k * self.hop:]
        gains = self._gains(frames)
        if self.held_gain is None:   # the very first frames: hold back the last one
            audio, g_out = frames[:, : (k - 1) * self.hop], gains[:-1]
        else:
            audio = np.concatenate([self.held, frames[:, : (k - 1) * self.hop]], axis=1)
            g_out = np.concatenate([self.held_gain, gains[:-1]])
        self.held, self.held_gain = frames[:, (k - 1) * self.hop:], gains[-1:]
        return self._emit(audio, g_out, gains[-1:]) if g_out.shape[0] else x[:, :0]

    def flush(self) -> np.ndarray:
        r = self.new.shape[1]
        audio, gains = self.held, self.held_gain
        if r:   # the last, partial frame: zero-padded for detection, as in frame_peaks
            pad = np.pad(self.new, ((0, 0), (0, self.hop - r)))
            g_last = self._gains(pad)
            audio = pad if gains is None else np.concatenate([audio, pad], axis=1)
            gains = g_last if gains is None else np.concatenate([gains, g_last])
        if gains is None:
            return self.new
        y = self._emit(audio, gains, None)
        return y[:, : y.shape[1] - (self.hop - r if r else 0)]


class StreamRenderer:
    """Block-by-block twin of ``render(samples, sample_rate, params, backend, stages)``."""

    def __init__(self, sample_rate: float, channels: int, params: Mapping[str, float],
                 backend: str = "torch", stages: tuple[str, ...] = STAGES):
        if backend not in BACKENDS:
            raise InvalidParameterError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend, self.channels, self.sr = backend, int(channels), float(sample_rate)
        if backend == "pedalboard":
            from .pedalboard_backend import build_board
            self.board = build_board(params, stages)
            self.pending = np.zeros((self.channels, 0), np.float32)
            return
        if backend == "vst3":   # same block scheme as pedalboard (Vst3Chain has its process())
            from .vst3_backend import build_chain
            self.board = build_chain(params, sample_rate, channels, stages)
            self.pending = np.zeros((self.channels, 0), np.float32)
            return
        self.parts = []
        if "eq" in stages:
            self.parts.append(_EqStream(sample_rate, channels, params))
        if "comp" in stages:
            self.parts.append(_CompressorStream(sample_rate, channels, params))
        self.gain = numpy_chain.output_gain(params) if "gain" in stages else None

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed ``(channels, n)`` float32; returns the output that is ready (maybe empty)."""
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, samples), got shape {block.shape}")
        if self.backend in ("pedalboard", "vst3"):
            self.pending = np.concatenate([self.pending, block], axis=1)
            k = self.pending.shape[1] // PEDALBOARD_BLOCK * PEDALBOARD_BLOCK
            ready, self.pending = self.pending[:, :k], self.pending[:, k:]
            out = [self.board.process(ready[:, i:i + PEDALBOARD_BLOCK], self.sr, reset=False)
                   for i in range(0, k, PEDALBOARD_BLOCK)]
            return np.concatenate(out, axis=1) if out else ready
        return self._chain(block, flush=False)

    def flush(self) -> np.ndarray:
        """The output still held back; call once, after the last block."""
        if self.backend in ("pedalboard", "vst3"):
            # the last block, zero-padded to the usual size (the chain is causal, so the
            # padding changes nothing before it; a (2, 1) block would read as 1 channel)
            r, last = self.pending.shape[1], self.pending
            self.pending = self.pending[:, :0]
            if r:
                padded = np.pad(last, ((0, 0), (0, PEDALBOARD_BLOCK - r)))
                last = self.board.process(padded, self.sr, reset=False)[:, :r]
            if self.backend == "vst3":
                self.board.close()   # plugin instances released (quietly)
            return last
        return self._chain(_empty(self.channels), flush=True)

    def _chain(self, x: np.ndarray, flush: bool) -> np.ndarray:
        for part in self.parts:
            y = part.process(x)
            x = np.concatenate([y, part.flush()], axis=1) if flush else y
        if self.gain is not None:
            x = x * self.gain
        return x


def render_blocks(blocks: Iterable[np.ndarray], sample_rate: float, channels: int,
                  params: Mapping[str, float], backend: str = "torch",
                  stages: tuple[str, ...] = STAGES) -> Iterator[np.ndarray]:
    """Yield the rendered output of ``(channels, n)`` blocks (e.g. ``soundfile.blocks``
    transposed), in bounded memory; the concatenation equals ``render`` on the whole."""
    r = StreamRenderer(sample_rate, channels, params, backend, stages)
    for block in blocks:
        y = r.process(block)
        if y.shape[-1]:
            yield y
    y = r.flush()
    if y.shape[-1]:
        yield y
