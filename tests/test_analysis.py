"""The rule-based ``analysis`` method: recovery of known EQ settings and distances falling."""

import numpy as np
import pytest
import torch

from afxmatch import analysis, dsp
from afxmatch.analysis import spectrum
from afxmatch.estimate.analysis import eq_fit_problem, fit_eq_curve, target_curve
from afxmatch.params import ParamSpace
from afxmatch.pipeline import match_arrays
from afxmatch.render import render

import reference_dsp as ref

GRID = np.geomspace(50.0, 16000.0, 200)


def random_eq(space: ParamSpace, rng) -> dict[str, float]:
    """Musically plausible settings: gains +-12 dB, peak Q 0.4-2.5, shelves Q 0.707."""
    p = space.defaults()
    for prefix in ("ls", "p1", "p2", "p3", "p4", "hs"):
        spec = space[f"{prefix}_freq_hz"]
        p[f"{prefix}_freq_hz"] = float(np.exp(rng.uniform(np.log(spec.min), np.log(spec.max))))
        p[f"{prefix}_gain_db"] = float(rng.uniform(-12, 12))
        if prefix.startswith("p"):
            p[f"{prefix}_q"] = float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))
    return p


def curve_db(params, sr):
    return dsp.eq.magnitude_db(dsp.params_to_tensors(params), sr, torch.tensor(GRID))[0].numpy()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("which", ["input", "reference"])
def test_recovers_eq_rendered_by_pedalboard(example_input, example_reference, which, seed):
    x, sr = example_input if which == "input" else example_reference
    space = ParamSpace(sr)
    truth = random_eq(space, np.random.default_rng(seed))
    y = render(x, sr, truth, "pedalboard", ("eq",))  # an implementation other than ours
    grid, target, weight = target_curve(analysis.measure(x, sr), analysis.measure(y, sr), sr)
    est, _ = fit_eq_curve(grid, target, weight, sr)
    full = space.defaults()
    full.update(est)
    err = curve_db(full, sr) - curve_db(truth, sr)
    err -= err.mean()  # the level offset belongs to the gain stage, not the EQ
    assert np.sqrt(np.mean(err ** 2)) <= 1.5


def test_fit_is_exact_for_a_curve_the_eq_can_make():
    sr = 44100
    space = ParamSpace(sr)
    truth = space.defaults()
    truth.update(ls_gain_db=4.0, p2_gain_db=6.0, p2_freq_hz=1500.0, p2_q=1.5, hs_gain_db=-9.0)
    grid = np.geomspace(20, 19000, 200)
    target = dsp.eq.magnitude_db(dsp.params_to_tensors(truth), sr, torch.tensor(grid))[0].numpy()
    _, rms = fit_eq_curve(grid, target, np.ones_like(grid), sr)
    assert rms < 0.2


def test_eq_fit_residual_and_separable_jacobian_against_scipy():
    """The fit's residual is the weighted cascade response (scipy's RBJ biquads here) plus
    the offset minus the target; its band-separable Jacobian equals a central difference of
    that residual, one parameter at a time."""
    sr = 48000
    space = ParamSpace(sr)
    rng = np.random.default_rng(7)
    target = rng.normal(0.0, 4.0, GRID.size)
    weight = rng.uniform(0.2, 1.0, GRID.size)
    names, idx, base, residual, jacobian = eq_fit_problem(GRID, target, weight, sr)
    sw = np.sqrt(weight / weight.sum())
    for _ in range(3):
        z = np.r_[rng.uniform(0.05, 0.95, len(idx)), rng.uniform(-5, 5)]
        u = base.copy()
        u[idx] = z[:-1]
        params = space.denormalise(u)
        expected = sw * (ref.magnitude_db(ref.eq_sos(params, sr), GRID, sr) + z[-1] - target)
        np.testing.assert_allclose(residual(z), expected, atol=1e-6)
        jac = jacobian(z)
        assert jac.shape == (GRID.size, len(idx) + 1)
        h = 1e-5
        for j in range(len(z)):
            dz = np.zeros_like(z)
            dz[j] = h
            numeric = (residual(z + dz) - residual(z - dz)) / (2 * h)
            np.testing.assert_allclose(jac[:, j], numeric, atol=2e-3 * max(1.0, np.abs(numeric).max()),
                                       err_msg=names[j] if j < len(names) else "offset")


def test_match_moves_every_distance_towards_the_reference(example_input, example_reference):
    (x, sr), (r, rsr) = example_input, example_reference
    result = match_arrays(x, sr, r, rsr)
    before = analysis.style_distances(result.features["input"], result.features["reference"])
    after = analysis.style_distances(result.features["output"], result.features["reference"])
    assert after["spectral_db"] < 0.7 * before["spectral_db"]
    assert after["loudness_lu"] < 0.5 * before["loudness_lu"]
    assert after["dynamics_db"] < before["dynamics_db"]
    assert result.output.shape == x.shape
    assert np.max(np.abs(result.output)) <= 10 ** (-0.1 / 20) + 1e-6


def _two_halves(sr=44100, seconds=10.0, boost_db=12.0, split_hz=4000.0, seed=3):
    """Stereo white noise; in the second half everything above ``split_hz`` is raised by
    ``boost_db`` (an exact FFT-domain gain, no filter of ours)."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    a = rng.standard_normal((2, n)) * 0.05
    b = rng.standard_normal((2, n)) * 0.05
    spec = np.fft.rfft(b, axis=-1)
    spec[:, np.fft.rfftfreq(n, 1 / sr) >= split_hz] *= 10 ** (boost_db / 20)
    b = np.fft.irfft(spec, n, axis=-1)
    return np.concatenate([a, b], axis=1).astype(np.float32), sr


def _band_step_db(curve_fn):
    """Level above the split (6-15 kHz) minus level below it (300-2000 Hz), in dB."""
    lo, hi = np.geomspace(300, 2000, 12), np.geomspace(6000, 15000, 12)
    return float(curve_fn(hi, 1 / 3).mean() - curve_fn(lo, 1 / 3).mean())


def test_power_mean_log_mean_and_match_spectrum_against_analytic_values():
    # half the segments flat, half +12 dB above 4 kHz: the power mean's step is the dB of
    # the mean power, 10*log10((1 + 10**1.2) / 2) = 9.26 dB; the log mean's is the mean of
    # the dB, 6.00 dB; the EQ fit's spectrum is their mean, 7.63 dB
    x, sr = _two_halves()
    f = analysis.measure(x, sr)
    power_step = 10 * np.log10((1 + 10 ** 1.2) / 2)
    assert _band_step_db(f.spectrum_db) == pytest.approx(power_step, abs=0.25)
    log_step = _band_step_db(lambda g, fr: spectrum.smooth_on_grid(f.freqs_hz, f.log_power, g, fr))
    assert log_step == pytest.approx(6.0, abs=0.25)
    assert _band_step_db(f.match_spectrum_db) == pytest.approx((power_step + 6.0) / 2, abs=0.25)


def test_log_mean_leaves_out_silent_segments():
    # a recording with a long digital silence: the power mean falls by the silent share
    # (3 dB here), the log mean keeps the level and shape of the sound
    x, sr = _two_halves()
    with_gap = np.concatenate([x, np.zeros_like(x)], axis=1)
    f, g = analysis.measure(x, sr), analysis.measure(with_gap, sr)
    grid = np.geomspace(100, 15000, 30)

    def log_db(feat):
        return spectrum.smooth_on_grid(feat.freqs_hz, feat.log_power, grid, 1 / 3)

    assert np.max(np.abs(log_db(g) - log_db(f))) < 0.3
    assert np.mean(f.spectrum_db(grid, 1 / 3) - g.spectrum_db(grid, 1 / 3)) == pytest.approx(3.01, abs=0.1)


def test_eq_fit_target_uses_the_match_spectrum():
    # reference: half flat, half +12 dB above 4 kHz; input: flat noise. The EQ target's
    # step is the match spectrum's (7.63 dB), not the power mean's (9.26 dB)
    ref, sr = _two_halves()
    inp = np.random.default_rng(7).standard_normal(ref.shape).astype(np.float32) * 0.05
    grid, target, _ = target_curve(analysis.measure(inp, sr), analysis.measure(ref, sr), sr)
    step = np.mean(target[(grid > 6000) & (grid < 15000)]) - np.mean(target[(grid > 300) & (grid < 2000)])
    assert step == pytest.approx((10 * np.log10((1 + 10 ** 1.2) / 2) + 6.0) / 2, abs=0.4)
