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
