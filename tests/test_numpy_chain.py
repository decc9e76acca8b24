"""The torch-free inference chain (afxmatch.dsp.numpy_chain) against the differentiable
torch chain it twins and against independent references (scipy's sosfilt with RBJ
sections, plain-numpy formulas); and that rendering and the analysis estimate import no
torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import reference_dsp as ref
from afxmatch import dsp
from afxmatch.dsp import compressor, eq, formulas, numpy_chain
from afxmatch.params import ParamSpace
from afxmatch.render import render

RATES = (44100, 48000)
TOL = 1e-5   # |numpy - torch|, absolute for outputs up to 1.0, relative to the peak above


def _signal(channels: int, n: int, seed: int, peak: float = 0.5) -> np.ndarray:
    """Noise with a loud/quiet envelope (so the compressor moves), peak ``peak``, float32."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, n)) * np.where((np.arange(n) // 3000) % 3 == 0, 1.0, 0.05)
    return (peak * x / np.abs(x).max()).astype(np.float32)


def _settings(sr: int, seed: int) -> list[dict[str, float]]:
    """Random full-range settings plus extremes: +-24 dB, Q 0.1/10, the lowest frequencies."""
    space = ParamSpace(sr)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(3):
        p = space.denormalise(rng.uniform(size=len(space)))
        p["out_gain_db"] = float(rng.uniform(-12, 6))
        out.append(p)
    low = space.defaults()
    low.update(ls_freq_hz=20.0, ls_q=10.0, ls_gain_db=24.0, p1_freq_hz=200.0, p1_q=10.0, p1_gain_db=-24.0,
               hs_freq_hz=space["hs_freq_hz"].max, hs_q=0.1, hs_gain_db=-24.0, comp_threshold_db=-30.0,
               comp_ratio=20.0, comp_attack_ms=0.1, comp_release_ms=1000.0, comp_knee_db=12.0)
    wide = {s.name: (s.min if i % 2 else s.max) for i, s in enumerate(space.specs)}
    wide.update(comp_makeup_db=0.0, out_gain_db=-24.0)
    return out + [low, wide]


def _torch_process(x: np.ndarray, sr: float, p, stages=("eq", "comp", "gain")) -> np.ndarray:
    with torch.no_grad():
        return dsp.process(torch.from_numpy(x)[None], sr, dsp.params_to_tensors(p), stages)[0].numpy()


def _assert_close(got: np.ndarray, want: np.ndarray, what: str):
    assert got.dtype == np.float32 and got.shape == want.shape
    err = np.abs(got.astype(np.float64) - want).max()
    scale = max(1.0, np.abs(want).max())
    assert err <= TOL * scale, f"{what}: max |numpy - torch| {err:.3g} (output peak {np.abs(want).max():.3g})"


def _block(p, sr) -> int:
    """The overlap-add block of the torch EQ for ``p`` (a signal longer than twice it is cut)."""
    return max(4 * eq.impulse_length(dsp.params_to_tensors(p), sr), eq.MIN_BLOCK)


# --------------------------------------------------------------------------- the chain vs torch


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("channels", [1, 2])
def test_process_matches_torch_short(sr, channels):
    """Shorter than one FFT block: one FFT for the whole signal."""
    for i, p in enumerate(_settings(sr, seed=sr + channels)):
        x = _signal(channels, 20000 + 17 * i, seed=i)
        _assert_close(numpy_chain.process(x, sr, p), _torch_process(x, sr, p), f"setting {i}")


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("channels", [1, 2])
def test_process_matches_torch_long_overlap_add(sr, channels):
    """Longer than two blocks: the torch EQ takes its overlap-add branch."""
    settings = _settings(sr, seed=sr + 10 + channels)
    for i in (0, 3):   # a random setting and the extreme low one (a >100k-sample response)
        p = settings[i]
        n = 2 * _block(p, sr) + 12345
        x = _signal(channels, n, seed=i + 100)
        _assert_close(numpy_chain.process(x, sr, p), _torch_process(x, sr, p), f"setting {i}, {n} samples")


@pytest.mark.parametrize("stages", [(), ("eq",), ("comp",), ("gain",), ("eq", "gain"), ("comp", "gain")])
def test_stages_match_torch(stages):
    sr = 44100
    p = _settings(sr, seed=3)[0]
    x = _signal(2, 30000, seed=3)
    y = numpy_chain.process(x, sr, p, stages)
    _assert_close(y, _torch_process(x, sr, p, stages), str(stages))
    assert not np.shares_memory(y, x)   # a new array: callers may scale it in place
    if not stages:
        np.testing.assert_array_equal(y, x)


def test_render_builtin_chain_is_the_numpy_twin():
    sr = 48000
    p = _settings(sr, seed=4)[1]
    x = _signal(2, 40000, seed=4)
    y = render(x, sr, p, "torch")
    np.testing.assert_array_equal(y, numpy_chain.process(x, sr, p))
    _assert_close(y, _torch_process(x, sr, p), "render")


def test_process_edge_cases():
    sr = 44100
    p = ParamSpace(sr).defaults()
    assert numpy_chain.process(np.zeros((2, 0), np.float32), sr, p).shape == (2, 0)
    x = _signal(2, 5, seed=0)   # shorter than one control frame
    _assert_close(numpy_chain.process(x, sr, p), _torch_process(x, sr, p), "5 samples")
    y = numpy_chain.process(x.astype(np.float64), sr, p)
    assert y.dtype == np.float32
    with pytest.raises(ValueError):
        numpy_chain.process(x[0], sr, p)


# --------------------------------------------------------------------------- EQ vs independent references


@pytest.mark.parametrize("sr", RATES)
def test_eq_apply_matches_sosfilt(sr):
    """Short and overlap-add lengths, random and extreme settings, against scipy's IIR filter."""
    rng = np.random.default_rng(sr)
    space = ParamSpace(sr)
    plist = [ref.random_eq_params(rng, space) for _ in range(3)] + [_settings(sr, seed=1)[3]]
    for i, p in enumerate(plist):
        tail = formulas.eq_impulse_length(numpy_chain._columns(p), sr)
        for n in (25000, 2 * max(4 * tail, formulas.MIN_BLOCK) + 999):
            x = rng.standard_normal((2, n)).astype(np.float32)
            got = numpy_chain.eq_apply(x, sr, p)
            want = ref.filter_signal(ref.eq_sos(p, sr), x.astype(np.float64))
            err = np.abs(got - want).max() / np.abs(want).max()
            assert err < 1e-5, f"relative error {err:.3g} for setting {i}, {n} samples"


def test_eq_impulse_response_matches_sosfilt():
    sr = 44100
    p = _settings(sr, seed=2)[3]   # the 20 Hz, Q 10, +24 dB low shelf: a long response
    h = numpy_chain.eq_impulse_response(p, sr)
    imp = np.zeros(h.size)
    imp[0] = 1.0
    want = ref.filter_signal(ref.eq_sos(p, sr), imp)
    assert h.size > 100_000
    assert np.abs(h - want).max() < 1e-7 * np.abs(want).max()
    assert np.abs(want[-1000:]).max() < 1e-6 * np.abs(want).max()   # decayed by the end


@pytest.mark.parametrize("sr", (22050, 44100, 48000, 96000))
def test_eq_magnitude_matches_torch_and_cookbook(sr):
    rng = np.random.default_rng(sr + 5)
    space = ParamSpace(sr)
    plist = [ref.random_eq_params(rng, space) for _ in range(20)]
    plist += [{s.name: getattr(s, pick) for s in space.specs[:18]} for pick in ("min", "max")]
    batch = {k: np.array([p[k] for p in plist]) for k in plist[0]}
    grid = np.concatenate([[0.0], ref.log_grid(sr, n=300), [sr / 2]])
    got = numpy_chain.eq_magnitude_db(batch, sr, grid)
    assert got.shape == (len(plist), grid.size) and got.dtype == np.float64
    want_torch = eq.magnitude_db({k: torch.from_numpy(v) for k, v in batch.items()}, sr,
                                 torch.from_numpy(grid)).numpy()
    assert np.abs(got - want_torch).max() < 1e-9
    want = np.stack([ref.magnitude_db(ref.eq_sos(p, sr), grid[1:-1], sr) for p in plist])
    assert np.median(np.ptp(want, axis=1)) > 10.0
    assert np.abs(got[:, 1:-1] - want).max() < 1e-4


# --------------------------------------------------------------------------- shared formulas


def test_static_curve_numpy_matches_torch_and_formula():
    levels = np.linspace(-80.0, 6.0, 861)
    for thr, ratio, knee in ((-20.0, 4.0, 0.0), (-20.0, 4.0, 12.0), (-40.0, 20.0, 6.0), (-10.0, 1.0, 3.0)):
        got = formulas.static_curve_db(levels, thr, ratio, knee)
        want = compressor.static_curve_db(torch.from_numpy(levels), torch.tensor(thr, dtype=torch.float64),
                                          torch.tensor(ratio, dtype=torch.float64),
                                          torch.tensor(knee, dtype=torch.float64)).numpy()
        np.testing.assert_array_equal(got, want)
        over = levels - thr   # the Giannoulis et al. soft knee, written out
        plain = np.where(2 * over > knee, (1 / ratio - 1) * over,
                         np.where(np.abs(2 * over) <= knee,
                                  (1 / ratio - 1) * (over + knee / 2) ** 2 / (2 * max(knee, 1e-6)), 0.0))
        np.testing.assert_allclose(got, plain, atol=1e-12)


def test_frames_to_samples_and_time_constants_match_torch():
    g = np.random.default_rng(0).normal(size=(2, 50)).astype(np.float32)
    np.testing.assert_array_equal(formulas.frames_to_samples(g, 22),
                                  compressor.frames_to_samples(torch.from_numpy(g), 22).numpy())
    # linear between frame centres, edges held: numpy's interp on the sample centres
    hop = 4
    y = formulas.frames_to_samples(g, hop)
    centres = (np.arange(g.shape[1]) + 0.5) * hop
    want = np.stack([np.interp(np.arange(y.shape[1]) + 0.5, centres, row) for row in g])
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
    t = np.array([0.1, 10.0, 1000.0])
    np.testing.assert_allclose(formulas.time_constant_coeff(t, 44100, 22), np.exp(-22 / (t * 44.1)), rtol=1e-14)


def test_compressor_gain_matches_torch():
    sr = 48000
    x = _signal(2, 48000, seed=9)
    p = ParamSpace(sr).validate(dict(comp_threshold_db=-30.0, comp_ratio=6.0, comp_attack_ms=3.0,
                                     comp_release_ms=80.0, comp_knee_db=6.0, comp_makeup_db=4.0))
    got = numpy_chain.compressor_gain_db(x, sr, p)
    want = compressor.gain_curve_db(torch.from_numpy(x)[None], sr, dsp.params_to_tensors(p))[0].numpy()
    assert np.ptp(want) > 10.0   # the gain moves
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_denormalise_batch_matches_torch_and_scalar():
    space = ParamSpace(44100)
    u = np.random.default_rng(1).uniform(size=(5, len(space)))
    got = space.denormalise_batch(u)
    want = dsp.denormalise(space, torch.from_numpy(u))
    for i in range(5):
        scalar = space.denormalise(u[i])
        for name in space.names:
            assert got[name][i] == pytest.approx(scalar[name], rel=1e-12)
            assert got[name][i] == pytest.approx(float(want[name][i]), rel=1e-12)


# --------------------------------------------------------------------------- no torch at inference


def test_render_and_analysis_estimate_import_no_torch(tmp_path):
    code = """
import json, sys
import numpy as np
import afxmatch.dsp.numpy_chain, afxmatch.dsp.limiter, afxmatch.dsp.truepeak
import afxmatch.render, afxmatch.estimate.analysis
from afxmatch.analysis import measure
from afxmatch.params import ParamSpace
from afxmatch.estimate.analysis import estimate_analysis, eq_levels_fn
sr = 44100
rng = np.random.default_rng(0)
x = (0.1 * rng.standard_normal((2, 3 * sr))).astype(np.float32)
r = np.cumsum(rng.standard_normal((2, 3 * sr)), axis=1).astype(np.float32)
r = 0.5 * r / np.abs(r).max()
p = estimate_analysis(measure(x, sr), measure(r, sr), sr, eq_levels=eq_levels_fn(x, sr), starts=1)
p = ParamSpace(sr).validate(p, clip=True)
y = afxmatch.render.render(x, sr, p, "torch")
print(json.dumps({"torch": "torch" in sys.modules, "finite": bool(np.isfinite(y).all()),
                  "shape": list(y.shape)}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"torch": False, "finite": True, "shape": [2, 3 * 44100]}


def test_dsp_package_loads_torch_parts_on_first_use():
    """``afxmatch.dsp`` imports no torch itself (the subprocess test above); its torch
    modules and functions are reached through it as before."""
    from afxmatch.dsp import biquad, torch_chain

    assert dsp.process is torch_chain.process and dsp.denormalise is torch_chain.denormalise
    assert dsp.params_to_tensors is torch_chain.params_to_tensors
    assert dsp.eq is eq and dsp.compressor is compressor and dsp.biquad is biquad
    assert compressor._smooth_forward is formulas.smooth_forward   # one recursion, shared
    with pytest.raises(AttributeError):
        dsp.no_such_thing  # noqa: B018
