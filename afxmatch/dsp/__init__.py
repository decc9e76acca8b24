"""The effect chain's DSP: pure functions of arrays plus a sample rate.

Knows nothing about files, the CLI or estimation. Two implementations of the same maths
(:mod:`~afxmatch.dsp.formulas` holds the formulas both use):

- differentiable torch on ``(batch, channels, samples)`` tensors, for training and
  ``--method optimise``: :mod:`~afxmatch.dsp.biquad`, :mod:`~afxmatch.dsp.eq`,
  :mod:`~afxmatch.dsp.compressor` and :func:`process`, :func:`params_to_tensors`,
  :func:`denormalise` (:mod:`~afxmatch.dsp.torch_chain`);
- numpy on ``(channels, samples)`` arrays, for inference (rendering, the analysis
  estimate): :mod:`~afxmatch.dsp.numpy_chain`.

Importing this package imports no torch: the torch modules load on first use
(``dsp.eq``, ``dsp.process``, ``from afxmatch.dsp import compressor``), so the numpy
modules (and :mod:`~afxmatch.dsp.limiter`, :mod:`~afxmatch.dsp.truepeak`) stay torch-free.
"""

from __future__ import annotations

import importlib

__all__ = ["biquad", "compressor", "eq", "process", "params_to_tensors", "denormalise"]

_TORCH_MODULES = ("biquad", "compressor", "eq", "torch_chain")
_TORCH_FUNCTIONS = ("process", "params_to_tensors", "denormalise")


def __getattr__(name: str):
    """PEP 562: load the torch submodules and functions when first asked for."""
    if name in _TORCH_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _TORCH_FUNCTIONS:
        value = getattr(importlib.import_module(f"{__name__}.torch_chain"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
