"""Tests of the synthetic style-pair generator (afxmatch/model/pairs.py).

Fast and corpus-free: all audio is generated on the fly (filtered noise + tones).
"""
import math

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, correlate, sosfilt, sosfreqz

from afxmatch.model import pairs
from afxmatch.model.pairs import PairConfig, PairDataset, SilentAudioError, make_pair

SR = 44100
L = 16384  # small excerpts keep the tests fast
PEAK = 10 ** (-12 / 20)


def music_like(seconds=4.0, channels=2, seed=0, sr=SR):
    """Pink-ish noise + a few tones with a slow amplitude modulation, (channels, samples)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    noise = rng.standard_normal((channels, n))
    noise = sosfilt(butter(1, 800, "low", fs=sr, output="sos"), noise, axis=-1) * 3
    tones = sum(0.2 * np.sin(2 * np.pi * f * t + p) for f, p in ((110, 0), (440, 1), (2500, 2)))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t)
    return (0.2 * env * (noise + tones)).astype(np.float32)


def band_db(x, sr=SR, edges=(50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 19000)):
    """Long-term spectrum in octave-ish bands, dB (mono mix)."""
    m = x.mean(axis=0)
    spec = np.abs(np.fft.rfft(m * np.hanning(len(m)))) ** 2
    f = np.fft.rfftfreq(len(m), 1 / sr)
    return np.array([10 * np.log10(spec[(f >= a) & (f < b)].mean() + 1e-20)
                     for a, b in zip(edges[:-1], edges[1:])])


def tilt_db_per_octave(x):
    b = band_db(x)
    centres = np.log2(np.sqrt(np.array([50, 100, 200, 400, 800, 1600, 3200, 6400, 12800]) *
                              np.array([100, 200, 400, 800, 1600, 3200, 6400, 12800, 19000])))
    return float(np.polyfit(centres, b, 1)[0])


def peak(x):
    return float(np.max(np.abs(x)))


# ------------------------------------------------------------------ shapes and levels

@pytest.mark.parametrize("channels", [1, 2])
def test_shapes_dtypes_and_peak_levels(channels):
    cfg = PairConfig(length=L)
    audio = music_like(channels=channels)
    for seed in range(5):
        out = make_pair(audio, np.random.default_rng(seed), cfg)
        assert set(out) == {"input", "reference", "target"}
        for k in ("input", "reference", "target"):
            assert out[k].shape == (channels, L)
            assert out[k].dtype == np.float32
            assert out[k].flags["C_CONTIGUOUS"]
            assert np.all(np.isfinite(out[k]))
        # each branch's 2L output is normalised to -12 dBFS *before* the A/B split, so the
        # louder of target (A) / reference (B) sits exactly at -12 dBFS and neither exceeds it
        styled_peak = max(peak(out["target"]), peak(out["reference"]))
        assert styled_peak == pytest.approx(PEAK, rel=1e-5)
        assert peak(out["target"]) <= PEAK * (1 + 1e-5)
        assert peak(out["reference"]) <= PEAK * (1 + 1e-5)
        # only half A of the input branch is returned: its peak is <= -12 dBFS
        assert peak(out["input"]) <= PEAK * (1 + 1e-5)
        assert peak(out["input"]) > PEAK * 10 ** (-30 / 20)


def test_default_length_and_mono_1d_input():
    audio = music_like(seconds=7.0, channels=1)[0]  # 1-D input is treated as mono
    out = make_pair(audio, np.random.default_rng(3))
    assert out["input"].shape == (1, 131072)
    assert out["target"].shape == (1, 131072)
    assert out["reference"].shape == (1, 131072)


def test_no_effects_means_input_equals_target_and_reference_continues():
    cfg = PairConfig(length=L, p_input_eq=0, p_input_expander=0, p_style_eq=0,
                     p_style_compressor=0)
    audio = music_like(seconds=3.0, channels=2)
    out = make_pair(audio, np.random.default_rng(7), cfg, return_params=True)
    assert out["params"] == {"input": {}, "style": {}}
    np.testing.assert_array_equal(out["input"], out["target"])
    # target || reference is a contiguous excerpt of the original audio, peak-normalised
    joined = np.concatenate([out["target"], out["reference"]], axis=1)
    assert peak(joined) == pytest.approx(PEAK, rel=1e-6)
    xc = correlate(audio[0].astype(np.float64), joined[0].astype(np.float64), mode="valid",
                   method="fft")
    s = int(np.argmax(xc))
    ref = audio[:, s:s + 2 * L]
    np.testing.assert_allclose(joined, ref * (PEAK / peak(ref)), atol=2e-7)


# ------------------------------------------------------------------ determinism

def test_same_seed_same_pair_different_seed_different_pair():
    cfg = PairConfig(length=L, p_input_expander=0.5)
    audio = music_like(seconds=3.0)
    a = make_pair(audio, np.random.default_rng(123), cfg, return_params=True)
    b = make_pair(audio, np.random.default_rng(123), cfg, return_params=True)
    c = make_pair(audio, np.random.default_rng(124), cfg)
    for k in ("input", "reference", "target"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["params"] == b["params"]
    assert max(float(np.max(np.abs(a[k] - c[k]))) for k in ("input", "target")) > 1e-3


# ------------------------------------------------------------------ style is shared

def test_target_and_reference_share_the_style():
    """With EQ + compressor forced in the style branch and nothing in the input branch,
    the spectral change input -> target is large, and the reference (other half, same
    effect instance) shows the same change."""
    cfg = PairConfig(length=L, p_input_eq=0, p_input_expander=0, p_style_eq=1,
                     p_style_compressor=1)
    audio = music_like(seconds=3.0, seed=1)  # stationary: halves A and B share a spectrum
    big = 0
    for seed in range(12):
        out = make_pair(audio, np.random.default_rng(seed), cfg)
        d_t = band_db(out["target"]) - band_db(out["input"])
        d_r = band_db(out["reference"]) - band_db(out["input"])
        # remove the broadband level offset, compare spectral shape
        d_t -= d_t.mean()
        d_r -= d_r.mean()
        change = float(np.sqrt(np.mean(d_t ** 2)))
        mismatch = float(np.sqrt(np.mean((d_t - d_r) ** 2)))
        tilt_t = tilt_db_per_octave(out["target"]) - tilt_db_per_octave(out["input"])
        tilt_r = tilt_db_per_octave(out["reference"]) - tilt_db_per_octave(out["input"])
        if change > 3.0:
            big += 1
            assert np.corrcoef(d_t, d_r)[0, 1] > 0.95
            assert mismatch < 0.25 * change
        if abs(tilt_t) > 1.0:  # a clear tilt change: same direction, similar size
            assert np.sign(tilt_t) == np.sign(tilt_r)
            assert abs(tilt_t - tilt_r) < 0.3 * abs(tilt_t)
    assert big >= 9  # +-24 dB EQs: the style is almost always a big spectral change


def test_input_branch_is_independent_of_style_branch():
    cfg = PairConfig(length=L, p_input_eq=1, p_input_expander=0, p_style_eq=1,
                     p_style_compressor=0)
    out = make_pair(music_like(seconds=3.0, seed=2), np.random.default_rng(5), cfg,
                    return_params=True)
    assert out["params"]["input"]["eq"] != out["params"]["style"]["eq"]
    d = band_db(out["target"]) - band_db(out["input"])
    assert float(np.std(d)) > 3.0


def test_style_compressor_reduces_dynamics():
    cfg = PairConfig(length=L, p_input_eq=0, p_input_expander=0, p_style_eq=0,
                     p_style_compressor=1, comp_threshold_db=(-40, -35), comp_ratio=(8, 10),
                     comp_attack_ms=(1, 2), comp_release_extra_ms=(20, 30))
    sr = SR
    t = np.arange(3 * sr) / sr
    # tone bursts alternating 0 dB / -30 dB every 100 ms
    env = np.where((t * 10).astype(int) % 2 == 0, 1.0, 10 ** (-30 / 20))
    audio = (0.5 * env * np.sin(2 * np.pi * 300 * t))[None].astype(np.float32)
    out = make_pair(audio, np.random.default_rng(0), cfg)

    def frame_db(x, fr=441):
        m = x[0, : x.shape[1] // fr * fr].reshape(-1, fr)
        return 10 * np.log10(np.mean(m ** 2, axis=1) + 1e-20)

    spread_in = np.percentile(frame_db(out["input"]), 90) - np.percentile(frame_db(out["input"]), 10)
    spread_t = np.percentile(frame_db(out["target"]), 90) - np.percentile(frame_db(out["target"]), 10)
    assert spread_in == pytest.approx(30.0, abs=1.5)
    assert spread_t < spread_in - 12.0


# ------------------------------------------------------------------ DSP building blocks

def sine(db, seconds=1.0, f=1000.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (10 ** (db / 20) * np.sin(2 * np.pi * f * t))[None].astype(np.float32)


@pytest.mark.parametrize("knee", [0.0, 6.0])
def test_compressor_static_curve(knee):
    T, R = -30.0, 4.0
    for level in (-40.0, -30.0, -10.0):
        x = sine(level)
        y = pairs.compress(x, SR, threshold_db=T, ratio=R, attack_ms=1.0, release_ms=50.0,
                           knee_db=knee, makeup_db=0.0)
        steady = slice(SR // 2, None)
        got = 20 * np.log10(peak(y[:, steady]))
        over = level - T
        if 2 * over < -knee:
            want = level
        elif 2 * abs(over) <= knee and knee > 0:
            want = level - (1 - 1 / R) * (over + knee / 2) ** 2 / (2 * knee)
        else:
            want = T + over / R
        assert got == pytest.approx(want, abs=0.3), (level, got, want)
    # makeup gain adds on top
    y = pairs.compress(sine(-40.0), SR, T, R, 1.0, 50.0, knee, makeup_db=6.0)
    assert 20 * np.log10(peak(y[:, SR // 2:])) == pytest.approx(-34.0, abs=0.1)


def test_compressor_attack_time():
    # a step from silence to a loud tone: gain reduction approaches its final value with
    # the attack time constant (63 % after ~attack_ms)
    x = np.concatenate([np.zeros((1, SR // 10), np.float32), sine(0.0, 0.5)], axis=1)
    y = pairs.compress(x, SR, threshold_db=-20.0, ratio=1e6, attack_ms=20.0, release_ms=100.0)
    gain_db = 20 * np.log10(np.abs(y[0]) + 1e-12) - 20 * np.log10(np.abs(x[0]) + 1e-12)
    onset = SR // 10
    # use the sine's peaks (gain is slowly varying)
    def gr_at(ms):
        i = onset + int(ms * SR / 1000)
        seg = slice(i - 22, i + 22)
        return float(-np.max(gain_db[seg][np.abs(x[0, seg]) > 0.5]))
    final = gr_at(400)
    assert final == pytest.approx(20.0, abs=0.5)
    assert gr_at(20) == pytest.approx(final * (1 - math.exp(-1)), rel=0.15)
    assert gr_at(2) < 0.2 * final


def test_expander_attenuates_quiet_parts_only():
    x = np.concatenate([sine(-20.0, 0.5), sine(-50.0, 0.5)], axis=1)
    y = pairs.expand(x, SR, threshold_db=-40.0, ratio=2.0, attack_ms=1.0, release_ms=30.0,
                     range_db=40.0)
    loud = 20 * np.log10(peak(y[:, SR // 8: SR // 2 - 100]))
    quiet = 20 * np.log10(peak(y[:, SR // 2 + SR // 4:]))
    assert loud == pytest.approx(-20.0, abs=0.1)
    assert quiet == pytest.approx(-50.0 - 10.0, abs=1.0)  # (ratio-1) * (T - level) = 10 dB


def test_eq_peaking_band_gain_and_shelves():
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal((1, 4 * SR))).astype(np.float32)
    bands = [dict(type="peak", freq=1000.0, gain_db=12.0, q=2.0)]
    y = pairs.apply_eq(noise, bands, SR)
    f = np.fft.rfftfreq(noise.shape[1], 1 / SR)
    X = np.abs(np.fft.rfft(noise[0])) ** 2
    Y = np.abs(np.fft.rfft(y[0])) ** 2

    def gain_at(lo, hi):
        m = (f >= lo) & (f < hi)
        return 10 * np.log10(Y[m].sum() / X[m].sum())

    assert gain_at(980, 1020) == pytest.approx(12.0, abs=0.5)
    assert abs(gain_at(100, 200)) < 0.5
    assert abs(gain_at(8000, 10000)) < 0.5
    lows = pairs.apply_eq(noise, [dict(type="low_shelf", freq=100.0, gain_db=-12.0, q=0.707)], SR)
    Yl = np.abs(np.fft.rfft(lows[0])) ** 2
    m = (f > 10) & (f < 30)
    assert 10 * np.log10(Yl[m].sum() / X[m].sum()) == pytest.approx(-12.0, abs=1.0)


def test_rbj_biquads_match_analytic_gains_and_pedalboard():
    fs = SR
    for band, f_check, want in [
        (dict(type="peak", freq=1000.0, gain_db=-9.0, q=4.0), 1000.0, -9.0),
        (dict(type="low_shelf", freq=100.0, gain_db=6.0, q=0.707), 10.0, 6.0),
        (dict(type="low_shelf", freq=100.0, gain_db=6.0, q=0.707), 5000.0, 0.0),
        (dict(type="high_shelf", freq=5000.0, gain_db=-15.0, q=0.707), 20000.0, -15.0),
        (dict(type="high_shelf", freq=5000.0, gain_db=-15.0, q=0.707), 100.0, 0.0),
    ]:
        _, h = sosfreqz(pairs.biquad_sos(band, fs)[None], worN=[f_check], fs=fs)
        assert 20 * np.log10(abs(h[0])) == pytest.approx(want, abs=0.15), band
    # the scipy (RBJ, float64) and pedalboard (JUCE, float32) backends give the same EQ
    imp = np.zeros((1, 1 << 15), np.float32)
    imp[0, 0] = 1.0
    f = np.fft.rfftfreq(imp.shape[1], 1 / fs)
    m = (f > 30) & (f < 18000)
    rng = np.random.default_rng(0)
    for _ in range(30):
        bands = pairs.sample_eq_params(rng, PairConfig())
        h1 = np.abs(np.fft.rfft(pairs.apply_eq(imp, bands, fs, "scipy")[0]))
        h2 = np.abs(np.fft.rfft(pairs.apply_eq(imp, bands, fs, "pedalboard")[0]))
        assert float(np.max(np.abs(20 * np.log10(h1[m] / h2[m])))) < 0.25


def test_sampled_eq_params_respect_ranges():
    cfg = PairConfig()
    rng = np.random.default_rng(0)
    nyq09 = 0.9 * cfg.sample_rate / 2
    for _ in range(200):
        b = pairs.sample_eq_params(rng, cfg)
        assert [x["type"] for x in b] == ["low_shelf", "peak", "peak", "peak", "peak", "high_shelf"]
        assert 20 <= b[0]["freq"] <= 200 and 4000 <= b[5]["freq"] <= nyq09
        for band, (lo, hi) in zip(b[1:5], [(200, 2000), (800, 4000), (2000, 8000), (4000, nyq09)]):
            assert lo <= band["freq"] <= hi
            assert 0.1 <= band["q"] <= 10
        assert all(abs(x["gain_db"]) <= 24 for x in b)
        c = pairs.sample_compressor_params(rng, cfg)
        assert -64 <= c["threshold_db"] <= -12 and 1 <= c["ratio"] <= 11
        assert 0.5 <= c["attack_ms"] <= 50 and c["attack_ms"] <= c["release_ms"] <= c["attack_ms"] + 200
        assert 0 <= c["knee_db"] <= 12 and 0 <= c["makeup_db"] <= 6
    g = [x["gain_db"] for _ in range(300)
         for x in pairs.sample_eq_params(rng, cfg.replace(eq_gain_db=6.0, eq_gain_distribution="normal"))]
    assert max(abs(v) for v in g) <= 6.0 and 1.0 < float(np.std(g)) < 2.5


# ------------------------------------------------------------------ excerpt finder

def test_silent_audio_raises_clear_error():
    cfg = PairConfig(length=L)
    with pytest.raises(SilentAudioError, match=r"silent.*-50\.0 dBFS"):
        make_pair(np.zeros((2, 5 * L), np.float32), np.random.default_rng(0), cfg)
    quiet = (1e-4 * np.random.default_rng(0).standard_normal((1, 5 * L))).astype(np.float32)
    with pytest.raises(SilentAudioError):  # -80 dBFS noise is below the -50 dBFS threshold
        make_pair(quiet, np.random.default_rng(0), cfg)
    assert issubclass(SilentAudioError, ValueError)


def test_too_short_audio_raises():
    with pytest.raises(ValueError, match="samples"):
        make_pair(music_like(seconds=0.5), np.random.default_rng(0), PairConfig(length=L))


def test_excerpt_finder_finds_the_only_loud_part():
    rng = np.random.default_rng(0)
    n = 40 * L
    audio = np.zeros((1, n), np.float32)
    burst = slice(31 * L, 34 * L)  # one loud region of 3L in 40L of silence
    audio[:, burst] = 0.3 * rng.standard_normal((1, 3 * L)).astype(np.float32)
    for seed in range(10):
        exc = pairs.find_excerpt(audio, 2 * L, np.random.default_rng(seed), -50.0, max_tries=1)
        assert exc.shape == (1, 2 * L)
        assert 10 * np.log10(np.mean(exc.astype(np.float64) ** 2)) > -50.0



def test_excerpt_finder_half_balance_rejects_a_near_silent_half():
    # loud noise, then 1.2 L of near silence, then quieter noise (-6 dB): a 2L window that
    # straddles the gap has one near-silent half and is refused with the balance option
    rng = np.random.default_rng(1)
    parts = [0.3 * rng.standard_normal((1, 3 * L)), 1e-4 * rng.standard_normal((1, int(1.2 * L))),
             0.15 * rng.standard_normal((1, 3 * L))]
    audio = np.concatenate(parts, axis=1).astype(np.float32)
    level = lambda v: 10 * np.log10(np.mean(v.astype(np.float64) ** 2))  # noqa: E731
    for seed in range(20):
        exc = pairs.find_excerpt(audio, 2 * L, np.random.default_rng(seed), -50.0, max_tries=3,
                                 half_balance_db=10.0)
        a, b = level(exc[:, :L]), level(exc[:, L:])
        assert min(a, b) > -50.0 and abs(a - b) <= 10.0
    # without it, some seed picks a window whose half is (mostly) the gap
    spreads = [abs(level(e[:, :L]) - level(e[:, L:])) for e in
               (pairs.find_excerpt(audio, 2 * L, np.random.default_rng(s), -50.0, max_tries=3)
                for s in range(20))]
    assert max(spreads) > 10.0
    with pytest.raises(SilentAudioError, match="both halves"):
        step = np.concatenate([parts[0][:, :int(1.1 * L)], 0.1 * parts[0][:, :int(1.1 * L)]], axis=1)
        pairs.find_excerpt(step.astype(np.float32), 2 * L, np.random.default_rng(0), -50.0,
                           max_tries=2, half_balance_db=1.0)  # every window: halves ~20 dB apart


def test_equal_half_loudness_matches_pyloudnorm():
    import pyloudnorm

    x = music_like(seconds=4 * L / SR, channels=2, seed=5)[:, :4 * L]
    x[:, 2 * L:] *= 0.2  # second half 14 dB quieter
    y = pairs._equalise_halves(x, SR)
    meter = pyloudnorm.Meter(SR)
    la, lb = (meter.integrated_loudness(v.T.astype(np.float64)) for v in (y[:, :2 * L], y[:, 2 * L:]))
    assert abs(la - lb) < 0.01
    np.testing.assert_array_equal(y[:, :2 * L], x[:, :2 * L])


# ------------------------------------------------------------------ dataset

def test_dataset_resamples_caches_and_forces_channels(tmp_path):
    p1 = tmp_path / "mono22k.flac"
    p2 = tmp_path / "stereo44k.wav"
    p3 = tmp_path / "short.wav"
    sf.write(p1, music_like(seconds=2.0, channels=1, sr=22050, seed=1)[0], 22050)
    sf.write(p2, music_like(seconds=2.0, channels=2, seed=2).T, SR)
    sf.write(p3, music_like(seconds=0.2, channels=2, seed=3).T, SR)
    cfg = PairConfig(length=L)

    ds = PairDataset([str(p1), str(p2), str(p3)], cfg, seed=0, channels=2)
    assert len(ds) == 2 and [d[0] for d in ds.dropped] == [str(p3)]
    assert ds.audio[0].shape == (2, 2 * SR)  # 2 s at 22.05 kHz -> 88200 samples at 44.1 kHz
    assert ds.audio[0].dtype == np.float32
    it = iter(ds)
    items = [next(it) for _ in range(6)]
    for item in items:
        for k in ("input", "reference", "target"):
            assert item[k].shape == (2, L) and item[k].dtype == np.float32
    again = iter(PairDataset([str(p1), str(p2)], cfg, seed=0, channels=2))
    np.testing.assert_array_equal(next(again)["input"], items[0]["input"])

    mono = PairDataset([str(p2)], cfg, seed=1, channels=1)
    assert mono.audio[0].shape == (1, 2 * SR)
    assert next(iter(mono))["target"].shape == (1, L)
    keep = PairDataset([str(p1), str(p2)], cfg, channels=None)
    assert [a.shape[0] for a in keep.audio] == [1, 2]


def test_dataset_drops_silent_files(tmp_path):
    loud = tmp_path / "loud.wav"
    silent = tmp_path / "silent.wav"
    sf.write(loud, music_like(seconds=1.0, channels=1)[0], SR)
    sf.write(silent, np.zeros(SR, np.float32), SR)
    ds = PairDataset([str(loud), str(silent)], PairConfig(length=L), seed=0)
    it = iter(ds)
    with pytest.warns(UserWarning, match="silent"):
        items = [next(it) for _ in range(20)]  # P(never picking the silent file) = 2**-20
    assert ds._bad == {1}
    assert all(item["input"].shape == (1, L) for item in items)
