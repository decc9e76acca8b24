"""BS.1770 loudness: the standard's filter, EBU Tech 3341 calibration, gating, and
agreement with pyloudnorm (an independent implementation with rounded filter constants)."""

import numpy as np
import pyloudnorm
import pytest

from afxmatch.analysis.loudness import integrated_loudness, k_weighting_sos


def test_k_weighting_equals_the_standards_48k_coefficients():
    sos = k_weighting_sos(48000)
    np.testing.assert_allclose(sos[0, :3], [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-12)
    np.testing.assert_allclose(sos[0, 3:], [1.0, -1.69065929318241, 0.73248077421585], atol=1e-12)
    np.testing.assert_allclose(sos[1], [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621], atol=1e-12)


@pytest.mark.parametrize("sr", [44100, 48000, 96000])
@pytest.mark.parametrize("level", [-23.0, -33.0])
def test_ebu_3341_stereo_1khz_sine_reads_its_level(sr, level):
    t = np.arange(sr * 20) / sr
    x = np.stack([10 ** (level / 20) * np.sin(2 * np.pi * 1000 * t)] * 2)
    assert abs(integrated_loudness(x, sr) - level) < 0.1


def test_gating_ignores_silence_and_quiet_passages():
    sr = 48000
    t = np.arange(sr * 10) / sr
    tone = 0.1 * np.sin(2 * np.pi * 1000 * t)
    with_silence = np.concatenate([tone, np.zeros(sr * 10)])[None]
    # only the 3 blocks straddling the edge (partly silent, within the relative gate) count extra
    assert abs(integrated_loudness(with_silence, sr) - integrated_loudness(tone[None], sr)) < 0.1
    assert integrated_loudness(np.zeros((2, sr * 2)), sr) == float("-inf")
    assert integrated_loudness(np.ones((1, 100)), sr) == float("-inf")  # shorter than a block


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
def test_close_to_pyloudnorm(sr):
    rng = np.random.default_rng(sr)
    n = sr * 6
    x = np.stack([0.2 * rng.standard_normal(n), 0.05 * rng.standard_normal(n)])
    x[:, : sr] *= 0.01
    ours = integrated_loudness(x, sr)
    theirs = pyloudnorm.Meter(sr).integrated_loudness(x.T)
    assert abs(ours - theirs) < 0.1  # pyloudnorm's rounded K-filter constants: ~0.04 LU at 44.1k


def test_gain_shifts_loudness_exactly():
    rng = np.random.default_rng(7)
    x = 0.1 * rng.standard_normal((2, 48000 * 5))
    assert abs(integrated_loudness(2 * x, 48000) - integrated_loudness(x, 48000) - 20 * np.log10(2)) < 1e-9


def _gappy(sr: int = 48000) -> np.ndarray:
    """2 s tone at -30 dBFS RMS, 2 s of it 14 dB down, 6 s of noise at -85 dBFS: raised by 20 dB,
    the noise blocks pass the -70 LUFS gate, lower the relative gate by ~4 dB and let the
    quiet tone in, so the loudness rises ~2.8 LU less than the gain."""
    t = np.arange(2 * sr) / sr
    tone = np.sqrt(2) * 10 ** (-30 / 20) * np.sin(2 * np.pi * 1000 * t)
    noise = 10 ** (-85 / 20) * np.random.default_rng(3).standard_normal(6 * sr)
    return np.concatenate([tone, tone * 10 ** (-14 / 20), noise])[None]


def test_gain_for_loudness_regates_and_lands_on_target():
    from afxmatch.analysis.features import measure
    from afxmatch.analysis.loudness import gain_for_loudness, hop_energies

    sr = 48000
    x = _gappy(sr)
    base = integrated_loudness(x, sr)
    target = base + 20.0
    naive = integrated_loudness(x * 10 ** (20 / 20), sr)
    assert naive < target - 2.0          # the shift assumption misses by ~2.8 LU here
    g = gain_for_loudness(hop_energies(x, sr), sr, target)
    y = x * 10 ** (g / 20)
    assert abs(integrated_loudness(y, sr) - target) < 1e-3
    # an independent meter agrees, within its rounded K-filter constants (~0.04 LU at 1 kHz;
    # 10 s = whole blocks, so pyloudnorm's partial last block does not arise)
    assert abs(pyloudnorm.Meter(sr).integrated_loudness(y[0]) - target) < 0.06
    assert 22.5 < g < 23.2
    # Features.scaled re-gates too: equal to measuring the scaled signal
    assert abs(measure(x, sr).scaled(g).loudness_lufs - measure(y, sr).loudness_lufs) < 1e-6
    assert np.isnan(gain_for_loudness(hop_energies(np.zeros((1, sr)), sr), sr, -23.0))


def test_gain_for_loudness_lifts_a_signal_under_the_absolute_gate():
    """Every 400 ms block of a very quiet recording lies under BS.1770's -70 LUFS absolute
    gate: it measures -inf, yet it is not silence. The gain is still solved (from its
    loudest block) and lands on the target, by our meter and by pyloudnorm; the output
    gain rule uses it instead of leaving the recording near-silent."""
    from afxmatch.analysis.features import measure
    from afxmatch.analysis.loudness import gain_for_loudness, hop_energies, matching_gain_db
    from afxmatch.pipeline import output_gain

    sr = 48000
    x = _gappy(sr) * 10 ** (-45 / 20)        # tone at -75 dBFS RMS, its quiet part at -89
    assert integrated_loudness(x, sr) == -np.inf
    target = -40.0
    g = gain_for_loudness(hop_energies(x, sr), sr, target)
    y = x * 10 ** (g / 20)
    assert abs(integrated_loudness(y, sr) - target) < 1e-3
    assert abs(pyloudnorm.Meter(sr).integrated_loudness(y[0]) - target) < 0.06
    assert 33.0 < g < 37.0                   # about the tone's 35 dB, the gates re-applied
    f = measure(x, sr)
    assert matching_gain_db(f.loudness_lufs, target, sr, f.loudness_hops) == pytest.approx(g)
    assert matching_gain_db(f.loudness_lufs, target, sr) == 0.0   # without hops: nothing to aim with
    gain, safety = output_gain(f.loudness_lufs, f.peak_db, target, sr, f.loudness_hops)
    assert gain == pytest.approx(g) and safety["gain_reduced_for_peak_db"] == 0
    # digital silence and a signal shorter than one block still have no gain
    assert np.isnan(gain_for_loudness(hop_energies(np.zeros((1, 2 * sr)), sr), sr, target))
    assert np.isnan(gain_for_loudness(hop_energies(x[:, : sr // 4], sr), sr, target))


def test_pipeline_output_gain_lands_on_the_references_loudness_with_gaps():
    from afxmatch.analysis.features import measure
    from afxmatch.pipeline import output_gain

    sr = 48000
    x = _gappy(sr)
    f = measure(x, sr)
    target = f.loudness_lufs + 20.0
    gain, safety = output_gain(f.loudness_lufs, f.peak_db, target, sr, f.loudness_hops)
    assert safety["gain_reduced_for_peak_db"] == 0
    assert abs(integrated_loudness(x * 10 ** (gain / 20), sr) - target) < 1e-3


def test_scaled_features_regate_the_level_frames_like_a_measurement():
    """The -85 dBFS noise of :func:`_gappy` is below the 50 ms frames' -70 dBFS gate;
    raised by 20 dB it is above it. ``scaled`` must then count those frames, as measuring
    the raised signal does: they are 60 % of the frames and set the level distribution's
    low percentiles (the report's and the searches' dynamics distance)."""
    from afxmatch.analysis import style_distances
    from afxmatch.analysis.features import measure

    sr = 48000
    x = _gappy(sr)
    f, g = measure(x, sr), 20.0
    direct = measure(x * 10 ** (g / 20), sr)
    shifted = f.scaled(g)
    assert f.frame_rms_db.size == 80 and direct.frame_rms_db.size == 200   # 4 s vs 10 s of frames
    assert shifted.frame_rms_db.shape == direct.frame_rms_db.shape
    assert np.max(np.abs(shifted.frame_rms_db - direct.frame_rms_db)) < 1e-4   # float32 levels
    assert np.max(np.abs(shifted.frame_peak_db - direct.frame_peak_db)) < 1e-4
    assert np.max(np.abs(shifted.profile() - direct.profile())) < 1e-4
    assert abs(direct.profile()[0] - f.profile()[0]) > 5       # p10 moved by the noise frames (6.8 dB)
    # and back down: the frames drop out again
    assert f.scaled(g).scaled(-g).frame_rms_db.size == 80
    # the gated gain solve (the pipeline's output gain) then scaled lands on the target
    from afxmatch.analysis.loudness import matching_gain_db

    target = f.loudness_lufs + g
    at_target = f.scaled(matching_gain_db(f.loudness_lufs, target, sr, f.loudness_hops))
    assert abs(at_target.loudness_lufs - target) < 1e-3
    d = style_distances(at_target, direct)
    assert d["dynamics_db"] < 0.1 and d["spectral_db"] < 1e-6


def test_distances_at_output_gain_follow_the_pipelines_gain():
    """The searches' measure sets the gain as ``pipeline.output_gain`` does: the gated
    loudness solve, clipped to the output gain's range, cut at the peak ceiling; what the
    range or the cut costs shows as ``loudness_lu``. Checked against the pipeline's own
    function and a fresh measurement of the scaled signal."""
    from afxmatch.analysis import style_distances
    from afxmatch.analysis.distance import distances_at_output_gain
    from afxmatch.analysis.features import measure
    from afxmatch.pipeline import PEAK_CEILING_DB, output_gain

    sr = 48000
    x = _gappy(sr)
    rng = np.random.default_rng(5)
    ref = measure(0.3 * rng.standard_normal((1, 4 * sr)), sr)       # loud, peaky noise
    for level_db, gain_range in ((-40.0, (-36.0, 36.0)), (-40.0, (-36.0, 12.0)), (0.0, (-36.0, 36.0))):
        y = x * 10 ** (level_db / 20)
        f = measure(y, sr)
        d = distances_at_output_gain(f, ref, PEAK_CEILING_DB, gain_range)
        gain, safety = output_gain(f.loudness_lufs, f.peak_db, ref.loudness_lufs, sr, f.loudness_hops)
        gain = min(gain, gain_range[1]) if gain_range[1] < 36 else gain
        gain -= max(0.0, f.peak_db + gain - PEAK_CEILING_DB)
        direct = style_distances(measure(y * 10 ** (gain / 20), sr), ref)
        for k in ("spectral_db", "loudness_lu", "dynamics_db"):
            assert d[k] == pytest.approx(direct[k], abs=2e-3), (level_db, gain_range, k)
    # the 12 dB range leaves the quiet render short of the reference's loudness
    short = distances_at_output_gain(measure(x * 10 ** (-40 / 20), sr), ref, PEAK_CEILING_DB, (-36.0, 12.0))
    assert short["loudness_lu"] > 5.0
