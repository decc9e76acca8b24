"""The chain built from pedalboard's built-in plugins."""

from __future__ import annotations

import math

from typing import Mapping

import numpy as np
import pedalboard

from ..params import EQ_BANDS

# JUCE's ballistics use exp(-2*pi*1000 / (sr * time_ms)): its "time" is 2*pi times our
# one-pole time constant exp(-1 / (sr * tau)). Scale so both backends mean the same tau.
JUCE_TIME_SCALE = 2 * math.pi

_FILTERS = {"low_shelf": pedalboard.LowShelfFilter, "peak": pedalboard.PeakFilter,
            "high_shelf": pedalboard.HighShelfFilter}


def build_board(params: Mapping[str, float], stages=("eq", "comp", "gain")) -> pedalboard.Pedalboard:
    """A Pedalboard equivalent to the parameters (see the module docs of ``render``)."""
    plugins = []
    if "eq" in stages:
        for prefix, kind in EQ_BANDS:
            plugins.append(_FILTERS[kind](cutoff_frequency_hz=float(params[f"{prefix}_freq_hz"]),
                                          gain_db=float(params[f"{prefix}_gain_db"]),
                                          q=float(params[f"{prefix}_q"])))
    gain_db = 0.0
    if "comp" in stages:
        if params["comp_ratio"] > 1.0:
            plugins.append(pedalboard.Compressor(threshold_db=float(params["comp_threshold_db"]),
                                                 ratio=float(params["comp_ratio"]),
                                                 attack_ms=JUCE_TIME_SCALE * float(params["comp_attack_ms"]),
                                                 release_ms=JUCE_TIME_SCALE * float(params["comp_release_ms"])))
        gain_db += float(params["comp_makeup_db"])
    if "gain" in stages:
        gain_db += float(params["out_gain_db"])
    if gain_db != 0.0:
        plugins.append(pedalboard.Gain(gain_db=gain_db))
    return pedalboard.Pedalboard(plugins)


def render_pedalboard(samples: np.ndarray, sample_rate: float, params: Mapping[str, float],
                      stages=("eq", "comp", "gain")) -> np.ndarray:
    board = build_board(params, stages)
    x = np.ascontiguousarray(samples, dtype=np.float32)
    return board(x, float(sample_rate))
