"""Multi-resolution STFT loss (spectral convergence + L1 log magnitude)."""

from __future__ import annotations

import torch
from torch import nn

FFT_SIZES = (512, 1024, 2048, 4096, 8192)


class MRSTFTLoss(nn.Module):
    def __init__(self, fft_sizes=FFT_SIZES, hop_fraction: float = 0.25, eps: float = 1e-7):
        super().__init__()
        self.fft_sizes, self.hop_fraction, self.eps = tuple(fft_sizes), hop_fraction, eps
        for n in self.fft_sizes:
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def _mag(self, x: torch.Tensor, n: int) -> torch.Tensor:
        spec = torch.stft(x, n, max(1, int(n * self.hop_fraction)), window=getattr(self, f"win{n}"),
                          center=True, return_complex=True)
        return torch.sqrt(spec.real ** 2 + spec.imag ** 2 + self.eps)

    def forward(self, y: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
        """``(batch, [channels,] samples)``; returns a scalar, or per-item ``(batch,)`` losses."""
        batch = y.shape[0]
        y, target = y.reshape(-1, y.shape[-1]).float(), target.reshape(-1, target.shape[-1]).float()
        total = torch.zeros(batch, device=y.device)
        for n in self.fft_sizes:
            a, b = self._mag(y, n), self._mag(target, n)
            sc = torch.linalg.vector_norm((b - a).reshape(batch, -1), dim=-1) / \
                torch.linalg.vector_norm(b.reshape(batch, -1), dim=-1).clamp_min(self.eps)
            mag = (torch.log(a) - torch.log(b)).abs().reshape(batch, -1).mean(-1)
            total = total + sc + mag
        total = total / len(self.fft_sizes)
        return total.mean() if reduce else total
