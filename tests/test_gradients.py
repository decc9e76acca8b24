"""Gradients through the whole chain (edges of the space included), the ballistics'
custom backward against finite differences, and shape/batch behaviour of ``process``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import full_params
from afxmatch import dsp
from afxmatch.dsp import compressor, eq
from afxmatch.params import ParamSpace

SR = 44100


def _test_signal(n: int = 8192, channels: int = 2, seed: int = 0) -> torch.Tensor:
    """Noise with loud and quiet stretches so the compressor attacks and releases."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, n, generator=g, dtype=torch.float64)
    t = torch.arange(n, dtype=torch.float64) / SR
    env = torch.where((t % 0.05) < 0.025, 0.7, 0.02)
    return (x * env).clamp(-1, 1)


def _edge_points(n_params: int, seed: int = 0, n_random: int = 8) -> torch.Tensor:
    """u = 0 and u = 1 per parameter (others at 0.5), all 0, all 1, and random interior points."""
    rows = []
    for i in range(n_params):
        for edge in (0.0, 1.0):
            u = torch.full((n_params,), 0.5, dtype=torch.float64)
            u[i] = edge
            rows.append(u)
    rows += [torch.zeros(n_params, dtype=torch.float64), torch.ones(n_params, dtype=torch.float64)]
    g = torch.Generator().manual_seed(seed)
    rows += list(torch.rand(n_random, n_params, generator=g, dtype=torch.float64))
    return torch.stack(rows)


def _loss_per_item(y: torch.Tensor) -> torch.Tensor:
    """A loss touching level and spectrum, per batch item."""
    spec = torch.fft.rfft(y, dim=-1).abs()
    return y.pow(2).mean(dim=(1, 2)) + torch.log(spec + 1e-3).mean(dim=(1, 2))


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.float64, marks=pytest.mark.slow)])
def test_finite_gradients_at_range_edges(dtype):
    space = ParamSpace(SR)
    n_params = len(space)
    u_all = _edge_points(n_params).to(dtype)
    x = _test_signal().to(dtype)
    # batch points with similar impulse-response lengths (the FFT size follows the longest)
    with torch.no_grad():
        p_all = dsp.denormalise(space, u_all)
        tails = [eq.impulse_length({k: v[i:i + 1] for k, v in p_all.items()}, SR)
                 for i in range(u_all.shape[0])]
    order = torch.tensor(np.argsort(tails, kind="stable"))
    grad = torch.empty_like(u_all)
    for idx in torch.split(order, 16):
        u = u_all[idx].clone().requires_grad_(True)
        params = dsp.denormalise(space, u)
        y = dsp.process(x.expand(u.shape[0], -1, -1), SR, params)
        assert y.shape == (u.shape[0],) + tuple(x.shape[1:])
        assert torch.isfinite(y).all()
        _loss_per_item(y).sum().backward()
        grad[idx] = u.grad.detach()
    bad = ~torch.isfinite(grad)
    assert not bad.any(), [(int(r), space.names[int(c)]) for r, c in bad.nonzero()[:10]]
    # every parameter reaches the loss: non-zero gradient at the random interior points
    interior = grad[-8:]
    dead = [space.names[i] for i in range(n_params) if not (interior[:, i].abs() > 0).any()]
    assert not dead, f"parameters with zero gradient at all interior points: {dead}"


def test_eq_gradient_matches_finite_differences():
    """Directional derivative through the EQ + output gain (smooth in u) vs central differences."""
    space = ParamSpace(SR)
    g = torch.Generator().manual_seed(1)
    u0 = (0.1 + 0.8 * torch.rand(2, len(space), generator=g, dtype=torch.float64))
    x = _test_signal(4096, seed=2).expand(2, -1, -1)

    def loss(u):
        y = dsp.process(x, SR, dsp.denormalise(space, u), stages=("eq", "gain"))
        return y.pow(2).mean()

    u = u0.clone().requires_grad_(True)
    loss(u).backward()
    eq_cols = [i for i, n in enumerate(space.names) if not n.startswith("comp_")]
    for trial in range(3):
        d = torch.zeros_like(u0)
        d[:, eq_cols] = torch.randn(2, len(eq_cols), generator=g, dtype=torch.float64)
        eps = 1e-4
        fd = (loss(u0 + eps * d) - loss(u0 - eps * d)) / (2 * eps)
        ad = (u.grad * d).sum()
        assert float(ad) == pytest.approx(float(fd), rel=2e-3, abs=1e-8)


def test_compressor_gradient_matches_finite_differences():
    """Threshold/ratio/knee/make-up: the chain's gradient vs central differences (dB-level loss)."""
    x = _test_signal(6000, seed=3)
    base = dict(comp_threshold_db=-25.0, comp_ratio=4.0, comp_knee_db=6.0, comp_attack_ms=3.0,
                comp_release_ms=60.0, comp_makeup_db=2.0)
    names = list(base)

    def loss(values: torch.Tensor) -> torch.Tensor:
        params = full_params(SR)
        for n, v in zip(names, values):
            params[n] = v.reshape(1)
        y = dsp.process(x, SR, params, stages=("comp",))
        return y.pow(2).mean().log()

    v0 = torch.tensor([base[n] for n in names], dtype=torch.float64)
    v = v0.clone().requires_grad_(True)
    loss(v).backward()
    for i, name in enumerate(names):
        step = 1e-3 * max(1.0, abs(float(v0[i])))
        e = torch.zeros_like(v0)
        e[i] = step
        fd = (loss(v0 + e) - loss(v0 - e)) / (2 * step)
        # the level detector and attack/release switch are piecewise: a small step can cross a
        # switching point, so allow a few percent
        assert float(v.grad[i]) == pytest.approx(float(fd), rel=0.05, abs=1e-6), name
        assert float(v.grad[i]) != 0.0, name


# --------------------------------------------------------------------------- ballistics


def _ballistics_inputs(seed: int = 0, batch: int = 2, frames: int = 40):
    """A gain-reduction curve with attack and release phases, kept away from switching points."""
    rng = np.random.default_rng(seed)
    aa, ar = rng.uniform(0.2, 0.6, batch), rng.uniform(0.7, 0.95, batch)
    for _ in range(100):
        gc = -np.abs(rng.normal(0, 8.0, (batch, frames))) * (rng.uniform(size=(batch, frames)) < 0.6)
        # distance of each target from the previous state: the branch decision margin
        margins = []
        for i in range(batch):
            state = 0.0
            for t in gc[i]:
                margins.append(abs(t - state))
                c = aa[i] if t < state else ar[i]
                state = c * state + (1 - c) * t
        if min(margins) > 1e-2:
            break
    else:  # pragma: no cover
        raise AssertionError("could not draw inputs away from switching points")
    return (torch.tensor(gc, dtype=torch.float64, requires_grad=True),
            torch.tensor(aa, dtype=torch.float64, requires_grad=True),
            torch.tensor(ar, dtype=torch.float64, requires_grad=True))


def test_smooth_gain_gradcheck():
    gc, aa, ar = _ballistics_inputs()
    assert torch.autograd.gradcheck(compressor.smooth_gain, (gc, aa, ar), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_smooth_gain_attack_and_release_get_gradients():
    """A step down (attack) then back up (release): both coefficients must get gradient."""
    gc = torch.cat([torch.zeros(5), torch.full((30,), -20.0), torch.zeros(60)]).double()[None]
    gc.requires_grad_(True)
    aa = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    ar = torch.tensor([0.9], dtype=torch.float64, requires_grad=True)
    out = compressor.smooth_gain(gc, aa, ar)
    out.sum().backward()
    # analytic values: each phase's sum depends on its coefficient
    assert float(aa.grad) > 1.0  # slower attack -> less reduction -> larger sum
    assert float(ar.grad) < -1.0  # slower release -> more reduction stays -> smaller sum
    # against central differences
    eps = 1e-6
    with torch.no_grad():
        fd_a = (compressor.smooth_gain(gc, aa + eps, ar).sum() - compressor.smooth_gain(gc, aa - eps, ar).sum()) / (2 * eps)
        fd_r = (compressor.smooth_gain(gc, aa, ar + eps).sum() - compressor.smooth_gain(gc, aa, ar - eps).sum()) / (2 * eps)
    assert float(aa.grad) == pytest.approx(float(fd_a), rel=1e-5)
    assert float(ar.grad) == pytest.approx(float(fd_r), rel=1e-5)


def test_release_time_gradient_through_chain():
    """d(loss)/d(release_ms) is non-zero through ``process`` for a burst then quiet signal."""
    n = int(0.3 * SR)
    x = torch.cat([torch.ones(n // 3), torch.full((n - n // 3,), 0.01)]).double()[None, None]
    rel = torch.tensor([200.0], dtype=torch.float64, requires_grad=True)
    att = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
    params = full_params(SR, comp_threshold_db=-20.0, comp_ratio=10.0)
    params["comp_release_ms"], params["comp_attack_ms"] = rel, att
    y = dsp.process(x, SR, params, stages=("comp",))
    y.abs().sum().backward()
    assert float(rel.grad) < 0  # longer release: more reduction kept in the quiet part
    assert float(att.grad) > 0  # longer attack: less reduction at the onset
    assert torch.isfinite(rel.grad) and torch.isfinite(att.grad)


# --------------------------------------------------------------------------- shapes / batch


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 2, 7), (3, 1, 1000), (2, 2, 12345), (1, 3, 44101)])
def test_process_keeps_shape(shape):
    space = ParamSpace(SR)
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g) * 0.3
    u = torch.rand(shape[0], len(space), generator=g, dtype=torch.float64)
    y = dsp.process(x, SR, dsp.denormalise(space, u))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


def test_process_rejects_non_3d():
    params = full_params(SR)
    with pytest.raises(ValueError):
        dsp.process(torch.zeros(2, 100), SR, params)


def test_process_stages():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 2, 3000, generator=g, dtype=torch.float64) * 0.5
    params = full_params(SR, p2_gain_db=9.0, comp_threshold_db=-30.0, comp_ratio=4.0, out_gain_db=-6.0)
    assert torch.equal(dsp.process(x, SR, params, stages=()), x)
    torch.testing.assert_close(dsp.process(x, SR, params, stages=("gain",)), x * 10 ** (-6 / 20))
    full = dsp.process(x, SR, params)
    manual = dsp.process(dsp.process(dsp.process(x, SR, params, ("eq",)), SR, params, ("comp",)),
                         SR, params, ("gain",))
    torch.testing.assert_close(full, manual)
    # defaults are neutral
    torch.testing.assert_close(dsp.process(x, SR, full_params(SR)), x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_items_are_independent(dtype):
    space = ParamSpace(SR)
    g = torch.Generator().manual_seed(5)
    x = _test_signal(20000, seed=6).to(dtype).expand(2, -1, -1).clone()
    x[1] = x[1].flip(-1) * 0.5
    u = torch.rand(2, len(space), generator=g, dtype=torch.float64)
    u[0, space.names.index("ls_q")] = 1.0  # very different impulse lengths in the batch
    u[0, space.names.index("ls_freq_hz")] = 0.0
    y = dsp.process(x, SR, dsp.denormalise(space, u))
    for i in range(2):
        yi = dsp.process(x[i:i + 1], SR, dsp.denormalise(space, u[i:i + 1]))
        scale = float(yi.abs().max())
        torch.testing.assert_close(y[i:i + 1], yi, rtol=0, atol=1e-5 * scale)
    # and the two outputs differ (the parameters were not shared)
    assert float((y[0] - y[1]).abs().max()) > 1e-2


def test_params_to_tensors_and_denormalise_agree_with_space():
    space = ParamSpace(48000)
    g = torch.Generator().manual_seed(8)
    u = torch.rand(4, len(space), generator=g, dtype=torch.float64)
    u[0] = 0.0
    u[1] = 1.0
    t = dsp.denormalise(space, u)
    for i in range(4):
        phys = space.denormalise(u[i].tolist())
        for name in space.names:
            assert float(t[name][i]) == pytest.approx(phys[name], rel=1e-12, abs=1e-12)
    pt = dsp.params_to_tensors(space.defaults(), batch=3)
    assert all(v.shape == (3,) and v.dtype == torch.float64 for v in pt.values())
