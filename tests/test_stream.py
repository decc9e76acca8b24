"""Streamed rendering (afxmatch.render.stream) equals the in-memory render: EQ overlap-add
tails, compressor state and pedalboard plugin state are carried across blocks."""

import numpy as np
import pytest

from afxmatch.params import ParamSpace
from afxmatch.render import render
from afxmatch.render.stream import StreamRenderer, render_blocks

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
