"""Render backends behind one call: ``render(samples, sample_rate, params, backend)``.

- ``torch``: the built-in chain (:mod:`afxmatch.dsp`), exact RBJ EQ and the linked,
  soft-knee compressor with make-up. It renders with the chain's numpy twin
  (:mod:`afxmatch.dsp.numpy_chain`: the same maths from the same formulas, equal to
  float32 rounding) and imports no torch; torch runs the same chain where gradients are
  needed (training, ``--method optimise``). The name stays ``torch`` for the built-in
  chain in options and reports.
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

from ..choices import BACKENDS
from ..dsp import numpy_chain
from ..errors import InvalidParameterError


def render(samples: np.ndarray, sample_rate: float, params: Mapping[str, float],
           backend: str = "torch", stages: tuple[str, ...] = ("eq", "comp", "gain")) -> np.ndarray:
    """Process ``(channels, samples)`` float32 audio with the full chain; same shape out."""
    if backend == "torch":   # the built-in chain, rendered by its numpy twin
        return numpy_chain.process(samples, sample_rate, params, stages)
    if backend == "pedalboard":
        from .pedalboard_backend import render_pedalboard
        return render_pedalboard(samples, sample_rate, params, stages)
    if backend == "vst3":
        from .vst3_backend import render_vst3
        return render_vst3(samples, sample_rate, params, stages)
    raise InvalidParameterError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")

