"""The parameter space: the single source of truth for every effect parameter.

The chain is low shelf -> 4 peaking bands -> high shelf -> compressor -> output gain.
Each parameter has a name (with a unit suffix), a unit, a range, a default (neutral)
value and a scale (``lin`` or ``log``) used to map it to and from ``[0, 1]``.

Frequency ranges depend on the sample rate: the top of the high bands is
``top_hz(sample_rate) = min(0.45 * sr, 20 kHz)`` so that at 44.1/48 kHz the high shelf
and the fourth peak reach 19.8/20 kHz, and at low sample rates they stay below Nyquist.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

import numpy as np

from .errors import InvalidParameterError

# Nominal band ranges in Hz (DeepAFx-ST's, with the open top replaced by ``top_hz``).
TOP = "top"
_BANDS: tuple[tuple[str, str, float, float | str, float], ...] = (
    # prefix, biquad kind, min Hz, max Hz, default Hz
    ("ls", "low_shelf", 20.0, 200.0, 80.0),
    ("p1", "peak", 200.0, 2000.0, 500.0),
    ("p2", "peak", 800.0, 4000.0, 1600.0),
    ("p3", "peak", 2000.0, 8000.0, 4000.0),
    ("p4", "peak", 4000.0, TOP, 9000.0),
    ("hs", "high_shelf", 4000.0, TOP, 8000.0),
)
EQ_GAIN_DB = 24.0
PEAK_CEILING_DB = -0.1   # sample-peak ceiling of the output gain (dBFS): the safety gain keeps below it
Q_MIN, Q_MAX, Q_DEFAULT = 0.1, 10.0, 0.707
TOP_FRACTION, TOP_MAX_HZ = 0.45, 20000.0


def top_hz(sample_rate: float) -> float:
    """Highest centre/cutoff frequency any band may take at ``sample_rate``."""
    return min(TOP_FRACTION * float(sample_rate), TOP_MAX_HZ)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ``name`` carries the unit suffix (``_hz``, ``_db``, ``_ms``, ``_q``)."""

    name: str
    unit: str
    min: float
    max: float
    default: float
    scale: str  # "lin" or "log"
    group: str  # "eq", "comp" or "gain"
    description: str

    def normalise(self, value: float) -> float:
        if self.scale == "log":
            return (math.log(value) - math.log(self.min)) / (math.log(self.max) - math.log(self.min))
        return (value - self.min) / (self.max - self.min)

    def denormalise(self, u: float) -> float:
        if self.scale == "log":
            return math.exp(math.log(self.min) + u * (math.log(self.max) - math.log(self.min)))
        return self.min + u * (self.max - self.min)


def _eq_specs(sample_rate: float) -> list[ParamSpec]:
    top = top_hz(sample_rate)
    specs: list[ParamSpec] = []
    for prefix, kind, lo, hi, default in _BANDS:
        hi_hz = top if hi == TOP else min(float(hi), top)
        lo_hz = min(lo, hi_hz / 2.0)
        label = kind.replace("_", " ")
        specs += [
            ParamSpec(f"{prefix}_freq_hz", "Hz", lo_hz, hi_hz, min(max(default, lo_hz), hi_hz),
                      "log", "eq", f"{label} ({prefix}) centre/cutoff frequency"),
            ParamSpec(f"{prefix}_gain_db", "dB", -EQ_GAIN_DB, EQ_GAIN_DB, 0.0,
                      "lin", "eq", f"{label} ({prefix}) gain"),
            ParamSpec(f"{prefix}_q", "", Q_MIN, Q_MAX, Q_DEFAULT,
                      "log", "eq", f"{label} ({prefix}) quality factor Q (RBJ)"),
        ]
    return specs


_DYNAMICS = (
    ParamSpec("comp_threshold_db", "dBFS", -60.0, 0.0, 0.0, "lin", "comp",
              "compressor threshold (peak level, linked across channels)"),
    ParamSpec("comp_ratio", ":1", 1.0, 20.0, 1.0, "log", "comp", "compressor ratio"),
    ParamSpec("comp_attack_ms", "ms", 0.1, 100.0, 10.0, "log", "comp", "compressor attack time"),
    ParamSpec("comp_release_ms", "ms", 10.0, 1000.0, 100.0, "log", "comp", "compressor release time"),
    ParamSpec("comp_knee_db", "dB", 0.0, 12.0, 0.0, "lin", "comp", "compressor knee width"),
    ParamSpec("comp_makeup_db", "dB", 0.0, 24.0, 0.0, "lin", "comp", "compressor make-up gain"),
    ParamSpec("out_gain_db", "dB", -36.0, 36.0, 0.0, "lin", "gain", "output gain"),
)

EQ_BANDS = tuple((prefix, kind) for prefix, kind, *_ in _BANDS)


class ParamSpace:
    """The ordered parameter specs at one sample rate."""

    def __init__(self, sample_rate: float):
        if not (sample_rate > 0 and math.isfinite(sample_rate)):
            raise InvalidParameterError(f"sample rate must be a positive number, got {sample_rate!r}")
        self.sample_rate = float(sample_rate)
        self.specs: tuple[ParamSpec, ...] = tuple(_eq_specs(sample_rate)) + _DYNAMICS
        self.names: tuple[str, ...] = tuple(s.name for s in self.specs)
        self._by_name = {s.name: s for s in self.specs}

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, name: str) -> ParamSpec:
        return self._by_name[name]

    def defaults(self) -> dict[str, float]:
        """Neutral settings: flat EQ, no compression, unity gain."""
        return {s.name: s.default for s in self.specs}

    def validate(self, params: Mapping[str, float], clip: bool = False) -> dict[str, float]:
        """Return a complete, checked copy of ``params`` (missing names take defaults).

        Unknown names and non-finite values are errors. Out-of-range values are errors,
        or are clipped into range when ``clip`` is true.
        """
        unknown = set(params) - set(self.names)
        if unknown:
            raise InvalidParameterError(
                f"unknown parameter(s) {sorted(unknown)}; known: {', '.join(self.names)}")
        out = self.defaults()
        for name, value in params.items():
            spec = self._by_name[name]
            value = float(value)
            if not math.isfinite(value):
                raise InvalidParameterError(f"parameter {name} must be finite, got {value}")
            if not (spec.min - 1e-9 <= value <= spec.max + 1e-9):
                if not clip:
                    raise InvalidParameterError(
                        f"parameter {name}={value:g} {spec.unit} is outside "
                        f"[{spec.min:g}, {spec.max:g}] at {self.sample_rate:g} Hz")
                value = min(max(value, spec.min), spec.max)
            out[name] = value
        return out

    def to_vector(self, params: Mapping[str, float]) -> np.ndarray:
        """Physical values in spec order, shape (n_params,)."""
        full = self.validate(params)
        return np.array([full[n] for n in self.names], dtype=np.float64)

    def from_vector(self, vector: Iterable[float]) -> dict[str, float]:
        values = [float(v) for v in vector]
        if len(values) != len(self.specs):
            raise InvalidParameterError(f"expected {len(self.specs)} values, got {len(values)}")
        return dict(zip(self.names, values))

    def normalise(self, params: Mapping[str, float]) -> np.ndarray:
        """Physical -> [0, 1] per spec scale, shape (n_params,)."""
        full = self.validate(params)
        return np.array([s.normalise(full[s.name]) for s in self.specs], dtype=np.float64)

    def denormalise(self, u: Iterable[float]) -> dict[str, float]:
        """[0, 1] -> physical values (inputs are clipped to [0, 1])."""
        values = [min(max(float(x), 0.0), 1.0) for x in u]
        if len(values) != len(self.specs):
            raise InvalidParameterError(f"expected {len(self.specs)} values, got {len(values)}")
        return {s.name: s.denormalise(x) for s, x in zip(self.specs, values)}

    def bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(min, max, is_log) arrays in spec order, for vectorised (torch) mapping."""
        lo = np.array([s.min for s in self.specs])
        hi = np.array([s.max for s in self.specs])
        is_log = np.array([s.scale == "log" for s in self.specs])
        return lo, hi, is_log

    def denormalise_batch(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """Vectorised :meth:`denormalise` (no clipping): ``(batch, n_params)`` in [0, 1] ->
        dict of physical ``(batch,)`` float64 arrays."""
        u = np.asarray(u, dtype=np.float64)
        return denormalise_columns(u, *self.bounds(), self.names)


def denormalise_columns(u, lo, hi, is_log, names, xp=np) -> dict:
    """Normalised ``(batch, n_params)`` -> ``{name: (batch,) physical values}``, given the
    :meth:`ParamSpace.bounds` as arrays of ``u``'s namespace ``xp`` (numpy or torch: the
    differentiable chain maps its tensors with the same formula)."""
    lin = lo + u * (hi - lo)
    # log-mapped specs have positive bounds; feed 1.0 elsewhere so no NaN reaches autograd
    log_lo, log_hi = xp.log(xp.where(is_log, lo, 1.0)), xp.log(xp.where(is_log, hi, 1.0))
    values = xp.where(is_log, xp.exp(log_lo + u * (log_hi - log_lo)), lin)
    return {name: values[:, i] for i, name in enumerate(names)}


def fingerprint() -> str:
    """A short hash of the space's definition (names, units, scales, nominal ranges).

    Models store it and refuse to load when it differs from the code's.
    """
    definition = {
        "bands": [[p, k, lo, hi, d] for p, k, lo, hi, d in _BANDS],
        "eq_gain_db": EQ_GAIN_DB,
        "q": [Q_MIN, Q_MAX],
        "top": [TOP_FRACTION, TOP_MAX_HZ],
        "dynamics": [asdict(s) for s in _DYNAMICS],
        "names": list(ParamSpace(44100).names),
    }
    blob = json.dumps(definition, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
