"""The JSON report: everything needed to understand and reproduce a match."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

from . import __version__
from .analysis import style_distances
from .params import EQ_BANDS, ParamSpace, fingerprint

SCHEMA = "afxmatch.report/1"
CHAIN = [kind for _, kind in EQ_BANDS] + ["compressor", "output_gain"]


def _file_facts(a, features) -> dict:
    return {"path": str(a.path) if a.path else None, "sample_rate": a.sample_rate,
            "channels": a.channels, "duration_s": round(a.duration_s, 3), "frames": a.n_samples,
            "format": a.format, "subtype": a.subtype, **features.summary()}


def _reference_facts(ref, f: dict) -> dict:
    """``{"reference": ...}`` for one reference; for several, ``reference`` describes their
    common style (what was matched) and ``references`` lists each file."""
    if not isinstance(ref, (list, tuple)):
        return {"reference": _file_facts(ref, f["reference"])}
    if len(ref) == 1:
        return {"reference": _file_facts(ref[0], f["reference"])}
    return {"reference": {"paths": [str(a.path) if a.path else None for a in ref],
                          "combined_from": len(ref),
                          "combination": "mean dB spectrum, mean LUFS, equal-weight level "
                                         "distribution after loudness alignment",
                          **f["reference"].summary()},
            "references": [_file_facts(a, fa) for a, fa in zip(ref, f["references"])]}


def parameters_block(params: dict[str, float], sample_rate: float) -> dict:
    """``{name: {value, unit, min, max}}`` in chain order."""
    space = ParamSpace(sample_rate)
    return {s.name: {"value": float(params[s.name]), "unit": s.unit,
                     "min": round(s.min, 6), "max": round(s.max, 6)} for s in space.specs}


def build_report(inp, ref, out_path: Path, subtype: str, result, method: str, backend: str,
                 timings: dict) -> dict:
    f = result.features
    return {
        "schema": SCHEMA,
        "afxmatch_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": method,
        "model": result.model,
        "backend": backend,
        "input": _file_facts(inp, f["input"]),
        **_reference_facts(ref, f),
        "output": {"path": str(out_path), "sample_rate": inp.sample_rate, "channels": inp.channels,
                   "duration_s": round(inp.duration_s, 3), "frames": inp.n_samples,
                   "subtype": subtype, **f["output"].summary()},
        "chain": CHAIN,
        "param_space": {"fingerprint": fingerprint(), "sample_rate": inp.sample_rate},
        "parameters": parameters_block(result.params, inp.sample_rate),
        "safety": result.safety,
        "amount": getattr(result, "amount", 1.0),
        "finish": getattr(result, "finish", None),
        "style_distance": {
            "definition": "spectral_db: RMS dB difference of 1/3-octave level-normalised long-term "
                          "spectra 50 Hz-16 kHz; loudness_lu: |integrated loudness difference|; "
                          "dynamics_db: mean |difference| of 50 ms level-distribution shape",
            "before": style_distances(f["input"], f["reference"]),
            "after": style_distances(f["output"], f["reference"]),
        },
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        **({"vst3": result.backend_info} if getattr(result, "backend_info", None) else {}),
        # method "optimise": start method, the stages run (steps, time, objective before/after
        # in dB, report distance, kept), the final check against the report distance
        **({"optimise": result.optimise} if getattr(result, "optimise", None) else {}),
    }


def _default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def dump_report(report: dict) -> str:
    return json.dumps(report, indent=2, default=_default, allow_nan=False) + "\n"
