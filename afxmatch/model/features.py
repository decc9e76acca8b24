"""Log-mel front end for the matching network (torch only, no torchaudio).

``LogMel`` maps mono audio ``(batch, samples)`` at 44.1 kHz to a log-mel spectrogram
``(batch, n_mels, frames)`` in dB / 20 (so typical values are O(1)). Absolute level is kept
on purpose: the network must see loudness differences to set the output gain.
"""

from __future__ import annotations

import math

import torch

FLOOR_DB = -100.0


def hz_to_mel(f):
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: float, f_min: float = 20.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular (HTK-mel) filters, ``(n_mels, n_fft // 2 + 1)``, each summing to 1."""
    f_max = f_max or sample_rate / 2
    n_bins = n_fft // 2 + 1
    freqs = torch.linspace(0, sample_rate / 2, n_bins, dtype=torch.float64)
    lo, hi = hz_to_mel(f_min), hz_to_mel(f_max)
    edges = torch.tensor([mel_to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)],
                         dtype=torch.float64)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - left) / (centre - left)
    down = (right - freqs[None]) / (right - centre)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    # narrow low filters may fall between bins: give them the nearest bin
    empty = fb.sum(1) == 0
    if empty.any():
        nearest = torch.argmin((freqs[None] - centre).abs(), dim=1)
        fb[empty, nearest[empty]] = 1.0
    fb = fb / fb.sum(1, keepdim=True)
    return fb.float()


class LogMel(torch.nn.Module):
    def __init__(self, sample_rate: float = 44100, n_fft: int = 2048, hop: int = 512, n_mels: int = 64):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fb", mel_filterbank(n_fft, n_mels, sample_rate), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` -> ``(batch, n_mels, frames)``; short inputs are zero-padded."""
        if x.shape[-1] < self.n_fft:
            x = torch.nn.functional.pad(x, (0, self.n_fft - x.shape[-1]))
        spec = torch.stft(x.float(), self.n_fft, self.hop, window=self.window, center=False,
                          return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2
        # scale so a full-scale sine gives ~0 dB in its band
        power = power * (4.0 / self.window.sum() ** 2)
        mel = torch.matmul(self.fb, power)
        db = 10.0 * torch.log10(mel + 10 ** (FLOOR_DB / 10))
        return db / 20.0
