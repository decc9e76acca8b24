"""How afxmatch's RBJ EQ bands map onto ZamEQ2 (zam-plugins 4.2): exact where possible,
measured where not. Pure numpy/math; no plugin is loaded here.

ZamEQ2 has four bands: a low shelf, two peaks and a high shelf, run as
low shelf -> high shelf -> peak 1 -> peak 2 (all biquads, so the order does not matter).

Shelves (exact). ZamEQ2's shelves are the RBJ cookbook shelves written with the *slope*
``S = 1/sqrt(2)`` instead of a Q. In RBJ's terms, ``1/Q = sqrt((A + 1/A)(1/S - 1) + 2)``
with ``A = 10^(gain/40)``, so a ZamEQ2 shelf at (f, g) *is* an RBJ shelf at (f, g) with
``Q = shelf_q(g)``: 0.594 at +-3 dB, 0.574 at +-12 dB, 0.516 at +-24 dB (measured: rendered
vs analytic within 0.01 dB, the size of the +-0.01 dB gains left on the idle bands). The
shelf Q is not a free parameter: afxmatch's ``ls_q``/``hs_q`` cannot be represented
unless they equal ``shelf_q(gain)``.

Peaks (a documented approximation). ZamEQ2's peak is Orfanidis' design with a prescribed
Nyquist gain (S. J. Orfanidis, "Digital parametric equalizer design with prescribed
Nyquist-frequency gain", JAES 45(6), 1997) with reference gain 1, peak gain G and the
bandwidth measured at the mid (dB) gain ``sqrt(G)`` -- the same "mid-gain" bandwidth RBJ
uses for its peaking EQ. Its ``bandwidth`` control ``b`` (0.1-6) sets that bandwidth as
``dw = (f / sr) / qq(b)`` radians per sample, with ``qq(b) = 2^(1/b) / (2^b - 1)`` (the
plugin's "Q from octave bandwidth"; note ``f / sr`` is in cycles, not radians, so
``b`` is not octaves: ``b = 1`` is a Q of about 12.6, ``b = 3`` about 1.1).

The map from an RBJ peak (f0, g, Q) to ZamEQ2 keeps f0 and g and matches the mid-gain
band edges. RBJ's peak is the bilinear transform (pre-warped at f0) of an analog peak
whose mid-gain edges satisfy ``w2 - w1 = w0 / Q`` and ``w1 w2 = w0^2``; mapped to the
digital axis, ``t = tan(omega / 2)``::

    k  = tan(pi f0 / sr)
    t1 = k (sqrt(1 + 1/(4 Q^2)) - 1/(2 Q)),   t2 = k (sqrt(1 + 1/(4 Q^2)) + 1/(2 Q))
    dw = 2 (atan t2 - atan t1)                # digital mid-gain bandwidth, rad/sample
    qq(b) = (f0 / sr) / dw  -> solve for b    # qq is monotonic in b

Both filters then have the same centre, peak gain and mid-gain edges. They differ in the
skirts: RBJ forces 0 dB at Nyquist, Orfanidis keeps the analog prototype's gain there.
Narrow bands agree within 0.02 dB; wide bands at high frequencies differ by up to several
dB (see ``docs/backends.md`` for the measured table). :func:`peak_error_db` gives the
difference for one band from the two analytic responses (the analytic ZamEQ2 response
matches the rendered plugin within 0.01 dB), and :func:`min_representable_q` the
smallest Q whose mapping stays within a tolerance -- the black-box search keeps its peaks
there, so the report's parameters describe what the plugin does.
"""

from __future__ import annotations

import math

import numpy as np

from ..dsp import formulas
from ..dsp.numpy_chain import rbj_coefficients

# ZamEQ2 4.2 parameter ranges (plugin units)
FREQ_RANGE = (20.0, 14000.0)
GAIN_RANGE = (-50.0, 20.0)
BW_RANGE = (0.1, 6.0)
MASTER_RANGE = (-12.0, 12.0)
MIN_GAIN_DB = 0.01          # a peak at exactly 0 dB gives NaN (0/0 in the design)
SHELF_SLOPE = 1.0 / math.sqrt(2.0)
ERROR_LOW_HZ, ERROR_HIGH_HZ, ERROR_POINTS = 30.0, 16000.0, 160


def safe_gain(gain_db: float) -> float:
    """``gain_db`` clipped to ZamEQ2's range and kept at least ``MIN_GAIN_DB`` from 0."""
    g = min(max(float(gain_db), GAIN_RANGE[0]), GAIN_RANGE[1])
    return g if abs(g) >= MIN_GAIN_DB else math.copysign(MIN_GAIN_DB, g if g != 0 else 1.0)


def clip_freq(freq_hz: float) -> float:
    return min(max(float(freq_hz), FREQ_RANGE[0]), FREQ_RANGE[1])


def shelf_q(gain_db: float) -> float:
    """The RBJ Q of a ZamEQ2 shelf at ``gain_db`` (its slope is fixed at 1/sqrt(2))."""
    a = 10.0 ** (float(gain_db) / 40.0)
    return 1.0 / math.sqrt((a + 1.0 / a) * (1.0 / SHELF_SLOPE - 1.0) + 2.0)


def qq_of_bw(bw: float) -> float:
    """ZamEQ2's internal "q" of its bandwidth control ``bw``: 2^(1/bw) / (2^bw - 1)."""
    return 2.0 ** (1.0 / bw) / (2.0 ** bw - 1.0)


def bw_of_qq(qq: float) -> float:
    """Inverse of :func:`qq_of_bw` (decreasing in ``bw``), by bisection on log(bw)."""
    lo, hi = math.log(1e-3), math.log(30.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if qq_of_bw(math.exp(mid)) > qq:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def midgain_bandwidth(freq_hz: float, q: float, sample_rate: float) -> float:
    """Digital mid-gain bandwidth (rad/sample) of an RBJ peak at ``freq_hz`` with ``q``."""
    k = math.tan(math.pi * freq_hz / sample_rate)
    r = 1.0 / (2.0 * q)
    root = math.sqrt(1.0 + r * r)
    return 2.0 * (math.atan(k * (root + r)) - math.atan(k * (root - r)))


def peak_bandwidth(freq_hz: float, q: float, sample_rate: float) -> float:
    """ZamEQ2 ``bandwidth`` for an RBJ peak (unclipped; ZamEQ2 accepts 0.1-6)."""
    dw = midgain_bandwidth(freq_hz, q, sample_rate)
    return bw_of_qq((freq_hz / sample_rate) / dw)


def peak_q(freq_hz: float, bw: float, sample_rate: float) -> float:
    """The RBJ Q whose mid-gain bandwidth equals ZamEQ2's at ``bw`` (inverse map)."""
    dw = (freq_hz / sample_rate) / qq_of_bw(bw)
    k = math.tan(math.pi * freq_hz / sample_rate)
    # edges w1, w2 = w1 + dw with tan(w1/2) tan(w2/2) = k^2: bisection on w1 in (0, w0)
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    lo, hi = 0.0, min(w0, math.pi - dw)
    if hi <= 0:
        return float("nan")
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if math.tan(mid / 2) * math.tan((mid + dw) / 2) < k * k:
            lo = mid
        else:
            hi = mid
    t1, t2 = math.tan(lo / 2), math.tan((lo + dw) / 2)
    return k / (t2 - t1)


def orfanidis_peak(freq_hz: float, gain_db: float, bw: float, sample_rate: float):
    """``(b, a)`` (numpy, a0 = 1) of ZamEQ2's peak at plugin settings (freq, gain, bw)."""
    g0, g = 1.0, 10.0 ** (gain_db / 20.0)
    gb = math.sqrt(g)
    w0 = 2.0 * math.pi * freq_hz / sample_rate
    dw = (freq_hz / sample_rate) / qq_of_bw(bw)
    pi2 = math.pi ** 2
    f = abs(g * g - gb * gb)
    g00, f00 = abs(g * g - g0 * g0), abs(gb * gb - g0 * g0)
    # Nyquist gain of the analog prototype (eq. 14 of the paper)
    num = g0 * g0 * (w0 * w0 - pi2) ** 2 + g * g * f00 * pi2 * dw * dw / f
    den = (w0 * w0 - pi2) ** 2 + f00 * pi2 * dw * dw / f
    g1 = math.sqrt(num / den)
    g01, g11 = abs(g * g - g0 * g1), abs(g * g - g1 * g1)
    f01, f11 = abs(gb * gb - g0 * g1), abs(gb * gb - g1 * g1)
    w2 = math.sqrt(g11 / g00) * math.tan(w0 / 2) ** 2
    dww = (1.0 + math.sqrt(f00 / f11) * w2) * math.tan(dw / 2)
    c = f11 * dww * dww - 2.0 * w2 * (f01 - math.sqrt(f00 * f11))
    d = 2.0 * w2 * (g01 - math.sqrt(g00 * g11))
    big_a, big_b = math.sqrt((c + d) / f), math.sqrt((g * g * c + gb * gb * d) / f)
    n = 1.0 + w2 + big_a
    b = np.array([g1 + g0 * w2 + big_b, -2.0 * (g1 - g0 * w2), g1 - big_b + g0 * w2]) / n
    a = np.array([1.0, -2.0 * (1.0 - w2) / n, (1.0 + w2 - big_a) / n])
    return b, a


def _db(b, a, freqs: np.ndarray, sample_rate: float) -> np.ndarray:
    """dB response of ``(..., 3)`` biquads at ``freqs``, ``(..., n_freq)``."""
    omega = 2.0 * np.pi * np.asarray(freqs, dtype=np.float64) / sample_rate
    p = formulas.power_response(np.asarray(b, dtype=np.float64), np.asarray(a, dtype=np.float64), omega)
    return 10.0 * np.log10(p)


def rbj_db(kind: str, freq_hz, gain_db, q, sample_rate: float, freqs: np.ndarray) -> np.ndarray:
    """RBJ band response(s) in dB; scalars or equal-length arrays -> ``(n, n_freq)``."""
    return _db(*rbj_coefficients(kind, freq_hz, gain_db, q, sample_rate), freqs, sample_rate)


def error_grid(sample_rate: float) -> np.ndarray:
    return np.geomspace(ERROR_LOW_HZ, min(ERROR_HIGH_HZ, 0.45 * sample_rate), ERROR_POINTS)


def peak_error_curves_db(freq_hz: float, gain_db: float, qs, sample_rate: float,
                         freqs: np.ndarray) -> np.ndarray:
    """ZamEQ2 - RBJ (dB) at ``freqs`` of one peak at (freq, gain) mapped with
    :func:`peak_bandwidth`, for each Q in ``qs``: ``(len(qs), len(freqs))``; analytic."""
    qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
    f, g = clip_freq(freq_hz), safe_gain(gain_db)
    ba = [orfanidis_peak(f, g, min(max(peak_bandwidth(f, q, sample_rate), BW_RANGE[0]), BW_RANGE[1]),
                         sample_rate) for q in qs]
    zam = _db(np.stack([b for b, _ in ba]), np.stack([a for _, a in ba]), freqs, sample_rate)
    n = len(qs)
    ref = rbj_db("peak", np.full(n, float(freq_hz)), np.full(n, float(gain_db)), qs, sample_rate, freqs)
    return zam - ref


def peak_errors_db(freq_hz: float, gain_db: float, qs, sample_rate: float,
                   freqs: np.ndarray | None = None) -> np.ndarray:
    """Worst |ZamEQ2 - RBJ| (dB) over ``freqs`` (default :func:`error_grid`) per Q in ``qs``."""
    freqs = error_grid(sample_rate) if freqs is None else freqs
    return np.max(np.abs(peak_error_curves_db(freq_hz, gain_db, qs, sample_rate, freqs)), axis=-1)


def min_representable_q(freq_hz: float, gain_db: float, sample_rate: float, tol_db: float,
                        q_range: tuple[float, float], steps: int = 25) -> float:
    """Smallest Q of ``steps`` log-spaced values in ``q_range`` whose ZamEQ2 mapping is
    within ``tol_db`` of RBJ (the error shrinks as Q grows); ``q_range[1]`` if none is."""
    qs = np.geomspace(q_range[0], q_range[1], steps)
    ok = np.flatnonzero(peak_errors_db(freq_hz, gain_db, qs, sample_rate) <= tol_db)
    return float(qs[ok[0]]) if ok.size else float(q_range[1])
