"""The chain's forward pass in numpy/scipy, for inference: no torch, no gradients.

The same maths as the differentiable torch chain (:func:`afxmatch.dsp.process`), from
the same formulas (:mod:`afxmatch.dsp.formulas`), on ``(channels, samples)`` float32
arrays with one parameter set (a mapping of names to floats):

- EQ: the cascade's exact response sampled on a grid long enough for its impulse
  response to decay below -140 dB, inverse-FFT'd to that impulse response, then a linear
  convolution (one FFT when short, overlap-add in FFT blocks when long): time-domain IIR
  filtering with zero initial state, to float32 precision.
- Compressor: linked peak detection per ~0.5 ms control frame, the soft-knee static
  curve, attack/release ballistics, linear interpolation to audio rate, make-up.
- Output gain.

The results equal the torch chain's to float32 rounding (tests/test_numpy_chain.py).
The streamed render (:mod:`afxmatch.render.stream`) runs the same chain block by block
with the helpers below (:func:`overlap_add`, :func:`frame_peaks`,
:func:`smoothed_reduction_db`, :func:`output_gain`).
Imports no torch and no ``scipy.signal``/``scipy.special`` (slow imports).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
from scipy import fft as sp_fft

from . import formulas
from .formulas import MIN_BLOCK, MIN_IR, control_hop, fft_size

STAGES = ("eq", "comp", "gain")
FFT_WORKERS = -1   # scipy.fft threads (-1: all cores); a batch worker process may set 1


def _columns(params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """One parameter set -> ``(1,)`` float64 arrays (the batched formulas' input)."""
    return {k: np.array([float(v)]) for k, v in params.items()}


def eq_magnitude_db(params: Mapping[str, np.ndarray], sample_rate: float,
                    freqs_hz: np.ndarray) -> np.ndarray:
    """Cascade magnitude in dB at ``freqs_hz`` for a batch of settings: ``params`` maps
    every EQ parameter to a ``(batch,)`` array (or a float); ``(batch, n_freq)`` float64."""
    return formulas.eq_magnitude_db(params, sample_rate, freqs_hz)


def rbj_coefficients(kind: str, freq_hz, gain_db, q, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """RBJ coefficients ``(b, a)``, each ``(n, 3)`` float64 with ``a0 = 1``, for scalars
    or equal-length arrays of frequency (Hz), gain (dB) and Q."""
    f, g, q = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (freq_hz, gain_db, q)))
    b, a = formulas.rbj_coefficients(kind, f, g, q, sample_rate)
    return b.reshape(-1, 3), a.reshape(-1, 3)


def eq_impulse_response(params: Mapping[str, float], sample_rate: float,
                        tail: int | None = None) -> np.ndarray:
    """The cascade's impulse response (float64) until it has decayed below -140 dB
    (``tail`` samples, :func:`~afxmatch.dsp.formulas.eq_impulse_length` unless given)."""
    p = _columns(params)
    if tail is None:
        tail = formulas.eq_impulse_length(p, sample_rate)
    m = fft_size(max(tail, MIN_IR))
    omega = np.arange(m // 2 + 1) * (2 * math.pi / m)   # the rfft bins; m may be odd
    return sp_fft.irfft(formulas.eq_response(p, sample_rate, omega)[0], m)[:tail]


def overlap_add_sizes(tail: int) -> tuple[int, int]:
    """``(FFT size, block length)`` of the overlap-add for an impulse response ``tail``
    samples long: blocks of at least ``max(4 * tail, MIN_BLOCK)`` samples, each filtered
    with its ``tail`` in one FFT (the streamed render uses the same)."""
    n_fft = fft_size(max(4 * tail, MIN_BLOCK) + tail)
    return n_fft, n_fft - tail


def ir_spectrum(ir: np.ndarray, n_fft: int) -> np.ndarray:
    """The FIR ``ir``'s rfft at ``n_fft`` points, complex64 (what :func:`fft_filter` takes)."""
    return sp_fft.rfft(ir, n_fft).astype(np.complex64)


def fft_filter(frames: np.ndarray, spectrum: np.ndarray, n_fft: int) -> np.ndarray:
    """Full linear convolution of float32 ``(..., len)`` frames (``len + tail <= n_fft``)
    with the FIR whose :func:`ir_spectrum` is ``spectrum``: ``(..., n_fft)`` float32."""
    x = sp_fft.rfft(frames, n_fft, axis=-1, workers=FFT_WORKERS)
    x *= spectrum
    return sp_fft.irfft(x, n_fft, axis=-1, workers=FFT_WORKERS)


def convolve(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """``(channels, n)`` float32 filtered by the FIR ``ir``, zero initial state, the first
    ``n`` samples (the tail past the end dropped). One FFT when ``n`` is at most two
    blocks of ``max(4 * len(ir), MIN_BLOCK)`` samples, else overlap-add block by block."""
    channels, n_samples = x.shape
    if n_samples == 0:
        return np.zeros(x.shape, np.float32)
    tail = len(ir)
    block = max(4 * tail, MIN_BLOCK)
    if n_samples <= 2 * block:
        n_fft, block = fft_size(n_samples + tail), n_samples
    else:
        n_fft, block = overlap_add_sizes(tail)
    n_blocks = math.ceil(n_samples / block)
    frames = np.zeros((channels, n_blocks, block), np.float32)
    frames.reshape(channels, -1)[:, :n_samples] = x
    y, _ = overlap_add(frames, ir_spectrum(ir, n_fft), n_fft, tail)
    return y[:, :n_samples]


def overlap_add(frames: np.ndarray, spectrum: np.ndarray, n_fft: int, tail: int,
                carry: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Filter consecutive float32 blocks ``(channels, k, block)`` of one signal with the FIR
    (``tail`` samples long, :func:`ir_spectrum` ``spectrum``, ``block + tail <= n_fft``):
    each block's tail is added to the next one's head, and ``carry`` (``(channels, tail)``,
    the tail of the block before these; needs ``block >= tail``) to the first one's.
    Returns ``(output (channels, k * block), the last block's tail (channels, tail))``."""
    channels, n_blocks, block = frames.shape
    full = fft_filter(frames, spectrum, n_fft)                          # (channels, k, n_fft)
    y = full[..., :block]
    if n_blocks > 1:
        y[:, 1:, :tail] += full[:, :-1, block:block + tail]             # each block's tail into the next
    if carry is not None:
        y[:, 0, :tail] += carry
    return y.reshape(channels, -1), full[:, -1, block:block + tail]


def eq_apply(x: np.ndarray, sample_rate: float, params: Mapping[str, float],
             tail: int | None = None) -> np.ndarray:
    """The EQ of ``params`` on ``(channels, samples)`` audio; float32, same shape."""
    x = np.asarray(x, dtype=np.float32)
    return convolve(x, eq_impulse_response(params, sample_rate, tail))


def frame_peaks(x: np.ndarray, hop: int) -> np.ndarray:
    """The linked detector's input: the peak ``|x|`` over all channels of ``(channels,
    samples)`` in each control frame of ``hop`` samples (the last one zero-padded),
    ``(frames,)`` float64."""
    n_samples = x.shape[-1]
    frames = math.ceil(n_samples / hop)
    peak = np.zeros(frames * hop, np.float32)
    np.abs(x).max(axis=0, out=peak[:n_samples])
    return peak.reshape(frames, hop).max(axis=1).astype(np.float64)


def smoothed_reduction_db(peaks: np.ndarray, sample_rate: float, params: Mapping[str, float],
                          g0: float | None = None) -> np.ndarray:
    """The compressor's gain reduction (dB, <= 0, without make-up) per control frame for
    the frame peaks ``peaks`` (:func:`frame_peaks`): the static curve, then the
    attack/release ballistics starting from the smoothed gain ``g0`` (0 dB when None; a
    streamed render passes the previous frame's value). ``(frames,)`` float64."""
    hop = control_hop(sample_rate)
    gc = formulas.static_curve_db(formulas.peak_level_db(peaks), float(params["comp_threshold_db"]),
                                  float(params["comp_ratio"]), float(params["comp_knee_db"]))
    alphas = (formulas.time_constant_coeff(np.array([float(params[k])]), sample_rate, hop)
              for k in ("comp_attack_ms", "comp_release_ms"))
    g, _ = formulas.smooth_forward(gc[None], *alphas, None if g0 is None else np.array([g0]))
    return g[0]


def compressor_gain_db(x: np.ndarray, sample_rate: float, params: Mapping[str, float]) -> np.ndarray:
    """The compressor's smoothed gain (reduction + make-up) in dB at audio rate, ``(samples,)``
    float32, detected on all channels of ``(channels, samples)`` at once (linked)."""
    hop = control_hop(sample_rate)
    g = smoothed_reduction_db(frame_peaks(x, hop), sample_rate, params)[None]
    g = g + float(params["comp_makeup_db"])
    return formulas.frames_to_samples(g.astype(np.float32), hop)[0, :x.shape[-1]]


def db_to_gain(db):
    """dB -> linear amplitude factor (float32 arrays stay float32)."""
    return np.float32(10.0) ** (db / np.float32(20.0))


def process(x: np.ndarray, sample_rate: float, params: Mapping[str, float],
            stages: tuple[str, ...] = STAGES) -> np.ndarray:
    """Run EQ -> compressor -> output gain on ``x`` ``(channels, samples)``; float32, same
    shape, a new array. ``params`` maps names to floats (those of the stages that run);
    ``stages`` selects which parts run (the others are bypassed)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected (channels, samples), got shape {x.shape}")
    y = eq_apply(x, sample_rate, params) if "eq" in stages else x.copy()
    if "comp" in stages:
        y *= db_to_gain(compressor_gain_db(y, sample_rate, params))
    if "gain" in stages:
        y *= output_gain(params)
    return y


def output_gain(params: Mapping[str, float]) -> np.float32:
    """The output gain stage's linear factor."""
    return np.float32(10.0 ** (float(params["out_gain_db"]) / 20.0))
