"""RBJ Audio-EQ-Cookbook biquads in torch (differentiable).

All functions take tensors of shape ``(batch,)`` (or broadcastable) for frequency, gain
and Q and return coefficient tensors of shape ``(batch, 3)`` for ``b`` and ``a``,
normalised so that ``a[..., 0] == 1``. Coefficients are computed in float64: at 20 Hz and
44.1 kHz ``cos(w0)`` is within 1e-5 of 1 and float32 loses the filter. The formulas are
those of :mod:`afxmatch.dsp.formulas`, shared with the numpy chain.
"""

from __future__ import annotations

import torch

from . import formulas
from .formulas import KINDS

__all__ = ["KINDS", "coefficients", "response", "power_response", "decay_samples"]


def coefficients(kind: str, freq_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor,
                 sample_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RBJ coefficients ``(b, a)``, each ``(batch, 3)`` float64, ``a0 = 1``.

    For the shelves ``q`` is used as Q (``alpha = sin(w0) / (2 q)``), as pedalboard does,
    not the shelf slope S.
    """
    f, g, q = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=torch.float64) for v in (freq_hz, gain_db, q)))
    return formulas.rbj_coefficients(kind, f, g, q, sample_rate, torch)


def response(b: torch.Tensor, a: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Complex response of ``(batch, 3)`` biquads at angular frequencies ``omega`` (rad/sample).

    Returns ``(batch, n_freq)`` complex128.
    """
    return formulas.complex_response(b, a, omega.to(torch.float64), torch)


def power_response(b: torch.Tensor, a: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """``|H|^2`` of ``(..., 3)`` biquads at ``omega`` (rad/sample), ``(..., n_freq)``, in
    the well-conditioned ``sin^2(w/2)`` form (:func:`afxmatch.dsp.formulas.power_response`)."""
    return formulas.power_response(b, a, omega.to(torch.float64), torch)


def decay_samples(a: torch.Tensor, floor_db: float = formulas.DECAY_FLOOR_DB) -> int:
    """Samples until the impulse response of ``(..., 3)`` denominators decays to ``floor_db``
    (the longest of all; see :func:`afxmatch.dsp.formulas.decay_samples`)."""
    with torch.no_grad():
        a1, a2 = a[..., 1].double().reshape(-1), a[..., 2].double().reshape(-1)
        return formulas.decay_samples(a1, a2, floor_db, torch)
