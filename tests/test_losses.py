"""The training loss against an independent numpy STFT and against analytic values."""

import math

import numpy as np
import pytest
import torch

from afxmatch.model.losses import FFT_SIZES, LEGACY_FFT_SIZES, MRSTFTLoss


def _np_mag(x: np.ndarray, n: int, hop: int, eps: float, clamp: bool) -> np.ndarray:
    """|STFT| as torch.stft(center=True, reflect padding, periodic Hann) computes it."""
    padded = np.pad(x, n // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n)[::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    return np.sqrt(np.maximum(power, eps)) if clamp else np.sqrt(power + eps)


def _np_loss(y: np.ndarray, t: np.ndarray, sizes, hop_fraction: float, terms: str) -> float:
    total = 0.0
    for n in sizes:
        hop = max(1, int(n * hop_fraction))
        if terms == "lin+log":   # the quality benchmark's floor: sqrt(max(power, 1e-8))
            a, b = _np_mag(y, n, hop, 1e-8, True), _np_mag(t, n, hop, 1e-8, True)
            first = np.abs(a - b).mean()
        else:                    # the shipped model's: sqrt(power + 1e-7)
            a, b = _np_mag(y, n, hop, 1e-7, False), _np_mag(t, n, hop, 1e-7, False)
            first = np.linalg.norm(b - a) / np.linalg.norm(b)
        total += first + np.abs(np.log(a) - np.log(b)).mean()
    return total / len(sizes)


@pytest.fixture(scope="module")
def signals():
    rng = np.random.default_rng(7)
    t = (0.1 * rng.standard_normal(40000)).astype(np.float32)
    y = (0.8 * t + 0.02 * rng.standard_normal(40000)).astype(np.float32)
    return y, t


@pytest.mark.parametrize("terms", ["lin+log", "sc+log"])
def test_loss_matches_numpy_reference(signals, terms):
    y, t = signals
    loss = MRSTFTLoss(terms=terms)
    got = float(loss(torch.from_numpy(y)[None, None], torch.from_numpy(t)[None, None]))
    sizes = FFT_SIZES if terms == "lin+log" else LEGACY_FFT_SIZES
    want = _np_loss(y.astype(np.float64), t.astype(np.float64), sizes, loss.hop_fraction, terms)
    assert loss.fft_sizes == sizes
    assert loss.hop_fraction == (0.5 if terms == "lin+log" else 0.25)
    assert got == pytest.approx(want, rel=2e-4)


def test_loss_of_a_6db_gain_is_analytic(signals):
    """y = 2 t: every log-magnitude differs by ln 2; the linear term is the target's mean
    magnitude; spectral convergence is exactly 1."""
    _, t = signals
    tt = torch.from_numpy(t)[None, None]
    lin = MRSTFTLoss(terms="lin+log")
    mean_mag = np.mean([_np_mag(t.astype(np.float64), n, n // 2, 1e-8, True).mean() for n in FFT_SIZES])
    assert float(lin(2 * tt, tt)) == pytest.approx(mean_mag + math.log(2), rel=1e-4)
    sc = MRSTFTLoss(terms="sc+log")
    assert float(sc(2 * tt, tt)) == pytest.approx(1 + math.log(2), rel=1e-4)
    assert float(lin(tt, tt)) == 0.0


def test_loss_per_item_and_unknown_terms(signals):
    y, t = signals
    batch_y = torch.from_numpy(np.stack([y, t]))[:, None]
    batch_t = torch.from_numpy(np.stack([t, t]))[:, None]
    per_item = MRSTFTLoss()(batch_y, batch_t, reduce=False)
    assert per_item.shape == (2,)
    assert float(per_item[1]) == 0.0 and float(per_item[0]) > 0.05
    with pytest.raises(ValueError, match="lin\\+log"):
        MRSTFTLoss(terms="l2")


def test_long_term_spectrum_term_against_numpy(signals):
    """sc+log+lts = sc+log + the mean |ln| difference of the long-term band magnitudes
    (frame-averaged power at the largest FFT, 1/6-octave triangular bands), computed here
    with numpy; a 6 dB gain adds exactly ln 2 to it."""
    from afxmatch.analysis.spectrum import triangular_bands

    y, t = signals
    yy, tt = (torch.from_numpy(v)[None, None] for v in (y, t))
    lts = MRSTFTLoss(terms="sc+log+lts")
    base = float(MRSTFTLoss(terms="sc+log")(yy, tt))
    n = max(LEGACY_FFT_SIZES)
    bands = triangular_bands(n, 44100.0, 18000.0)[0]

    def long_term(v):
        power = (_np_mag(v.astype(np.float64), n, n // 4, 1e-7, False) ** 2).mean(0)
        return 0.5 * np.log(bands @ power + 1e-7)

    want = base + np.abs(long_term(y) - long_term(t)).mean()
    assert float(lts(yy, tt)) == pytest.approx(want, rel=2e-4)
    assert float(lts(2 * tt, tt)) == pytest.approx(1 + 2 * math.log(2), rel=1e-4)
    assert float(lts(tt, tt)) == 0.0
