"""The chain's formulas once, for numpy arrays and torch tensors alike (imports no torch).

Every function takes the array namespace ``xp`` (``numpy`` or ``torch``) and uses only
operators and functions both namespaces spell the same way, so the differentiable torch
chain (:mod:`~afxmatch.dsp.biquad`, :mod:`~afxmatch.dsp.eq`,
:mod:`~afxmatch.dsp.compressor`) and the torch-free inference chain
(:mod:`~afxmatch.dsp.numpy_chain`) compute the same maths with the same code:

- RBJ Audio-EQ-Cookbook coefficients, complex and power responses, decay lengths;
- the 6-band cascade's coefficients (grouped by kind), response and dB magnitude;
- the compressor's soft-knee static curve, time constants, attack/release recursion
  (numpy, also the torch chain's forward pass) and frame-to-sample interpolation.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..params import EQ_BANDS

KINDS = ("peak", "low_shelf", "high_shelf")
DECAY_FLOOR_DB = -140.0
MAX_IR = 1 << 20     # the longest EQ impulse response used (samples)
MIN_BLOCK = 1 << 15  # the shortest overlap-add block (at least 4 impulse-response lengths)
MIN_IR = 1 << 10     # the smallest grid the EQ's response is sampled on
CONTROL_PERIOD_S = 0.0005
FLOOR_DB = -120.0


def float64(v, xp=np):
    """``v`` as a float64 array of ``xp`` (a torch tensor keeps its autograd history)."""
    return np.asarray(v, dtype=np.float64) if xp is np else xp.as_tensor(v, dtype=xp.float64)


def broadcast(*arrays, xp=np):
    """The arrays broadcast to one shape."""
    return (np.broadcast_arrays if xp is np else xp.broadcast_tensors)(*arrays)


# ----------------------------------------------------------------------------- biquads


def rbj_coefficients(kind: str, f, g, q, sample_rate: float, xp=np):
    """RBJ coefficients ``(b, a)``, each ``(..., 3)``, ``a0 = 1``, of float64 frequency,
    gain (dB) and Q arrays of one shape. The shelves take ``q`` as Q (``alpha = sin(w0) /
    (2 q)``), as pedalboard does, not the shelf slope S."""
    big_a = 10.0 ** (g / 40.0)
    w0 = 2.0 * math.pi * f / float(sample_rate)
    cos_w, alpha = xp.cos(w0), xp.sin(w0) / (2.0 * q)
    if kind == "peak":
        b = xp.stack([1 + alpha * big_a, -2 * cos_w, 1 - alpha * big_a], -1)
        a = xp.stack([1 + alpha / big_a, -2 * cos_w, 1 - alpha / big_a], -1)
    elif kind in ("low_shelf", "high_shelf"):
        s = 1.0 if kind == "low_shelf" else -1.0  # the high shelf flips the sign of cos terms
        root = 2 * xp.sqrt(big_a) * alpha
        ap, am = big_a + 1, big_a - 1
        b = big_a[..., None] * xp.stack(
            [ap - s * am * cos_w + root, 2 * s * (am - s * ap * cos_w), ap - s * am * cos_w - root], -1)
        a = xp.stack([ap + s * am * cos_w + root, -2 * s * (am + s * ap * cos_w), ap + s * am * cos_w - root], -1)
    else:
        raise ValueError(f"unknown biquad kind {kind!r}; expected one of {KINDS}")
    a0 = a[..., :1]
    return b / a0, a / a0


def complex_response(b, a, omega, xp=np):
    """Complex response of ``(..., 3)`` biquads at float64 ``omega`` (rad/sample),
    ``(..., n_freq)`` complex128."""
    z1 = xp.exp(-1j * omega)  # z^-1, (n_freq,)
    z2 = z1 * z1
    num = b[..., 0:1] + b[..., 1:2] * z1 + b[..., 2:3] * z2
    den = a[..., 0:1] + a[..., 1:2] * z1 + a[..., 2:3] * z2
    return num / den


def power_response(b, a, omega, xp=np):
    """``|H|^2`` of ``(..., 3)`` biquads at float64 ``omega`` (rad/sample), ``(..., n_freq)``.

    Real arithmetic in the well-conditioned form with ``phi = sin^2(w/2)``::

        |c0 + c1 z^-1 + c2 z^-2|^2 = (c0 + c1 + c2)^2 - 4 (c0 c1 + 4 c0 c2 + c1 c2) phi
                                     + 16 c0 c2 phi^2

    The plain expansion in ``cos w`` cancels catastrophically near DC when the poles sit
    next to z = 1 (low shelves at 96 kHz were 0.2 dB off).
    """
    phi = xp.sin(omega / 2) ** 2

    def sq(c):
        c0, c1, c2 = c[..., 0:1], c[..., 1:2], c[..., 2:3]
        return (c0 + c1 + c2) ** 2 - 4 * (c0 * c1 + 4 * c0 * c2 + c1 * c2) * phi + 16 * c0 * c2 * phi * phi

    return sq(b) / sq(a)


def decay_samples(a1, a2, floor_db: float = DECAY_FLOOR_DB, xp=np) -> int:
    """Samples until the impulse response of the denominators ``1 + a1 z^-1 + a2 z^-2``
    (float64 arrays, the longest wins) decays to ``floor_db``.

    For a complex pole pair ``r e^{+-j theta}`` the response is ``~ r^n sin((n+1) theta) /
    sin(theta)``: low-frequency poles (small theta) start ~1/sin(theta) louder, so the
    decay must go that much further. Real poles decay as ``r^n``.
    """
    disc = a1 * a1 - 4 * a2
    complex_pair = disc < 0
    r_complex = xp.sqrt(xp.clip(a2, min=0.0))
    sin_theta = xp.sqrt(xp.clip(-disc, min=0.0)) / (2 * xp.clip(r_complex, min=1e-300))
    sq = xp.sqrt(xp.clip(disc, min=0.0))
    r_real = xp.maximum(abs(-a1 + sq), abs(-a1 - sq)) / 2
    r = xp.clip(xp.where(complex_pair, r_complex, r_real), min=1e-300, max=1.0 - 1e-12)
    boost = xp.where(complex_pair, 1.0 / xp.clip(sin_theta, min=1e-6), xp.ones_like(r))
    level = 10.0 ** (floor_db / 20.0) / boost  # target amplitude relative to the start
    n = xp.log(level) / xp.log(r)
    return max(1, int(math.ceil(float(n.max()))))


# ----------------------------------------------------------------------------- the EQ cascade


def _bands_by_kind() -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for prefix, kind in EQ_BANDS:
        kinds.setdefault(kind, []).append(prefix)
    return kinds


def band_coefficients(params: Mapping, sample_rate: float, xp=np):
    """Yield ``(b, a)`` per filter kind, each ``(batch, n_bands_of_kind, 3)`` float64, for
    parameters given as ``(batch,)`` arrays (or scalars). Bands of the same kind are
    computed in one batched call (fewer, larger array ops)."""
    for kind, prefixes in _bands_by_kind().items():
        f, g, q = (xp.stack([float64(params[f"{p}_{suffix}"], xp).reshape(-1) for p in prefixes], -1)
                   for suffix in ("freq_hz", "gain_db", "q"))
        yield rbj_coefficients(kind, *broadcast(f, g, q, xp=xp), sample_rate, xp)


def eq_response(params: Mapping, sample_rate: float, omega, xp=np):
    """Complex response of the whole cascade at float64 ``omega``, ``(batch, n_freq)``."""
    h = None
    for b, a in band_coefficients(params, sample_rate, xp):
        hb = complex_response(b, a, omega, xp).prod(-2)
        h = hb if h is None else h * hb
    return h


def band_prefixes() -> list[str]:
    """The bands in the order :func:`band_coefficients` and :func:`band_magnitude_db` give
    them (grouped by kind)."""
    return [p for prefixes in _bands_by_kind().values() for p in prefixes]


def band_magnitude_db(params: Mapping, sample_rate: float, freqs_hz, xp=np):
    """Yield each filter kind's bands' magnitudes in dB at ``freqs_hz``, ``(batch,
    n_bands_of_kind, n_freq)`` float64, in :func:`band_prefixes` order."""
    omega = 2 * math.pi * float64(freqs_hz, xp) / float(sample_rate)
    for b, a in band_coefficients(params, sample_rate, xp):
        yield 10.0 * xp.log10(power_response(b, a, omega, xp) + 1e-30)


def eq_magnitude_db(params: Mapping, sample_rate: float, freqs_hz, xp=np):
    """Cascade magnitude in dB at ``freqs_hz``, ``(batch, n_freq)`` float64."""
    return sum(db.sum(-2) for db in band_magnitude_db(params, sample_rate, freqs_hz, xp))


def eq_impulse_length(params: Mapping, sample_rate: float, xp=np) -> int:
    """Samples needed for the cascade's impulse response to decay (sum over bands, each
    band's longest over the batch), at most ``MAX_IR``."""
    total = 0
    for _, a in band_coefficients(params, sample_rate, xp):
        total += sum(decay_samples(a[..., i, 1].reshape(-1), a[..., i, 2].reshape(-1), xp=xp)
                     for i in range(a.shape[-2]))
    return min(int(total), MAX_IR)


def fft_size(n: int) -> int:
    """A fast FFT size >= n (products of 2, 3 and 5)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


# ----------------------------------------------------------------------------- compressor


def control_hop(sample_rate: float) -> int:
    """Samples per control frame (about 0.5 ms)."""
    return max(1, int(round(float(sample_rate) * CONTROL_PERIOD_S)))


def static_curve_db(level_db, threshold_db, ratio, knee_db, xp=np):
    """Soft-knee gain reduction in dB (<= 0) for input levels ``level_db``; params broadcast."""
    over = level_db - threshold_db
    slope = 1.0 / ratio - 1.0
    safe_knee = xp.clip(knee_db, min=1e-6)
    knee_gain = slope * (over + knee_db / 2) ** 2 / (2 * safe_knee)
    above = slope * over
    in_knee = abs(2 * over) <= knee_db
    return xp.where(2 * over > knee_db, above, xp.where(in_knee, knee_gain, xp.zeros_like(over)))


def peak_level_db(peak, xp=np):
    """Frame peaks (float64) in dBFS, floored at ``FLOOR_DB``."""
    return 20.0 * xp.log10(xp.clip(peak, min=10 ** (FLOOR_DB / 20)))


def time_constant_coeff(time_ms, sample_rate: float, hop: int, xp=np):
    """One-pole coefficient per control frame for a float64 time constant in ms."""
    return xp.exp(-hop / (time_ms * 1e-3 * float(sample_rate)))


def smooth_forward(gc: np.ndarray, alpha_a: np.ndarray, alpha_r: np.ndarray, g0=None):
    """Run the attack/release recursion (numpy). ``gc`` (batch, frames) float64; ``g0``
    (batch,) the smoothed gain before the first frame (0 dB when None; a streamed render
    passes the previous block's last value). Returns ``(smoothed, attack_mask)``."""
    batch, frames = gc.shape
    out = np.empty_like(gc)
    attack = np.empty(gc.shape, dtype=bool)
    for i in range(batch):
        aa, ar = float(alpha_a[i]), float(alpha_r[i])
        row, g = gc[i].tolist(), 0.0 if g0 is None else float(g0[i])
        res, mode = [0.0] * frames, [False] * frames
        for n, target in enumerate(row):
            if target < g:
                g = aa * g + (1.0 - aa) * target
                mode[n] = True
            else:
                g = ar * g + (1.0 - ar) * target
            res[n] = g
        out[i], attack[i] = res, mode
    return out, attack


def frames_to_samples(g, hop: int, xp=np):
    """Linear interpolation of per-frame values ``(batch, frames)`` (frame centres) to
    ``(batch, frames * hop)`` samples, edges held (as ``F.interpolate(mode="linear",
    align_corners=False)``, which is 10x slower on long signals)."""
    w = ((xp.arange(hop, dtype=g.dtype, device=g.device) + 0.5) / hop - 0.5)  # (hop,) in (-0.5, 0.5)
    prev = xp.concatenate([g[:, :1], g[:, :-1]], 1)[..., None]
    nxt = xp.concatenate([g[:, 1:], g[:, -1:]], 1)[..., None]
    cur = g[..., None]
    out = cur + xp.where(w < 0, w * (cur - prev), w * (nxt - cur))
    return out.reshape(g.shape[0], -1)
