"""ITU-R BS.1770-4 integrated loudness, vectorised, numpy/scipy only (no torch).

Same measurement as pyloudnorm (which the tests use as the reference), several times
faster on long files: the K-weighting biquads run as an FFT overlap-add convolution with
their exact impulse response (sampled from the exact frequency response on a grid as
long as the response takes to decay below -140 dB; no scipy.signal, whose import alone
costs 0.6-0.8 s), block energies are sums of 100 ms hop energies, and the two gates are
array operations. It imports no torch, so files can be measured while torch is still
being imported in another thread (``afxmatch.pipeline``), and a batch's parent process
never needs torch.

K-weighting: a high shelf (+4 dB above ~1.7 kHz, the head) followed by the RLB high-pass
(~38 Hz), designed by the bilinear transform for any sample rate from the analogue
parameters that reproduce the standard's 48 kHz coefficients.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sp_fft

BLOCK_S, OVERLAP = 0.400, 0.75
ABSOLUTE_GATE_LUFS, RELATIVE_GATE_LU = -70.0, -10.0
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs


def k_weighting_sos(sample_rate: float) -> np.ndarray:
    """``(2, 6)`` second-order sections: head shelf, then RLB high-pass."""
    fs = float(sample_rate)
    # stage 1: high shelf
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / fs)
    vh = 10 ** (gain_db / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0,
             1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    # stage 2: high-pass
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / fs)
    a0 = 1 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    return np.array([shelf, highpass])


MIN_BLOCK = 1 << 15     # overlap-add block (samples), at least 4 impulse-response lengths
FFT_WORKERS = -1        # scipy.fft threads (-1: all cores); batch workers set 1, like torch's
DECAY_FLOOR_DB = -140.0


def decay_samples(sos: np.ndarray, floor_db: float = DECAY_FLOOR_DB) -> int:
    """Samples until the cascade's impulse response has decayed to ``floor_db``: per
    section ``r^n`` for its largest pole radius ``r``, allowing a complex pair's
    ``1/sin(theta)`` start-up gain; the sections' lengths add."""
    total = 0
    for a1, a2 in sos[:, 4:6]:
        poles = np.roots([1.0, a1, a2])
        r = min(float(np.abs(poles).max()), 1.0 - 1e-12)
        sin_theta = abs(float(poles[0].imag)) / max(float(abs(poles[0])), 1e-300)
        boost = 1.0 / max(sin_theta, 1e-6) if sin_theta > 0 else 1.0
        total += max(1, math.ceil(math.log(10.0 ** (floor_db / 20.0) / boost) / math.log(r)))
    return total


def k_impulse_response(sample_rate: float) -> np.ndarray:
    """The K-weighting cascade's impulse response (float64), until it decays to -140 dB."""
    sos = k_weighting_sos(sample_rate)
    tail = decay_samples(sos)
    m = sp_fft.next_fast_len(max(2 * tail, 1024), real=True)
    z = np.exp(-2j * math.pi * np.arange(m // 2 + 1) / m)   # the rfft bins (m may be odd)
    response = np.ones_like(z)
    for b0, b1, b2, a0, a1, a2 in sos:
        response *= (b0 + b1 * z + b2 * z * z) / (a0 + a1 * z + a2 * z * z)
    return sp_fft.irfft(response, m)[:tail]


def k_weight(x: np.ndarray, sample_rate: float) -> np.ndarray:
    """K-weighted ``(channels, n)`` audio (float32), exact to float precision: the linear
    convolution with :func:`k_impulse_response`, by overlap-add in FFT blocks."""
    x = np.asarray(x, dtype=np.float32)
    channels, n_samples = x.shape
    ir = k_impulse_response(sample_rate)
    tail = len(ir)
    n = sp_fft.next_fast_len(max(4 * tail, MIN_BLOCK) + tail, real=True)
    block = n - tail
    n_blocks = max(1, math.ceil(n_samples / block))
    frames = np.zeros((channels, n_blocks, block), np.float32)
    frames.reshape(channels, -1)[:, :n_samples] = x
    h = sp_fft.rfft(ir, n).astype(np.complex64)
    spec = sp_fft.rfft(frames, n, axis=-1, workers=FFT_WORKERS)
    spec *= h
    y = sp_fft.irfft(spec, n, axis=-1, workers=FFT_WORKERS)          # (channels, n_blocks, n)
    out = np.ascontiguousarray(y[..., :block])
    out[:, 1:, :tail] += y[:, :-1, block:]                   # each block's tail into the next
    return out.reshape(channels, -1)[:, :n_samples]


def hop_length(sample_rate: float) -> tuple[int, int]:
    """``(hop, per_block)``: the 100 ms hop in samples and how many hops make a 400 ms block."""
    return int(round(BLOCK_S * (1 - OVERLAP) * sample_rate)), int(round(1 / (1 - OVERLAP)))


def integrated_loudness(samples: np.ndarray, sample_rate: float) -> float:
    """Integrated loudness in LUFS of ``(channels, n)`` audio; ``-inf`` when all gated."""
    x = np.asarray(samples)
    channels, n = x.shape
    hop, per_block = hop_length(sample_rate)
    if n < per_block * hop:
        return float("-inf")
    return loudness_from_hops(hop_energies(x, sample_rate), sample_rate)


def hop_energies(samples: np.ndarray, sample_rate: float) -> np.ndarray:
    """K-weighted energies (sums of squares, float64) of consecutive 100 ms hops,
    ``(channels, n_hops)``; a trailing part hop is left out, as BS.1770's blocks do."""
    x = np.asarray(samples)
    channels, n = x.shape
    hop, _ = hop_length(sample_rate)
    n_hops = n // hop
    if n_hops == 0:
        return np.zeros((channels, 0))
    y = k_weight(x[:, : n_hops * hop], sample_rate)
    frames = y.reshape(channels, n_hops, hop)
    return np.einsum("cnh,cnh->cn", frames, frames, dtype=np.float64)


def block_energies(hops: np.ndarray, sample_rate: float) -> np.ndarray:
    """BS.1770's channel-weighted mean squares of the 400 ms blocks (75 % overlap) from
    ``(channels, n_hops)`` K-weighted 100 ms hop energies; empty when shorter than a block."""
    hop, per_block = hop_length(sample_rate)
    channels, n_hops = hops.shape
    if n_hops < per_block:
        return np.zeros(0)
    z = sum(hops[:, i: n_hops - per_block + 1 + i] for i in range(per_block)) / (per_block * hop)
    weights = np.array(CHANNEL_WEIGHTS[:channels] + (1.0,) * max(0, channels - 5))[:, None]
    return (weights * z).sum(axis=0)


def block_lufs(energy):
    """BS.1770's loudness (LUFS) of channel-weighted block mean squares ``energy``."""
    with np.errstate(divide="ignore"):
        return -0.691 + 10 * np.log10(energy)


def loudness_from_hops(hops: np.ndarray, sample_rate: float) -> float:
    """Integrated loudness (LUFS) from ``(channels, n_hops)`` K-weighted energies (sums of
    squares) of consecutive 100 ms hops: 400 ms blocks, then the two gates."""
    energy = block_energies(hops, sample_rate)
    if energy.size == 0:
        return float("-inf")
    gated = energy[block_lufs(energy) > ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return float("-inf")
    relative = block_lufs(gated.mean()) + RELATIVE_GATE_LU
    gated = gated[block_lufs(gated) > relative]
    if gated.size == 0:
        return float("-inf")
    return float(block_lufs(gated.mean()))


def gain_for_loudness(hops: np.ndarray, sample_rate: float, target_lufs: float,
                      tolerance_lu: float = 1e-4, max_iter: int = 50) -> float:
    """The gain (dB) that brings a signal with K-weighted hop energies ``hops`` to
    ``target_lufs`` integrated loudness, the gates re-applied at every trial.

    A gain does not shift the integrated loudness by itself: blocks cross the absolute
    -70 LUFS gate, which moves the relative gate (speech with pauses raised by 20 dB
    measured 0.3-0.6 LU short of its target when the shift was assumed). The loudness is
    monotone in the gain, so a secant step on the measured shortfall converges, falling
    back to bisection where a gate jump would make it overshoot. A signal whose every
    block lies under the -70 LUFS absolute gate (a very quiet recording) measures -inf
    but is not silent: the search then starts from the gain that puts its loudest block
    at the target. ``nan`` when the signal is silent or shorter than one 400 ms block, or
    the target is not finite.
    """
    if not np.isfinite(target_lufs):
        return float("nan")
    base = loudness_from_hops(hops, sample_rate)
    if not np.isfinite(base):
        blocks = block_energies(hops, sample_rate)
        if blocks.size == 0 or not blocks.max() > 0:
            return float("nan")
        base = float(block_lufs(blocks.max()))

    def loud(g: float) -> float:
        return loudness_from_hops(hops * 10.0 ** (g / 10.0), sample_rate)

    g = float(target_lufs - base)
    miss = target_lufs - loud(g)
    lo, hi = (g, math.inf) if miss > 0 else (-math.inf, g)
    for _ in range(max_iter):
        if abs(miss) <= tolerance_lu:
            break
        step = g + miss
        if not lo < step < hi:   # a gate jump: bisect the bracket (or widen it)
            step = (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else g + 2 * miss
        g = step
        miss = target_lufs - loud(g)
        if miss > 0:
            lo = max(lo, g)
        else:
            hi = min(hi, g)
    return g


def matching_gain_db(loudness_lufs: float, target_lufs: float, sample_rate: float,
                     hops: np.ndarray | None = None) -> float:
    """The gain (dB) that brings a signal of ``loudness_lufs`` to ``target_lufs``: solved
    on its hop energies with the gates re-applied (:func:`gain_for_loudness`) when
    ``hops`` are given and the solve succeeds (also for a signal too quiet to pass the
    absolute gate, ``loudness_lufs`` -inf), else the plain difference; 0 when the target
    or, without a solve, the loudness is not finite (silence)."""
    if not np.isfinite(target_lufs):
        return 0.0
    if hops is not None:
        solved = gain_for_loudness(hops, sample_rate, target_lufs)
        if np.isfinite(solved):
            return float(solved)
    return float(target_lufs - loudness_lufs) if np.isfinite(loudness_lufs) else 0.0


def safe_output_gain_db(loudness_lufs: float, peak_db: float, target_lufs: float, sample_rate: float,
                        hops: np.ndarray | None, gain_range_db: tuple[float, float],
                        ceiling_db: float) -> tuple[float, float, float]:
    """The pipeline's output gain rule: :func:`matching_gain_db` kept in
    ``gain_range_db``, then lowered so the sample peak stays at ``ceiling_db``.
    Returns ``(gain_db, wanted_db, lowered_for_peak_db)``."""
    wanted = matching_gain_db(loudness_lufs, target_lufs, sample_rate, hops)
    gain = float(np.clip(wanted, *gain_range_db))
    lowered = max(0.0, peak_db + gain - ceiling_db)
    return gain - lowered, wanted, lowered
