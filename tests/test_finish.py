"""--amount, several references and the mastering finish (--loudness / --true-peak).

Loudness is checked with pyloudnorm and true peak with scipy's resample_poly (x4), both
independent of afxmatch's own meters."""

import json
import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from afxmatch.amount import apply_amount, scaled_target_lufs
from afxmatch.analysis import measure, style_distances
from afxmatch.analysis.combine import FRAMES_PER_REFERENCE, combine_features
from afxmatch.analysis.loudness import hop_energies, integrated_loudness, matching_gain_db
from afxmatch.dsp.compressor import static_curve_db
from afxmatch.dsp.limiter import TruePeakLimiter, limit
from afxmatch.errors import InvalidParameterError
from afxmatch.finish import (DEFAULT_CEILING_DBTP, FinishSpec, LoudnessModel, apply_finish, check_options,
                            finish_spec)
from afxmatch.params import ParamSpace
from afxmatch.pipeline import MatchOptions, match_arrays, match_file

from audio_fixtures import EXAMPLE_INPUT, EXAMPLE_REFERENCE, write_tone

SR = 44100


def lufs(y: np.ndarray, sr: int) -> float:
    return pyloudnorm.Meter(sr).integrated_loudness(np.asarray(y, dtype=np.float64).T)


def scipy_true_peak_db(y: np.ndarray) -> float:
    return 20 * np.log10(max(np.abs(resample_poly(np.asarray(c, np.float64), 4, 1)).max() for c in y))


# -- amount -------------------------------------------------------------------------------

def estimate_like(sr=SR) -> dict:
    p = ParamSpace(sr).defaults()
    p.update(ls_gain_db=6.0, p2_gain_db=-9.0, p2_freq_hz=1200.0, p2_q=2.0, hs_gain_db=4.0,
             comp_threshold_db=-30.0, comp_ratio=4.0, comp_attack_ms=3.0, comp_makeup_db=5.0,
             out_gain_db=-2.0)
    return p


def test_amount_interpolates_from_neutral_to_the_estimate():
    est = estimate_like()
    neutral = ParamSpace(SR).defaults()
    assert apply_amount(est, 1.0, SR) == est
    zero = apply_amount(est, 0.0, SR)
    for name in ("ls_gain_db", "p2_gain_db", "hs_gain_db", "comp_makeup_db", "out_gain_db", "comp_ratio"):
        assert zero[name] == neutral[name]
    half = apply_amount(est, 0.5, SR)
    assert half["p2_gain_db"] == -4.5 and half["ls_gain_db"] == 3.0 and half["comp_makeup_db"] == 2.5
    for name in ("p2_freq_hz", "p2_q", "comp_threshold_db", "comp_attack_ms", "comp_release_ms", "comp_knee_db"):
        assert half[name] == est[name] and zero[name] == est[name]
    # the compressor's static gain reduction scales exactly with the amount
    levels = torch.linspace(-60, 0, 61, dtype=torch.float64)
    curve = lambda p: static_curve_db(levels, torch.tensor(p["comp_threshold_db"]),  # noqa: E731
                                      torch.tensor(p["comp_ratio"]), torch.tensor(0.0))
    for a in (0.25, 0.5, 0.8):
        assert torch.allclose(curve(apply_amount(est, a, SR)), a * curve(est), atol=1e-9)
    assert scaled_target_lufs(-30.0, -10.0, 0.25) == -25.0
    assert scaled_target_lufs(-30.0, -10.0, 1.0) == -10.0 and scaled_target_lufs(-30.0, -10.0, 0.0) == -30.0


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(amount=1.5), "--amount"), (dict(amount=-0.1), "--amount"), (dict(amount=float("nan")), "--amount"),
    (dict(loudness_lufs=3.0), "--loudness"), (dict(loudness_lufs=-80.0), "--loudness"),
    (dict(true_peak_dbtp=0.5), "--true-peak"), (dict(true_peak_dbtp=float("inf")), "--true-peak"),
])
def test_out_of_range_options_are_clear_errors(kwargs, fragment):
    with pytest.raises(InvalidParameterError, match=fragment):
        check_options(**kwargs)


def test_finish_spec_defaults():
    assert finish_spec(None, None, -12.0) is None
    only_loudness = finish_spec(-14.0, None, -12.0)
    assert (only_loudness.target_lufs, only_loudness.ceiling_dbtp) == (-14.0, DEFAULT_CEILING_DBTP)
    only_peak = finish_spec(None, -2.0, -12.0)
    assert (only_peak.target_lufs, only_peak.ceiling_dbtp, only_peak.target_source) == (-12.0, -2.0, "reference")


# -- several references -------------------------------------------------------------------

def noise(sr: int, seconds: float, tilt_db_per_oct: float, level: float, seed: int, channels=1):
    """Noise with a spectral tilt (dB/octave), for spectra with known shapes."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    spec = rng.standard_normal((channels, n // 2 + 1)) + 1j * rng.standard_normal((channels, n // 2 + 1))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec *= (np.maximum(f, 20.0) / 1000.0) ** (tilt_db_per_oct / 6.0206)
    x = np.fft.irfft(spec, n=n)
    return (level * x / np.abs(x).max()).astype(np.float32)


def test_common_style_is_the_mean_db_spectrum_mean_loudness_and_equal_weight_dynamics():
    a = measure(noise(SR, 4.0, -3.0, 0.5, 1), SR)
    b = measure(noise(48000, 1.5, +3.0, 0.05, 2, channels=2), 48000)
    c = combine_features([a, b])
    assert c.sample_rate == SR and np.array_equal(c.freqs_hz, a.freqs_hz)
    assert c.loudness_lufs == pytest.approx((a.loudness_lufs + b.loudness_lufs) / 2)
    # the dB mean of a -3 and a +3 dB/oct tilt is flat: shape of the mean, whatever the levels
    grid = np.geomspace(100, 10000, 30)
    slope = np.polyfit(np.log2(grid), c.spectrum_db(grid, 1 / 3), 1)[0]
    assert abs(slope) < 0.3
    expected = (a.spectrum_db(grid, 1 / 3) + np.interp(grid, grid, b.spectrum_db(grid, 1 / 3))) / 2
    assert np.allclose(c.spectrum_db(grid, 1 / 3) - c.spectrum_db(grid, 1 / 3).mean(),
                       expected - expected.mean(), atol=0.5)
    # so is the spectrum the EQ fit matches (power mean and log mean alike)
    slope = np.polyfit(np.log2(grid), c.match_spectrum_db(grid, 1 / 3), 1)[0]
    assert c.log_power is not None and abs(slope) < 0.3
    # each reference gives the same number of frames, after moving to the common loudness
    assert c.frame_rms_db.size == 2 * FRAMES_PER_REFERENCE
    assert np.median(c.frame_rms_db[:FRAMES_PER_REFERENCE]) == pytest.approx(
        np.median(a.frame_rms_db) + c.loudness_lufs - a.loudness_lufs, abs=0.05)
    assert c.peak_db - c.loudness_lufs == pytest.approx(
        ((a.peak_db - a.loudness_lufs) + (b.peak_db - b.loudness_lufs)) / 2)
    assert combine_features([a]) is a


def test_several_references_through_match_file(tmp_path):
    r1 = write_tone(tmp_path / "bright.wav", tilt=2.0, seed=1)
    r2 = write_tone(tmp_path / "dark.flac", sr=48000, channels=1, seed=2)
    inp = write_tone(tmp_path / "in.wav", seconds=3.0, seed=3)
    out = tmp_path / "out.wav"
    report = match_file(inp, [r1, r2], out, MatchOptions(method="model"))
    assert [r["path"] for r in report["references"]] == [str(r1), str(r2)]
    assert report["reference"]["combined_from"] == 2
    mean = np.mean([r["integrated_lufs"] for r in report["references"]])
    assert report["reference"]["integrated_lufs"] == pytest.approx(mean, abs=0.02)
    assert report["output"]["integrated_lufs"] == pytest.approx(mean, abs=0.1)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["references"][1]["sample_rate"] == 48000
    # one reference keeps the one-reference report
    single = match_file(inp, r1, tmp_path / "one.wav", MatchOptions(method="model"))
    assert "references" not in single and single["reference"]["path"] == str(r1)


def test_several_references_with_the_model_pool_windows(example_input, example_reference):
    x, sr = example_input
    r, rsr = example_reference
    x = x[:, : 3 * sr]
    bright = noise(SR, 3.0, +2.0, 0.5, 4)
    res = match_arrays(x, sr, [r, bright], [rsr, SR], method="model")
    one = match_arrays(x, sr, r, rsr, method="model")
    assert len(res.features["references"]) == 2
    assert res.params != one.params                       # the second reference changed the estimate
    assert np.isfinite(res.output).all()


# -- amount and finish through the pipeline -----------------------------------------------

@pytest.mark.parametrize("method", ["analysis", "model", "optimise"])
def test_amount_zero_returns_the_input(example_input, example_reference, method):
    x, sr = example_input
    r, rsr = example_reference
    x = x[:, : 3 * sr]
    res = match_arrays(x, sr, r, rsr, method=method, amount=0.0, steps=2 if method == "optimise" else None)
    assert np.abs(res.output - x).max() <= 1e-6
    assert res.params["out_gain_db"] == 0.0 and res.params["comp_ratio"] == 1.0


@pytest.mark.parametrize("finish", [{}, {"loudness_lufs": -14.0, "true_peak_dbtp": -1.0}])
def test_a_recording_under_the_absolute_gate_is_not_left_silent(example_input, example_reference, finish):
    """The example input 60 dB down measures -inf LUFS (every block under the -70 LUFS
    gate). Without a finish the output gain is the range's top (+36 dB; the loudness gap
    is ~71 dB); with --loudness -14 the finish reaches it. Until session 8 both outputs
    stayed at the input's level (gain 0: 'silence')."""
    x, sr = example_input
    r, rsr = example_reference
    quiet = x[:, : 4 * sr] * np.float32(10 ** (-60 / 20))
    assert integrated_loudness(quiet, sr) == -np.inf
    res = match_arrays(quiet, sr, r, rsr, method="model", **finish)
    out = lufs(res.output, sr)
    if finish:
        assert res.finish["target_reached"] and out == pytest.approx(-14.0, abs=0.5)
        assert scipy_true_peak_db(res.output) <= -1.0
    else:
        assert res.params["out_gain_db"] == 36.0 and res.safety["loudness_gain_wanted_db"] > 60
        assert res.safety["gain_beyond_range_db"] == pytest.approx(res.safety["loudness_gain_wanted_db"] - 36.0,
                                                                   abs=1e-3)
        assert "beyond the output gain's range" in res.safety["note"]
        assert -60.0 < out < -30.0   # 36 dB above the render, short of the reference's ~-11.5


def test_half_amount_lifts_a_recording_under_the_absolute_gate(example_input, example_reference):
    """The example input 50 dB down (-inf LUFS) with --amount 0.5: the output gain is half
    the full matching gain, measured on the render, not 0 (what it was until session 9)."""
    x, sr = example_input
    r, rsr = example_reference
    quiet = x[:, : 4 * sr] * np.float32(10 ** (-50 / 20))
    assert integrated_loudness(quiet, sr) == -np.inf
    res = match_arrays(quiet, sr, r, rsr, method="analysis", amount=0.5)
    render = res.output * np.float32(10 ** (-res.params["out_gain_db"] / 20))   # gain is the last stage
    full = matching_gain_db(-np.inf, integrated_loudness(r, rsr), sr, hop_energies(render, sr))
    assert full > 50.0
    assert res.params["out_gain_db"] == pytest.approx(full / 2, abs=0.5)
    assert np.isfinite(lufs(res.output, sr))


def test_no_options_keep_the_plain_match(example_input, example_reference):
    x, sr = example_input
    r, rsr = example_reference
    plain = match_arrays(x, sr, r, rsr, method="model")
    same = match_arrays(x, sr, r, rsr, method="model", amount=1.0, loudness_lufs=None, true_peak_dbtp=None)
    assert np.array_equal(plain.output, same.output) and plain.params == same.params
    assert plain.finish is None and plain.safety["peak_ceiling_dbfs"] == -0.1


def check_finish(res, sr, target=-14.0, ceiling=-1.0):
    assert lufs(res.output, sr) == pytest.approx(target, abs=0.5)
    assert scipy_true_peak_db(res.output) <= ceiling
    fin = res.finish
    assert fin["output_lufs"] == pytest.approx(lufs(res.output, sr), abs=0.1)
    assert fin["output_true_peak_dbtp"] <= ceiling and fin["target_reached"]
    assert fin["limiter"]["max_gain_reduction_db"] >= fin["limiter"]["mean_gain_reduction_db"] >= 0


def test_loudness_and_true_peak_on_the_example_model(example_input, example_reference):
    x, sr = example_input
    r, rsr = example_reference
    res = match_arrays(x, sr, r, rsr, method="model", loudness_lufs=-14.0, true_peak_dbtp=-1.0)
    check_finish(res, sr)


def test_loudness_model_predicts_the_limiter_and_aims_the_finish(example_input):
    """The finish's loudness model against a real limiter pass measured with pyloudnorm,
    from no limiting to ~10 dB of it; and the finish reaching loud targets in at most
    two limiter passes (a secant on the passes alone took 3-6 on such targets)."""
    x, sr = example_input
    model = LoudnessModel.of_signal(x, sr, TruePeakLimiter(sr, x.shape[0], -1.0))
    base = integrated_loudness(x, sr)
    for gain in (-6.0, 3.0, 9.0, 15.0):
        y, lim = limit(x * np.float32(10 ** (gain / 20)), sr, -1.0)
        assert model.lufs(gain) == pytest.approx(lufs(y, sr), abs=0.1), (gain, lim.max_reduction_db)
    assert lim.max_reduction_db > 8.0
    # below the ceiling only the gain acts: the model is then afxmatch's own meter, shifted
    assert model.lufs(-6.0) == pytest.approx(base - 6.0, abs=1e-6)
    for target in (-8.0, -10.0, -13.0):
        out, gain, rep = apply_finish(x, sr, FinishSpec(target, -1.0, "--loudness", "--true-peak"), base)
        assert len(rep["iterations"]) <= 2 and rep["target_reached"]
        assert lufs(out, sr) == pytest.approx(target, abs=0.15)
        assert scipy_true_peak_db(out) <= -1.0 + 0.05
        np.testing.assert_array_equal(out, limit(x * np.float32(10 ** (gain / 20)), sr, -1.0)[0])


def test_streamed_loudness_model_equals_the_in_memory_one(example_input):
    """Measured block by block (IIR K-weighting, streamed true peaks) or on the whole array
    (FFT K-weighting): the same model, also when raised by an offset."""
    from afxmatch.finish import LoudnessModelStream

    x, sr = example_input
    settings = TruePeakLimiter(sr, x.shape[0], -1.0)
    stream = LoudnessModelStream(sr, x.shape[0], settings)
    for start in range(0, x.shape[1], 12345):
        stream.add(x[:, start:start + 12345])
    whole, streamed = LoudnessModel.of_signal(x, sr, settings), stream.model()
    np.testing.assert_array_equal(streamed.chunk_peak_db, whole.chunk_peak_db)
    for gain in (-6.0, 6.0, 12.0):
        assert streamed.lufs(gain) == pytest.approx(whole.lufs(gain), abs=1e-3)
        assert stream.model(3.0).lufs(gain) == pytest.approx(whole.lufs(gain + 3.0), abs=1e-3)


def test_loudness_model_steps_are_hop_divisors_and_coarser_only_on_long_signals():
    assert LoudnessModel.chunk_for(44100) == 30 and LoudnessModel.chunk_for(48000) == 32
    assert LoudnessModel.chunk_for(44100, 180 * 44100) == 30            # in-memory lengths: unchanged
    hour = 3600 * 48000
    assert LoudnessModel.chunk_for(48000, hour) == 80                     # <= 2 million steps an hour
    assert hour / LoudnessModel.chunk_for(48000, hour) <= 2_160_000
    assert 4800 % LoudnessModel.chunk_for(48000, 10 * hour) == 0


class _Curve(LoudnessModel):
    """A loudness model with a given loudness(gain) curve, to test the search alone."""

    def __init__(self, curve):
        self.curve = curve

    def lufs(self, gain_db: float) -> float:
        return self.curve(gain_db)


def test_finish_gain_search_on_monotonic_and_non_monotonic_loudness():
    # limiter-like: slope 1 below 0 dB of gain, then 0.2: the secant finds the root
    knee = _Curve(lambda g: -20 + g if g < 0 else -20 + 0.2 * g)
    assert knee.solve(-17.0, 0.0, (-60.0, 60.0)) == pytest.approx(15.0, abs=0.03)
    # gated quiet passages lower the loudness past +10 dB of gain: -14 is out of reach,
    # so the gain that comes closest (the maximum at +10), not the end of the range
    hump = _Curve(lambda g: -15.0 - 0.05 * (g - 10.0) ** 2)
    assert hump.solve(-14.0, 5.0, (-60.0, 60.0)) == pytest.approx(10.0, abs=0.25)
    assert _Curve(lambda g: -30.0 + 0.1 * g).solve(0.0, 0.0, (-60.0, 60.0)) == 60.0


@pytest.mark.slow
def test_loudness_and_true_peak_on_the_example_analysis(example_input, example_reference, tmp_path):
    x, sr = example_input
    r, rsr = example_reference
    res = match_arrays(x, sr, r, rsr, method="analysis", loudness_lufs=-14.0, true_peak_dbtp=-1.0)
    check_finish(res, sr)
    # --true-peak alone: the reference's loudness under the ceiling (the limiter replaces the gain cut)
    tp_only = match_arrays(x, sr, r, rsr, method="analysis", true_peak_dbtp=-1.0)
    assert lufs(tp_only.output, sr) == pytest.approx(lufs(r, rsr), abs=0.5)
    assert scipy_true_peak_db(tp_only.output) <= -1.0
    # --loudness alone implies the -1 dBTP ceiling; written as 16-bit, still under it
    out = tmp_path / "out.wav"
    report = match_file(EXAMPLE_INPUT, EXAMPLE_REFERENCE, out,
                        MatchOptions(method="analysis", loudness=-14.0, subtype="PCM_16"))
    y, ysr = sf.read(out, dtype="float64", always_2d=True)
    assert lufs(y.T, ysr) == pytest.approx(-14.0, abs=0.5) and scipy_true_peak_db(y.T) <= -1.0
    assert report["finish"]["ceiling_source"] == "default"


@pytest.mark.parametrize("method", [pytest.param("analysis", marks=pytest.mark.slow), "model",
                                    pytest.param("optimise", marks=pytest.mark.slow)])
def test_half_amount_lands_between_input_and_full_match(example_input, example_reference, method):
    x, sr = example_input
    r, rsr = example_reference
    dist = {}
    for a in (0.0, 0.5, 1.0):
        f = match_arrays(x, sr, r, rsr, method=method, amount=a).features
        dist[a] = style_distances(f["output"], f["reference"])
    for key in dist[0.0]:
        lo, hi = sorted((dist[0.0][key], dist[1.0][key]))
        assert lo < dist[0.5][key] < hi, (key, dist)


@pytest.mark.slow
def test_cli_finish_amount_and_repeated_ref(tmp_path):
    out = tmp_path / "out.wav"
    proc = subprocess.run([sys.executable, "-m", "afxmatch", str(EXAMPLE_INPUT), "--ref", str(EXAMPLE_REFERENCE),
                           "--ref", str(EXAMPLE_INPUT), "-o", str(out), "--amount", "0.7",
                           "--loudness", "-16", "--true-peak", "-1.5", "--method", "analysis"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["amount"] == 0.7 and len(report["references"]) == 2
    y, sr = sf.read(out, dtype="float64", always_2d=True)
    assert lufs(y.T, sr) == pytest.approx(-16.0, abs=0.5) and scipy_true_peak_db(y.T) <= -1.5
    bad = subprocess.run([sys.executable, "-m", "afxmatch", str(EXAMPLE_INPUT), "--ref", str(EXAMPLE_REFERENCE),
                          "-o", str(tmp_path / "x.wav"), "--true-peak", "0.5"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "--true-peak" in bad.stderr
    assert not (tmp_path / "x.wav").exists()


def test_cli_says_when_the_loudness_target_is_out_of_reach(tmp_path):
    """0 LUFS under a -1 dBTP ceiling cannot be reached: the output still holds the ceiling,
    the report says target_reached false, and the command prints a warning."""
    out = tmp_path / "loud.wav"
    proc = subprocess.run([sys.executable, "-m", "afxmatch", str(EXAMPLE_INPUT), "--ref", str(EXAMPLE_REFERENCE),
                           "-o", str(out), "--loudness", "0", "--true-peak", "-1", "--method", "analysis"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "out of reach" in " ".join((proc.stdout + proc.stderr).split())
    fin = json.loads(out.with_suffix(".json").read_text())["finish"]
    assert fin["target_reached"] is False and fin["output_lufs"] < -3.0
    y, sr = sf.read(out, dtype="float64", always_2d=True)
    assert scipy_true_peak_db(y.T) <= -1.0
