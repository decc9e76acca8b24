"""A feed-forward compressor, differentiable in every parameter.

Design (Giannoulis, Massberg & Reiss 2012, "smooth decoupled" in the gain domain):

1. Detection, linked across channels: the peak ``|x|`` over all channels in control
   frames of ``hop`` samples (about 0.5 ms), in dBFS.
2. Static curve with a soft knee of width ``W`` dB (hard knee at ``W = 0``)::

       y = x                                   if 2 (x - T) < -W
       y = x + (1/R - 1) (x - T + W/2)^2 / 2W  if |2 (x - T)| <= W
       y = T + (x - T) / R                     if 2 (x - T) > W

3. Ballistics on the gain reduction ``g_c = y - x`` (dB): a one-pole smoother whose
   coefficient is the attack one while the reduction deepens and the release one while it
   recovers. The recursion runs in a custom autograd function with an exact backward pass,
   so attack *and* release receive gradients and the release audibly acts.
4. The smoothed gain (plus make-up) is interpolated back to audio rate and applied to
   every channel (same gain on all channels).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from . import formulas
from .formulas import CONTROL_PERIOD_S, FLOOR_DB, control_hop
from .formulas import smooth_forward as _smooth_forward

__all__ = ["CONTROL_PERIOD_S", "FLOOR_DB", "control_hop", "static_curve_db", "smooth_gain",
           "time_constant_coeff", "gain_curve_db", "frames_to_samples", "apply"]


def static_curve_db(level_db: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor,
                    knee_db: torch.Tensor) -> torch.Tensor:
    """Gain reduction in dB (<= 0) for input levels ``level_db``; params broadcast."""
    return formulas.static_curve_db(level_db, threshold_db, ratio, knee_db, torch)


def _smooth_backward(grad: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Adjoint recursion: lam[n] = grad[n] + alpha[n+1] * lam[n+1]."""
    batch, frames = grad.shape
    lam = np.empty_like(grad)
    for i in range(batch):
        g_row, a_row = grad[i].tolist(), alpha[i].tolist()
        res, acc, a_next = [0.0] * frames, 0.0, 0.0
        for n in range(frames - 1, -1, -1):
            acc = g_row[n] + a_next * acc
            res[n] = acc
            a_next = a_row[n]
        lam[i] = res
    return lam


class _Ballistics(torch.autograd.Function):
    """g[n] = a[n] g[n-1] + (1 - a[n]) gc[n], a[n] = attack if gc[n] < g[n-1] else release."""

    @staticmethod
    def forward(ctx, gc, alpha_a, alpha_r):
        g_np, attack = _smooth_forward(gc.detach().double().cpu().numpy(),
                                       alpha_a.detach().double().cpu().numpy(),
                                       alpha_r.detach().double().cpu().numpy())
        g = torch.from_numpy(g_np).to(gc)
        mask = torch.from_numpy(attack).to(gc.device)
        ctx.save_for_backward(gc, g, mask, alpha_a, alpha_r)
        return g

    @staticmethod
    def backward(ctx, grad_out):
        gc, g, mask, alpha_a, alpha_r = ctx.saved_tensors
        alpha = torch.where(mask, alpha_a[:, None].to(gc), alpha_r[:, None].to(gc))
        lam = torch.from_numpy(_smooth_backward(grad_out.detach().double().cpu().numpy(),
                                                alpha.detach().double().cpu().numpy())).to(gc)
        g_prev = torch.cat([torch.zeros_like(g[:, :1]), g[:, :-1]], dim=1)
        d_alpha = lam * (g_prev - gc)
        grad_gc = lam * (1 - alpha)
        grad_a = torch.where(mask, d_alpha, torch.zeros_like(d_alpha)).sum(1).to(alpha_a)
        grad_r = torch.where(mask, torch.zeros_like(d_alpha), d_alpha).sum(1).to(alpha_r)
        return grad_gc, grad_a, grad_r


def smooth_gain(gc: torch.Tensor, alpha_attack: torch.Tensor, alpha_release: torch.Tensor) -> torch.Tensor:
    """Attack/release smoothing of a gain-reduction curve ``(batch, frames)`` in dB."""
    return _Ballistics.apply(gc, alpha_attack, alpha_release)


def time_constant_coeff(time_ms: torch.Tensor, sample_rate: float, hop: int) -> torch.Tensor:
    """One-pole coefficient per control frame for a time constant in ms."""
    return formulas.time_constant_coeff(time_ms.double(), sample_rate, hop, torch)


def gain_curve_db(x: torch.Tensor, sample_rate: float, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Smoothed gain (reduction + make-up) in dB at audio rate, ``(batch, samples)``."""
    batch, channels, n_samples = x.shape
    hop = control_hop(sample_rate)
    frames = math.ceil(n_samples / hop)
    padded = F.pad(x, (0, frames * hop - n_samples))
    peak = padded.reshape(batch, channels, frames, hop).abs().amax(dim=(1, 3))
    level_db = formulas.peak_level_db(peak.double(), torch)
    col = {k: params[k].double().reshape(-1, 1) for k in
           ("comp_threshold_db", "comp_ratio", "comp_knee_db", "comp_makeup_db")}
    gc = static_curve_db(level_db, col["comp_threshold_db"], col["comp_ratio"], col["comp_knee_db"])
    g = smooth_gain(gc, time_constant_coeff(params["comp_attack_ms"].reshape(-1), sample_rate, hop),
                    time_constant_coeff(params["comp_release_ms"].reshape(-1), sample_rate, hop))
    g = g + col["comp_makeup_db"]
    return frames_to_samples(g.float(), hop)[:, :n_samples]


def frames_to_samples(g: torch.Tensor, hop: int) -> torch.Tensor:
    """Linear interpolation of per-frame values ``(batch, frames)`` (frame centres) to
    ``(batch, frames * hop)`` samples, edges held."""
    return formulas.frames_to_samples(g, hop, torch)


def apply(x: torch.Tensor, sample_rate: float, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Compress ``x`` ``(batch, channels, samples)`` with params of shape ``(batch,)``."""
    gain_db = gain_curve_db(x, sample_rate, params)
    return x * torch.pow(10.0, gain_db / 20.0)[:, None, :].to(x.dtype)
