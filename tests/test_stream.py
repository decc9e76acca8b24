"""Streamed rendering (afxmatch.render.stream) equals the in-memory render: EQ overlap-add
tails, compressor state and pedalboard plugin state are carried across blocks. The
built-in chain streams in numpy (no torch): equal to ``numpy_chain.process`` on the whole
signal within 1e-6, to the torch chain within 1e-5 and to independent references (scipy's
IIR filter, a plain compressor written out below)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import reference_dsp as ref
from afxmatch import dsp
from afxmatch.dsp import formulas, numpy_chain
from afxmatch.params import ParamSpace
from afxmatch.render import render
from afxmatch.render.stream import StreamRenderer, render_blocks

from audio_fixtures import EXAMPLE_INPUT, EXAMPLE_REFERENCE

SR = 44100


def signal(seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Noise + tone bursts: loud and quiet passages, so the compressor attacks and releases."""
    rng = np.random.default_rng(seed)
    n = int(SR * seconds)
    t = np.arange(n) / SR
    env = np.where(np.sin(2 * np.pi * 1.3 * t) > 0, 1.0, 0.05)
    x = env * (0.3 * np.sin(2 * np.pi * 180 * t) + 0.1 * rng.standard_normal((channels, n)))
    return x.astype(np.float32)


def params(**over) -> dict:
    p = ParamSpace(SR).defaults()
    p.update(ls_gain_db=6.0, p1_freq_hz=400.0, p1_gain_db=-9.0, p1_q=8.0, p3_gain_db=5.0,
             hs_gain_db=-4.0, comp_threshold_db=-30.0, comp_ratio=6.0, comp_attack_ms=5.0,
             comp_release_ms=120.0, comp_knee_db=6.0, comp_makeup_db=3.0, out_gain_db=-2.0)
    p.update(over)
    return p


def blocks(x: np.ndarray, sizes):
    i, k = 0, 0
    while i < x.shape[1]:
        n = sizes[k % len(sizes)]
        yield x[:, i:i + n]
        i, k = i + n, k + 1


@pytest.mark.parametrize("backend", ["torch", "pedalboard"])
@pytest.mark.parametrize("sizes", [[4096], [1000, 7919, 1, 44100, 22], [10 ** 7]])
def test_streamed_render_equals_in_memory(backend, sizes):
    x = signal(3.3)
    p = params()
    whole = render(x, SR, p, backend)
    streamed = np.concatenate(list(render_blocks(blocks(x, sizes), SR, 2, p, backend)), axis=1)
    assert streamed.shape == whole.shape
    assert np.max(np.abs(streamed - whole)) < 1e-4
    assert np.max(np.abs(whole)) > 0.1   # the comparison is not between two silences


@pytest.mark.parametrize("backend", ["torch", "pedalboard"])
@pytest.mark.parametrize("n", [22050, 22050 + 1, 22050 + 21, 8192 * 3 + 1, 70000])
def test_lengths_at_frame_and_block_edges(n, backend):
    """Lengths that end on, just after and just before a control frame or a block."""
    x = signal(n / SR + 0.01, channels=2, seed=1)[:, :n]
    p = params()
    r = StreamRenderer(SR, 2, p, backend)
    out = np.concatenate([r.process(b) for b in blocks(x, [333, 5000])] + [r.flush()], axis=1)
    whole = render(x, SR, p, backend)
    assert out.shape == whole.shape == (2, n)
    assert np.max(np.abs(out - whole)) < 1e-4


def test_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(2, samples\)"):
        StreamRenderer(SR, 2, params()).process(np.zeros((1, 100), np.float32))


# --------------------------------------------------------------------------- the built-in chain in numpy


def streamed(x: np.ndarray, sr: int, p: dict, sizes, stages=("eq", "comp", "gain")) -> np.ndarray:
    out = list(render_blocks(blocks(x, sizes), sr, x.shape[0], p, "torch", stages))
    assert all(y.dtype == np.float32 for y in out)
    return np.concatenate(out, axis=1) if out else np.zeros((x.shape[0], 0), np.float32)


def torch_process(x: np.ndarray, sr: int, p: dict, stages=("eq", "comp", "gain")) -> np.ndarray:
    with torch.no_grad():
        return dsp.process(torch.from_numpy(x)[None], sr, dsp.params_to_tensors(p), stages)[0].numpy()


def max_err(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape
    return float(np.max(np.abs(got.astype(np.float64) - want)))


def settings(sr: int) -> list[tuple[dict, int]]:
    """``(params, samples)``: this file's setting (an 8.5k-sample EQ response) on 1.5 of its
    overlap-add blocks (the whole signal is then filtered in one FFT, the stream in two
    blocks) and a random full-range one (6-40k samples) on three blocks and a bit."""
    rng = np.random.default_rng(sr)
    space = ParamSpace(sr)
    rand = space.denormalise(rng.uniform(size=len(space)))
    rand.update(comp_threshold_db=-24.0, out_gain_db=-6.0)
    out = []
    for p, n_blocks in ((params(), 1.5), (rand, 3.1)):
        tail = formulas.eq_impulse_length(numpy_chain._columns(p), sr)
        out.append((p, int(n_blocks * numpy_chain.overlap_add_sizes(tail)[1])))
    return out


SIZES = {"below one control frame": [7, 13, 1], "below the EQ tail": [1000, 4097],
         "mixed": [1000, 7919, 1, 44100, 22], "one block": [10 ** 8]}


def test_the_settings_reach_the_cases_asked_for():
    for sr in (44100, 48000):
        for p, n in settings(sr):
            tail = formulas.eq_impulse_length(numpy_chain._columns(p), sr)
            block = numpy_chain.overlap_add_sizes(tail)[1]
            assert n > block and max(SIZES["below the EQ tail"]) < tail
        assert max(SIZES["below one control frame"]) < formulas.control_hop(sr)


@pytest.mark.parametrize("sr, channels", [(44100, 2), (48000, 1), (48000, 2), (44100, 1)])
@pytest.mark.parametrize("sizes", SIZES.values(), ids=SIZES.keys())
def test_builtin_stream_equals_numpy_chain_and_torch(sr, channels, sizes):
    for i, (p, n) in enumerate(settings(sr)):
        x = signal(n / SR + 0.01, channels, seed=i)[:, :n]
        x /= np.abs(x).max()   # peak 1
        want = numpy_chain.process(x, sr, p)
        got = streamed(x, sr, p, sizes)
        peak = np.abs(want).max()
        assert 0.1 < peak <= 1.0, peak   # not silence; absolute tolerances apply
        assert max_err(got, want) <= 1e-6, (i, max_err(got, want))
        assert max_err(got, torch_process(x, sr, p)) <= 1e-5, i


@pytest.mark.parametrize("stages", [("comp", "gain"), ("comp",), ("gain",), ()])
def test_compressor_and_gain_streams_are_bit_exact(stages):
    """Without the EQ (the only FFT), carrying the ballistics state, the held frame and the
    neighbouring gains gives the in-memory values bit for bit, in blocks above and below
    one control frame, ending on and off a frame boundary."""
    p = params()
    for n in (44100 * 2, 44100 * 2 + 5):
        x = signal(2.01, 2, seed=5)[:, :n]
        want = numpy_chain.process(x, SR, p, stages)
        for sizes in ([7, 13, 1], [22], [1000, 7919, 1, 44100, 22], [10 ** 8]):
            got = streamed(x, SR, p, sizes, stages)
            np.testing.assert_array_equal(got, want)


def test_stream_with_a_very_long_eq_response():
    """A 20 Hz, Q 10, +24 dB low shelf: a 320k-sample impulse response, 1.3M-sample blocks."""
    sr = 44100
    p = params(ls_freq_hz=20.0, ls_q=10.0, ls_gain_db=24.0, out_gain_db=-6.0)
    tail = formulas.eq_impulse_length(numpy_chain._columns(p), sr)
    block = numpy_chain.overlap_add_sizes(tail)[1]
    assert tail > 300000
    x = signal(2 * block / SR + 0.2, 1, seed=6)
    want = numpy_chain.process(x, sr, p)
    got = streamed(x, sr, p, [250000, 7919, 100003])
    assert 0.05 < np.abs(want).max() <= 1.0
    assert max_err(got, want) <= 1e-6
    assert max_err(got, torch_process(x, sr, p)) <= 1e-5


def plain_compressor(x: np.ndarray, sr: int, p: dict) -> np.ndarray:
    """An independent float64 reference of the documented compressor: linked peak per
    0.5 ms frame (the last one zero-padded), the soft-knee curve written case by case, the
    one-pole attack/release loop, linear interpolation between frame centres (edges held)."""
    hop = max(1, round(sr * 0.0005))
    n = x.shape[1]
    frames = -(-n // hop)
    peak = np.zeros(frames * hop)
    peak[:n] = np.abs(x).max(axis=0)
    level = 20 * np.log10(np.maximum(peak.reshape(frames, hop).max(axis=1), 1e-6))
    t, r, w = p["comp_threshold_db"], p["comp_ratio"], p["comp_knee_db"]
    a_att = np.exp(-hop / (p["comp_attack_ms"] * 1e-3 * sr))
    a_rel = np.exp(-hop / (p["comp_release_ms"] * 1e-3 * sr))
    gains, g = [], 0.0
    for lv in level:
        if 2 * (lv - t) < -w:
            out = lv
        elif 2 * (lv - t) > w:
            out = t + (lv - t) / r
        else:
            out = lv + (1 / r - 1) * (lv - t + w / 2) ** 2 / (2 * w)
        target = out - lv
        a = a_att if target < g else a_rel
        g = a * g + (1 - a) * target
        gains.append(g + p["comp_makeup_db"])
    centres = np.arange(frames) * hop + (hop - 1) / 2
    return x * 10 ** (np.interp(np.arange(n), centres, gains) / 20)


@pytest.mark.parametrize("sr, channels", [(44100, 2), (48000, 1)])
def test_builtin_stream_equals_independent_reference(sr, channels):
    """scipy's IIR filter (RBJ sections, float64), the plain compressor above, the gain."""
    for i, (p, n) in enumerate(settings(sr)):
        x = signal(n / SR + 0.01, channels, seed=10 + i)[:, :n]
        y = ref.filter_signal(ref.eq_sos(p, sr), x.astype(np.float64))
        want = plain_compressor(y, sr, p) * 10 ** (p["out_gain_db"] / 20)
        got = streamed(x, sr, p, [1000, 7919, 1, 44100, 22])
        assert np.abs(want).max() > 0.1
        assert max_err(got, want) <= 1e-5, (i, max_err(got, want))


def test_streamed_match_imports_no_torch(tmp_path):
    """The long-file path of the default job renders the built-in chain without torch."""
    code = ("import sys; from afxmatch.pipeline import MatchOptions, match_file; "
            f"r = match_file({str(EXAMPLE_INPUT)!r}, {str(EXAMPLE_REFERENCE)!r}, "
            f"{str(tmp_path / 'o.wav')!r}, MatchOptions(stream_above_s=0)); "
            "import json; print(json.dumps({'torch': 'torch' in sys.modules, "
            "'streamed': 'afxmatch.render.stream' in sys.modules, 'method': r['method'], "
            "'backend': r['backend']}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"torch": False, "streamed": True, "method": "model", "backend": "torch"}
