"""The rule-based ``analysis`` method: recovery of known EQ settings and distances falling."""

import numpy as np
import pytest
import torch

from afxmatch import analysis, dsp
from afxmatch.estimate.analysis import fit_eq_curve, target_curve
from afxmatch.params import ParamSpace
from afxmatch.pipeline import match_arrays
from afxmatch.render import render

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
