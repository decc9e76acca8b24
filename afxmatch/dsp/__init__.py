"""Differentiable DSP on ``(batch, channels, samples)`` tensors plus a sample rate.

Knows nothing about files, the CLI or estimation: pure functions of tensors.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..params import ParamSpace
from . import biquad, compressor, eq

__all__ = ["biquad", "compressor", "eq", "process", "params_to_tensors", "denormalise"]


def params_to_tensors(params: Mapping[str, float], batch: int = 1,
                      dtype=torch.float64) -> dict[str, torch.Tensor]:
    """A dict of physical values -> dict of ``(batch,)`` tensors."""
    return {k: torch.full((batch,), float(v), dtype=dtype) for k, v in params.items()}


def denormalise(space: ParamSpace, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """Normalised ``(batch, n_params)`` in [0, 1] -> dict of physical ``(batch,)`` tensors."""
    lo, hi, is_log = (torch.as_tensor(v) for v in space.bounds())
    lo, hi, is_log = lo.to(u), hi.to(u), is_log.to(u.device)
    lin = lo + u * (hi - lo)
    # log-mapped specs have positive bounds; feed 1.0 elsewhere so no NaN reaches autograd
    log_lo, log_hi = torch.log(torch.where(is_log, lo, 1.0)), torch.log(torch.where(is_log, hi, 1.0))
    values = torch.where(is_log, torch.exp(log_lo + u * (log_hi - log_lo)), lin)
    return {name: values[:, i] for i, name in enumerate(space.names)}


def process(x: torch.Tensor, sample_rate: float, params: Mapping[str, torch.Tensor],
            stages: tuple[str, ...] = ("eq", "comp", "gain")) -> torch.Tensor:
    """Run the chain EQ -> compressor -> output gain on ``x`` ``(batch, channels, samples)``.

    ``params`` maps every parameter name to a ``(batch,)`` tensor. ``stages`` selects which
    parts run (the others are bypassed).
    """
    if x.dim() != 3:
        raise ValueError(f"expected (batch, channels, samples), got shape {tuple(x.shape)}")
    y = x
    if "eq" in stages:
        y = eq.apply(y, sample_rate, params)
    if "comp" in stages:
        y = compressor.apply(y, sample_rate, params)
    if "gain" in stages:
        y = y * torch.pow(10.0, params["out_gain_db"].reshape(-1, 1, 1) / 20.0).to(y.dtype)
    return y
