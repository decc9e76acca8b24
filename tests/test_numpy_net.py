"""The torch-free inference pass (afxmatch.model.numpy_net) and reading model.pt without torch.

References: the torch MatchNet (same weights), torch.load, math.erf, and the digests of
the mel filterbank the shipped model was trained with.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from afxmatch.errors import ModelError
from afxmatch.model import io
from afxmatch.model.features import LogMel
from afxmatch.model.network import MatchNet
from afxmatch.model.numpy_net import NumpyNet, erf, gelu, mel_filterbank

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "default"
SR = 44100
# n_conv=4: every dilation (1, 2, 4, 8); a small STFT so that short windows are cheap
TINY = dict(n_fft=512, hop=128, n_mels=24, channels=16, n_conv=4, embed=12, hidden=20)


def _music(n: int, seed: int) -> np.ndarray:
    """Noise plus a few amplitude-modulated tones, peak 1, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.05 * rng.standard_normal(n)
    for f in rng.uniform(60, 6000, 4):
        x += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t))
    return (x / np.abs(x).max()).astype(np.float32)


def _torch_u(model: MatchNet, xw, gx, rw, gr, prior):
    def embed(windows, gain):   # the torch encoder, pooled jointly over all windows' frames
        enc = model.encoder
        return enc.embed_stats(enc.stats(enc.mel(torch.from_numpy(windows * np.float32(gain))), joint=True))

    with torch.no_grad():
        e_in, e_ref = embed(xw, gx), embed(rw, gr)
        p = None if prior is None else torch.as_tensor(prior)[None]
        return e_in[0].numpy(), e_ref[0].numpy(), model.control(e_in, e_ref, p)[0].double().numpy()


# ---------- erf / GELU ----------

def test_erf_matches_math_erf():
    x = np.concatenate([np.linspace(-7, 7, 140_001), np.linspace(-0.6, 0.6, 10_001),
                        [0.0, -0.0, 0.5, -0.5, 4.0, -4.0, 30.0, -30.0, 1e300, -1e300, 1e-300]])
    ref = np.array([math.erf(v) for v in x])
    err = np.abs(erf(x) - ref).max()
    assert err <= 1e-7, err  # the requirement; measured about 2e-16
    assert err < 1e-14, err
    assert erf(np.inf) == 1.0 and erf(-np.inf) == -1.0 and np.isnan(erf(np.nan))
    assert np.signbit(erf(-0.0))


def test_gelu_matches_torch():
    z = np.random.default_rng(0).standard_normal(50_000).astype(np.float32) * 4
    y = gelu(z)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, torch.nn.functional.gelu(torch.from_numpy(z)).numpy(), rtol=0, atol=1e-6)


# ---------- mel filterbank: one implementation, unchanged ----------

@pytest.mark.parametrize("args,digest", [
    ((2048, 64, 44100), "b22374f5c76d0693d062cf4dc2818b26a83a5a758db9463420a93fc7c4976cd7"),
    ((1024, 32, 44100), "ace7141c53f13ff5e71522ceb3eed38d325c3f66a01839241f02db3f24c16025"),
    ((128, 64, 44100), "0c97c5b095389b129b5390de3bb16fba0b0ad753971a33946f0dbed6175de656"),
])
def test_mel_filterbank_is_bitwise_what_the_model_was_trained_with(args, digest):
    """Digests of the float32 filterbank made by the former torch implementation."""
    fb = mel_filterbank(*args)
    assert fb.dtype == np.float32 and fb.shape == (args[1], args[0] // 2 + 1)
    assert hashlib.sha256(fb.tobytes()).hexdigest() == digest
    np.testing.assert_allclose(fb.sum(1), 1.0, atol=1e-6)
    assert np.array_equal(LogMel(args[2], args[0], 512, args[1]).fb.numpy(), fb)


# ---------- tiny random networks: numpy == torch ----------

@pytest.fixture(scope="module", params=[False, True], ids=["direct", "residual"])
def tiny(request, tmp_path_factory):
    torch.manual_seed(7 + request.param)
    model = MatchNet(**TINY, residual=request.param)
    with torch.no_grad():
        for name, p in model.named_parameters():  # every weight random, the last layer too
            if p.ndim > 1:  # conv / linear weights: about unit gain
                p.copy_(1.5 * torch.randn_like(p) / (p[0].numel() ** 0.5))
            elif name.endswith("weight"):  # GroupNorm scale
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    model.eval()
    folder = io.save_model(model, {"architecture": dict(model.config)}, tmp_path_factory.mktemp("tiny"))
    net, config = io.load_numpy_model(folder)
    return model, net, config, folder


@pytest.mark.parametrize("n_windows,length", [(3, 20_000), (1, 300), (2, 511), (4, 1000)])
def test_tiny_network_matches_torch(tiny, n_windows, length):
    model, net, config, _ = tiny
    assert net.residual == model.residual and net.config == model.config
    rng = np.random.default_rng(length)
    xw = np.stack([_music(length, i) for i in range(n_windows)])
    rw = (0.3 * rng.standard_normal((2, max(length, 700)))).astype(np.float32)
    prior = rng.uniform(0, 1, 25) if model.residual else None
    if prior is not None:
        prior[:2] = (0.0, 1.0)  # clipped to [PRIOR_EPS, 1 - PRIOR_EPS] on both sides
    e_in_t, e_ref_t, u_t = _torch_u(model, xw, 0.5, rw, 2.0, prior)
    e_in, e_ref = net.embed(xw, 0.5), net.embed(rw, 2.0)
    assert e_in.shape == (TINY["embed"],) and e_in.dtype == np.float32
    np.testing.assert_allclose(e_in, e_in_t, rtol=0, atol=1e-5)  # measured <= 5e-7
    np.testing.assert_allclose(e_ref, e_ref_t, rtol=0, atol=1e-5)
    u = net.control(e_in, e_ref, prior)
    assert u.shape == (25,) and u.dtype == np.float64
    np.testing.assert_allclose(u, u_t, rtol=0, atol=1e-5)  # measured <= 1e-7
    assert np.ptp(u) > 0.05  # random weights: not a constant output


def test_tiny_log_mel_matches_torch(tiny):
    model, net, _, _ = tiny
    x = np.stack([_music(5000, 1), _music(5000, 2)])
    ref = model.encoder.mel(torch.from_numpy(x)).numpy()
    assert net.log_mel(x).shape == ref.shape
    np.testing.assert_allclose(net.log_mel(x), ref, rtol=0, atol=1e-5)


def test_residual_needs_a_prior(tiny):
    model, net, _, _ = tiny
    e = np.zeros(TINY["embed"], np.float32)
    if net.residual:
        with pytest.raises(ValueError, match="prior"):
            net.control(e, e)
    else:
        assert net.control(e, e).shape == (25,)


# ---------- the shipped model ----------

@pytest.mark.skipif(not (DEFAULT_MODEL / "model.pt").is_file(), reason="no shipped model")
def test_default_model_matches_torch():
    model, config = io.load_model(DEFAULT_MODEL)
    net, config2 = io.load_numpy_model(DEFAULT_MODEL)
    assert config2 == config and net.residual
    win = config["train_length"]
    rng = np.random.default_rng(3)
    for seed in (1, 2):
        xw = np.stack([_music(win, seed), _music(win, seed + 10)])
        rw = _music(win, seed + 20)[None] * np.float32(0.7)
        prior = rng.uniform(0.05, 0.95, 25)
        _, _, u_t = _torch_u(model, xw, 0.25, rw, 0.4, prior)
        u = net.control(net.embed(xw, 0.25), net.embed(rw, 0.4), prior)
        np.testing.assert_allclose(u, u_t, rtol=0, atol=1e-5)  # measured about 1e-7


@pytest.mark.skipif(not (DEFAULT_MODEL / "model.pt").is_file(), reason="no shipped model")
def test_read_state_dict_equals_torch_load_on_the_shipped_model():
    ours = io.read_state_dict(DEFAULT_MODEL / "model.pt")
    ref = torch.load(DEFAULT_MODEL / "model.pt", map_location="cpu", weights_only=True)
    assert list(ours) == list(ref)
    for k, v in ref.items():
        assert ours[k].dtype == v.numpy().dtype and np.array_equal(ours[k], v.numpy()), k


def test_read_state_dict_views_dtypes_and_shared_storage(tmp_path):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10) / 7
    state = {"transposed": base.T, "offset_slice": base[2:5, 3:9:2], "whole": base,
             "double": torch.randn(3, 4, dtype=torch.float64), "long": torch.arange(-5, 5),
             "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3), "expanded": torch.ones(3, 1).expand(3, 4)}
    torch.save(state, tmp_path / "w.pt")
    ours = io.read_state_dict(tmp_path / "w.pt")
    ref = torch.load(tmp_path / "w.pt", weights_only=True)
    assert set(ours) == set(ref)
    for k, v in ref.items():
        assert ours[k].dtype == v.numpy().dtype and ours[k].shape == tuple(v.shape), k
        assert np.array_equal(ours[k], v.contiguous().numpy()), k
        assert ours[k].flags.c_contiguous


# ---------- what the unpickler refuses ----------

class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _zip_with_pickle(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w/data.pkl", payload)
        z.writestr("w/byteorder", "little")
    return path


def test_forbidden_global_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"encoder.conv.0.weight": _Evil(marker)}, protocol=2)
    assert b"system" in payload
    weights = _zip_with_pickle(tmp_path / "model.pt", payload)
    with pytest.raises(ModelError, match="system"):
        io.read_state_dict(weights)
    assert not marker.exists()
    # through the loader: a folder whose checksum and config are in order
    (tmp_path / "model.sha256").write_text(f"{io._sha256(weights)}  model.pt\n")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": TINY,
                                                      "param_fingerprint": io.fingerprint()}))
    with pytest.raises(ModelError, match="cannot be loaded"):
        io.load_numpy_model(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(eval, protocol=2),  # builtins.eval
    pickle.dumps(np.zeros(2), protocol=2),  # a numpy array is no tensor either
])
def test_other_globals_are_refused(tmp_path, payload):
    with pytest.raises(ModelError, match="refusing"):
        io.read_state_dict(_zip_with_pickle(tmp_path / "m.pt", payload))


def test_broken_files_raise_model_error(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="zip"):
        io.read_state_dict(tmp_path / "junk.pt")
    torch.save({"w": torch.arange(6.0)}, tmp_path / "ok.pt")
    with zipfile.ZipFile(tmp_path / "ok.pt") as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    # claim a tensor larger than its storage: refused, not read out of bounds
    bad = pkl.replace(b"K\x06\x85", b"K\x3c\x85", 1)  # size (6,) -> (60,)
    assert bad != pkl
    with zipfile.ZipFile(tmp_path / "ok.pt") as z, zipfile.ZipFile(tmp_path / "bad.pt", "w") as out:
        for n in z.namelist():
            out.writestr(n, bad if n.endswith("data.pkl") else z.read(n))
    with pytest.raises(ModelError, match="reaches element"):
        io.read_state_dict(tmp_path / "bad.pt")


# ---------- loader checks and errors: the same as load_model ----------

def _error(loader, path) -> str:
    with pytest.raises(ModelError) as e:
        loader(path)
    return str(e.value)


def test_numpy_loader_errors_equal_torch_loader_errors(tiny, tmp_path):
    _, _, _, folder = tiny
    msg = _error(io.load_numpy_model, tmp_path / "nowhere")
    assert "nowhere" in msg and msg == _error(io.load_model, tmp_path / "nowhere")
    msg = _error(io.load_numpy_model, tmp_path)
    assert "missing" in msg and msg == _error(io.load_model, tmp_path)
    d = tmp_path / "m"
    d.mkdir()
    for name in ("model.pt", "config.json", "model.sha256"):
        (d / name).write_bytes((folder / name).read_bytes())
    cfg = json.loads((d / "config.json").read_text())
    cfg["param_fingerprint"] = "0123456789abcdef"
    (d / "config.json").write_text(json.dumps(cfg))
    msg = _error(io.load_numpy_model, d)
    assert "parameter space" in msg and msg == _error(io.load_model, d)
    cfg["param_fingerprint"] = io.fingerprint()
    cfg["architecture"]["channels"] = 32  # weights of another architecture
    (d / "config.json").write_text(json.dumps(cfg))
    assert "cannot be loaded" in _error(io.load_numpy_model, d)
    data = bytearray((folder / "model.pt").read_bytes())
    data[-100] ^= 0xFF
    (d / "model.pt").write_bytes(bytes(data))
    msg = _error(io.load_numpy_model, d)
    assert "checksum" in msg and msg == _error(io.load_model, d)


def test_load_cached_numpy_shares_info(tiny):
    _, _, _, folder = tiny
    net, config, info = io.load_cached_numpy(folder)
    model, config_t, info_t = io.load_cached(folder)
    assert isinstance(net, NumpyNet) and isinstance(model, MatchNet)
    assert info == info_t and config == config_t
    assert io.load_cached_numpy(folder)[0] is net and io.load_cached(folder)[0] is model
    assert info["sha256"] == io._sha256(folder / "model.pt")


# ---------- no torch on the inference path ----------

@pytest.mark.skipif(not (DEFAULT_MODEL / "model.pt").is_file(), reason="no shipped model")
def test_inference_path_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "import afxmatch.model.io as io, afxmatch.model.numpy_net\n"
        f"net, config, info = io.load_cached_numpy({str(DEFAULT_MODEL)!r})\n"
        "x = np.random.default_rng(0).standard_normal((2, 8192)).astype(np.float32)\n"
        "u = net.control(net.embed(x, 0.1), net.embed(x[:1], 0.2), np.full(25, 0.5))\n"
        "assert u.shape == (25,) and np.isfinite(u).all()\n"
        "heavy = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'scipy.special', 'scipy.signal'))]\n"
        "print('heavy:', heavy)\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "heavy: []" in r.stdout
