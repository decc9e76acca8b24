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

from ..params import EQ_BANDS
from . import biquad

MAX_IR = 1 << 20
MIN_BLOCK = 1 << 15
MIN_IR = 1 << 10


def band_coefficients(params: Mapping[str, torch.Tensor], sample_rate: float):
    """Yield ``(b, a)`` per filter kind, each ``(batch, n_bands_of_kind, 3)`` float64.

    Bands of the same kind are computed in one batched call (fewer, larger tensor ops).
    """
    kinds: dict[str, list[str]] = {}
    for prefix, kind in EQ_BANDS:
        kinds.setdefault(kind, []).append(prefix)
    for kind, prefixes in kinds.items():
        f, g, q = (torch.stack([torch.as_tensor(params[f"{p}_{suffix}"], dtype=torch.float64).reshape(-1)
                                for p in prefixes], -1) for suffix in ("freq_hz", "gain_db", "q"))
        yield biquad.coefficients(kind, f, g, q, sample_rate)


def response(params: Mapping[str, torch.Tensor], sample_rate: float,
             omega: torch.Tensor) -> torch.Tensor:
    """Complex response of the whole cascade, ``(batch, n_freq)`` complex128."""
    h = None
    for b, a in band_coefficients(params, sample_rate):
        hb = biquad.response(b, a, omega).prod(dim=-2)
        h = hb if h is None else h * hb
    return h


def magnitude_db(params: Mapping[str, torch.Tensor], sample_rate: float,
                 freqs_hz: torch.Tensor) -> torch.Tensor:
    """Cascade magnitude in dB at ``freqs_hz``, ``(batch, n_freq)`` float64."""
    omega = 2 * math.pi * torch.as_tensor(freqs_hz, dtype=torch.float64) / float(sample_rate)
    return sum(10.0 * torch.log10(biquad.power_response(b, a, omega) + 1e-30).sum(dim=-2)
               for b, a in band_coefficients(params, sample_rate))


def impulse_length(params: Mapping[str, torch.Tensor], sample_rate: float) -> int:
    """Samples needed for the cascade's impulse response to decay (sum over bands)."""
    total = 0
    for _, a in band_coefficients(params, sample_rate):
        total += sum(biquad.decay_samples(a[..., i, :]) for i in range(a.shape[-2]))
    return min(int(total), MAX_IR)


def fft_size(n: int) -> int:
    """A fast FFT size >= n (products of 2, 3 and 5)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


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
