"""The ``optimise`` method: its style objective (checked against analytic EQ curves,
pyloudnorm and ``analysis.distance``) and the refinement loop (recovery, limits, never
worse than the start, determinism), plus the pipeline wiring."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import torch

from afxmatch import analysis, dsp
from afxmatch.analysis.distance import style_distances
from afxmatch.estimate import optimise as opt
from afxmatch.params import ParamSpace

SR = 22050


def _material(seed: int, seconds: float = 2.0, channels: int = 2, sr: int = SR) -> np.ndarray:
    """Noise with a 1/f-ish tilt, a tone and a slow level envelope (some dynamics)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    white = rng.standard_normal((channels, n))
    tilted = np.cumsum(white, axis=1)
    tilted -= np.convolve(tilted[0], np.ones(64) / 64, mode="same")[None]  # remove the drift
    x = 0.02 * tilted + 0.3 * white + np.sin(2 * np.pi * 330 * t)
    env = 0.2 + 0.8 * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t + seed)) ** 3
    x = x * env
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _render(x: np.ndarray, params: dict, sr: int = SR) -> np.ndarray:
    with torch.no_grad():
        return dsp.process(torch.from_numpy(x)[None], sr, dsp.params_to_tensors(params))[0].float().numpy()


TRUE = dict(ls_gain_db=6.0, p2_gain_db=-8.0, p2_freq_hz=1500.0, p2_q=1.5, hs_gain_db=-6.0,
            hs_freq_hz=5000.0, comp_threshold_db=-24.0, comp_ratio=4.0, comp_attack_ms=5.0,
            comp_release_ms=80.0, comp_knee_db=3.0)


def _true_params(sr: int = SR) -> dict:
    space = ParamSpace(sr)
    return space.validate({**space.defaults(), **TRUE})


def test_objective_is_zero_on_the_reference_itself_and_gain_invariant():
    ref = _material(1)
    obj = opt.StyleObjective(ref, SR, SR)
    same = obj.evaluate(ref)
    assert same["spectral_db"] < 1e-4 and same["dynamics_db"] < 1e-4 and same["loudness_lu"] == 0.0
    other = obj.evaluate(_render(_material(2), _true_params()))
    louder = obj.evaluate(3.0 * _render(_material(2), _true_params()))
    assert other["total"] > 0.5
    for k in ("spectral_db", "dynamics_db", "loudness_lu"):
        assert louder[k] == pytest.approx(other[k], abs=2e-3)


@pytest.mark.parametrize("spectrum", opt.SPECTRA)
def test_band_spectrum_follows_the_analytic_eq_response(spectrum):
    """meter(EQ(x)).band_db - meter(x).band_db is the EQ's exact dB response at the band
    centres, up to one constant (each side is normalised by its own loudness), for both
    long-term spectrum statistics."""
    x = np.random.default_rng(0).standard_normal((1, 4 * SR)).astype(np.float32) * 0.1
    p = ParamSpace(SR).validate({"ls_gain_db": 9.0, "p2_gain_db": -10.0, "p2_freq_hz": 2000.0,
                                 "p2_q": 1.0, "hs_gain_db": 6.0, "hs_freq_hz": 6000.0})
    meter = opt.StyleMeter(SR, 9000.0, spectrum)
    with torch.no_grad():
        diff = (meter(torch.from_numpy(_render(x, p))[None]).band_db
                - meter(torch.from_numpy(x)[None]).band_db).numpy()
    exact = dsp.eq.magnitude_db(dsp.params_to_tensors(p), SR, torch.as_tensor(meter.centres))[0].numpy()
    sel = (meter.centres > 80) & (meter.centres < 8000)
    err = (diff - exact)[sel]
    assert np.abs(err - err.mean()).max() < 0.6  # band averaging of a smooth curve + noise


def test_log_mean_spectrum_resists_a_few_loud_frames():
    """Steady noise whose content above 4 kHz is 30 dB louder in two short bursts. Frame j
    of the meter holds a share w_j of burst (its Hann-squared weight inside the bursts),
    so its power in a top band is P (1 + 999 w_j): the power-mean spectrum there rises by
    10 log10(mean(1 + 999 w)), the log-mean one by mean(10 log10(1 + 999 w)), relative to
    the bands below 1 kHz, which the bursts do not reach."""
    sr, n_frames = SR, 64
    meters = {s: opt.StyleMeter(sr, 9000.0, s) for s in opt.SPECTRA}
    n_fft, hop = meters["log-mean"].n_fft, meters["log-mean"].hop
    n = hop * (n_frames + 1)
    steady = 0.05 * np.random.default_rng(3).standard_normal((1, n))
    gate = np.zeros(n)
    for k in (10, 40):
        gate[k * hop: (k + 3) * hop] = 1.0
    sos = scipy.signal.butter(8, 4000, "highpass", fs=sr, output="sos")
    noisy = steady + (10 ** (30 / 20) - 1) * gate * scipy.signal.sosfiltfilt(sos, steady)
    w2 = np.hanning(n_fft + 1)[:-1] ** 2   # torch's periodic Hann
    share = np.array([(w2 * gate[j * hop: j * hop + n_fft]).sum() / w2.sum() for j in range(n_frames)])
    expected = {"power-mean": 10 * np.log10(np.mean(1 + 999 * share)),
                "log-mean": np.mean(10 * np.log10(1 + 999 * share))}
    for name, meter in meters.items():
        with torch.no_grad():
            a, b = (meter(torch.from_numpy(y.astype(np.float32))[None]).band_db.numpy() for y in (steady, noisy))
        top, low = meter.centres > 7000, meter.centres < 1000
        rise = (b - a)[top].mean() - (b - a)[low].mean()
        assert rise == pytest.approx(expected[name], abs=0.5), name
    assert expected["power-mean"] > 15 and expected["log-mean"] < 5
    with pytest.raises(ValueError, match="spectrum"):
        opt.StyleMeter(sr, 9000.0, "median")


def test_loudness_follows_pyloudnorm():
    x = _material(3, seconds=4.0)
    meter = opt.StyleMeter(SR, 9000.0)
    with torch.no_grad():
        ours = float(meter(torch.from_numpy(x)[None]).loudness_db) - 0.691
    ref = pyloudnorm.Meter(SR).integrated_loudness(x.T.astype(np.float64))
    assert ours == pytest.approx(ref, abs=0.5)


def test_objective_ranks_like_analysis_distance():
    """Renders moving from neutral towards the reference's settings get closer on both
    the objective and the report's style distance (different content on each side)."""
    x, ref_src = _material(4, seconds=3.0), _material(5, seconds=3.0)
    space = ParamSpace(SR)
    ref = _render(ref_src, _true_params())
    obj = opt.StyleObjective(ref, SR, SR)
    f_ref = analysis.measure(ref, SR)
    u0, u1 = space.normalise(space.defaults()), space.normalise(_true_params())
    ours, theirs = [], []
    for t in (0.0, 0.35, 0.7, 1.0):
        y = _render(x, space.denormalise(u0 + t * (u1 - u0)))
        ours.append(obj.evaluate(y)["spectral_db"] + obj.evaluate(y)["dynamics_db"])
        d = style_distances(analysis.measure(y, SR), f_ref)
        theirs.append(d["spectral_db"] + d["dynamics_db"])
    assert list(np.argsort(ours)) == list(np.argsort(theirs)) == [3, 2, 1, 0]


def test_refine_recovers_a_known_style():
    """Reference = other content through known settings; from perturbed settings the
    refinement lowers the objective and moves the parameters towards the true ones."""
    space = ParamSpace(SR)
    truth = _true_params()
    x, ref = _material(6, seconds=1.5, channels=1), _render(_material(7, seconds=1.5, channels=1), truth)
    start = space.validate({**truth, "ls_gain_db": -2.0, "p2_gain_db": 2.0, "hs_gain_db": 4.0,
                            "comp_threshold_db": -10.0})
    params, info = opt.refine(x, SR, ref, SR, start, steps=30, time_budget=None)
    assert info["objective_after"]["total"] < 0.5 * info["objective_before"]["total"]
    names = ["ls_gain_db", "p2_gain_db", "hs_gain_db", "comp_threshold_db"]
    err = lambda p: np.abs([p[n] - truth[n] for n in names]).sum()  # noqa: E731
    assert err(params) < 0.6 * err(start)


def test_gradient_reaches_every_free_parameter():
    space = ParamSpace(SR)
    x, ref = _material(8, seconds=1.0), _material(9, seconds=1.0)
    obj = opt.StyleObjective(ref, SR, SR)
    every_band = {**_true_params(), "p1_gain_db": 4.0, "p3_gain_db": 3.0, "p4_gain_db": -3.0}
    u = torch.as_tensor(space.normalise(every_band)).clamp(0.02, 0.98)[None].requires_grad_(True)
    p = dsp.denormalise(space, u)
    total, _ = obj(dsp.process(torch.from_numpy(x)[None], SR, p))
    total.backward()
    grad = dict(zip(space.names, u.grad[0].abs().tolist()))
    typical = np.median([g for n, g in grad.items() if n not in opt.FROZEN])
    for name in space.names:
        if name in opt.FROZEN:   # pure gains: invisible after loudness matching (float noise)
            assert grad[name] < 1e-2 * typical, name
        else:
            assert grad[name] > 1e-3 * typical, (name, grad[name], typical)


def test_limits_are_respected_and_result_never_worse():
    space = ParamSpace(SR)
    x, ref = _material(10, seconds=1.0), _material(11, seconds=1.0)
    start = _true_params()
    p0, info0 = opt.refine(x, SR, ref, SR, start, steps=0)
    assert info0["steps"] == 0 and info0["evaluations"] == 1
    assert p0 == pytest.approx(space.validate(start))
    _, info3 = opt.refine(x, SR, ref, SR, start, steps=3, time_budget=None)
    assert info3["steps"] == 3 and info3["evaluations"] == 4
    _, info_t = opt.refine(x, SR, ref, SR, start, steps=10_000, time_budget=0.0)
    assert info_t["steps"] == 0
    budget = 1.0
    _, info_b = opt.refine(x, SR, ref, SR, start, steps=10_000, time_budget=budget)
    assert 0 < info_b["steps"] < 10_000 and info_b["time_s"] < budget + 0.5
    # a far too large step size: the returned iterate is still no worse than the start,
    # and it is the one whose objective is reported
    p_bad, info_bad = opt.refine(x, SR, ref, SR, start, steps=5, time_budget=None, lr=20.0)
    assert info_bad["objective_after"]["total"] <= info_bad["objective_before"]["total"]
    p_bad = {**p_bad, "out_gain_db": 0.0}
    again = opt.StyleObjective(ref, SR, SR).evaluate(_render(x, p_bad))["total"]
    assert again == pytest.approx(info_bad["objective_after"]["total"], abs=1e-2)
    assert p_bad["comp_makeup_db"] == start["comp_makeup_db"]


def test_refine_moves_only_the_groups_asked_for():
    """``groups=("comp",)``: every EQ parameter keeps the start's value bit for bit, the
    compressor's move and the objective falls; no group at all is refused."""
    space = ParamSpace(SR)
    truth = _true_params()
    x, ref = _material(6, seconds=1.5, channels=1), _render(_material(7, seconds=1.5, channels=1), truth)
    start = space.validate({**truth, "p2_gain_db": 2.0, "comp_threshold_db": -8.0, "comp_ratio": 1.5})
    params, info = opt.refine(x, SR, ref, SR, start, steps=20, time_budget=None, groups=("comp",))
    for s in space.specs:
        if s.group != "comp" or s.name in opt.FROZEN:
            assert params[s.name] == start[s.name], s.name
    assert info["refined"] == [s.name for s in space.specs if s.group == "comp" and s.name not in opt.FROZEN]
    assert abs(params["comp_threshold_db"] - start["comp_threshold_db"]) > 1.0
    assert info["objective_after"]["total"] < 0.9 * info["objective_before"]["total"]
    with pytest.raises(Exception, match="nothing to refine"):
        opt.refine(x, SR, ref, SR, start, steps=1, groups=("gain",))


def test_an_inactive_compressor_start_is_escaped_through_the_alternatives():
    """A start whose compressor never acts (threshold above the peak, ratio 1) has no
    gradient: alone, the compressor cannot move. With :func:`compressor_starts` the steps
    begin from the best alternative, and the objective ends lower than the start's."""
    space = ParamSpace(SR)
    truth = _true_params()
    x, ref = _material(6, seconds=1.5, channels=1), _render(_material(7, seconds=1.5, channels=1), truth)
    dead = space.validate({**truth, "comp_threshold_db": 0.0, "comp_ratio": 1.0})
    stuck, info0 = opt.refine(x, SR, ref, SR, dead, steps=5, time_budget=None, groups=("comp",))
    # (0 dB is the range's top: the logit space keeps it U_EPS inside, -0.06 dB)
    assert abs(stuck["comp_threshold_db"] - dead["comp_threshold_db"]) < 0.1 and info0["steps_from"] == "start"
    assert info0["objective_after"]["total"] == info0["objective_before"]["total"]
    alts = opt.compressor_starts(x)
    peak_db = 20 * np.log10(np.abs(x).max())
    assert [a["comp_threshold_db"] for a in alts] == pytest.approx([peak_db - d for d in (6, 12, 18, 24)])
    moved, info = opt.refine(x, SR, ref, SR, dead, steps=5, time_budget=None, groups=("comp",),
                             alternatives=alts)
    assert info["steps_from"].startswith("alternative")
    assert info["evaluations"] == 1 + len(alts) + 6   # start + candidates, then start + 5 steps
    assert info["objective_after"]["total"] < 0.8 * info["objective_before"]["total"]
    assert moved["comp_ratio"] > 1.5 and moved["p2_gain_db"] == dead["p2_gain_db"]


def test_refine_is_deterministic_and_checks_its_limits():
    x, ref = _material(12, seconds=1.0), _material(13, seconds=1.0)
    a, _ = opt.refine(x, SR, ref, SR, _true_params(), steps=4, time_budget=None)
    b, _ = opt.refine(x, SR, ref, SR, _true_params(), steps=4, time_budget=None)
    assert a == b
    with pytest.raises(opt.InvalidParameterError):
        opt.refine(x, SR, ref, SR, _true_params(), steps=-1)
    with pytest.raises(opt.InvalidParameterError):
        opt.refine(x, SR, ref, SR, _true_params(), steps=2, time_budget=math.nan)


def test_windows_bound_the_cost_and_span_the_file():
    x = _material(14, seconds=60.0, channels=1, sr=8000)
    w = opt.select_windows(x, 8000, max_total_s=12.0, window_s=3.0)
    assert w.shape == (4, 1, 24000)
    short = opt.select_windows(x[:, :8000], 8000, max_total_s=12.0)
    assert short.shape == (1, 1, 8000)


def test_several_references_count_equally():
    r1, r2 = _material(15), _render(_material(16), _true_params())
    y = _material(17)
    both = opt.StyleObjective([r1, r2], [SR, SR], SR)
    twice = opt.StyleObjective([r1, r1], SR, SR)
    assert twice.evaluate(y)["total"] == pytest.approx(opt.StyleObjective(r1, SR, SR).evaluate(y)["total"], abs=1e-4)
    mean_band = 0.5 * (opt.StyleObjective(r1, SR, SR).reference.band_db
                       + opt.StyleObjective(r2, SR, SR).reference.band_db)
    assert torch.allclose(both.reference.band_db, mean_band, atol=1e-4)


def test_pipeline_method_optimise_reports_its_search():
    from afxmatch.pipeline import match_arrays

    x, ref = _material(18, seconds=1.5, sr=44100), _material(19, seconds=1.5, sr=44100)
    res = match_arrays(x, 44100, ref, 44100, method="optimise", steps=2, time_budget=None)
    info = res.optimise
    # the first stage refines EQ and compressor; the second, run only if the first is
    # not kept, the compressor alone
    stages = info["stages"]
    assert [st["stage"] for st in stages] in (["eq+comp"], ["eq+comp", "comp"])
    assert stages[0]["spectrum"] == "log-mean" and stages[-1]["stage"] == info["stage"]
    # each stage: the start and each compressor alternative once, then the start again and 2 steps
    assert info["start"] == "model" and info["steps"] == 2
    assert all(st["evaluations"] == 1 + len(opt.ALT_THRESHOLDS_BELOW_PEAK_DB) + 3 for st in stages)
    assert info["weights"] == opt.REFINE_WEIGHTS
    space = ParamSpace(44100)
    moving = [s.name for s in space.specs if s.group in info["stage"].split("+") and s.name not in opt.FROZEN]
    assert info["refined"] == moving
    model = match_arrays(x, 44100, ref, 44100, method="model").params
    check = info["check"]
    start_d = check["start"]
    for st in stages[:-1]:   # a stage that was not kept: its point was farther by the report's measure
        d = st["report_distance"]
        assert not st["kept"] and (d["total"] > start_d["total"] or d["spectral_db"] > start_d["spectral_db"])
    if check["kept"] == "start" or info["stage"] == "comp":   # the model's EQ, exactly
        for s in space.specs:
            if s.group == "eq":
                assert res.params[s.name] == model[s.name], s.name
    assert info["objective_after"]["total"] <= info["objective_before"]["total"]
    assert np.isfinite(res.output).all() and res.output.shape == x.shape
    assert check["kept"] in ("refined", "start")
    assert check[check["kept"]]["total"] == min(check["start"]["total"], check["refined"]["total"])


def test_report_distance_is_what_the_output_measures():
    """``report_distance`` (the guard's measure) on a file short enough to be one window
    equals the report's style distance of the pipeline's output, measured afresh."""
    from afxmatch.pipeline import match_arrays

    sr = 44100
    x, ref = _material(21, seconds=2.0, sr=sr), _material(22, seconds=2.0, sr=sr)
    f_ref = analysis.measure(ref, sr)
    res = match_arrays(x, sr, ref, sr, method="analysis", ref_features=f_ref)
    direct = style_distances(analysis.measure(res.output, sr), f_ref)
    windows = opt.select_windows(x, sr, opt.MAX_TOTAL_S)
    assert windows.shape[0] == 1
    mine = opt.report_distance(windows, sr, res.params, f_ref)
    for k in ("spectral_db", "dynamics_db"):
        assert abs(mine[k] - direct[k]) < 2e-3, (k, mine[k], direct[k])
    assert mine["loudness_lu"] < 2e-3 and direct["loudness_lu"] < 2e-3
    assert direct["spectral_db"] > 0.1   # not a trivial match


def test_refine_estimate_keeps_the_start_when_the_report_measure_gets_worse(monkeypatch):
    """The gradient objective is a proxy: if its 'best' point is farther from the
    reference by the report's measure, the start is returned and the report says so."""
    sr = 44100
    x, ref = _material(23, seconds=2.0, sr=sr), _material(24, seconds=2.0, sr=sr)
    f_ref = analysis.measure(ref, sr)
    space = ParamSpace(sr)
    start = space.defaults()
    bad = dict(start, p2_gain_db=18.0, p2_q=4.0, comp_threshold_db=-50.0, comp_ratio=20.0)
    monkeypatch.setattr(opt, "refine", lambda *a, **k: (dict(bad), {"steps": 0}))
    params, info = opt.refine_estimate(x, sr, ref, sr, start, "model", 1, None, ref_features=f_ref)
    assert info["check"]["kept"] == "start" and [st["stage"] for st in info["stages"]] == ["eq+comp", "comp"]
    assert info["check"]["refined"]["total"] > info["check"]["start"]["total"] + 1.0
    assert params["p2_gain_db"] == start["p2_gain_db"] and params["comp_ratio"] == start["comp_ratio"]
    # a refined point that is closer is kept, at the first stage
    good_start = dict(bad)
    monkeypatch.setattr(opt, "refine", lambda *a, **k: (dict(start), {"steps": 0}))
    params, info = opt.refine_estimate(x, sr, ref, sr, good_start, "model", 1, None, ref_features=f_ref)
    assert info["check"]["kept"] == "refined" and params["comp_ratio"] == start["comp_ratio"]
    assert [st["stage"] for st in info["stages"]] == ["eq+comp"]
    # without the reference's features they are measured here: the same decision
    params2, info2 = opt.refine_estimate(x, sr, ref, sr, good_start, "model", 1, None)
    assert info2["check"] == info["check"] and params2 == params


def test_an_eq_move_needs_both_spectrum_statistics(monkeypatch):
    """Stage 1 (EQ + compressor) is kept only when the report's distance *and* its
    spectral part (a power-mean spectrum) are no larger than the start's. A point that
    is closer in total but farther in spectrum goes to stage 2 (compressor only), whose
    own point is kept when closer in total; the report's distance is faked per point."""
    sr = 44100
    x, ref = _material(25, seconds=2.0, sr=sr), _material(26, seconds=2.0, sr=sr)
    space = ParamSpace(sr)
    start = space.defaults()
    points = {"eq+comp": dict(start, p1_gain_db=3.0), "comp": dict(start, comp_ratio=2.0)}
    calls = []

    def fake_refine(x_, sr_, ref_, rr_, start_, steps, budget, objective=None, groups=(), **k):
        calls.append((groups, objective.meter.spectrum))
        return dict(points["+".join(groups)]), {"steps": steps}

    def distances(total, spectral):
        return lambda: {"spectral_db": spectral, "loudness_lu": 0.0, "dynamics_db": total - spectral, "total": total}

    def run(eq_point, comp_point):
        table = {None: distances(5.0, 3.0)(), "eq": eq_point, "comp": comp_point}
        monkeypatch.setattr(opt, "report_distance", lambda w, s, p, f: table[
            "eq" if p["p1_gain_db"] == 3.0 else "comp" if p["comp_ratio"] == 2.0 else None])
        calls.clear()
        return opt.refine_estimate(x, sr, ref, sr, start, "model", 3, None)

    monkeypatch.setattr(opt, "refine", fake_refine)
    # closer in total and in spectrum: the EQ move is kept, no second stage
    params, info = run(distances(4.0, 2.9)(), None)
    assert params["p1_gain_db"] == 3.0 and info["stage"] == "eq+comp" and info["check"]["kept"] == "refined"
    assert calls == [(("eq", "comp"), "log-mean")]
    # closer in total, farther in spectrum: stage 2, whose point is closer: kept
    params, info = run(distances(4.0, 3.1)(), distances(4.5, 3.5)())
    assert params["p1_gain_db"] == start["p1_gain_db"] and params["comp_ratio"] == 2.0
    assert calls == [(("eq", "comp"), "log-mean"), (("comp",), "power-mean")]
    assert [st["kept"] for st in info["stages"]] == [False, True] and info["check"]["kept"] == "refined"
    # both farther in total: the start
    params, info = run(distances(5.5, 2.0)(), distances(5.2, 3.0)())
    assert params == start and info["check"]["kept"] == "start"
