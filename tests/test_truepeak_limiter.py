"""True-peak meter (BS.1770-4 Annex 2) against analytic waveforms and scipy's resample_poly;
the streaming look-ahead limiter: block-split exactness, alignment, linking and the
ceiling on adversarial signals (measured independently, also after 16-bit rounding)."""

import io

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from afxmatch.dsp import truepeak
from afxmatch.dsp.limiter import DEFAULT_MARGIN_DB, TruePeakLimiter, limit

SR = 44100


def faded(x: np.ndarray, fade: int) -> np.ndarray:
    """Raised-cosine fade in/out (keeps the edges band-limited)."""
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    env = np.ones(x.shape[-1])
    env[:fade], env[-fade:] = ramp, ramp[::-1]
    return x * env


def scipy_true_peak_db(x: np.ndarray) -> float:
    """Independent 4x meter: scipy's polyphase resampler, max over channels."""
    x = np.asarray(x, dtype=np.float64)
    return 20 * np.log10(max(np.abs(resample_poly(c, 4, 1)).max() for c in x))


def test_quarter_rate_sine_at_45_degrees_reads_3_db_over_its_samples():
    n = np.arange(SR)
    x = faded(np.sin(np.pi / 2 * n + np.pi / 4), 4410)[None].astype(np.float32)
    sample_peak = 20 * np.log10(np.abs(x).max())
    assert sample_peak == pytest.approx(-3.0103, abs=0.001)   # every sample is +-sin(45 deg)
    assert truepeak.true_peak_db(x) == pytest.approx(0.0, abs=0.005)


@pytest.mark.parametrize("freq", [997.0, 5512.5, 11025.0, 15000.0, 17000.0])
def test_oversampled_points_follow_the_analytic_sine(freq):
    n = 8192
    t = np.arange(n) / SR
    x = np.sin(2 * np.pi * freq * t + 0.3)[None].astype(np.float32)
    os = truepeak.interpolate(x)[0]                           # (n, 4)
    ideal = np.sin(2 * np.pi * freq * (t[:, None] + np.arange(4) / (4 * SR)) + 0.3)
    mid = slice(200, n - 200)                                 # away from the abrupt ends
    assert np.abs(os[mid] - ideal[mid]).max() < 2e-4
    assert np.array_equal(os[:, 0], x[0])                     # phase 0 is the signal itself


def test_true_peak_agrees_with_scipy_resample_poly_on_band_limited_audio():
    rng = np.random.default_rng(7)
    spec = rng.standard_normal((2, SR // 2 + 1)) + 1j * rng.standard_normal((2, SR // 2 + 1))
    spec[:, int(16000 / SR * SR):] = 0                        # band-limited to 16 kHz
    x = faded(np.fft.irfft(spec, n=SR), 2000)
    x = (x / np.abs(x).max() * 0.9).astype(np.float32)
    ours = truepeak.true_peak_db(x)
    assert ours == pytest.approx(scipy_true_peak_db(x), abs=0.02)
    assert ours > 20 * np.log10(np.abs(x).max())              # inter-sample overs exist here
    # channel-linked: the louder channel decides
    assert truepeak.true_peak_db(x) == pytest.approx(max(truepeak.true_peak_db(x[:1]),
                                                         truepeak.true_peak_db(x[1:])), abs=1e-9)


def test_interval_peaks_with_context_equal_the_whole_signal():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5000)).astype(np.float32)
    h = truepeak.HALF_TAPS
    whole = truepeak.interval_peaks(x)
    part = truepeak.interval_peaks(x[:, 1000:3000], x[:, 1000 - h + 1:1000], x[:, 3000:3000 + h])
    assert np.allclose(part, whole[1000:3000], rtol=1e-6, atol=1e-7)
    assert truepeak.true_peak_db(np.zeros((1, 100), np.float32)) == float("-inf")


def adversarial(n: int = 3 * SR) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    t = np.arange(n) / SR
    burst = (np.arange(n) % 11025 < 200) * rng.standard_normal((2, n)) * 5
    return {
        "clipped white noise +12 dB": np.clip(rng.standard_normal((2, n)) * 2, -1, 1) * 4,
        "square wave 1 kHz +10 dB": np.sign(np.sin(2 * np.pi * 1000 * t))[None] * 3.0,
        "fs/4 sine at 45 deg +10 dB": np.sin(np.pi / 2 * np.arange(n) + np.pi / 4)[None] * 3.0,
        "18 kHz sine +6 dB": np.sin(2 * np.pi * 18000 * t)[None] * 2.0,
        "quiet bed with loud bursts": rng.standard_normal((2, n)) * 0.05 + burst,
        "alternating impulse pairs": np.where(np.arange(n) % 4410 < 2, (-1.0) ** np.arange(n) * 8, 0)[None],
        "one loud channel": np.stack([np.sin(2 * np.pi * 440 * t) * 4, np.sin(2 * np.pi * 660 * t) * 0.1]),
    }


@pytest.mark.parametrize("name", list(adversarial()))
def test_limiter_holds_the_ceiling_on_adversarial_signals(name):
    x = adversarial()[name].astype(np.float32)
    y, lim = limit(x, SR, -1.0)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    # our meter: at the threshold (the gain moving under the interpolation kernel may add a
    # few thousandths of a dB on full-band noise: that is what the margin is for)
    assert truepeak.true_peak_db(y) <= -1.0 - DEFAULT_MARGIN_DB + 0.01
    assert scipy_true_peak_db(y) <= -1.0                                 # an independent 4x meter
    for subtype in ("PCM_16", "PCM_24"):                                 # and after rounding to int
        buf = io.BytesIO()
        sf.write(buf, y.T, SR, format="WAV", subtype=subtype)
        buf.seek(0)
        q, _ = sf.read(buf, dtype="float64", always_2d=True)
        assert scipy_true_peak_db(q.T) <= -1.0, subtype
    assert lim.max_reduction_db > 5.0                                     # it did limit


def test_limiter_any_block_split_equals_the_whole_signal_exactly():
    x = adversarial()["quiet bed with loud bursts"].astype(np.float32)
    whole, _ = limit(x, SR, -2.0, lookahead_ms=2.0, release_ms=50.0)
    rng = np.random.default_rng(5)
    for trial in range(3):
        cuts = np.sort(rng.integers(0, x.shape[1], 25))
        cuts[3] = cuts[2]                                        # an empty block
        cuts[6] = cuts[5] + 1                                    # a one-sample block
        lim = TruePeakLimiter(SR, 2, -2.0, lookahead_ms=2.0, release_ms=50.0)
        out = [lim.process(b) for b in np.split(x, cuts, axis=1)] + [lim.flush()]
        assert all(o.shape[1] % lim.block == 0 for o in out[:-1])
        y = np.concatenate(out, axis=1)
        assert np.array_equal(y, whole)


def test_limiter_is_aligned_linked_and_transparent_below_the_ceiling():
    rng = np.random.default_rng(2)
    quiet = (rng.standard_normal((2, SR)) * 0.05).astype(np.float32)
    y, lim = limit(quiet, SR, -1.0)
    assert np.array_equal(y, quiet) and lim.max_reduction_db == 0.0

    x = quiet.copy()
    x[:, 20000:20100] += 8.0 * np.sin(2 * np.pi * 1000 * np.arange(100) / SR)   # a loud 2 ms hit
    y, lim = limit(x, SR, -1.0, lookahead_ms=3.0, release_ms=100.0)
    g = y / x                                                    # the applied gain, per sample
    assert np.allclose(g[0], g[1], rtol=1e-5)                    # linked: one gain for both channels
    gain = g[0]
    assert np.all(gain <= 1.0 + 1e-6) and np.all(gain > 0)
    assert np.allclose(gain[:20000 - lim.attack - truepeak.HALF_TAPS - 4], 1.0)  # untouched before the look-ahead
    assert gain[20000:20100].max() < 0.15                        # at full depth on the hit itself
    assert np.abs(y).max() <= 10 ** ((-1.0 - DEFAULT_MARGIN_DB) / 20) + 1e-6
    # the gain recovers after the hit with the release time constant (exponential in dB)
    after = 20 * np.log10(gain[20100 + 4 + 1:])
    tau = int(0.1 * SR)
    assert after[tau] / after[0] == pytest.approx(np.exp(-1), rel=0.05)


def test_steady_sine_gain_reduction_equals_its_excess_over_the_threshold():
    t = np.arange(2 * SR) / SR
    x = faded(np.sin(2 * np.pi * 200 * t) * 2.0, 2205)[None].astype(np.float32)   # +6.02 dBTP
    _, lim = limit(x, SR, -1.0)
    expected = 20 * np.log10(2.0) + 1.0 + DEFAULT_MARGIN_DB
    assert lim.max_reduction_db == pytest.approx(expected, abs=0.01)
    assert lim.mean_reduction_db == pytest.approx(expected, abs=0.3)
    assert lim.limited_fraction > 0.95


def test_limiter_rejects_bad_settings():
    with pytest.raises(ValueError):
        TruePeakLimiter(SR, 2, ceiling_db=0.5)
    with pytest.raises(ValueError):
        TruePeakLimiter(SR, 0)
    lim = TruePeakLimiter(SR, 1)
    with pytest.raises(ValueError):
        lim.process(np.zeros((2, 10), np.float32))
    lim.flush()
    with pytest.raises(RuntimeError):
        lim.process(np.zeros((1, 10), np.float32))


def test_coarse_gain_model_at_one_sample_resolution_is_the_limiter_itself():
    """With chunks of one sample, ``coarse_gain_db`` follows the same steps as the
    limiter (hold, attack average, release), so it must give the gain the limiter
    applied, read back as output / input."""
    rng = np.random.default_rng(3)
    x = (0.3 * rng.standard_normal((2, SR // 2)) * np.exp(-np.arange(SR // 2) / 4000)[None]).astype(np.float32)
    x[:, 9000] += 0.9                      # a peak after the decay: the release starts from it
    gain_db = 9.0
    lim = TruePeakLimiter(SR, 2, -1.0)
    y = np.concatenate([lim.process(x * np.float32(10 ** (gain_db / 20))), lim.flush()], axis=1)
    with np.errstate(divide="ignore"):
        peak_db = 20 * np.log10(truepeak.interval_peaks(x).astype(np.float64))
    model = TruePeakLimiter(SR, 2, -1.0).coarse_gain_db(peak_db, 1, gain_db)
    ok = np.abs(x[0]) > 1e-3
    applied = 20 * np.log10(np.abs(y[0, ok]) / np.abs(x[0, ok] * np.float32(10 ** (gain_db / 20))))
    assert lim.max_reduction_db > 6.0
    np.testing.assert_allclose(model[ok], applied, atol=2e-3)
    # coarser chunks: never shallower than the deepest reduction the limiter reached
    coarse = TruePeakLimiter(SR, 2, -1.0).coarse_gain_db(
        np.pad(peak_db, (0, -len(peak_db) % 30), constant_values=-np.inf).reshape(-1, 30).max(1), 30, gain_db)
    assert coarse.min() <= -lim.max_reduction_db + 1e-6


def test_interval_peak_stream_equals_the_whole_signal_for_any_split():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 20011)).astype(np.float32)
    whole = truepeak.interval_peaks(x)
    for sizes in ([20011], [1, 2, 3, 15, 16, 17, 9000], [7] * 3000):
        stream, out, start = truepeak.IntervalPeakStream(2), [], 0
        for n in sizes:
            out.append(stream.add(x[:, start:start + n]))
            start += n
        out.append(stream.add(x[:, start:]))
        out.append(stream.flush())
        np.testing.assert_array_equal(np.concatenate(out), whole)
