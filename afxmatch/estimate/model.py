"""The ``model`` method: a trained network predicts the chain's parameters in one pass.

The network works on mono 44.1 kHz audio peak-normalised to -12 dBFS (as in training).
Up to ``MAX_WINDOWS`` analysis windows of the training length are taken across the whole
file (the loudest window of each of ``MAX_WINDOWS`` equal sections, silent ones dropped);
the encoder's time pooling runs jointly over all windows' frames. The level normalisation
is then undone on the parameters: the compressor threshold moves with the input's level
and the output gain absorbs both files' normalisation gains.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

import numpy as np

from ..model.numpy_net import NumpyNet
from ..params import ParamSpace

MODEL_RATE = 44100
MAX_WINDOWS = 8
PEAK_DB = -12.0
SILENCE_DB = 40.0  # windows this far below the loudest are dropped


def _mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x if x.ndim == 1 else x.mean(axis=0)


def hop_energies(mono: np.ndarray, hop: int) -> np.ndarray:
    """The sum of squares of each whole ``hop``-sample block of ``mono``,
    float64 ``(len(mono) // hop,)``. Blocks are independent, so a long file's energies
    can be made block by block and concatenated."""
    n_blocks = mono.shape[-1] // hop
    return np.einsum("ij,ij->i", *(mono[: n_blocks * hop].reshape(n_blocks, hop),) * 2).astype(np.float64)


def window_hop(win: int) -> int:
    """The block length of :func:`hop_energies` that :func:`choose_windows` uses."""
    return max(1, win // 4)


def choose_windows(mono: np.ndarray, win: int, max_windows: int = MAX_WINDOWS) -> list[int]:
    """Start indices of up to ``max_windows`` loud windows spread over the whole signal."""
    n = mono.shape[-1]
    if n <= win:
        return [0]
    if n <= win * max_windows:  # short file: non-overlapping tiling covers it
        cand = np.array(sorted(set(list(range(0, n - win + 1, win)) + [n - win])))
        e = np.array([float(np.mean(np.square(mono[s:s + win], dtype=np.float64))) for s in cand])
        return _drop_silent(cand, e, max_windows)
    return choose_windows_long(hop_energies(mono, window_hop(win)), n, win, max_windows)


def choose_windows_long(energies: np.ndarray, n: int, win: int, max_windows: int = MAX_WINDOWS) -> list[int]:
    """:func:`choose_windows` for ``n > win * max_windows`` from the signal's
    :func:`hop_energies` alone (the loudest window of each of ``max_windows`` sections)."""
    hop = window_hop(win)
    n_blocks = len(energies)
    # window energies from per-hop block energies (cheap on long files)
    csum = np.concatenate([[0.0], np.cumsum(energies)])
    per = win // hop
    starts = np.arange(0, n_blocks - per + 1) * hop
    energy = (csum[per:] - csum[:-per])[: len(starts)] / (per * hop)
    sections = np.array_split(np.arange(len(starts)), max_windows)
    best = [sec[np.argmax(energy[sec])] for sec in sections if len(sec)]
    return _drop_silent(starts[best], energy[best], max_windows)


def _drop_silent(cand: np.ndarray, e: np.ndarray, max_windows: int) -> list[int]:
    keep = 10 * np.log10(e + 1e-20) > 10 * np.log10(e.max() + 1e-20) - SILENCE_DB
    return [int(s) for s in cand[keep]][:max_windows]


def source_window(rate: float, win: int) -> int:
    """Samples at ``rate`` that give ``win`` samples at the model's rate (with a margin)."""
    return win if float(rate) == MODEL_RATE else int(math.ceil(win * float(rate) / MODEL_RATE)) + 64


def _windows_at_model_rate(x: np.ndarray, rate: float, win: int) -> tuple[np.ndarray, float]:
    """Mono windows ``(n, win)`` at 44.1 kHz (resampling only the chosen windows) and the
    full-file mono peak."""
    mono = _mono(x)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    src_win = source_window(rate, win)
    return to_model_rate([mono[s:s + src_win] for s in choose_windows(mono, src_win)], rate, win), peak


def to_model_rate(segments: list[np.ndarray], rate: float, win: int) -> np.ndarray:
    """Mono segments at ``rate`` -> ``(n, win)`` windows at 44.1 kHz (cut or zero-padded)."""
    rate = float(rate)
    out = []
    for seg in segments:
        if rate != MODEL_RATE:
            from scipy.signal import resample_poly  # only for other rates (import costs 0.8 s)

            g = math.gcd(int(round(rate)), MODEL_RATE)
            seg = resample_poly(seg, MODEL_RATE // g, int(round(rate)) // g).astype(np.float32)
        seg = seg[:win]
        if seg.shape[-1] < win:
            seg = np.pad(seg, (0, win - seg.shape[-1]))
        out.append(seg)
    return np.stack(out)


def _embed(model, windows: np.ndarray, gain: float) -> np.ndarray:
    """One embedding ``(embed,)`` for ``(n_windows, samples)`` windows, pooled jointly over
    their frames. ``model``: the numpy network (inference, no torch) or a torch
    ``MatchNet`` (training code and tests; the same numbers within ~1e-6)."""
    if isinstance(model, NumpyNet):
        return model.embed(windows, gain)
    import torch

    with torch.no_grad():
        enc = model.encoder
        e = enc.embed_stats(enc.stats(enc.mel(torch.from_numpy(windows * np.float32(gain))), joint=True))
    return e[0].numpy()


REFERENCE_CACHE_SIZE = 8
_REFERENCE_EMBEDDINGS: OrderedDict = OrderedDict()


def reference_embedding(model, windows: np.ndarray, gain: float) -> np.ndarray:
    """:func:`_embed` for a reference, remembered for the last ``REFERENCE_CACHE_SIZE``
    (model, windows, gain): a batch matches many inputs to one reference, whose
    embedding (~0.1 s) is then made once. The key holds a digest of the windows' bytes
    (~4 ms for 8 windows), so a changed reference is never mistaken for a cached one.
    Only the numpy network is cached: a torch network may be in training."""
    if not isinstance(model, NumpyNet):
        return _embed(model, windows, gain)
    w = np.ascontiguousarray(windows, dtype=np.float32)
    key = (model, float(gain), w.shape, hashlib.blake2b(w.tobytes(), digest_size=16).digest())
    if key in _REFERENCE_EMBEDDINGS:
        _REFERENCE_EMBEDDINGS.move_to_end(key)
        return _REFERENCE_EMBEDDINGS[key]
    e = _embed(model, w, gain)
    e.setflags(write=False)
    _REFERENCE_EMBEDDINGS[key] = e
    while len(_REFERENCE_EMBEDDINGS) > REFERENCE_CACHE_SIZE:
        _REFERENCE_EMBEDDINGS.popitem(last=False)
    return e


def _control(model, e_in: np.ndarray, e_ref: np.ndarray, prior_u: np.ndarray | None) -> np.ndarray:
    """The network's normalised parameters ``(n_params,)`` float64 in [0, 1]."""
    if isinstance(model, NumpyNet):
        u = model.control(e_in, e_ref, prior_u)
    else:
        import torch

        model.eval()
        with torch.no_grad():
            t = [torch.from_numpy(np.asarray(v, dtype=np.float32))[None] for v in (e_in, e_ref)]
            prior = None if prior_u is None else torch.from_numpy(np.asarray(prior_u, dtype=np.float64))[None]
            u = model.control(*t, prior)[0].double().numpy()
    return np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)


def model_window(config: dict) -> int:
    """The network's window length (samples at 44.1 kHz) from its config."""
    return int(config.get("train_length") or config.get("training", {}).get("length") or 65536)


def estimate_model(x: np.ndarray, sample_rate: float, ref: np.ndarray, ref_rate: float,
                   model, config: dict, prior: dict | None = None) -> dict[str, float]:
    """Physical parameters (at ``sample_rate``) that make ``x`` (C, N) sound like ``ref``.

    A residual model (``config["architecture"]["residual"]``) refines ``prior``, the
    analysis estimate for the same pair (:func:`afxmatch.estimate.analysis.analysis_prior`).
    Several references: ``ref`` and ``ref_rate`` are lists; their windows are pooled
    (:func:`pooled_reference_windows`) and ``prior`` should come from their combined
    features (:func:`afxmatch.analysis.combine.combine_features`).
    """
    win = model_window(config)
    xw, x_peak = _windows_at_model_rate(x, sample_rate, win)
    if isinstance(ref, (list, tuple)):
        rw, r_peak = pooled_reference_windows(ref, ref_rate, win)
    else:
        rw, r_peak = _windows_at_model_rate(ref, ref_rate, win)
    return estimate_from_windows(xw, x_peak, sample_rate, rw, r_peak, model, prior)


def pooled_reference_windows(refs, rates, win: int) -> tuple[np.ndarray, float]:
    """The windows of several references as one reference: ``((n, win) windows, 1.0)``.

    Each reference's windows (up to ``MAX_WINDOWS``) are scaled by the inverse of its own
    mono peak, so after the model's peak normalisation every reference sits at
    ``PEAK_DB`` as in training; the encoder then pools over all windows jointly.
    ``rates``: one sample rate per reference (or one for all).
    """
    rates = list(rates) if isinstance(rates, (list, tuple)) else [rates] * len(refs)
    pooled = []
    for r, rate in zip(refs, rates):
        w, peak = _windows_at_model_rate(r, rate, win)
        pooled.append(w * np.float32(1.0 / peak) if peak > 0 else w)
    return np.concatenate(pooled), 1.0


def estimate_from_windows(xw: np.ndarray, x_peak: float, sample_rate: float, rw: np.ndarray,
                          r_peak: float, model, prior: dict | None = None) -> dict[str, float]:
    """:func:`estimate_model` from the windows already chosen and resampled (``(n, win)``
    at 44.1 kHz, :func:`to_model_rate`) and each signal's full-length mono peak."""
    target = 10 ** (PEAK_DB / 20)
    gx = target / x_peak if x_peak > 0 else 1.0
    gr = target / r_peak if r_peak > 0 else 1.0
    a_db, b_db = 20 * math.log10(gx), 20 * math.log10(gr)
    space44 = ParamSpace(MODEL_RATE)
    u_prior = None
    if model.residual:
        if prior is None:
            raise ValueError("this model refines the analysis estimate: pass prior=")
        p = dict(prior)
        p["comp_threshold_db"] = p["comp_threshold_db"] + a_db  # into the model's -12 dBFS frame
        p["out_gain_db"] = 0.0
        u_prior = np.asarray(space44.normalise(space44.validate(p, clip=True)), dtype=np.float64)
    u = _control(model, _embed(model, xw, gx), reference_embedding(model, rw, gr), u_prior)
    params = space44.denormalise(u.tolist())
    params["comp_threshold_db"] -= a_db
    params["out_gain_db"] += a_db - b_db
    return ParamSpace(sample_rate).validate(params, clip=True)
