"""Fit ZamEQ2 settings to a target EQ curve, analytically (no plugin is loaded).

The black-box method starts its search here: instead of snapping an estimate's RBJ bands
to the nearest settings ZamEQ2 can play (which can move a wide high peak by several dB,
see :mod:`afxmatch.render.zam_map`), all six bands are fitted jointly, by least squares on
a log-frequency grid, so that the plugin chain's response follows the estimate's RBJ
response (``target_db``).

The unknowns are afxmatch's own parameters, restricted to what the plugins render:
per band frequency (log) and gain, and each peak's Q (log); a shelf's Q is not free
(``zam_map.shelf_q(gain)``). The plugin response of a parameter set is
:func:`chain_db` (ZamEQ2's shelves are exact RBJ shelves; its peaks are Orfanidis' design
at the bandwidth :func:`zam_map.peak_bandwidth` gives, which matches the rendered plugin
within 0.01 dB). The residual has two parts, both weighted by ``weights``:

- ``chain_db(p) - target_db``: how well the plugins follow the target;
- ``sqrt(consistency) * (zam_peak(p) - rbj_peak(p))`` for each peak: how far the plugin
  band is from the RBJ band the report will print for it. This keeps the fit where the
  report's parameters describe what the plugins do (the acceptance is 0.5 dB); the caller
  still applies :func:`vst3_backend.project` to guarantee it.

Several starts are tried (the target's own parameters, and the same with each peak's Q
raised to where it is representable); the lowest cost wins.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..dsp.numpy_chain import rbj_coefficients
from ..params import EQ_BANDS, ParamSpace
from . import zam_map

FIT_LOW_HZ, FIT_HIGH_HZ, FIT_POINTS = 30.0, 16000.0, 80
LOW_WEIGHT_BELOW_HZ, LOW_WEIGHT = 50.0, 0.3   # the style distance starts at 50 Hz
CONSISTENCY = 100.0    # weight of each dB a band (or the chain) passes SLACK_DB by
SLACK_DB = 0.3         # plugin-vs-RBJ difference left free (project() allows 0.4)
MAX_NFEV = 400


def fit_grid(sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """``(freqs, weights)``: log-spaced fit frequencies (30 Hz-16 kHz, below 0.45 sr) and
    their weights (lower below 50 Hz, where the style distance does not look)."""
    freqs = np.geomspace(FIT_LOW_HZ, min(FIT_HIGH_HZ, 0.45 * sample_rate), FIT_POINTS)
    return freqs, np.where(freqs < LOW_WEIGHT_BELOW_HZ, LOW_WEIGHT, 1.0)


def _db(b: np.ndarray, a: np.ndarray, z: np.ndarray) -> np.ndarray:
    """dB of ``(n, 3)`` biquads at ``z = exp(-j omega)`` -> ``(n, n_freq)``."""
    num = b[:, :1] + b[:, 1:2] * z + b[:, 2:3] * z * z
    den = a[:, :1] + a[:, 1:2] * z + a[:, 2:3] * z * z
    return 20.0 * np.log10(np.abs(num) / np.abs(den))


class ChainModel:
    """Analytic dB responses at fixed frequencies: the ZamEQ2 chain and the RBJ bands."""

    def __init__(self, sample_rate: float, freqs: np.ndarray):
        self.sr = float(sample_rate)
        self.z = np.exp(-1j * 2.0 * np.pi * np.asarray(freqs, dtype=np.float64) / self.sr)[None]

    def rbj(self, kind: str, f, g, q) -> np.ndarray:
        return _db(*rbj_coefficients(kind, f, g, q, self.sr), self.z)

    def bands(self, params: Mapping[str, float]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{prefix: (zam_db, rbj_db)}`` of each band as the plugins play ``params``
        (frequency, gain and bandwidth clipped to ZamEQ2's ranges) and as RBJ draws it."""
        out = {}
        for prefix, kind in EQ_BANDS:
            f = zam_map.clip_freq(params[f"{prefix}_freq_hz"])
            g = zam_map.safe_gain(params[f"{prefix}_gain_db"])
            if kind == "peak":
                q = float(params[f"{prefix}_q"])
                bw = min(max(zam_map.peak_bandwidth(f, q, self.sr), zam_map.BW_RANGE[0]), zam_map.BW_RANGE[1])
                b, a = zam_map.orfanidis_peak(f, g, bw, self.sr)
                zam = _db(b[None], a[None], self.z)[0]
                rbj = self.rbj("peak", [float(params[f"{prefix}_freq_hz"])],
                               [float(params[f"{prefix}_gain_db"])], [q])[0]
            else:
                zam = self.rbj(kind, [f], [g], [zam_map.shelf_q(g)])[0]
                rbj = zam
            out[prefix] = (zam, rbj)
        return out

    def chain_db(self, params: Mapping[str, float]) -> np.ndarray:
        return sum(z for z, _ in self.bands(params).values())


def chain_db(params: Mapping[str, float], sample_rate: float, freqs: np.ndarray) -> np.ndarray:
    """The ZamEQ2 chain's analytic dB response for afxmatch ``params`` at ``freqs``."""
    return ChainModel(sample_rate, freqs).chain_db(params)


def _layout(space: ParamSpace):
    """Fitted names, their log flags and bounds (the spec's range within ZamEQ2's)."""
    names, logs, lo, hi = [], [], [], []
    for prefix, kind in EQ_BANDS:
        f, g = space[f"{prefix}_freq_hz"], space[f"{prefix}_gain_db"]
        f_lo, f_hi = max(f.min, zam_map.FREQ_RANGE[0]), min(f.max, zam_map.FREQ_RANGE[1])
        if f_lo >= f_hi:
            f_lo = f_hi * 0.5
        entries = [(f"{prefix}_freq_hz", True, f_lo, f_hi),
                   (f"{prefix}_gain_db", False, max(g.min, zam_map.GAIN_RANGE[0]), min(g.max, zam_map.GAIN_RANGE[1]))]
        if kind == "peak":
            q = space[f"{prefix}_q"]
            entries.append((f"{prefix}_q", True, q.min, q.max))
        for n, is_log, a, b in entries:
            names.append(n)
            logs.append(is_log)
            lo.append(math.log(a) if is_log else a)
            hi.append(math.log(b) if is_log else b)
    return names, np.array(logs), np.array(lo), np.array(hi)


def fit_eq(target_db: np.ndarray, start: Mapping[str, float], sample_rate: float,
           freqs: np.ndarray, weights: np.ndarray | None = None, consistency: float = CONSISTENCY,
           slack_db: float = SLACK_DB,
           extra_starts: list[Mapping[str, float]] | None = None) -> tuple[dict[str, float], dict]:
    """Parameters (a full afxmatch set: ``start`` with its EQ replaced) whose ZamEQ2 chain
    follows ``target_db`` at ``freqs``; shelf Qs are ``zam_map.shelf_q(gain)``.

    Starts from ``start`` and each of ``extra_starts``; returns ``(params, info)`` with the
    weighted RMS error (dB) of the chain to the target and the worst plugin-vs-RBJ
    difference of the result, for the report.
    """
    from scipy.optimize import least_squares

    space = ParamSpace(sample_rate)
    model = ChainModel(sample_rate, freqs)
    w = np.ones_like(freqs) if weights is None else np.asarray(weights, dtype=np.float64)
    sw = np.sqrt(w / w.sum())
    names, logs, lo, hi = _layout(space)
    peaks = [prefix for prefix, kind in EQ_BANDS if kind == "peak"]
    shelves = [prefix for prefix, kind in EQ_BANDS if kind != "peak"]
    target = np.asarray(target_db, dtype=np.float64)
    hinge = math.sqrt(consistency / len(freqs))

    def params_of(v: np.ndarray) -> dict[str, float]:
        p = dict(start)
        for n, is_log, val in zip(names, logs, v):
            p[n] = math.exp(val) if is_log else float(val)
        for prefix in shelves:
            p[f"{prefix}_q"] = zam_map.shelf_q(zam_map.safe_gain(p[f"{prefix}_gain_db"]))
        return p

    def residual(v: np.ndarray) -> np.ndarray:
        bands = model.bands(params_of(v))
        total = sum(z for z, _ in bands.values())
        rbj_total = sum(r for _, r in bands.values())
        parts = [sw * (total - target), hinge * np.maximum(np.abs(total - rbj_total) - slack_db, 0.0)]
        parts += [hinge * np.maximum(np.abs(bands[b][0] - bands[b][1]) - slack_db, 0.0) for b in peaks]
        return np.concatenate(parts)

    def vector(p: Mapping[str, float]) -> np.ndarray:
        v = np.array([math.log(float(p[n])) if is_log else float(p[n]) for n, is_log in zip(names, logs)])
        return np.clip(v, lo + 1e-9, hi - 1e-9)

    best = None
    for s in [start, *(extra_starts or [])]:
        fit = least_squares(residual, vector(s), bounds=(lo, hi), x_scale=np.where(logs, 0.2, 1.0),
                            max_nfev=MAX_NFEV, diff_step=1e-6)
        if best is None or fit.cost < best.cost:
            best = fit
    params = params_of(best.x)
    bands = model.bands(params)
    total = sum(z for z, _ in bands.values())
    info = {"fit_rms_db": round(float(np.sqrt(np.sum(sw ** 2 * (total - target) ** 2))), 3),
            "fit_max_db": round(float(np.max(np.abs(total - target))), 3),
            "plugin_vs_rbj_max_db": round(float(np.max(np.abs(total - sum(r for _, r in bands.values())))), 3),
            "starts": 1 + len(extra_starts or [])}
    return params, info
