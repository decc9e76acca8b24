"""The matching network's inference pass in numpy alone (no torch import).

:class:`NumpyNet` computes what :class:`afxmatch.model.network.MatchNet` computes at
inference: the log-mel front end, the dilated conv encoder with joint pooling over
several windows, and the controller. It is built from a state dict of numpy arrays
(:func:`afxmatch.model.io.read_state_dict` reads ``model.pt`` without torch) and the
config's ``architecture``. Compute is float32 like the torch network; pooled statistics
are accumulated in float64.

This module is also the single source of truth for the mel filterbank and for the
constants the torch network shares (:mod:`afxmatch.model.features` and
:mod:`afxmatch.model.network` import them from here).
"""

from __future__ import annotations

import math

import numpy as np

FLOOR_DB = -100.0  # log-mel floor (dB)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # frame-level loudness quantiles pooled
DEFAULT_CONFIG = dict(sample_rate=44100, n_fft=2048, hop=512, n_mels=64, channels=128,
                      n_conv=4, embed=128, hidden=256, n_params=25, residual=False)
PRIOR_EPS = 1e-3  # priors are clipped to [eps, 1 - eps] before the logit
GROUPS, GN_EPS = 8, 1e-5  # GroupNorm of every conv layer


# ---------- mel filterbank ----------

def hz_to_mel(f):
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: float, f_min: float = 20.0,
                   f_max: float | None = None) -> np.ndarray:
    """Triangular (HTK-mel) filters, float32 ``(n_mels, n_fft // 2 + 1)``, each summing to 1.

    Computed in float64 and rounded once; the shipped model was trained with exactly
    these values (tests pin their digest)."""
    f_max = f_max or sample_rate / 2
    n_bins = n_fft // 2 + 1
    freqs = np.linspace(0.0, sample_rate / 2, n_bins, dtype=np.float64)
    lo, hi = hz_to_mel(f_min), hz_to_mel(f_max)
    edges = np.array([mel_to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)],
                     dtype=np.float64)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - left) / (centre - left)
    down = (right - freqs[None]) / (right - centre)
    fb = np.maximum(np.minimum(up, down), 0.0)
    # narrow low filters may fall between bins: give them the nearest bin
    empty = fb.sum(1) == 0
    if empty.any():
        nearest = np.argmin(np.abs(freqs[None] - centre), axis=1)
        fb[empty, nearest[empty]] = 1.0
    fb = fb / fb.sum(1, keepdims=True)
    return fb.astype(np.float32)


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (as ``torch.hann_window(n)``), float32."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


# ---------- erf and GELU ----------
# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23
# (1969): three rational approximations (|x| <= 0.5 for erf, 0.5..4 and > 4 for erfc),
# each accurate to about double precision. Coefficients highest power first (np.polyval).

_ERF_NUM = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
            3.77485237685302021e02, 3.20937758913846947e03)
_ERF_DEN = (1.0, 2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
            2.84423683343917062e03)
_ERFC_MID_NUM = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
                 6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
                 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03)
_ERFC_MID_DEN = (1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
                 1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
                 3.43936767414372164e03, 1.23033935480374942e03)
_ERFC_TAIL_NUM = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
                  1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_ERFC_TAIL_DEN = (1.0, 2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
                  6.05183413124413191e-2, 2.33520497626869185e-3)


def erf(x) -> np.ndarray:
    """The error function, elementwise, float64 (absolute error below 1e-15)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    out = np.empty_like(a)
    small = a <= 0.5
    mid = (a > 0.5) & (a <= 4.0)
    tail = ~(small | mid)  # also inf (-> 1) and NaN (stays NaN)
    t = a[small] ** 2
    out[small] = a[small] * np.polyval(_ERF_NUM, t) / np.polyval(_ERF_DEN, t)
    y = a[mid]
    out[mid] = 1.0 - np.exp(-y * y) * np.polyval(_ERFC_MID_NUM, y) / np.polyval(_ERFC_MID_DEN, y)
    y = a[tail]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = 1.0 / (y * y)
        r = (1.0 / math.sqrt(math.pi) - s * np.polyval(_ERFC_TAIL_NUM, s) / np.polyval(_ERFC_TAIL_DEN, s)) / y
        out[tail] = 1.0 - np.exp(-y * y) * r  # exp underflows to 0 long before r matters
    return np.copysign(out, x)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, ``x * Phi(x)``, in ``x``'s dtype."""
    return (0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))).astype(x.dtype, copy=False)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# ---------- the network ----------

def state_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The names and shapes of a MatchNet state dict for a full ``config``."""
    c, m, e, h, n = (config[k] for k in ("channels", "n_mels", "embed", "hidden", "n_params"))
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = m
    for i in range(config["n_conv"]):
        shapes[f"encoder.conv.{3 * i}.weight"] = (c, c_in, 3)
        shapes[f"encoder.conv.{3 * i}.bias"] = (c,)
        shapes[f"encoder.conv.{3 * i + 1}.weight"] = (c,)
        shapes[f"encoder.conv.{3 * i + 1}.bias"] = (c,)
        c_in = c
    shapes["encoder.proj.0.weight"] = (e, 2 * c + 2 * m + len(QUANTILES))
    shapes["encoder.proj.0.bias"] = (e,)
    n_in = 3 * e + (n if config["residual"] else 0)
    for i, (o, k) in enumerate(((h, n_in), (h, h), (n, h))):
        shapes[f"controller.{2 * i}.weight"] = (o, k)
        shapes[f"controller.{2 * i}.bias"] = (o,)
    return shapes


class NumpyNet:
    """MatchNet's inference pass: :meth:`embed` (encoder over jointly pooled windows)
    and :meth:`control` (controller -> normalised parameters)."""

    def __init__(self, state: dict[str, np.ndarray], architecture: dict):
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(architecture)
        self.config = cfg
        self.residual = bool(cfg["residual"])
        if cfg["channels"] % GROUPS:
            raise ValueError(f"channels={cfg['channels']} is not a multiple of {GROUPS} (GroupNorm)")
        want = state_shapes(cfg)
        missing = sorted(set(want) - set(state))
        unexpected = sorted(set(state) - set(want))
        if missing or unexpected:
            raise KeyError(f"state dict does not match the architecture: missing {missing}, "
                           f"unexpected {unexpected}")
        self.w: dict[str, np.ndarray] = {}
        for k, shape in want.items():
            v = np.asarray(state[k])
            if v.shape != shape:
                raise ValueError(f"{k} has shape {v.shape}, the architecture needs {shape}")
            self.w[k] = np.ascontiguousarray(v, dtype=np.float32)
        self.n_fft, self.hop = int(cfg["n_fft"]), int(cfg["hop"])
        self.window = hann_window(self.n_fft)
        self.fb_t = np.ascontiguousarray(mel_filterbank(self.n_fft, cfg["n_mels"], cfg["sample_rate"]).T)
        self.power_scale = np.float32(4.0) / np.square(self.window.sum(dtype=np.float32))

    def log_mel(self, x: np.ndarray) -> np.ndarray:
        """``(batch, samples)`` -> float32 ``(batch, n_mels, frames)`` in dB / 20 (as
        :class:`afxmatch.model.features.LogMel`); short inputs are zero-padded."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] < self.n_fft:
            x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, self.n_fft - x.shape[-1])])
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft, axis=-1)[..., ::self.hop, :]
        spec = np.fft.rfft(frames * self.window, axis=-1)  # complex64 (batch, frames, bins)
        power = spec.real ** 2 + spec.imag ** 2
        power *= self.power_scale
        mel = np.matmul(power, self.fb_t)  # (batch, frames, n_mels)
        db = np.float32(10.0) * np.log10(mel + np.float32(10 ** (FLOOR_DB / 10)))
        return np.ascontiguousarray((db / np.float32(20.0)).transpose(0, 2, 1))

    def _conv(self, h: np.ndarray) -> np.ndarray:
        """The conv stack: (dilated conv -> GroupNorm -> GELU) per layer, per window."""
        for i in range(self.config["n_conv"]):
            d = 2 ** i
            w, b = self.w[f"encoder.conv.{3 * i}.weight"], self.w[f"encoder.conv.{3 * i}.bias"]
            n, c_in, t = h.shape
            padded = np.zeros((n, c_in, t + 2 * d), dtype=np.float32)
            padded[:, :, d:d + t] = h
            taps = np.stack([padded[:, :, k * d:k * d + t] for k in range(3)], axis=2)  # (n, c_in, 3, t)
            h = np.matmul(w.reshape(w.shape[0], -1), taps.reshape(n, c_in * 3, t)) + b[:, None]
            h = self._group_norm(h, self.w[f"encoder.conv.{3 * i + 1}.weight"],
                                 self.w[f"encoder.conv.{3 * i + 1}.bias"])
            h = gelu(h)
        return h

    @staticmethod
    def _group_norm(h: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
        n, c, t = h.shape
        g = h.reshape(n, GROUPS, -1)
        mean = g.mean(-1, dtype=np.float64, keepdims=True)
        var = np.square(g - mean).mean(-1, keepdims=True)
        inv = (1.0 / np.sqrt(var + GN_EPS)).astype(np.float32)
        g = (g - mean.astype(np.float32)) * inv
        return g.reshape(n, c, t) * gamma[:, None] + beta[:, None]

    @staticmethod
    def _linear_gelu(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return gelu(x @ w.T + b)

    def embed(self, windows: np.ndarray, gain: float) -> np.ndarray:
        """One float32 embedding ``(embed,)`` for mono windows ``(n_windows, samples)``
        scaled by ``gain``, pooled jointly over all windows' frames."""
        windows = np.atleast_2d(np.asarray(windows, dtype=np.float32))
        mel = self.log_mel(windows * np.float32(gain))  # (n, n_mels, t)
        h = self._conv(mel)  # (n, channels, t)
        h = h.transpose(1, 0, 2).reshape(h.shape[1], -1)  # joint: (channels, n * t)
        mel = mel.transpose(1, 0, 2).reshape(mel.shape[1], -1)
        frame_level = 10 * np.log10(np.mean(10.0 ** (2 * mel.astype(np.float64)), axis=0) + 1e-10) / 20
        stats = np.concatenate([h.mean(-1, dtype=np.float64), h.std(-1, dtype=np.float64),
                                mel.mean(-1, dtype=np.float64), mel.std(-1, dtype=np.float64),
                                np.quantile(frame_level, QUANTILES)]).astype(np.float32)
        return self._linear_gelu(stats, self.w["encoder.proj.0.weight"], self.w["encoder.proj.0.bias"])

    def control(self, e_in: np.ndarray, e_ref: np.ndarray, prior_u: np.ndarray | None = None) -> np.ndarray:
        """Embeddings (and, for a residual model, the prior in [0, 1]) -> normalised
        parameters, float64 ``(n_params,)`` (as ``MatchNet.control``)."""
        e_in = np.ravel(np.asarray(e_in, dtype=np.float32))
        e_ref = np.ravel(np.asarray(e_ref, dtype=np.float32))
        feats = [e_in, e_ref, e_ref - e_in]
        offset = np.float32(0.0)
        if self.residual:
            if prior_u is None:
                raise ValueError("this model refines a prior: pass the analysis estimate (normalised)")
            p = np.clip(np.ravel(np.asarray(prior_u, dtype=np.float32)), PRIOR_EPS, 1 - PRIOR_EPS)
            feats.append(p)
            offset = np.log(p / (np.float32(1.0) - p))
        w = self.w
        h = self._linear_gelu(np.concatenate(feats), w["controller.0.weight"], w["controller.0.bias"])
        h = self._linear_gelu(h, w["controller.2.weight"], w["controller.2.bias"])
        z = offset + (h @ w["controller.4.weight"].T + w["controller.4.bias"])
        return sigmoid(z.astype(np.float64))
