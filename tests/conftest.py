"""Shared test helpers: settings as ``(batch,)`` float64 tensors, the example-audio fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import audio_fixtures

from afxmatch.params import ParamSpace


def full_params(sample_rate: float, batch: int = 1, **overrides) -> dict[str, torch.Tensor]:
    """Defaults of the space at ``sample_rate`` with ``overrides``, as ``(batch,)`` float64 tensors.

    An override may be a scalar or a sequence of ``batch`` values.
    """
    values = ParamSpace(sample_rate).defaults()
    out = {k: torch.full((batch,), float(v), dtype=torch.float64) for k, v in values.items()}
    for k, v in overrides.items():
        if k not in out:
            raise KeyError(k)
        t = torch.as_tensor(v, dtype=torch.float64)
        out[k] = t.expand(batch).clone() if t.dim() == 0 else t.reshape(batch).clone()
    return out


@pytest.fixture(scope="session")
def example_input():
    """The bundled example input (real recorded material): ``((channels, n) float32, sr)``."""
    data, sr = sf.read(str(audio_fixtures.EXAMPLE_INPUT), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), sr


@pytest.fixture(scope="session")
def example_reference():
    data, sr = sf.read(str(audio_fixtures.EXAMPLE_REFERENCE), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), sr
