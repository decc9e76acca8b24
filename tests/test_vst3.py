"""The vst3 backend (ZamEQ2 + ZamComp/ZamCompX2) and the blackbox method.

References are independent of the plugins: the RBJ cookbook response of the report's
parameters (afxmatch.dsp.eq, checked against scipy in test_eq), the compressor's
documented static curve, and Orfanidis' published design. Tests that need the plugins
skip when zam-plugins is not installed (scripts/install_zam_plugins.sh).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from afxmatch.dsp.eq import magnitude_db
from afxmatch.params import ParamSpace
from afxmatch.render import render, vst3_backend, zam_map
from afxmatch.render.stream import render_blocks

SR = 44100
needs_zam = pytest.mark.skipif(not vst3_backend.available(),
                               reason="zam-plugins (ZamEQ2/ZamComp/ZamCompX2 VST3) not installed")


def params(**kw) -> dict:
    p = ParamSpace(SR).defaults()
    p.update(kw)
    return p


def rbj_db(p: dict, freqs: np.ndarray) -> np.ndarray:
    t = {k: torch.tensor([float(v)], dtype=torch.float64) for k, v in p.items()}
    return magnitude_db(t, SR, torch.as_tensor(freqs, dtype=torch.float64))[0].numpy()


# --- the map itself (no plugin needed) ----------------------------------------------------

def test_shelf_q_is_rbj_slope_formula():
    # RBJ: 1/Q = sqrt((A + 1/A)(1/S - 1) + 2); S = 1 gives Q = 1/sqrt(2) whatever the gain
    for g in (-24.0, -3.0, 6.0, 20.0):
        a = 10 ** (g / 40)
        s = zam_map.SHELF_SLOPE
        assert zam_map.shelf_q(g) == pytest.approx(1 / math.sqrt((a + 1 / a) * (1 / s - 1) + 2), rel=1e-12)
    assert zam_map.shelf_q(12.0) == pytest.approx(0.5741, abs=1e-4)
    assert zam_map.shelf_q(1e-9) == pytest.approx(1 / math.sqrt(1 + 2 * (math.sqrt(2) - 1) + 1), rel=1e-6)


def test_peak_bandwidth_round_trip_and_known_values():
    for f in (100.0, 1000.0, 6000.0, 12000.0):
        for q in (0.3, 0.707, 2.0, 8.0):
            bw = zam_map.peak_bandwidth(f, q, SR)
            assert zam_map.peak_q(f, bw, SR) == pytest.approx(q, rel=1e-6)
    # bw 1 -> qq 2 -> dw = w0 / (4 pi): Q ~ 4 pi at low frequency (the plugin's "octaves" are not)
    assert zam_map.peak_q(100.0, 1.0, SR) == pytest.approx(4 * math.pi, rel=2e-3)
    # mid-gain edges of the RBJ prototype: (t2 - t1) = k / Q and t1 t2 = k^2
    k = math.tan(math.pi * 2000 / SR)
    dw = zam_map.midgain_bandwidth(2000.0, 1.5, SR)
    t1 = math.tan((2 * math.pi * 2000 / SR - dw / 2) / 2)   # first-order check only
    assert 0 < t1 < k


def test_missing_plugin_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(vst3_backend.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(vst3_backend, "STANDARD_DIRS", ())
    with pytest.raises(vst3_backend.PluginError, match=r"ZamEQ2\.vst3 not found.*install_zam_plugins"):
        vst3_backend.find_plugin("ZamEQ2")
    assert not vst3_backend.available()


def test_env_var_folder_is_searched_first(tmp_path, monkeypatch):
    (tmp_path / "ZamEQ2.vst3").mkdir()
    monkeypatch.setenv(vst3_backend.ENV_VAR, str(tmp_path))
    assert vst3_backend.find_plugin("ZamEQ2") == tmp_path / "ZamEQ2.vst3"


def test_unrepresented_and_project():
    p = params(comp_release_ms=800.0, comp_knee_db=4.0, comp_ratio=3.0, hs_freq_hz=18000.0, hs_gain_db=3.0,
               p4_freq_hz=9000.0, p4_gain_db=12.0, p4_q=0.3)
    notes = " | ".join(vst3_backend.unrepresented(p, SR))
    for part in ("comp_release_ms 800", "comp_knee_db", "hs_freq_hz 18000", "hs_q 0.707", "p4: ZamEQ2's peak"):
        assert part in notes
    q = vst3_backend.project(p, SR, tol_db=0.4)
    assert q["comp_release_ms"] == 500.0 and q["comp_knee_db"] == 0.0 and q["hs_freq_hz"] == 14000.0
    assert q["hs_q"] == pytest.approx(zam_map.shelf_q(3.0))
    assert q["p4_q"] > 0.3
    assert zam_map.peak_errors_db(9000.0, 12.0, q["p4_q"], SR)[0] <= 0.4
    assert vst3_backend.unrepresented(q, SR, tol_db=0.4) == []


def test_cmaes_minimises_a_quadratic():
    from afxmatch.estimate.blackbox import CMAES

    target = np.array([0.3, -0.2, 0.5, 0.1, -0.4])
    es = CMAES(np.zeros(5), 0.3, np.random.default_rng(1))
    for _ in range(60):
        xs = es.ask()
        es.tell(xs, np.sum((xs - target) ** 2 * np.arange(1, 6), axis=1))
    assert np.max(np.abs(es.mean - target)) < 1e-3


# --- rendered through the plugins ---------------------------------------------------------

EQ_SETTINGS = [
    dict(ls_freq_hz=120.0, ls_gain_db=6.0, hs_freq_hz=6000.0, hs_gain_db=-5.0),           # shelves only
    dict(ls_freq_hz=60.0, ls_gain_db=-9.0, p1_freq_hz=400.0, p1_gain_db=5.0, p1_q=1.2,
         p2_freq_hz=2500.0, p2_gain_db=-8.0, p2_q=3.0, p3_freq_hz=5000.0, p3_gain_db=4.0, p3_q=2.0,
         p4_freq_hz=10000.0, p4_gain_db=-6.0, p4_q=4.0, hs_freq_hz=9000.0, hs_gain_db=3.0),
    dict(p1_freq_hz=250.0, p1_gain_db=12.0, p1_q=0.5, p2_freq_hz=1200.0, p2_gain_db=-15.0, p2_q=8.0,
         p3_freq_hz=3000.0, p3_gain_db=9.0, p3_q=0.8, p4_freq_hz=7000.0, p4_gain_db=-10.0, p4_q=1.0),
    dict(ls_freq_hz=200.0, ls_gain_db=18.0, p1_freq_hz=800.0, p1_gain_db=-20.0, p1_q=0.4,
         p4_freq_hz=13000.0, p4_gain_db=10.0, p4_q=0.7, hs_freq_hz=4000.0, hs_gain_db=-12.0),
]


@needs_zam
@pytest.mark.parametrize("setting", EQ_SETTINGS)
def test_rendered_eq_matches_report_parameters(setting):
    """The report's (projected) parameters' RBJ response vs an impulse through the plugins,
    30 Hz-16 kHz: within 0.5 dB (the acceptance criterion)."""
    p = vst3_backend.project(params(**setting), SR)
    freqs = np.geomspace(30.0, 16000.0, 300)
    err = np.abs(vst3_backend.eq_response_db(p, SR, freqs) - rbj_db(p, freqs))
    assert err.max() < 0.5
    assert vst3_backend.describe(p, SR, 1)["eq_max_difference_db"] < 0.5


@needs_zam
def test_shelves_and_narrow_peaks_are_exact():
    """Shelves map exactly (Q = shelf_q(gain)); narrow peaks within a few hundredths."""
    p = vst3_backend.project(params(**EQ_SETTINGS[0]), SR)
    freqs = np.geomspace(30.0, 16000.0, 300)
    assert np.max(np.abs(vst3_backend.eq_response_db(p, SR, freqs) - rbj_db(p, freqs))) < 0.03


@needs_zam
def test_orfanidis_model_matches_the_plugin():
    """zam_map.orfanidis_peak (the design the mapping is derived from) is what ZamEQ2 runs."""
    freqs = np.geomspace(30.0, 16000.0, 200)
    plugin = vst3_backend.load_plugin("ZamEQ2")
    try:
        for f, g, bw in ((300.0, 9.0, 4.0), (3000.0, -12.0, 2.0), (11000.0, 6.0, 3.0)):
            values = {"boost_cut_l_db": 0.01, "boost_cut_h_db": -0.01, "boost_cut_2_db": 0.01,
                      "master_gain_db": 0.0, "frequency_1_hz": f, "boost_cut_1_db": g, "bandwidth_1": bw}
            for k, v in values.items():
                vst3_backend.set_value(plugin, k, v)
            x = np.zeros((1, 1 << 15), np.float32)
            x[0, 0] = 1
            y = plugin.process(x, float(SR), reset=True)[0].astype(np.float64)
            spec = 20 * np.log10(np.abs(np.fft.rfft(y)))
            measured = np.interp(freqs, np.fft.rfftfreq(1 << 15, 1 / SR), spec)
            model = zam_map._db(*zam_map.orfanidis_peak(f, g, bw, SR), freqs, SR)
            assert np.max(np.abs(measured - model)) < 0.03   # the idle bands' +-0.01 dB included
    finally:
        vst3_backend.release_quietly([plugin])


def _steady_gain_db(p: dict, level_db: float, channels: int = 1) -> np.ndarray:
    x = np.full((channels, SR // 2), 10 ** (level_db / 20), np.float32)
    y = vst3_backend.render_vst3(x, SR, p, stages=("comp",))
    return 20 * np.log10(np.abs(y[:, -1]) / x[:, -1])


@needs_zam
def test_zamcomp_static_curve():
    """Steady level L: gain = min(0, (T + (L - T)/R) - L) + make-up (hard knee)."""
    for t, r in ((-20.0, 4.0), (-35.0, 2.0), (-10.0, 10.0)):
        p = params(comp_threshold_db=t, comp_ratio=r, comp_makeup_db=3.0, comp_attack_ms=1.0,
                   comp_release_ms=50.0, comp_knee_db=6.0)   # the knee is not rendered (hard knee)
        for level in (-50.0, -30.0, -21.0, -15.0, -6.0, -1.0):
            want = min(0.0, t + (level - t) / r - level) + 3.0
            assert _steady_gain_db(p, level)[0] == pytest.approx(want, abs=0.02)


@needs_zam
def test_stereo_detection_is_linked():
    p = params(comp_threshold_db=-20.0, comp_ratio=4.0, comp_attack_ms=1.0)
    x = np.zeros((2, SR // 2), np.float32)
    x[0], x[1] = 10 ** (-4 / 20), 10 ** (-40 / 20)
    y = vst3_backend.render_vst3(x, SR, p, stages=("comp",))
    g = 20 * np.log10(np.abs(y[:, -1]) / x[:, -1])
    assert g == pytest.approx([-12.0, -12.0], abs=0.02)   # the loud channel's reduction on both


@needs_zam
@pytest.mark.parametrize("channels", [1, 2])
def test_streamed_render_equals_whole_render(channels):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((channels, 40000)) * 0.2).astype(np.float32)
    p = params(p2_gain_db=6.0, ls_gain_db=-3.0, comp_threshold_db=-25.0, comp_ratio=4.0,
               comp_makeup_db=2.0, out_gain_db=-1.5)
    whole = render(x, SR, p, "vst3")
    blocks = [x[:, i:i + 2999] for i in range(0, x.shape[1], 2999)]
    streamed = np.concatenate(list(render_blocks(blocks, SR, channels, p, "vst3")), axis=1)
    assert streamed.shape == x.shape and np.array_equal(streamed, whole)
    assert np.all(np.isfinite(whole))
    # the output gain is applied exactly
    p0 = dict(p, out_gain_db=0.0)
    np.testing.assert_allclose(render(x, SR, p0, "vst3") * np.float32(10 ** (-1.5 / 20)), whole, rtol=1e-5, atol=1e-7)


def _styled_pair(seconds: float = 2.0):
    """Input: a decaying-note signal; reference: the same material EQ'd and compressed by
    pedalboard (an implementation other than the plugins searched)."""
    import pedalboard

    rng = np.random.default_rng(7)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    env = np.exp(-((t * 4) % 1.0) * 6)
    x = (0.3 * env * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1800 * t))
         + 0.05 * rng.standard_normal(n)).astype(np.float32)[None]
    board = pedalboard.Pedalboard([pedalboard.PeakFilter(1000, 9.0, 1.0), pedalboard.HighShelfFilter(5000, -8.0, 0.7),
                                   pedalboard.Compressor(-24.0, 6.0, 5.0, 200.0)])
    return x, board(x, SR)


@needs_zam
@pytest.mark.slow
def test_blackbox_improves_the_objective():
    from afxmatch import analysis
    from afxmatch.estimate.blackbox import estimate_blackbox

    x, ref = _styled_pair()
    f_ref = analysis.measure(ref, SR)
    res = estimate_blackbox(x, SR, f_ref, ParamSpace(SR).defaults(), max_evals=48, seed=0)
    info = res.info
    assert info["evaluations"] == 48
    assert info["objective_best"] < 0.8 * info["objective_start"]
    # the returned parameters are renderable as written and score what the search said
    assert vst3_backend.unrepresented(res.params, SR, tol_db=0.45) == []
    parts = info["best_parts"]
    assert parts["spectral_db"] + parts["dynamics_db"] + parts["loudness_lu"] == pytest.approx(
        info["objective_best"], abs=2e-3)
    # deterministic for a fixed seed
    again = estimate_blackbox(x, SR, f_ref, ParamSpace(SR).defaults(), max_evals=48, seed=0)
    assert again.info["objective_best"] == info["objective_best"]


@needs_zam
@pytest.mark.slow
def test_pipeline_blackbox_reports_the_plugins():
    from afxmatch.pipeline import MatchOptions, match_arrays

    x, ref = _styled_pair(1.0)
    opts = MatchOptions(method="blackbox")
    opts.check()
    assert opts.backend == "vst3"
    res = match_arrays(x, SR, ref, SR, method="blackbox")
    info = res.backend_info
    assert info["blackbox"]["evaluations"] > 0 and info["eq_max_difference_db"] < 0.5
    assert np.all(np.isfinite(res.output)) and np.max(np.abs(res.output)) <= 1.0
    # the search scored what the written output measures (the whole 1 s file is its
    # window): the pipeline's gated loudness gain, the frames re-gated at that level
    from afxmatch import analysis

    measured = analysis.style_distances(analysis.measure(res.output, SR), analysis.measure(ref, SR))
    for k, v in info["blackbox"]["best_parts"].items():
        assert measured[k] == pytest.approx(v, abs=2e-3), k


# --- the fitted start (analytic, no plugin needed) -----------------------------------------

def test_fit_eq_recovers_a_representable_eq():
    """A target the plugins can draw exactly (shelves + narrow peaks) is fitted to within
    a few hundredths of a dB, from a flat start."""
    from afxmatch.render import zam_fit

    truth = vst3_backend.project(params(**EQ_SETTINGS[1]), SR, tol_db=0.05)
    freqs, w = zam_fit.fit_grid(SR)
    target = zam_fit.chain_db(truth, SR, freqs)
    fit, info = zam_fit.fit_eq(target, params(), SR, freqs, w, extra_starts=[truth])
    assert np.max(np.abs(zam_fit.chain_db(fit, SR, freqs) - target)) < 0.05
    assert info["fit_max_db"] < 0.05


@pytest.mark.slow
def test_fitted_start_beats_the_snap_and_stays_representable():
    """Wide high peaks (not drawable by ZamEQ2 as RBJ bands): the fit + projection follows the
    RBJ target better than projecting the bands one by one, and its report parameters
    still describe the plugin EQ within 0.45 dB (analytic Orfanidis vs RBJ)."""
    from afxmatch.estimate.blackbox import PROJECT_TOL_DB, fitted_start
    from afxmatch.render import zam_fit

    start = params(p2_freq_hz=2300.0, p2_gain_db=-4.0, p2_q=0.25, p3_freq_hz=4500.0, p3_gain_db=3.0,
                   p3_q=0.2, p4_freq_hz=7500.0, p4_gain_db=15.0, p4_q=0.3, p1_freq_hz=1250.0,
                   p1_gain_db=-12.0, p1_q=6.0)
    freqs, w = zam_fit.fit_grid(SR)
    target = rbj_db(start, freqs)
    fit, _ = fitted_start(start, SR)
    snap = vst3_backend.project(start, SR, PROJECT_TOL_DB)

    def rms(p):
        return float(np.sqrt(np.sum(w * (zam_fit.chain_db(p, SR, freqs) - target) ** 2) / w.sum()))

    assert rms(fit) < 0.6 * rms(snap)
    assert np.max(np.abs(zam_fit.chain_db(fit, SR, freqs) - rbj_db(fit, freqs))) < 0.45


def test_backend_follows_the_method():
    from afxmatch.errors import InvalidParameterError
    from afxmatch.pipeline import MatchOptions

    for method, backend, want in (("blackbox", None, "vst3"), ("blackbox", "vst3", "vst3"),
                                  ("analysis", None, "torch"), ("analysis", "vst3", "vst3")):
        opts = MatchOptions(method=method, backend=backend)
        opts.check()
        assert opts.backend == want
    for backend in ("torch", "pedalboard"):
        with pytest.raises(InvalidParameterError, match=f"--backend {backend} cannot be used"):
            MatchOptions(method="blackbox", backend=backend).check()
    with pytest.raises(InvalidParameterError, match="does not search"):
        MatchOptions(method="analysis", steps=10).check()
    with pytest.raises(InvalidParameterError, match="--steps must be"):
        MatchOptions(method="blackbox", steps=0).check()
    with pytest.raises(InvalidParameterError, match="--time-budget must be"):
        MatchOptions(method="blackbox", time_budget=-1.0).check()


@needs_zam
@pytest.mark.slow
def test_blackbox_never_worse_than_its_start():
    """From the analysis estimate: the fitted start is evaluated, the result scores no worse
    than it when re-measured independently, and the search improves this simple case."""
    from afxmatch import analysis
    from afxmatch.estimate import estimate_analysis
    from afxmatch.estimate.blackbox import StyleObjective, estimate_blackbox, fitted_start, select_input_windows

    x, ref = _styled_pair()
    f_in, f_ref = analysis.measure(x, SR), analysis.measure(ref, SR)
    start = ParamSpace(SR).validate(estimate_analysis(f_in, f_ref, SR), clip=True)
    start["out_gain_db"] = 0.0
    res = estimate_blackbox(x, SR, f_ref, start, max_evals=40, seed=3)
    info = res.info
    assert info["objective_start"] == min(info["start"]["objective_fitted"], info["start"]["objective_projected"])
    # a second start (here the flat defaults, worse than the analysis estimate) is fitted,
    # scored and only chosen if better; the search then never ends above the best start
    two = estimate_blackbox(x, SR, f_ref, start, max_evals=40, seed=3,
                            other_starts={"flat": ParamSpace(SR).defaults()})
    cand = two.info["start"]["candidates"]
    assert set(cand) == {"fitted", "projected", "flat fitted", "flat projected"}
    assert two.info["objective_start"] == min(cand.values())
    assert two.info["start"]["chosen"] == min(cand, key=cand.get)
    assert min(cand["flat fitted"], cand["flat projected"]) > min(cand["fitted"], cand["projected"])
    assert two.info["objective_best"] <= two.info["objective_start"]
    assert info["objective_best"] <= info["objective_start"]
    assert info["objective_best"] < info["objective_start"] - 0.05
    # independent re-measure: a fresh plugin chain on the same windows
    obj = StyleObjective(select_input_windows(x, SR), SR, f_ref, res.params)
    try:
        fitted, _ = fitted_start({**start}, SR)
        assert obj(res.params) == pytest.approx(info["objective_best"], abs=2e-3)
        assert obj(res.params) <= obj(fitted) + 2e-3
    finally:
        obj.close()
    assert vst3_backend.unrepresented(res.params, SR, tol_db=0.45) == []
