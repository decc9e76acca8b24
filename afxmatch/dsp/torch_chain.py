"""The differentiable chain on ``(batch, channels, samples)`` tensors (training,
``--method optimise``): :func:`process`, :func:`params_to_tensors`, :func:`denormalise`.
Reached as ``afxmatch.dsp.process`` etc.; inference renders with
:mod:`afxmatch.dsp.numpy_chain` (same maths, no torch)."""

from __future__ import annotations

from typing import Mapping

import torch

from ..params import ParamSpace, denormalise_columns
from . import compressor, eq


def params_to_tensors(params: Mapping[str, float], batch: int = 1,
                      dtype=torch.float64) -> dict[str, torch.Tensor]:
    """A dict of physical values -> dict of ``(batch,)`` tensors."""
    return {k: torch.full((batch,), float(v), dtype=dtype) for k, v in params.items()}


def denormalise(space: ParamSpace, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """Normalised ``(batch, n_params)`` in [0, 1] -> dict of physical ``(batch,)`` tensors."""
    lo, hi, is_log = (torch.as_tensor(v) for v in space.bounds())
    return denormalise_columns(u, lo.to(u), hi.to(u), is_log.to(u.device), space.names, torch)


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
