"""The matching network: tiny training run, save/load, integrity checks, estimation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from afxmatch import dsp
from afxmatch.errors import AfxmatchError, ModelError
from afxmatch.model.bank import PRIOR_STARTS
from afxmatch.estimate.model import estimate_model
from afxmatch.model.io import load_model, save_model
from afxmatch.model.network import MatchNet, count_parameters
from afxmatch.model.train import train
from afxmatch.params import ParamSpace

TINY = dict(n_mels=32, channels=16, n_conv=2, embed=16, hidden=32)
SR = 44100
L = 16384


def _pairs(seed: int, gain_db: float = 8.0):
    """Endless noise/tone pairs: the target is the input EQ'd (low shelf) and louder."""
    rng = np.random.default_rng(seed)
    space = ParamSpace(SR)
    t = np.arange(2 * L) / SR
    while True:
        f = rng.uniform(100, 3000)
        x = 0.05 * rng.standard_normal(2 * L) + 0.2 * np.sin(2 * np.pi * f * t)
        x = (x / np.abs(x).max() * 10 ** (-12 / 20)).astype(np.float32)[None]
        params = dsp.params_to_tensors(space.validate({"ls_gain_db": 6.0, "out_gain_db": gain_db}))
        y = dsp.process(torch.from_numpy(x)[None], SR, params)[0].numpy().astype(np.float32)
        yield dict(input=x[:, :L], target=y[:, :L], reference=y[:, L:])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    records = []
    gen = _pairs(1)
    valid = [next(_pairs(2)) for _ in range(4)]
    cfg = train(None, out, steps=30, batch_size=4, length=L, lr=1e-2, seed=0, log_every=1,
                ckpt_every=15, arch=TINY, train_pairs=gen, valid_pairs=valid, warmup=1,
                fft_sizes=(256, 1024), progress=records.append, threads=None)
    return out, cfg, records


def test_tiny_training_loss_decreases(trained):
    out, cfg, records = trained
    losses = [r["loss"] for r in records if r["event"] == "train"]
    assert len(losses) == 30
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.8 * first, (first, last)
    val = cfg["validation"]
    assert val["best_loss"] < 0.8 * val["history"][0]["valid_loss"]
    for name in ("model.pt", "config.json", "model.sha256", "checkpoint.pt", "log.jsonl"):
        assert (out / name).is_file()
    assert cfg["training"]["steps"] == 30


def test_resume_continues_from_checkpoint(trained, tmp_path):
    out, _, _ = trained
    records = []
    cfg = train(None, out, steps=32, batch_size=4, length=L, lr=1e-2, arch=TINY, train_pairs=_pairs(3), log_every=1,
                valid_pairs=[next(_pairs(2))], fft_sizes=(256, 1024), progress=records.append, threads=None)
    steps = [r["step"] for r in records if r["event"] == "train"]
    assert steps and min(steps) == 31 and cfg["training"]["steps"] == 32


def test_save_load_round_trip(trained, tmp_path):
    out, _, _ = trained
    model, config = load_model(out)
    assert count_parameters(model) < 5_000_000
    x, r = torch.randn(2, 20000) * 0.1, torch.randn(2, 30000) * 0.1
    u1 = model(x, r)
    save_model(model, config, tmp_path / "copy")
    model2, config2 = load_model(tmp_path / "copy" / "model.pt")
    assert torch.equal(u1, model2(x, r))
    assert config2["architecture"] == config["architecture"]


def test_tampered_weights_rejected(trained, tmp_path):
    out, _, _ = trained
    model, config = load_model(out)
    d = save_model(model, config, tmp_path / "m")
    data = bytearray((d / "model.pt").read_bytes())
    data[-100] ^= 0xFF
    (d / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        load_model(d)


def test_wrong_fingerprint_rejected(trained, tmp_path):
    out, _, _ = trained
    model, config = load_model(out)
    d = save_model(model, config, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["param_fingerprint"] = "0123456789abcdef"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="parameter space"):
        load_model(d)


def test_missing_model_rejected(tmp_path):
    with pytest.raises(ModelError, match="missing"):
        load_model(tmp_path)


@pytest.mark.parametrize("channels,n", [(1, 150_001), (2, 23_456), (2, 480_000)])
def test_estimate_model_ranges(trained, channels, n):
    out, _, _ = trained
    model, config = load_model(out)
    rng = np.random.default_rng(n)
    x = (0.1 * rng.standard_normal((channels, n))).astype(np.float32)
    ref = (0.3 * rng.standard_normal((2, 97_000))).astype(np.float32)
    params = estimate_model(x, 48000, ref, 48000, model, config)
    space = ParamSpace(48000)
    assert list(params) == list(space.names)
    for name, value in params.items():
        assert np.isfinite(value)
        assert space[name].min - 1e-9 <= value <= space[name].max + 1e-9, name


def test_default_network_size():
    model = MatchNet()
    n = count_parameters(model)
    assert n < 1_000_000
    # the initial output is (close to) neutral: processing leaves the signal almost unchanged
    x = torch.randn(1, 1, 44100) * 0.05
    u = model(x[:, 0], x[:, 0])
    y = dsp.process(x, SR, dsp.denormalise(ParamSpace(SR), u.double()))
    assert torch.allclose(y, x, atol=1e-3)


# ---------- residual model: refines the analysis estimate ----------

def _write_bank(folder, split: str, pairs: list[dict]) -> None:
    """A bank as :mod:`afxmatch.model.bank` writes it, with analysis priors."""
    from afxmatch.estimate.analysis import analysis_prior

    space = ParamSpace(SR)
    arrays = {k: np.stack([p[k] for p in pairs]) for k in ("input", "reference", "target")}
    arrays["prior"] = np.stack([space.normalise(analysis_prior(p["input"], SR, p["reference"], SR,
                                                               starts=PRIOR_STARTS))
                                for p in pairs]).astype(np.float32)
    for k, v in arrays.items():
        np.save(folder / f"{split}_{k}.npy", v.astype(np.float32))
    (folder / f"{split}_bank.json").write_text(json.dumps({"pairs": len(pairs), "prior_starts": PRIOR_STARTS}))


def test_a_bank_with_other_priors_is_refused(tmp_path):
    """Training asks for priors of a given number of EQ-fit starts; a bank made with
    another number (banks from before it was recorded used 1) is refused, not mixed in."""
    from afxmatch.model.bank import load as load_bank

    pair = next(_pairs(1))
    _write_bank(tmp_path, "valid", [pair])
    assert len(load_bank(tmp_path, "valid", PRIOR_STARTS)["prior"]) == 1
    (tmp_path / "valid_bank.json").write_text(json.dumps({"pairs": 1}))   # unrecorded: 1 start
    assert len(load_bank(tmp_path, "valid", 1)["prior"]) == 1
    for meta, asked in (({"pairs": 1}, 4), ({"pairs": 1, "prior_starts": 4}, 1)):
        (tmp_path / "valid_bank.json").write_text(json.dumps(meta))
        with pytest.raises(AfxmatchError, match="not the %d asked for" % asked):
            load_bank(tmp_path, "valid", asked)
        with pytest.raises(AfxmatchError, match="asked for"):
            train(None, tmp_path / "m", steps=1, batch_size=1, length=L, arch=TINY, bank_dir=tmp_path,
                  n_valid=1, prior_starts=asked, threads=None)


def test_residual_model_starts_exactly_at_its_prior():
    net = MatchNet(**TINY, residual=True)
    prior = torch.rand(3, 25) * 0.9 + 0.05
    x = torch.randn(3, L) * 0.1
    np.testing.assert_allclose(net(x, x, prior).detach().numpy(), prior.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="prior"):
        net(x, x)


def test_residual_training_on_a_bank_and_estimation(tmp_path):
    bank = tmp_path / "bank"
    bank.mkdir()
    gen = _pairs(5)
    _write_bank(bank, "train", [next(gen) for _ in range(6)])
    _write_bank(bank, "valid", [next(gen) for _ in range(4)])
    out = tmp_path / "model"
    records = []
    cfg = train(None, out, steps=6, batch_size=3, length=L, lr=1e-3, arch=TINY, bank_dir=bank,
                prior_starts=PRIOR_STARTS, n_valid=4, log_every=1, ckpt_every=3, valid_every=3, warmup=1,
                fft_sizes=(256, 1024), progress=records.append, threads=None)
    assert cfg["architecture"]["residual"] is True
    valid = [r["valid_loss"] for r in records if r["event"] == "valid"]
    # step 0 is the prior itself; training may only keep or improve the best
    assert cfg["validation"]["best_loss"] <= valid[0] + 1e-9
    net, config = load_model(out)
    assert net.residual
    x = np.random.default_rng(0).standard_normal((2, 30000)).astype(np.float32) * 0.1
    prior = ParamSpace(48000).defaults()
    prior.update(p2_gain_db=5.0, comp_threshold_db=-20.0, comp_ratio=3.0)
    params = estimate_model(x, 48000, x[:1], 44100, net, config, prior)
    space = ParamSpace(48000)
    assert set(params) == set(space.names)
    assert all(space[k].min - 1e-9 <= v <= space[k].max + 1e-9 for k, v in params.items())
    with pytest.raises(ValueError, match="prior"):
        estimate_model(x, 48000, x, 48000, net, config)


def test_missing_model_path_is_named(tmp_path):
    with pytest.raises(ModelError, match="nowhere"):
        load_model(tmp_path / "nowhere")


def test_reference_embedding_is_made_once_per_reference(monkeypatch):
    """Batch work matches many inputs to one reference: its embedding is cached, keyed
    by the windows' contents, and equals a fresh one."""
    from afxmatch.estimate import model as em
    from afxmatch.model.io import load_cached_numpy

    net = load_cached_numpy()[0]
    rng = np.random.default_rng(3)
    windows = (0.1 * rng.standard_normal((2, 8192))).astype(np.float32)
    fresh = em._embed(net, windows, 2.0)
    calls = []
    monkeypatch.setattr(em, "_embed", lambda *a: calls.append(1) or fresh.copy())
    em._REFERENCE_EMBEDDINGS.clear()
    first = em.reference_embedding(net, windows, 2.0)
    again = em.reference_embedding(net, windows.copy(), 2.0)
    assert len(calls) == 1 and np.array_equal(first, fresh) and np.array_equal(again, fresh)
    changed = windows.copy()
    changed[1, 100] += 1e-3           # another reference (or the same one edited): made anew
    em.reference_embedding(net, changed, 2.0)
    em.reference_embedding(net, windows, 3.0)   # another level: made anew
    assert len(calls) == 3
    with pytest.raises(ValueError):
        first[0] = 1.0                # shared: read-only


def test_a_given_prior_is_the_one_the_model_would_make(example_input, example_reference):
    """``blackbox`` hands the model its own ``analysis`` estimate as the prior instead of
    fitting it twice: that must be exactly the prior the model makes for itself."""
    from afxmatch import analysis
    from afxmatch.estimate import estimate_analysis
    from afxmatch.estimate.analysis import eq_levels_fn
    from afxmatch.pipeline import model_estimate

    (x, sr), (r, rr) = example_input, example_reference
    f_in, f_ref = analysis.measure(x, sr), analysis.measure(r, rr)
    own, info = model_estimate(x, sr, r, rr, f_in, f_ref)
    given = ParamSpace(sr).validate(estimate_analysis(f_in, f_ref, sr, eq_levels=eq_levels_fn(x, sr)), clip=True)
    reused, _ = model_estimate(x, sr, r, rr, f_in, f_ref, prior=given)
    assert info["sha256"] and reused == own
    other = dict(given, p2_gain_db=given["p2_gain_db"] + 6.0)   # and the prior is really used
    assert model_estimate(x, sr, r, rr, f_in, f_ref, prior=other)[0]["p2_gain_db"] != own["p2_gain_db"]


def test_train_command_refuses_a_bank_made_with_other_prior_starts(tmp_path):
    """``afxmatch train --prior-starts N`` reaches the bank check: one clear line, exit 1,
    and no model written."""
    import subprocess
    import sys

    corpus, bank = tmp_path / "corpus", tmp_path / "bank"
    corpus.mkdir()
    (corpus / "manifest.json").write_text("{}")
    bank.mkdir()
    gen = _pairs(2)
    for split in ("train", "valid"):
        _write_bank(bank, split, [next(gen) for _ in range(2)])
    proc = subprocess.run([sys.executable, "-m", "afxmatch", "train", "--data", str(corpus), "--out",
                           str(tmp_path / "m"), "--bank", str(bank), "--prior-starts", "4", "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert f"holds priors fitted from {PRIOR_STARTS} EQ-fit start(s), not the 4 asked for" in proc.stderr
    assert not (tmp_path / "m" / "model.pt").exists()
