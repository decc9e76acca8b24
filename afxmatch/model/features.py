"""Log-mel front end for the matching network (torch, no torchaudio).

``LogMel`` maps mono audio ``(batch, samples)`` at 44.1 kHz to a log-mel spectrogram
``(batch, n_mels, frames)`` in dB / 20 (so typical values are O(1)). Absolute level is kept
on purpose: the network must see loudness differences to set the output gain.
"""

from __future__ import annotations

import torch

# the filterbank has one (numpy) implementation, shared with the torch-free network;
# mel_filterbank stays importable from here (benchmarks/quality.py uses it)
from .numpy_net import FLOOR_DB, mel_filterbank


class LogMel(torch.nn.Module):
    def __init__(self, sample_rate: float = 44100, n_fft: int = 2048, hop: int = 512, n_mels: int = 64):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(n_fft, n_mels, sample_rate)),
                             persistent=False)

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
