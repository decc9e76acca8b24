"""The 6-band EQ against an independent RBJ-cookbook reference (scipy), physics and pedalboard."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import reference_dsp as ref
from conftest import full_params
from afxmatch.dsp import biquad, eq
from afxmatch.params import ParamSpace

RATES = (22050, 44100, 48000)
N_RANDOM = 60  # random settings per rate (>= 50 required)
MAG_TOL_DB = 0.05
TIME_TOL = 1e-4  # max |afxmatch - sosfilt| relative to the reference output's peak
EXTREME = dict(ls_freq_hz=20.0, ls_q=10.0, ls_gain_db=24.0)


def _batch(plist: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([p[k] for p in plist], dtype=torch.float64) for k in plist[0]}


def _random_settings(sr: int, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    space = ParamSpace(sr)
    return [ref.random_eq_params(rng, space) for _ in range(n)]


def _as_dict(params: dict[str, torch.Tensor], i: int = 0) -> dict[str, float]:
    return {k: float(v[i]) for k, v in params.items()}


# --------------------------------------------------------------------------- (a) magnitude


@pytest.mark.parametrize("sr", RATES)
def test_magnitude_matches_cookbook_reference(sr):
    plist = _random_settings(sr, N_RANDOM, seed=sr)
    grid = ref.log_grid(sr, n=500)
    got = eq.magnitude_db(_batch(plist), sr, torch.from_numpy(grid)).numpy()
    assert got.shape == (N_RANDOM, grid.size)
    want = np.stack([ref.magnitude_db(ref.eq_sos(p, sr), grid, sr) for p in plist])
    # the settings are not trivially flat: the comparison has something to compare
    assert np.median(np.ptp(want, axis=1)) > 10.0
    err = np.abs(got - want)
    worst = np.unravel_index(err.argmax(), err.shape)
    assert err.max() < MAG_TOL_DB, (
        f"max error {err.max():.4g} dB at {grid[worst[1]]:.1f} Hz for {plist[worst[0]]}")


@pytest.mark.parametrize("sr", RATES)
def test_magnitude_at_range_edges(sr):
    """Every band at its extreme frequency, gain and Q (all min, all max, mixed)."""
    space = ParamSpace(sr)
    settings = []
    for pick in ("min", "max", "alt1", "alt2"):
        p = {}
        for i, s in enumerate(space.specs[:18]):
            lo_hi = (s.min, s.max)
            if pick in ("min", "max"):
                p[s.name] = getattr(s, pick)
            else:
                p[s.name] = lo_hi[(i + (pick == "alt2")) % 2]
        settings.append(p)
    grid = ref.log_grid(sr, n=500)
    got = eq.magnitude_db(_batch(settings), sr, torch.from_numpy(grid)).numpy()
    want = np.stack([ref.magnitude_db(ref.eq_sos(p, sr), grid, sr) for p in settings])
    assert np.abs(got - want).max() < MAG_TOL_DB


# --------------------------------------------------------------------------- (b) filtering


def _check_filtering(x: np.ndarray, sr: float, plist: list[dict], tol: float = TIME_TOL):
    y = eq.apply(torch.from_numpy(x), sr, _batch(plist)).numpy()
    assert y.shape == x.shape
    for i, p in enumerate(plist):
        want = ref.filter_signal(ref.eq_sos(p, sr), x[i])
        err = np.abs(y[i] - want).max() / np.abs(want).max()
        assert err < tol, f"relative error {err:.3g} for {p}"


@pytest.fixture
def frame_counts(monkeypatch):
    """Records how many FFT frames each ``eq.apply`` call used (1 = single FFT, >1 = overlap-add)."""
    counts = []
    original = getattr(eq, "_filter_frames", None)
    if original is None:  # internals renamed: the numerical comparisons still run
        return None

    def spy(frames, *args, **kwargs):
        counts.append(frames.shape[-2])
        return original(frames, *args, **kwargs)

    monkeypatch.setattr(eq, "_filter_frames", spy)
    return counts


@pytest.mark.parametrize("sr", RATES)
def test_apply_matches_sosfilt_short(sr, frame_counts):
    plist = _random_settings(sr, 4, seed=sr + 1)
    x = np.random.default_rng(sr).standard_normal((4, 2, 20000))
    _check_filtering(x, sr, plist)
    assert frame_counts is None or frame_counts == [1]


@pytest.mark.parametrize("sr", RATES)
def test_apply_matches_sosfilt_long_overlap_add(sr, frame_counts):
    plist = _random_settings(sr, 2, seed=sr + 2)
    tail = eq.impulse_length(_batch(plist), sr)
    n = max(2 * eq.MIN_BLOCK * 4, 2 * 4 * tail) + 12345  # > 2 * 32768 * 4 and > 2 blocks
    x = np.random.default_rng(sr).standard_normal((2, 1, n))
    _check_filtering(x, sr, plist)
    assert frame_counts is None or (len(frame_counts) == 1 and frame_counts[0] >= 2), frame_counts


def test_apply_extreme_low_shelf_short(frame_counts):
    sr = 44100
    p = _as_dict(full_params(sr, **EXTREME))
    x = np.random.default_rng(1).standard_normal((1, 2, 50000))
    _check_filtering(x, sr, [p])
    assert frame_counts is None or frame_counts == [1]
    # the impulse response really is long: > 100k samples above -140 dB
    assert eq.impulse_length(full_params(sr, **EXTREME), sr) > 100_000


def test_apply_extreme_low_shelf_long_overlap_add(frame_counts):
    sr = 44100
    params = full_params(sr, **EXTREME)
    tail = eq.impulse_length(params, sr)
    n = 2 * 4 * tail + 5000  # the block is 4 * tail here; > 2 blocks takes overlap-add
    x = np.random.default_rng(2).standard_normal((1, 1, n))
    _check_filtering(x, sr, [_as_dict(params)])
    assert frame_counts is None or (len(frame_counts) == 1 and frame_counts[0] >= 2), frame_counts


def test_apply_extreme_impulse_response_decays():
    """The extreme shelf's impulse response (sosfilt) matches eq.apply's over its whole length."""
    sr = 44100
    params = full_params(sr, **EXTREME)
    n = 200_000
    imp = np.zeros((1, 1, n))
    imp[..., 0] = 1.0
    got = eq.apply(torch.from_numpy(imp), sr, params).numpy()[0, 0]
    want = ref.filter_signal(ref.eq_sos(_as_dict(params), sr), imp[0, 0])
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
    # and it is long: still above -80 dB of its peak after 50k samples
    assert np.abs(want[50_000:]).max() > 1e-4 * np.abs(want).max()


def test_apply_float32_input():
    sr = 48000
    plist = _random_settings(sr, 2, seed=5)
    x = np.random.default_rng(5).standard_normal((2, 2, 30000)).astype(np.float32)
    y = eq.apply(torch.from_numpy(x), sr, _batch(plist))
    assert y.dtype == torch.float32
    for i, p in enumerate(plist):
        want = ref.filter_signal(ref.eq_sos(p, sr), x[i].astype(np.float64))
        assert np.abs(y[i].numpy() - want).max() < 1e-4 * np.abs(want).max()


# --------------------------------------------------------------------------- (c) physics


def _response_db(params, sr, freqs_hz) -> np.ndarray:
    """Cascade magnitude from the complex response ``eq.response`` (no cancellation-prone |H|^2)."""
    omega = 2 * math.pi * torch.as_tensor(freqs_hz, dtype=torch.float64) / sr
    return 20.0 * torch.log10(eq.response(params, sr, omega).abs()).numpy()


def _single_band_cases(sr, prefixes, seed, n=5):
    space = ParamSpace(sr)
    rng = np.random.default_rng(seed)
    for prefix in prefixes:
        fspec = space[f"{prefix}_freq_hz"]
        for _ in range(n):
            f = float(np.exp(rng.uniform(np.log(fspec.min), np.log(fspec.max))))
            g, q = float(rng.uniform(-24, 24)), float(np.exp(rng.uniform(np.log(0.1), np.log(10))))
            yield prefix, f, g, q, full_params(sr, **{f"{prefix}_freq_hz": f, f"{prefix}_gain_db": g,
                                                        f"{prefix}_q": q})


@pytest.mark.parametrize("sr", (8000, 22050, 44100, 48000))
def test_peak_gives_gain_at_centre(sr):
    for prefix, f, g, q, params in _single_band_cases(sr, ("p1", "p2", "p3", "p4"), seed=sr):
        freqs = np.array([0.0, f, sr / 2])
        m = _response_db(params, sr, freqs)[0]
        assert m[1] == pytest.approx(g, abs=1e-6)
        # a peak is unity at DC and Nyquist (the other bands are flat)
        assert m[0] == pytest.approx(0.0, abs=1e-6)
        assert m[2] == pytest.approx(0.0, abs=1e-6)
        # magnitude_db (the fitting path) says the same, within the 0.05 dB contract
        assert eq.magnitude_db(params, sr, torch.from_numpy(freqs))[0].numpy() == pytest.approx(m, abs=MAG_TOL_DB)


@pytest.mark.parametrize("sr", (8000, 22050, 44100, 48000))
def test_shelves_give_half_gain_at_cutoff(sr):
    for prefix, f, g, q, params in _single_band_cases(sr, ("ls", "hs"), seed=sr + 7, n=6):
        freqs = np.array([0.0, f, sr / 2])
        m = _response_db(params, sr, freqs)[0]
        assert m[1] == pytest.approx(g / 2, abs=1e-6)
        assert m[0] == pytest.approx(g if prefix == "ls" else 0.0, abs=1e-6)
        assert m[2] == pytest.approx(g if prefix == "hs" else 0.0, abs=1e-6)
        assert eq.magnitude_db(params, sr, torch.from_numpy(freqs))[0].numpy() == pytest.approx(m, abs=MAG_TOL_DB)


_LOW_SHELF_EXTREMES = [dict(ls_freq_hz=f, ls_gain_db=g, ls_q=q)
                       for f in (20.0, 25.0, 30.0, 50.0) for g in (-24.0, -12.0, -3.0, 3.0, 24.0)
                       for q in (0.1, 0.707, 3.0, 10.0)]


@pytest.mark.parametrize("sr", [22050, 44100, 48000, 96000, 192000])
def test_magnitude_low_shelf_extremes_all_rates(sr):
    """Low shelves at 20-50 Hz with high Q: poles next to z = 1, the ill-conditioned corner.

    Regression guard: a |H|^2 expansion in cos(w) lost 0.006 dB here at 48 kHz and 0.23 dB
    at 96 kHz; the sin^2(w/2) form is good to ~1e-7 dB even at 192 kHz.
    """
    grid = np.concatenate([[0.0], ref.log_grid(sr, n=2000)])
    plist = [_as_dict(full_params(sr, **o)) for o in _LOW_SHELF_EXTREMES]
    got = eq.magnitude_db(_batch(plist), sr, torch.from_numpy(grid)).numpy()
    want = np.stack([ref.magnitude_db(ref.eq_sos(p, sr), grid, sr) for p in plist])
    err = np.abs(got - want)
    i, j = np.unravel_index(err.argmax(), err.shape)
    assert err.max() < MAG_TOL_DB, f"{err.max():.3g} dB at {grid[j]:.1f} Hz for {_LOW_SHELF_EXTREMES[i]}"
    # precision guard, far inside the contract: float64 evaluation should be ~exact
    assert err.max() < 1e-4, f"{err.max():.3g} dB at {grid[j]:.1f} Hz for {_LOW_SHELF_EXTREMES[i]}"
    # the complex response (used for filtering) is accurate everywhere
    resp = _response_db(_batch(plist), sr, grid)
    assert np.abs(resp - want).max() < 1e-4


def test_reference_physics():
    """The reference obeys the same physics (so agreement is not a shared mistake)."""
    sr = 44100
    for designer, at, expect in ((ref.peaking_eq, 1000.0, 9.0), (ref.low_shelf, 100.0, 4.5),
                                 (ref.high_shelf, 8000.0, 4.5)):
        sos = np.array([designer(at, 9.0, 3.0, sr)])
        assert ref.magnitude_db(sos, np.array([at]), sr)[0] == pytest.approx(expect, abs=1e-9)
    sos = np.array([ref.low_shelf(100.0, -12.0, 0.707, sr)])
    assert ref.magnitude_db(sos, np.array([1.0, 20000.0]), sr) == pytest.approx([-12.0, 0.0], abs=0.01)
    sos = np.array([ref.high_shelf(5000.0, -12.0, 0.707, sr)])
    assert ref.magnitude_db(sos, np.array([20.0, 22000.0]), sr) == pytest.approx([0.0, -12.0], abs=0.01)


@pytest.mark.parametrize("sr", RATES)
def test_flat_eq_is_identity(sr):
    space = ParamSpace(sr)
    rng = np.random.default_rng(3)
    plist = []
    for _ in range(3):
        p = ref.random_eq_params(rng, space)
        plist.append({k: (0.0 if k.endswith("_gain_db") else v) for k, v in p.items()})
    x = rng.standard_normal((3, 2, 40000))
    y = eq.apply(torch.from_numpy(x), sr, _batch(plist)).numpy()
    assert np.abs(y - x).max() < 1e-6
    m = eq.magnitude_db(_batch(plist), sr, torch.from_numpy(ref.log_grid(sr))).numpy()
    assert np.abs(m).max() < 1e-6


def test_biquad_coefficients_vs_reference():
    """Coefficient-level agreement (a0 normalised), including the range extremes."""
    sr = 44100
    for kind, designer in (("peak", ref.peaking_eq), ("low_shelf", ref.low_shelf),
                           ("high_shelf", ref.high_shelf)):
        for f, g, q in ((20.0, 24.0, 10.0), (20.0, -24.0, 0.1), (1000.0, 6.0, 0.707),
                        (19845.0, -24.0, 10.0), (19845.0, 24.0, 0.1)):
            b, a = biquad.coefficients(kind, *(torch.tensor([v], dtype=torch.float64) for v in (f, g, q)),
                                       sr)
            row = designer(f, g, q, sr)
            np.testing.assert_allclose(b[0].numpy(), row[:3], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(a[0].numpy(), row[3:], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        biquad.coefficients("notch", torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([1.0]), sr)


def test_impulse_length_covers_decay():
    """impulse_length is at least where the reference impulse response falls below -140 dB."""
    sr = 44100
    for plist in (_random_settings(sr, 3, seed=11), [_as_dict(full_params(sr, **EXTREME))]):
        for p in plist:
            params = _batch([p])
            n = eq.impulse_length(params, sr)
            imp = np.zeros(2 * n + 1000)
            imp[0] = 1.0
            h = ref.filter_signal(ref.eq_sos(p, sr), imp)
            last = np.nonzero(np.abs(h) > 1e-7 * np.abs(h).max())[0][-1]
            assert last <= n, (last, n)


# --------------------------------------------------------------------------- pedalboard


def _pedalboard_db(plugin, sr: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude (dB) of a pedalboard plugin from the FFT of its impulse response of length n."""
    x = np.zeros((1, n), dtype=np.float32)
    x[0, 0] = 1.0
    h = plugin(x, sr)[0].astype(np.float64)
    # the response must have decayed: otherwise the FFT is not the IIR's response
    assert np.abs(h[-n // 8:]).max() < 1e-6 * np.abs(h).max()
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    return freqs, 20.0 * np.log10(np.abs(np.fft.rfft(h)))


def _afx_single_band_db(prefix: str, f: float, g: float, q: float, sr: float, freqs: np.ndarray):
    params = full_params(sr, **{f"{prefix}_freq_hz": f, f"{prefix}_gain_db": g, f"{prefix}_q": q})
    return eq.magnitude_db(params, sr, torch.from_numpy(freqs))[0].numpy()


def _pedalboard_cases(sr, seed, low: bool):
    """(prefix, pedalboard class, f, g, q) random settings; ``low`` picks bands below 200 Hz."""
    pedalboard = pytest.importorskip("pedalboard")
    rng = np.random.default_rng(seed)
    space = ParamSpace(sr)

    def draw(lo_hz, hi_hz):
        return (float(np.exp(rng.uniform(np.log(lo_hz), np.log(hi_hz)))), float(rng.uniform(-24, 24)),
                float(np.exp(rng.uniform(np.log(0.1), np.log(10.0)))))

    cases = []
    for _ in range(3):
        if low:
            cases.append(("ls", pedalboard.LowShelfFilter, *draw(20.0, 200.0)))
            cases.append(("p1", pedalboard.PeakFilter, *draw(20.0, 200.0)))
        else:
            cases.append(("p1", pedalboard.PeakFilter, *draw(200.0, space["p4_freq_hz"].max)))
            cases.append(("hs", pedalboard.HighShelfFilter,
                          *draw(space["hs_freq_hz"].min, space["hs_freq_hz"].max)))
    return cases


@pytest.mark.parametrize("sr", (44100, 48000))
def test_pedalboard_agrees_mid_and_high_bands(sr):
    """Peaks >= 200 Hz and high shelves: within 0.05 dB over the whole 20 Hz - 0.45 sr grid."""
    n = 1 << 17
    for prefix, cls, f, g, q in _pedalboard_cases(sr, seed=sr, low=False):
        freqs, pb = _pedalboard_db(cls(cutoff_frequency_hz=f, gain_db=g, q=q), sr, n)
        sel = (freqs >= 20.0) & (freqs <= 0.45 * sr)
        ours = _afx_single_band_db(prefix, f, g, q, sr, freqs[sel])
        err = np.abs(ours - pb[sel]).max()
        assert err < MAG_TOL_DB, f"{cls.__name__}(f={f:.1f}, g={g:.2f}, q={q:.3f}): {err:.3g} dB"


def test_pedalboard_agrees_low_bands_at_8k():
    """Low shelves/peaks below 200 Hz at 8 kHz: within 0.05 dB over 20 Hz - 3.6 kHz."""
    sr, n = 8000, 1 << 17
    for prefix, cls, f, g, q in _pedalboard_cases(sr, seed=8, low=True):
        freqs, pb = _pedalboard_db(cls(cutoff_frequency_hz=f, gain_db=g, q=q), sr, n)
        sel = (freqs >= 20.0) & (freqs <= 0.45 * sr)
        ours = _afx_single_band_db(prefix, f, g, q, sr, freqs[sel])
        err = np.abs(ours - pb[sel]).max()
        assert err < MAG_TOL_DB, f"{cls.__name__}(f={f:.1f}, g={g:.2f}, q={q:.3f}): {err:.3g} dB"


@pytest.mark.parametrize("sr", (44100, 48000))
def test_pedalboard_agrees_low_bands_full_rate(sr):
    """Bands below 200 Hz at 44.1/48 kHz.

    pedalboard (JUCE) computes and runs the biquads in float32; with w0 ~ 3e-3 rad the
    float32 rounding of the coefficients moves the response by up to ~1 dB below ~500 Hz
    (measured over 100 random settings: 0.96 dB max). So: 0.05 dB from 500 Hz up, and a
    documented looser 1.5 dB below 500 Hz. (The same settings at 8 kHz agree within 0.05 dB.)
    """
    n = 1 << 18
    for prefix, cls, f, g, q in _pedalboard_cases(sr, seed=sr + 1, low=True):
        freqs, pb = _pedalboard_db(cls(cutoff_frequency_hz=f, gain_db=g, q=q), sr, n)
        sel = (freqs >= 20.0) & (freqs <= 0.45 * sr)
        ours = _afx_single_band_db(prefix, f, g, q, sr, freqs[sel])
        diff = np.abs(ours - pb[sel])
        high = freqs[sel] >= 500.0
        assert diff[high].max() < MAG_TOL_DB
        assert diff[~high].max() < 1.5


def test_pedalboard_full_cascade_at_8k():
    """The whole 6-band EQ as a pedalboard chain (8 kHz, so float32 is accurate everywhere)."""
    pedalboard = pytest.importorskip("pedalboard")
    sr, n = 8000, 1 << 17
    classes = {"low_shelf": pedalboard.LowShelfFilter, "peak": pedalboard.PeakFilter,
               "high_shelf": pedalboard.HighShelfFilter}
    for p in _random_settings(sr, 3, seed=99):
        board = pedalboard.Pedalboard([
            classes[kind](cutoff_frequency_hz=p[f"{prefix}_freq_hz"], gain_db=p[f"{prefix}_gain_db"],
                          q=p[f"{prefix}_q"]) for prefix, kind in ref.BANDS])
        freqs, pb = _pedalboard_db(board, sr, n)
        sel = (freqs >= 20.0) & (freqs <= 0.45 * sr)
        ours = eq.magnitude_db(_batch([p]), sr, torch.from_numpy(freqs[sel]))[0].numpy()
        assert np.abs(ours - pb[sel]).max() < MAG_TOL_DB


@pytest.mark.parametrize("tail", [1100, 1024, 3000])
def test_filter_response_on_odd_fft_grids(tail):
    # fft_size(1100) = 1125 is odd: the response must be sampled on the rfft bins
    # 2 pi k / m (the last is not pi), or the impulse response comes out wrong (~1e-5)
    from scipy.signal import lfilter

    b = torch.tensor([[0.2, 0.3, 0.1]], dtype=torch.float64)
    a = torch.tensor([[1.0, -0.9, 0.2]], dtype=torch.float64)  # decays in well under 1000 samples
    x = np.random.default_rng(tail).standard_normal((1, 1, 30000))
    y = eq.filter_response(torch.from_numpy(x), lambda omega: biquad.response(b, a, omega), tail)
    expected = lfilter(b[0].numpy(), a[0].numpy(), x[0, 0])
    assert np.abs(y[0, 0].numpy() - expected).max() < 1e-10
