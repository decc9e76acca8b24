"""The 6-band parametric EQ (low shelf, 4 peaks, high shelf) as a cascade of RBJ biquads.

Filtering is done in the frequency domain: the cascade's exact IIR response is sampled on
an FFT grid long enough for the impulse response to decay below -140 dB, so the result
equals time-domain IIR filtering (zero initial state) to within float32 precision, and is
differentiable with respect to every parameter.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

from . import formulas
from .formulas import MAX_IR, MIN_BLOCK, MIN_IR, fft_size

__all__ = ["MAX_IR", "MIN_BLOCK", "MIN_IR", "band_coefficients", "response", "magnitude_db",
           "impulse_length", "fft_size", "apply", "filter_response"]


def band_coefficients(params: Mapping[str, torch.Tensor], sample_rate: float):
    """Yield ``(b, a)`` per filter kind, each ``(batch, n_bands_of_kind, 3)`` float64.

    Bands of the same kind are computed in one batched call (fewer, larger tensor ops).
    """
    return formulas.band_coefficients(params, sample_rate, torch)


def response(params: Mapping[str, torch.Tensor], sample_rate: float,
             omega: torch.Tensor) -> torch.Tensor:
    """Complex response of the whole cascade, ``(batch, n_freq)`` complex128."""
    return formulas.eq_response(params, sample_rate, omega.to(torch.float64), torch)


def magnitude_db(params: Mapping[str, torch.Tensor], sample_rate: float,
                 freqs_hz: torch.Tensor) -> torch.Tensor:
    """Cascade magnitude in dB at ``freqs_hz``, ``(batch, n_freq)`` float64."""
    return formulas.eq_magnitude_db(params, sample_rate, freqs_hz, torch)


def impulse_length(params: Mapping[str, torch.Tensor], sample_rate: float) -> int:
    """Samples needed for the cascade's impulse response to decay (sum over bands)."""
    with torch.no_grad():
        return formulas.eq_impulse_length(params, sample_rate, torch)


def apply(x: torch.Tensor, sample_rate: float, params: Mapping[str, torch.Tensor],
          tail: int | None = None) -> torch.Tensor:
    """Filter ``x`` of shape ``(batch, channels, samples)``; the same EQ on every channel.

    Parameters are tensors of shape ``(batch,)``. The output has the input's length
    (the filter's tail past the end is dropped), as a time-domain IIR with zero initial
    state would give. Long signals are filtered by overlap-add in FFT blocks.
    """
    if tail is None:
        tail = impulse_length(params, sample_rate)
    return filter_response(x, lambda omega: response(params, sample_rate, omega), tail)


def filter_response(x: torch.Tensor, response_fn, tail: int) -> torch.Tensor:
    """Filter ``x`` ``(batch, channels, samples)`` by the causal filter whose complex
    response ``response_fn(omega) -> (batch, n_bins)`` is known exactly and whose impulse
    response has decayed after ``tail`` samples. Same length out; overlap-add when long."""
    n_samples = x.shape[-1]
    block = max(4 * tail, MIN_BLOCK)
    if n_samples <= 2 * block:
        n = fft_size(n_samples + tail)
        return _filter_frames(x[..., None, :], response_fn, n, tail)[..., 0, :n_samples]
    n = fft_size(block + tail)
    block = n - tail
    n_blocks = math.ceil(n_samples / block)
    frames = F.pad(x, (0, n_blocks * block - n_samples)).unflatten(-1, (n_blocks, block))
    y = _filter_frames(frames, response_fn, n, tail)  # (batch, ch, n_blocks, n)
    head = y[..., :block].flatten(-2)
    rest = F.pad(y[..., block:], (0, block - tail)).flatten(-2)  # each block's tail, padded
    head = head + F.pad(rest, (block, 0))[..., : head.shape[-1]]
    return head[..., :n_samples]


def _filter_frames(frames: torch.Tensor, response_fn, n: int, tail: int) -> torch.Tensor:
    """Linear convolution of ``(batch, ch, n_frames, len)`` frames with the filter, FFT size n.

    The exact response is sampled on a grid of ``m >= tail`` points only (the impulse
    response has decayed below -140 dB by then, so its m-point inverse FFT is the impulse
    response itself), then zero-padded to n in time. Far fewer bins than sampling the
    response at all n points, which dominated training steps.
    """
    m = min(n, fft_size(max(tail, MIN_IR)))
    omega = torch.arange(m // 2 + 1, dtype=torch.float64) * (2 * math.pi / m)  # rfft bins; m may be odd
    ir = torch.fft.irfft(response_fn(omega), n=m)  # (batch, m) float64
    h = torch.fft.rfft(ir, n=n).to(torch.complex64 if frames.dtype != torch.float64 else torch.complex128)
    return torch.fft.irfft(torch.fft.rfft(frames, n=n) * h[:, None, None, :], n=n)
