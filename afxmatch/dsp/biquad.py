"""RBJ Audio-EQ-Cookbook biquads in torch (differentiable).

All functions take tensors of shape ``(batch,)`` (or broadcastable) for frequency, gain
and Q and return coefficient tensors of shape ``(batch, 3)`` for ``b`` and ``a``,
normalised so that ``a[..., 0] == 1``. Coefficients are computed in float64: at 20 Hz and
44.1 kHz ``cos(w0)`` is within 1e-5 of 1 and float32 loses the filter.
"""

from __future__ import annotations

import math

import torch

KINDS = ("peak", "low_shelf", "high_shelf")


def coefficients(kind: str, freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor,
                 sample_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RBJ coefficients ``(b, a)``, each ``(batch, 3)`` float64, ``a0 = 1``.

    For the shelves ``q`` is used as Q (``alpha = sin(w0) / (2 q)``), as pedalboard does,
    not the shelf slope S.
    """
    f, g, q = (torch.as_tensor(v, dtype=torch.float64) for v in (freq_hz, gain_db, q))
    f, g, q = torch.broadcast_tensors(f, g, q)
    big_a = torch.pow(10.0, g / 40.0)
    w0 = 2.0 * math.pi * f / float(sample_rate)
    cos_w, alpha = torch.cos(w0), torch.sin(w0) / (2.0 * q)
    if kind == "peak":
        b = torch.stack([1 + alpha * big_a, -2 * cos_w, 1 - alpha * big_a], -1)
        a = torch.stack([1 + alpha / big_a, -2 * cos_w, 1 - alpha / big_a], -1)
    elif kind in ("low_shelf", "high_shelf"):
        s = 1.0 if kind == "low_shelf" else -1.0  # the high shelf flips the sign of cos terms
        root = 2 * torch.sqrt(big_a) * alpha
        ap, am = big_a + 1, big_a - 1
        b = big_a[..., None] * torch.stack(
            [ap - s * am * cos_w + root, 2 * s * (am - s * ap * cos_w), ap - s * am * cos_w - root], -1)
        a = torch.stack([ap + s * am * cos_w + root, -2 * s * (am + s * ap * cos_w), ap + s * am * cos_w - root], -1)
    else:
        raise ValueError(f"unknown biquad kind {kind!r}; expected one of {KINDS}")
    a0 = a[..., :1]
    return b / a0, a / a0


def response(b: torch.Tensor, a: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Complex response of ``(batch, 3)`` biquads at angular frequencies ``omega`` (rad/sample).

    Returns ``(batch, n_freq)`` complex128.
    """
    z1 = torch.exp(-1j * omega.to(torch.float64))  # z^-1, (n_freq,)
    z2 = z1 * z1
    num = b[..., 0:1] + b[..., 1:2] * z1 + b[..., 2:3] * z2
    den = a[..., 0:1] + a[..., 1:2] * z1 + a[..., 2:3] * z2
    return num / den


def power_response(b: torch.Tensor, a: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """``|H|^2`` of ``(..., 3)`` biquads at ``omega`` (rad/sample), ``(..., n_freq)``.

    Real arithmetic in the well-conditioned form with ``phi = sin^2(w/2)``::

        |c0 + c1 z^-1 + c2 z^-2|^2 = (c0 + c1 + c2)^2 - 4 (c0 c1 + 4 c0 c2 + c1 c2) phi
                                     + 16 c0 c2 phi^2

    The plain expansion in ``cos w`` cancels catastrophically near DC when the poles sit
    next to z = 1 (low shelves at 96 kHz were 0.2 dB off).
    """
    phi = torch.sin(omega.to(torch.float64) / 2) ** 2

    def sq(c):
        c0, c1, c2 = c[..., 0:1], c[..., 1:2], c[..., 2:3]
        return (c0 + c1 + c2) ** 2 - 4 * (c0 * c1 + 4 * c0 * c2 + c1 * c2) * phi + 16 * c0 * c2 * phi * phi

    return sq(b) / sq(a)


def decay_samples(a: torch.Tensor, floor_db: float = -140.0) -> int:
    """Samples until the impulse response of ``(..., 3)`` denominators decays to ``floor_db``.

    For a complex pole pair ``r e^{+-j theta}`` the response is ``~ r^n sin((n+1) theta) /
    sin(theta)``: low-frequency poles (small theta) start ~1/sin(theta) louder, so the
    decay must go that much further. Real poles decay as ``r^n``.
    """
    with torch.no_grad():
        a1, a2 = a[..., 1].double().reshape(-1), a[..., 2].double().reshape(-1)
        disc = a1 * a1 - 4 * a2
        complex_pair = disc < 0
        r_complex = torch.sqrt(torch.clamp(a2, min=0.0))
        sin_theta = torch.sqrt(torch.clamp(-disc, min=0.0)) / (2 * torch.clamp(r_complex, min=1e-300))
        sq = torch.sqrt(torch.clamp(disc, min=0.0))
        r_real = torch.maximum((-a1 + sq).abs(), (-a1 - sq).abs()) / 2
        r = torch.where(complex_pair, r_complex, r_real).clamp(1e-300, 1.0 - 1e-12)
        boost = torch.where(complex_pair, 1.0 / torch.clamp(sin_theta, min=1e-6), torch.ones_like(r))
        level = 10.0 ** (floor_db / 20.0) / boost  # target amplitude relative to the start
        n = torch.log(level) / torch.log(r)
    return max(1, int(math.ceil(float(n.max()))))
