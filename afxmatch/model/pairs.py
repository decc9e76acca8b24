"""Synthetic style-transfer training pairs (DeepAFx-ST protocol), numpy/scipy/pedalboard only.

This module deliberately imports nothing from the rest of ``afxmatch`` and nothing from
torch: the corruptions and style effects here are an *independent* implementation from the
differentiable renderer the model is trained through.

Protocol (per pair, ``L = config.length`` samples):

1. Take a non-silent excerpt of ``2 L`` samples (random offsets are retried until the
   excerpt's RMS exceeds ``config.min_rms_db``; a full scan is the fallback; silent or too
   short audio raises :class:`SilentAudioError` / ``ValueError``) and peak-normalise it to
   ``config.peak_db`` (-12 dBFS).
2. *Input branch* (simulates the recording to be processed): with ``p_input_eq`` a random
   parametric EQ (low shelf, four peaking bands, high shelf: RBJ-cookbook biquads run by
   ``scipy.signal.sosfilt``, or pedalboard's filters with ``eq_backend="pedalboard"``), then
   with ``p_input_expander`` a downward expander (numpy, below).
3. *Style branch* (an independent draw, the "production style"): with ``p_style_eq`` a random
   EQ, then with ``p_style_compressor`` a compressor.  The compressor is **our own numpy
   implementation with a soft knee** (Giannoulis et al. 2012 log-domain gain computer +
   smooth decoupled peak detector, vectorised: the recursive peak hold is a running maximum
   in the log domain, the attack smoothing is ``scipy.signal.lfilter``; the detector runs
   on 8-sample block peaks with linear gain ramps, for speed); pedalboard's Compressor was
   not used because it has no knee.
4. Both branch outputs (each the whole ``2 L`` excerpt through *one* effect instance) are
   peak-normalised to -12 dBFS again, then split into halves A (first L) / B (last L)::

       input     = input_branch(excerpt)[:, :L]     # corrupted A
       target    = style_branch(excerpt)[:, :L]     # A with the style
       reference = style_branch(excerpt)[:, L:]     # B with the same style instance

All audio arrays are float32 with shape ``(channels, samples)``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import pedalboard
import soundfile as sf
from scipy.signal import lfilter, resample_poly, sosfilt

__all__ = [
    "PairConfig",
    "SilentAudioError",
    "find_excerpt",
    "peak_normalize",
    "sample_eq_params",
    "apply_eq",
    "biquad_sos",
    "sample_compressor_params",
    "compress",
    "sample_expander_params",
    "expand",
    "make_pair",
    "load_audio",
    "PairDataset",
]


class SilentAudioError(ValueError):
    """No excerpt of the requested length reaches the RMS threshold."""


@dataclass
class PairConfig:
    """Settings of the pair generator (ranges are inclusive ``(low, high)`` tuples).

    Frequencies given as ``None`` mean ``nyquist_fraction * sample_rate / 2``.
    Levels are dBFS; the effect thresholds act on the excerpt after it has been
    peak-normalised to ``peak_db``.
    """

    sample_rate: int = 44100
    length: int = 131072  # L, samples per returned half
    peak_db: float = -12.0
    min_rms_db: float = -50.0  # excerpt RMS threshold (all channels, before normalisation)
    max_tries: int = 20  # random offsets tried before a full scan
    # if set, each half must also pass min_rms_db and the halves' RMS may differ by at most
    # this many dB (the reference's level then says something about the target's); None =
    # off, as when the shipped model's training pairs were made
    half_balance_db: Optional[float] = None
    # if True, half B of the clean excerpt is scaled to half A's integrated loudness
    # (BS.1770 via pyloudnorm) before the effects: the reference and the target are then
    # one production at one level, as in a continuous recording (DeepAFx-ST's DAPS
    # speech); stitched clips of different recording levels otherwise make the
    # reference's loudness say nothing about the target's. Off for the shipped training.
    equal_half_loudness: bool = False

    # branch probabilities
    p_input_eq: float = 0.75
    p_input_expander: float = 0.1
    p_style_eq: float = 0.75
    p_style_compressor: float = 0.75

    # random parametric EQ
    eq_gain_db: float = 24.0  # gains drawn in [-eq_gain_db, +eq_gain_db]
    eq_gain_distribution: str = "uniform"  # "uniform" (paper) or "normal" (sd = eq_gain_db/3, clipped)
    peak_bands_hz: tuple = ((200.0, 2000.0), (800.0, 4000.0), (2000.0, 8000.0), (4000.0, None))
    peak_q: tuple = (0.1, 10.0)  # log-uniform
    low_shelf_hz: tuple = (20.0, 200.0)
    high_shelf_hz: tuple = (4000.0, None)
    shelf_q: tuple = (0.5, 1.0)  # log-uniform
    nyquist_fraction: float = 0.9
    eq_backend: str = "scipy"  # "scipy" (RBJ biquads + sosfilt) or "pedalboard"

    # compressor (style branch), own numpy implementation with soft knee
    comp_threshold_db: tuple = (-64.0, -12.0)
    comp_ratio: tuple = (1.0, 11.0)
    comp_attack_ms: tuple = (0.5, 50.0)
    comp_release_extra_ms: tuple = (0.0, 200.0)  # release = attack + this
    comp_knee_db: tuple = (0.0, 12.0)
    comp_makeup_db: tuple = (0.0, 6.0)

    # downward expander (input branch)
    exp_threshold_db: tuple = (-50.0, -25.0)
    exp_ratio: tuple = (1.5, 4.0)
    exp_attack_ms: tuple = (0.5, 10.0)
    exp_release_ms: tuple = (20.0, 300.0)
    exp_range_db: float = 40.0  # maximum attenuation

    def replace(self, **changes) -> "PairConfig":
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------
# excerpt selection and levels
# --------------------------------------------------------------------------------------

def _rms_db(x: np.ndarray) -> float:
    ms = float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0
    return 10.0 * math.log10(ms) if ms > 0 else -math.inf


def find_excerpt(audio: np.ndarray, n: int, rng: np.random.Generator,
                 min_rms_db: float = -50.0, max_tries: int = 20,
                 half_balance_db: Optional[float] = None) -> np.ndarray:
    """Return a view ``audio[:, s:s+n]`` whose RMS (over all channels) is > ``min_rms_db``.

    With ``half_balance_db``, both halves of the window must also exceed ``min_rms_db`` and
    their RMS levels may differ by at most ``half_balance_db`` dB.
    ``audio``: (channels, samples).  Random offsets are tried ``max_tries`` times; after
    that all hop-spaced windows are scanned and one of the valid ones is picked at random.
    Raises ``ValueError`` if the audio is shorter than ``n`` samples and
    :class:`SilentAudioError` if no window qualifies.
    """
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {audio.shape}")
    total = audio.shape[1]
    if total < n:
        raise ValueError(f"audio has {total} samples, an excerpt needs {n}")
    last = total - n
    for _ in range(max(0, max_tries)):
        s = int(rng.integers(0, last + 1))
        w = audio[:, s:s + n]
        if _rms_db(w) > min_rms_db and (half_balance_db is None or _balanced(
                _rms_db(w[:, :n // 2]), _rms_db(w[:, n // 2:]), min_rms_db, half_balance_db)):
            return w
    # full scan: window energies from a cumulative sum of the per-sample mean square
    hop = max(1, n // 16)
    power = np.mean(np.square(audio, dtype=np.float64), axis=0)
    csum = np.concatenate([[0.0], np.cumsum(power)])
    starts = np.arange(0, last + 1, hop)
    if starts[-1] != last:
        starts = np.append(starts, last)
    ms = (csum[starts + n] - csum[starts]) / n
    thr = 10.0 ** (min_rms_db / 10.0)
    good = ms > thr
    if half_balance_db is not None:
        h = n // 2
        a_db, b_db = (10.0 * np.log10(np.maximum((csum[e] - csum[b]) / (e - b), 1e-30))
                      for b, e in ((starts, starts + h), (starts + h, starts + n)))
        good &= _balanced(a_db, b_db, min_rms_db, half_balance_db)
    ok = np.flatnonzero(good)
    if len(ok) == 0:
        best = 10.0 * math.log10(max(float(ms.max()), 1e-30))
        raise SilentAudioError(
            f"audio is silent: no {n}-sample excerpt has RMS above {min_rms_db:.1f} dBFS "
            + (f"in both halves within {half_balance_db:g} dB of each other "
               if half_balance_db is not None else "")
            + 
            f"(loudest excerpt {best:.1f} dBFS, {total} samples)")
    s = int(starts[ok[int(rng.integers(len(ok)))]])
    return audio[:, s:s + n]


def _equalise_halves(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """``x`` with its second half scaled to the first half's integrated loudness (a copy)."""
    import pyloudnorm

    h = x.shape[1] // 2
    meter = pyloudnorm.Meter(sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns on clipping; levels only here
        la, lb = (meter.integrated_loudness(np.ascontiguousarray(v.T, dtype=np.float64))
                  for v in (x[:, :h], x[:, h:]))
    y = np.array(x, dtype=np.float32)
    if np.isfinite(la) and np.isfinite(lb):
        y[:, h:] *= np.float32(10.0 ** ((la - lb) / 20.0))
    return y


def _balanced(a_db, b_db, min_db: float, balance_db: float):
    """Both half levels above ``min_db`` and within ``balance_db`` of each other."""
    return (a_db > min_db) & (b_db > min_db) & (np.abs(np.subtract(a_db, b_db)) <= balance_db)


def peak_normalize(x: np.ndarray, peak_db: float = -12.0) -> np.ndarray:
    """Scale ``x`` (any shape) so that max |x| equals ``peak_db`` dBFS (float32 copy)."""
    p = float(np.max(np.abs(x))) if x.size else 0.0
    if not np.isfinite(p) or p <= 0.0:
        return np.array(x, dtype=np.float32, copy=True)
    return (x * np.float32(10.0 ** (peak_db / 20.0) / p)).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------
# random parametric EQ (pedalboard biquads)
# --------------------------------------------------------------------------------------

def _hz(v, cfg: PairConfig) -> float:
    return cfg.nyquist_fraction * cfg.sample_rate / 2.0 if v is None else float(v)


def _log_uniform(rng, lo, hi) -> float:
    lo, hi = float(lo), float(hi)
    if hi <= lo:
        return lo
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _uniform(rng, rng_tuple) -> float:
    lo, hi = float(rng_tuple[0]), float(rng_tuple[1])
    return lo if hi <= lo else float(rng.uniform(lo, hi))


def _gain(rng, cfg: PairConfig) -> float:
    g = cfg.eq_gain_db
    if cfg.eq_gain_distribution == "uniform":
        return float(rng.uniform(-g, g))
    if cfg.eq_gain_distribution == "normal":
        return float(np.clip(rng.normal(0.0, g / 3.0), -g, g))
    raise ValueError(f"unknown eq_gain_distribution {cfg.eq_gain_distribution!r}")


def sample_eq_params(rng: np.random.Generator, cfg: PairConfig) -> list[dict]:
    """Draw a 6-band EQ: low shelf, 4 peaking filters, high shelf.

    Returns a list of ``dict(type, freq, gain_db, q)``; frequencies are log-uniform in
    their band, Q log-uniform, gains from ``cfg.eq_gain_distribution``.
    """
    bands = []
    lo, hi = _hz(cfg.low_shelf_hz[0], cfg), _hz(cfg.low_shelf_hz[1], cfg)
    bands.append(dict(type="low_shelf", freq=_log_uniform(rng, lo, hi), gain_db=_gain(rng, cfg),
                      q=_log_uniform(rng, *cfg.shelf_q)))
    for b_lo, b_hi in cfg.peak_bands_hz:
        lo, hi = _hz(b_lo, cfg), _hz(b_hi, cfg)
        bands.append(dict(type="peak", freq=_log_uniform(rng, lo, hi), gain_db=_gain(rng, cfg),
                          q=_log_uniform(rng, *cfg.peak_q)))
    lo, hi = _hz(cfg.high_shelf_hz[0], cfg), _hz(cfg.high_shelf_hz[1], cfg)
    bands.append(dict(type="high_shelf", freq=_log_uniform(rng, lo, hi), gain_db=_gain(rng, cfg),
                      q=_log_uniform(rng, *cfg.shelf_q)))
    return bands


_PB_FILTERS = dict(low_shelf=pedalboard.LowShelfFilter, peak=pedalboard.PeakFilter,
                   high_shelf=pedalboard.HighShelfFilter)


def biquad_sos(band: dict, sample_rate: int) -> np.ndarray:
    """RBJ Audio-EQ-Cookbook coefficients of one band as a (6,) SOS row [b0 b1 b2 1 a1 a2].

    ``band``: dict(type="peak"|"low_shelf"|"high_shelf", freq, gain_db, q); shelves use the
    cookbook's Q form.  These are the same formulas JUCE (pedalboard) uses.
    """
    A = 10.0 ** (float(band["gain_db"]) / 40.0)
    w0 = 2.0 * math.pi * float(band["freq"]) / float(sample_rate)
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2.0 * float(band["q"]))
    kind = band["type"]
    if kind == "peak":
        b = (1.0 + alpha * A, -2.0 * cw, 1.0 - alpha * A)
        a = (1.0 + alpha / A, -2.0 * cw, 1.0 - alpha / A)
    elif kind in ("low_shelf", "high_shelf"):
        sa = 2.0 * math.sqrt(A) * alpha
        s = 1.0 if kind == "low_shelf" else -1.0  # the high shelf mirrors the cos terms
        b = (A * ((A + 1) - s * (A - 1) * cw + sa),
             s * 2.0 * A * ((A - 1) - s * (A + 1) * cw),
             A * ((A + 1) - s * (A - 1) * cw - sa))
        a = ((A + 1) + s * (A - 1) * cw + sa,
             -s * 2.0 * ((A - 1) + s * (A + 1) * cw),
             (A + 1) + s * (A - 1) * cw - sa)
    else:
        raise ValueError(f"unknown band type {kind!r}")
    return np.array([b[0] / a[0], b[1] / a[0], b[2] / a[0], 1.0, a[1] / a[0], a[2] / a[0]])


def apply_eq(x: np.ndarray, bands: Sequence[dict], sample_rate: int,
             backend: str = "scipy") -> np.ndarray:
    """Apply the EQ bands (see :func:`sample_eq_params`) to ``x`` (channels, samples).

    All channels get the same filters.  ``backend="scipy"``: RBJ biquads run by
    ``scipy.signal.sosfilt`` in float64 (about 2.5x faster); ``"pedalboard"``: pedalboard's
    PeakFilter / LowShelfFilter / HighShelfFilter (JUCE, float32).  Both give the same
    response.  Returns float32 (channels, samples).
    """
    if not bands:
        return np.array(x, dtype=np.float32, copy=True)
    if backend == "scipy":
        sos = np.stack([biquad_sos(b, sample_rate) for b in bands])
        return sosfilt(sos, np.asarray(x, dtype=np.float64), axis=-1).astype(np.float32)
    if backend == "pedalboard":
        board = pedalboard.Pedalboard([
            _PB_FILTERS[b["type"]](cutoff_frequency_hz=float(b["freq"]),
                                   gain_db=float(b["gain_db"]), q=float(b["q"]))
            for b in bands
        ])
        y = board(np.ascontiguousarray(x, dtype=np.float32), float(sample_rate), reset=True)
        return np.asarray(y, dtype=np.float32).reshape(x.shape)
    raise ValueError(f"unknown EQ backend {backend!r}")


# --------------------------------------------------------------------------------------
# dynamics: compressor and expander (numpy, vectorised)
# --------------------------------------------------------------------------------------

def _coef(ms: float, rate: float) -> float:
    """One-pole coefficient exp(-1 / (tau * rate)) for a time constant in ms."""
    return math.exp(-1.0 / (max(float(ms), 1e-3) * 1e-3 * rate))


def _decoupled_peak(v: np.ndarray, alpha_release: float, alpha_attack: float) -> np.ndarray:
    """Smooth decoupled peak detector on a non-negative 1-D signal ``v`` (float64 out).

    ``y1[n] = max(v[n], a_R * y1[n-1])`` is computed without a Python loop as a running
    maximum in the log domain (``log y1[n] = n log a_R + max_k<=n (log v[k] - k log a_R)``),
    then ``y[n] = a_A y[n-1] + (1 - a_A) y1[n]`` with ``scipy.signal.lfilter``.
    """
    n = np.arange(v.shape[-1], dtype=np.float64)
    la = math.log(alpha_release)  # < 0
    z = np.log(np.maximum(v.astype(np.float64), 1e-30))
    z -= n * la
    np.maximum.accumulate(z, out=z)
    z += n * la
    y1 = np.exp(z, out=z)
    return lfilter([1.0 - alpha_attack], [1.0, -alpha_attack], y1)


def _block_peak(x: np.ndarray, block: int) -> np.ndarray:
    """max over channels and over blocks of ``block`` samples of |x| -> (ceil(n / block),)."""
    peak = np.max(np.abs(x), axis=0)
    n = peak.shape[0]
    nb = -(-n // block)
    if nb * block != n:
        peak = np.concatenate([peak, np.zeros(nb * block - n, peak.dtype)])
    return peak.reshape(nb, block).max(axis=1)


def _to_audio_rate(g_db: np.ndarray, n: int, block: int) -> np.ndarray:
    """Control-rate gain in dB -> per-sample linear gain, linear ramps within each block
    (from the previous block's value to the block's own value at its last sample)."""
    g = g_db.astype(np.float32)
    if block == 1:
        return np.power(np.float32(10.0), g / np.float32(20.0))[:n]
    prev = np.concatenate([g[:1], g[:-1]])
    w = (np.arange(1, block + 1, dtype=np.float32) / np.float32(block))[None, :]
    ramp = (prev[:, None] + (g - prev)[:, None] * w).reshape(-1)[:n]
    return np.exp(ramp * np.float32(math.log(10.0) / 20.0))


def sample_compressor_params(rng: np.random.Generator, cfg: PairConfig) -> dict:
    attack = _log_uniform(rng, *cfg.comp_attack_ms)
    return dict(
        threshold_db=_uniform(rng, cfg.comp_threshold_db),
        ratio=_uniform(rng, cfg.comp_ratio),
        attack_ms=attack,
        release_ms=attack + _uniform(rng, cfg.comp_release_extra_ms),
        knee_db=_uniform(rng, cfg.comp_knee_db),
        makeup_db=_uniform(rng, cfg.comp_makeup_db),
    )


def compressor_gain_db(level_db: np.ndarray, threshold_db: float, ratio: float,
                       knee_db: float) -> np.ndarray:
    """Static gain reduction (>= 0 dB) of a soft-knee compressor for input levels in dB
    (Giannoulis et al. 2012: quadratic knee of width ``knee_db`` centred on the threshold)."""
    over = level_db - threshold_db
    slope = 1.0 - 1.0 / max(float(ratio), 1.0)
    gr = np.where(over > 0.0, slope * over, 0.0)
    if knee_db > 0.0:
        w = float(knee_db)
        in_knee = np.abs(over) <= w / 2.0
        gr = np.where(in_knee, slope * np.square(over + w / 2.0) / (2.0 * w), gr)
    return gr


def compress(x: np.ndarray, sample_rate: int, threshold_db: float, ratio: float,
             attack_ms: float, release_ms: float, knee_db: float = 0.0,
             makeup_db: float = 0.0, block: int = 8) -> np.ndarray:
    """Feed-forward soft-knee compressor (channels linked), ``x`` float (channels, samples).

    The level is the peak of ``max_c |x|`` over blocks of ``block`` samples (block=1: per
    sample); the static curve's gain reduction (dB) is smoothed by the decoupled peak
    detector (attack / release time constants), and the gain is ramped linearly across each
    block.  Returns float32 (channels, samples).
    """
    rate = sample_rate / block
    level_db = 20.0 * np.log10(np.maximum(_block_peak(x, block), 1e-10))
    gr = compressor_gain_db(level_db, threshold_db, ratio, knee_db)
    eps = 1e-6
    gr_s = _decoupled_peak(gr + eps, _coef(release_ms, rate), _coef(attack_ms, rate)) - eps
    gain = _to_audio_rate(makeup_db - np.maximum(gr_s, 0.0), x.shape[-1], block)
    return (x * gain[None, :]).astype(np.float32, copy=False)


def sample_expander_params(rng: np.random.Generator, cfg: PairConfig) -> dict:
    return dict(
        threshold_db=_uniform(rng, cfg.exp_threshold_db),
        ratio=_uniform(rng, cfg.exp_ratio),
        attack_ms=_log_uniform(rng, *cfg.exp_attack_ms),
        release_ms=_log_uniform(rng, *cfg.exp_release_ms),
        range_db=float(cfg.exp_range_db),
    )


def expand(x: np.ndarray, sample_rate: int, threshold_db: float, ratio: float,
           attack_ms: float, release_ms: float, range_db: float = 40.0,
           block: int = 8) -> np.ndarray:
    """Downward expander (channels linked), ``x`` float (channels, samples).

    The envelope is a smooth decoupled peak detector on the block peak of ``max_c |x|``
    (fast attack, slow release); below the threshold the gain is
    ``-(ratio - 1) * (threshold - env_db)`` dB, limited to ``-range_db``.
    Returns float32 (channels, samples).
    """
    rate = sample_rate / block
    env = _decoupled_peak(_block_peak(x, block), _coef(release_ms, rate), _coef(attack_ms, rate))
    env_db = 20.0 * np.log10(np.maximum(env, 1e-10))
    att = np.clip((max(float(ratio), 1.0) - 1.0) * (threshold_db - env_db), 0.0, range_db)
    gain = _to_audio_rate(-att, x.shape[-1], block)
    return (x * gain[None, :]).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------
# pairs
# --------------------------------------------------------------------------------------

def _branch(x: np.ndarray, rng: np.random.Generator, cfg: "PairConfig", p_eq: float,
            p_dyn: float, dyn_name: str, sample_dyn, apply_dyn) -> tuple[np.ndarray, dict]:
    """Random EQ with probability ``p_eq``, then a dynamics effect with ``p_dyn``."""
    params: dict = {}
    sr = int(cfg.sample_rate)
    if rng.random() < p_eq:
        params["eq"] = sample_eq_params(rng, cfg)
        x = apply_eq(x, params["eq"], sr, cfg.eq_backend)
    if rng.random() < p_dyn:
        params[dyn_name] = sample_dyn(rng, cfg)
        x = apply_dyn(x, sr, **params[dyn_name])
    return x, params


def make_pair(audio: np.ndarray, rng: np.random.Generator, config: Optional[PairConfig] = None,
              return_params: bool = False) -> dict:
    """Make one (input, reference, target) example from ``audio``.

    Parameters
    ----------
    audio : float array (channels, samples) or (samples,) at ``config.sample_rate``;
        at least ``2 * config.length`` samples.
    rng : numpy Generator (the only source of randomness: same seed -> same pair).
    config : PairConfig (defaults if None).
    return_params : also return ``params`` (the drawn effect parameters, JSON-able).

    Returns
    -------
    dict with ``input``, ``reference``, ``target``: float32 arrays of shape
    (channels, config.length).  ``input`` and ``target`` are the same audio (excerpt half
    A), ``reference`` is half B.  Each branch's full 2L output was peak-normalised to
    ``config.peak_db`` before splitting, so ``max(peak(target), peak(reference))`` equals
    -12 dBFS and ``peak(input) <= -12 dBFS``.
    """
    cfg = config or PairConfig()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    L = int(cfg.length)
    exc = find_excerpt(x, 2 * L, rng, cfg.min_rms_db, cfg.max_tries, cfg.half_balance_db)
    if cfg.equal_half_loudness:
        exc = _equalise_halves(exc, cfg.sample_rate)
    exc = peak_normalize(exc, cfg.peak_db)

    # input branch corrupts the recording; the style branch is one effect instance over
    # the whole 2L excerpt, so target (first half) and reference (second half) share it
    y_in, p_in = _branch(exc, rng, cfg, cfg.p_input_eq, cfg.p_input_expander, "expander",
                         sample_expander_params, expand)
    y_st, p_st = _branch(exc, rng, cfg, cfg.p_style_eq, cfg.p_style_compressor, "compressor",
                         sample_compressor_params, compress)
    params: dict = {"input": p_in, "style": p_st}

    y_in = peak_normalize(y_in, cfg.peak_db)
    y_st = peak_normalize(y_st, cfg.peak_db)
    out = dict(
        input=np.ascontiguousarray(y_in[:, :L]),
        reference=np.ascontiguousarray(y_st[:, L:2 * L]),
        target=np.ascontiguousarray(y_st[:, :L]),
    )
    if return_params:
        out["params"] = params
    return out


# --------------------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------------------

def _resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return x
    g = math.gcd(int(sr), int(target))
    return resample_poly(x, target // g, sr // g, axis=-1).astype(np.float32)


def load_audio(path: str, sample_rate: int = 44100, channels: Optional[int] = None) -> np.ndarray:
    """Read a file as float32 (channels, samples) at ``sample_rate``.

    ``channels``: None keeps the file's channels, 1 mixes down to mono, 2 duplicates mono
    (and keeps the first two channels of multichannel files).
    """
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    x = np.ascontiguousarray(data.T)
    x = _resample(x, int(sr), int(sample_rate))
    if channels == 1 and x.shape[0] != 1:
        x = x.mean(axis=0, keepdims=True)
    elif channels == 2:
        x = np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x[:2]
    elif channels not in (None, 1, 2):
        raise ValueError(f"channels must be None, 1 or 2, got {channels}")
    return np.ascontiguousarray(x, dtype=np.float32)


class PairDataset:
    """Endless iterable of pairs from audio files (no torch needed).

    Files are read with soundfile, resampled to ``config.sample_rate`` if needed and cached
    in memory as float32 (channels, samples) arrays.  Each item is ``make_pair`` of a
    uniformly chosen file (or weighted by duration with ``weight_by_duration=True``):
    a dict of float32 arrays ``input``, ``reference``, ``target`` of shape
    (channels, config.length).  ``channels=None`` keeps each file's channel count (mono and
    stereo files then give different shapes), 1 forces mono, 2 forces stereo.

    Files shorter than ``2 * config.length`` are dropped at load time, files that turn out
    to be silent are dropped when first met.  For multi-process loaders give each worker
    its own stream: ``ds.stream(seed + worker_id)``; ``iter(ds)`` uses ``seed`` (fresh
    entropy when None).
    """

    def __init__(self, paths: Sequence[str], config: Optional[PairConfig] = None,
                 seed: Optional[int] = None, channels: Optional[int] = None,
                 weight_by_duration: bool = False, num_threads: int = 4):
        self.config = config or PairConfig()
        self.seed = seed
        self.channels = channels
        self.weight_by_duration = weight_by_duration
        need = 2 * self.config.length
        paths = list(paths)
        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as ex:
            arrays = list(ex.map(lambda p: load_audio(p, self.config.sample_rate, channels), paths))
        self.paths, self.audio, self.dropped = [], [], []
        for p, a in zip(paths, arrays):
            if a.shape[1] < need:
                self.dropped.append((p, f"{a.shape[1]} samples < {need}"))
                continue
            self.paths.append(p)
            self.audio.append(a)
        if not self.audio:
            raise ValueError(f"no usable audio among {len(paths)} files (need >= {need} samples)")
        self._bad: set[int] = set()

    @classmethod
    def from_manifest(cls, manifest: str, split: str = "train", kinds: Optional[Sequence[str]] = None,
                      sources: Optional[Sequence[str]] = None, **kwargs) -> "PairDataset":
        """Build from a corpus ``manifest.json`` (see ``scripts/make_corpus.py``)."""
        with open(manifest) as f:
            man = json.load(f)
        root = os.path.dirname(os.path.abspath(manifest))
        paths = [os.path.join(root, e["path"]) for e in man["files"]
                 if e["split"] == split and (kinds is None or e["kind"] in kinds)
                 and (sources is None or e["source"] in sources)]
        return cls(paths, **kwargs)

    def __len__(self) -> int:
        """Number of cached files (the iterator itself is endless)."""
        return len(self.audio)

    def sample(self, rng: np.random.Generator, return_params: bool = False) -> dict:
        """One pair from a random file (see :func:`make_pair` for the arrays)."""
        while True:
            alive = [i for i in range(len(self.audio)) if i not in self._bad]
            if not alive:
                raise SilentAudioError("all files of the dataset are silent")
            if self.weight_by_duration:
                w = np.array([self.audio[i].shape[1] for i in alive], dtype=np.float64)
                i = alive[int(rng.choice(len(alive), p=w / w.sum()))]
            else:
                i = alive[int(rng.integers(len(alive)))]
            try:
                pair = make_pair(self.audio[i], rng, self.config, return_params=return_params)
            except SilentAudioError as e:
                warnings.warn(f"dropping silent file {self.paths[i]}: {e}")
                self._bad.add(i)
                continue
            if return_params:
                pair["path"] = self.paths[i]
            return pair

    def stream(self, seed: Optional[int] = None) -> Iterator[dict]:
        rng = np.random.default_rng(seed)
        while True:
            yield self.sample(rng)

    def __iter__(self) -> Iterator[dict]:
        return self.stream(self.seed)


def _benchmark(n: int = 50, channels: int = 2, seed: int = 0) -> float:
    """Mean milliseconds per pair on a synthetic 60 s signal with default settings."""
    import time

    cfg = PairConfig()
    rng = np.random.default_rng(seed)
    sr = cfg.sample_rate
    t = np.arange(60 * sr) / sr
    audio = (0.1 * rng.standard_normal((channels, len(t))) *
             (1.0 + np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    make_pair(audio, rng, cfg)  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        make_pair(audio, rng, cfg)
    return (time.perf_counter() - t0) / n * 1e3


if __name__ == "__main__":
    for ch in (1, 2):
        print(f"{ch} channel(s): {_benchmark(channels=ch):.1f} ms per pair "
              f"(L={PairConfig().length})")
