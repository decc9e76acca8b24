"""Render backends behind one call: ``render(samples, sample_rate, params, backend)``.

- ``torch``: the built-in differentiable chain (:mod:`afxmatch.dsp`), exact RBJ EQ and
  the linked, soft-knee compressor with make-up.
- ``pedalboard``: Spotify's pedalboard built-ins. The EQ is identical (pedalboard's
  filters are RBJ biquads with ``q`` as Q). Its ``Compressor`` is JUCE's: per-channel
  detection (not linked), level-domain peak ballistics, hard knee, no make-up — so
  ``comp_knee_db`` is not honoured and make-up is rendered with ``Gain``. See
  ``docs/backends.md`` for the measured differences.
- ``vst3``: real VST3 plugins (ZamEQ2 x2 + ZamComp/ZamCompX2) through pedalboard, with the
  explicit parameter map of :mod:`afxmatch.render.vst3_backend`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from .. import dsp
from ..choices import BACKENDS
from ..errors import InvalidParameterError


def render(samples: np.ndarray, sample_rate: float, params: Mapping[str, float],
           backend: str = "torch", stages: tuple[str, ...] = ("eq", "comp", "gain")) -> np.ndarray:
    """Process ``(channels, samples)`` float32 audio with the full chain; same shape out."""
    if backend == "torch":
        return _render_torch(samples, sample_rate, params, stages)
    if backend == "pedalboard":
        from .pedalboard_backend import render_pedalboard
        return render_pedalboard(samples, sample_rate, params, stages)
    if backend == "vst3":
        from .vst3_backend import render_vst3
        return render_vst3(samples, sample_rate, params, stages)
    raise InvalidParameterError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _render_torch(samples, sample_rate, params, stages):
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
    with torch.no_grad():
        y = dsp.process(x, sample_rate, dsp.params_to_tensors(params), stages)
    return y[0].numpy()
