"""Render block by block in bounded memory, equal to :func:`afxmatch.render.render` on the
whole signal (to float32 rounding).

``StreamRenderer(sample_rate, channels, params, backend)``: feed ``(channels, n)`` blocks of
any size to :meth:`~StreamRenderer.process`, then call :meth:`~StreamRenderer.flush`. The
output is delayed (the EQ works in FFT blocks, the compressor's gain interpolation needs
the next control frame), but in total it has exactly the input's length.

- torch: the EQ is the same FFT convolution as :func:`afxmatch.dsp.eq.apply` (the
  cascade's impulse response, ``tail`` samples long); each block's tail is carried and
  added to the next block (overlap-add). The compressor carries its ballistics state
  (the last smoothed gain), the last gain frame (for interpolation) and the samples of
  the one frame whose gain still needs the next frame's.
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
import torch

from .. import dsp
from ..choices import BACKENDS
from ..dsp import compressor, eq
from ..errors import InvalidParameterError

STAGES = ("eq", "comp", "gain")
PEDALBOARD_BLOCK = 8192


class _EqStream:
    """Overlap-add FFT convolution with the EQ cascade, block by block."""

    def __init__(self, sample_rate: float, channels: int, params: Mapping[str, torch.Tensor]):
        self.sr, self.params = sample_rate, params
        self.tail = eq.impulse_length(params, sample_rate)
        self.n = eq.fft_size(max(4 * self.tail, eq.MIN_BLOCK) + self.tail)
        self.block = self.n - self.tail
        self.buf = torch.zeros(1, channels, 0)
        self.carry = torch.zeros(1, channels, self.tail)

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (1, ch, <= block) -> its full convolution, ``block + tail`` samples."""
        y = eq._filter_frames(x[..., None, :], lambda w: eq.response(self.params, self.sr, w),
                              self.n, self.tail)[..., 0, :]
        y = y[..., : self.block + self.tail].clone()
        y[..., : self.tail] += self.carry
        return y

    def process(self, x: torch.Tensor) -> torch.Tensor:
        self.buf = torch.cat([self.buf, x], dim=-1)
        out = []
        while self.buf.shape[-1] >= self.block:
            y = self._filter(self.buf[..., : self.block])
            self.buf = self.buf[..., self.block:]
            out.append(y[..., : self.block])
            self.carry = y[..., self.block:]
        return torch.cat(out, dim=-1) if out else self.buf[..., :0]

    def flush(self) -> torch.Tensor:
        r = self.buf.shape[-1]
        if r == 0:
            return self.buf
        return self._filter(self.buf)[..., :r]   # the tail past the end is dropped, as in eq.apply


class _CompressorStream:
    """The linked compressor of :mod:`afxmatch.dsp.compressor`, block by block."""

    def __init__(self, sample_rate: float, channels: int, params: Mapping[str, torch.Tensor]):
        self.sr, self.hop = sample_rate, compressor.control_hop(sample_rate)
        self.col = {k: params[k].double().reshape(-1, 1) for k in
                    ("comp_threshold_db", "comp_ratio", "comp_knee_db", "comp_makeup_db")}
        self.alpha_a = compressor.time_constant_coeff(params["comp_attack_ms"].reshape(-1), sample_rate, self.hop)
        self.alpha_r = compressor.time_constant_coeff(params["comp_release_ms"].reshape(-1), sample_rate, self.hop)
        self.state = np.zeros(1)              # ballistics: the last smoothed gain (dB)
        self.new = torch.zeros(1, channels, 0)      # samples not yet detected (< one frame)
        self.held = torch.zeros(1, channels, 0)     # the last detected frame's samples
        self.held_gain = None                       # its gain (dB, with make-up)
        self.prev_gain = None                       # the gain of the frame before it

    def _gains(self, frames: torch.Tensor) -> torch.Tensor:
        """``(1, ch, k * hop)`` -> the k frames' smoothed gains + make-up, ``(1, k)`` float64."""
        k = frames.shape[-1] // self.hop
        peak = frames.reshape(1, frames.shape[1], k, self.hop).abs().amax(dim=(1, 3))
        level_db = 20.0 * torch.log10(torch.clamp(peak.double(), min=10 ** (compressor.FLOOR_DB / 20)))
        gc = compressor.static_curve_db(level_db, self.col["comp_threshold_db"], self.col["comp_ratio"],
                                        self.col["comp_knee_db"])
        g, _ = compressor._smooth_forward(gc.numpy(), self.alpha_a.numpy(), self.alpha_r.numpy(), self.state)
        self.state = g[:, -1].copy()
        return torch.from_numpy(g) + self.col["comp_makeup_db"]

    def _emit(self, audio: torch.Tensor, gains: torch.Tensor, next_gain) -> torch.Tensor:
        """Apply ``gains`` (1, k) to ``audio`` (1, ch, k * hop): interpolated exactly as
        :func:`compressor.frames_to_samples` does with the neighbours on both sides."""
        prev = gains[:, :1] if self.prev_gain is None else self.prev_gain
        ext = torch.cat([prev, gains, gains[:, -1:] if next_gain is None else next_gain], dim=1)
        g = compressor.frames_to_samples(ext.float(), self.hop)[:, self.hop: -self.hop]
        self.prev_gain = gains[:, -1:]
        return audio * torch.pow(10.0, g / 20.0)[:, None, :].to(audio.dtype)

    def process(self, x: torch.Tensor) -> torch.Tensor:
        self.new = torch.cat([self.new, x], dim=-1)
        k = self.new.shape[-1] // self.hop
        if k == 0:
            return x[..., :0]
        frames, self.new = self.new[..., : k * self.hop], self.new[..., k * self.hop:]
        gains = self._gains(frames)
        if self.held_gain is None:   # the very first frames: hold back the last one
            audio, g_out = frames[..., : (k - 1) * self.hop], gains[:, :-1]
        else:
            audio = torch.cat([self.held, frames[..., : (k - 1) * self.hop]], dim=-1)
            g_out = torch.cat([self.held_gain, gains[:, :-1]], dim=1)
        self.held, self.held_gain = frames[..., (k - 1) * self.hop:], gains[:, -1:]
        return self._emit(audio, g_out, gains[:, -1:]) if g_out.shape[1] else x[..., :0]

    def flush(self) -> torch.Tensor:
        r = self.new.shape[-1]
        audio, gains = self.held, self.held_gain
        if r:   # the last, partial frame: zero-padded for detection, as in gain_curve_db
            pad = torch.nn.functional.pad(self.new, (0, self.hop - r))
            g_last = self._gains(pad)
            audio = pad if gains is None else torch.cat([audio, pad], dim=-1)
            gains = g_last if gains is None else torch.cat([gains, g_last], dim=1)
        if gains is None:
            return self.new
        y = self._emit(audio, gains, None)
        return y[..., : y.shape[-1] - (self.hop - r if r else 0)]


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
        tensors = dsp.params_to_tensors(params)
        self.parts = []
        if "eq" in stages:
            self.parts.append(_EqStream(sample_rate, channels, tensors))
        if "comp" in stages:
            self.parts.append(_CompressorStream(sample_rate, channels, tensors))
        self.gain = (torch.pow(10.0, tensors["out_gain_db"].reshape(-1, 1, 1) / 20.0).float()
                     if "gain" in stages else None)

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
        return self._chain(torch.from_numpy(block)[None], flush=False)

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
        return self._chain(torch.zeros(1, self.channels, 0), flush=True)

    def _chain(self, x: torch.Tensor, flush: bool) -> np.ndarray:
        with torch.no_grad():
            for part in self.parts:
                y = part.process(x)
                x = torch.cat([y, part.flush()], dim=-1) if flush else y
            if self.gain is not None:
                x = x * self.gain
        return x[0].numpy()


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
