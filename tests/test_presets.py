"""Preset export: APO text checked with its own parser + independent RBJ math, EasyEffects
key set, ZamEQ2 .vstpreset rendered in a fresh plugin, and the user errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import reference_dsp as ref
from preset_fixtures import MODERATE, write_report

from afxmatch.dsp.eq import magnitude_db

ZAMEQ2 = Path("/usr/lib/vst3/ZamEQ2.vst3")
needs_zam = pytest.mark.skipif(not ZAMEQ2.exists(), reason="ZamEQ2 VST3 not installed "
                               "(scripts/install_zam_plugins.sh)")

EXTREME = dict(MODERATE, ls_gain_db=-3.6, ls_q=4.4, p1_gain_db=-22.0, p2_gain_db=24.0,
               p4_freq_hz=11100.0, p4_q=4.8, hs_freq_hz=7900.0, hs_gain_db=24.0, hs_q=0.165)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "afxmatch", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def report_eq_db(params, sr, freqs):
    t = {k: torch.tensor([float(v)], dtype=torch.float64) for k, v in params.items()}
    return magnitude_db(t, sr, torch.as_tensor(freqs, dtype=torch.float64))[0].numpy()


# ---------- Equalizer APO ----------

APO_FILTER = re.compile(r"^Filter\s+(\d+):\s+ON\s+(PK|LSC|HSC)\s+Fc\s+([-\d.]+)\s+Hz\s+"
                        r"Gain\s+([-\d.]+)\s+dB\s+Q\s+([-\d.]+)\s*$")


def parse_apo(text):
    """Our own reader of the ParametricEQ.txt subset (comments, Preamp, Filter lines)."""
    preamp, filters = None, []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("Preamp:"):
            m = re.match(r"^Preamp:\s+([-\d.]+)\s+dB\s*$", line)
            assert m, line
            preamp = float(m.group(1))
            continue
        m = APO_FILTER.match(line)
        assert m, f"unparsed line: {line!r}"
        filters.append((m.group(2), float(m.group(3)), float(m.group(4)), float(m.group(5))))
    return preamp, filters


def apo_response_db(filters, sr, freqs):
    design = {"PK": ref.peaking_eq, "LSC": ref.low_shelf, "HSC": ref.high_shelf}
    sos = np.array([design[kind](fc, gain, q, sr) for kind, fc, gain, q in filters])
    return ref.magnitude_db(sos, freqs, sr)


@pytest.mark.parametrize("params,sr", [(MODERATE, 44100), (EXTREME, 48000)])
def test_apo_export_matches_report_eq(tmp_path, params, sr):
    rep = write_report(tmp_path / "r.json", params, sr)
    out = tmp_path / "eq.txt"
    proc = run_cli("export", rep, "--format", "apo", "-o", out)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    preamp, filters = parse_apo(text)
    assert [f[0] for f in filters] == ["LSC", "PK", "PK", "PK", "PK", "HSC"]
    assert "compressor" in text and "#" in text   # the lost stages are named in a comment
    freqs = np.geomspace(20, 0.45 * sr, 500)
    values = {k: v["value"] for k, v in json.loads(rep.read_text())["parameters"].items()}
    want = report_eq_db(values, sr, freqs)
    got = apo_response_db(filters, sr, freqs)
    err = np.max(np.abs(got - want))
    print(f"APO vs report max error {err:.5f} dB")
    assert err < 0.05
    # preamp: minus the EQ's highest point (within rounding), never positive
    assert preamp <= 0
    dense = np.geomspace(5, sr / 2 * 0.9999, 4000)
    assert abs(preamp + max(0.0, apo_response_db(filters, sr, dense).max())) < 0.01


# ---------- EasyEffects ----------

# EasyEffects 7.2.x: keys written by EqualizerPreset::save / CompressorPreset::save in
# wwmm/easyeffects src/equalizer_preset.cpp and src/compressor_preset.cpp (2025 sources).
EE_EQ_KEYS = {"bypass", "input-gain", "output-gain", "mode", "split-channels", "balance",
              "pitch-left", "pitch-right", "num-bands", "left", "right"}
EE_BAND_KEYS = {"type", "mode", "slope", "solo", "mute", "gain", "frequency", "q", "width"}
EE_COMP_KEYS = {"bypass", "input-gain", "output-gain", "dry", "wet", "mode", "attack", "release",
                "release-threshold", "threshold", "ratio", "knee", "makeup", "boost-threshold",
                "boost-amount", "stereo-split", "sidechain", "hpf-mode", "hpf-frequency",
                "lpf-mode", "lpf-frequency"}
EE_SIDECHAIN_KEYS = {"type", "mode", "source", "stereo-split-source", "preamp", "reactivity", "lookahead"}


def test_easyeffects_key_set_and_values(tmp_path):
    rep = write_report(tmp_path / "r.json")
    out = tmp_path / "ee.json"
    proc = run_cli("export", rep, "--format", "easyeffects", "-o", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert set(doc) == {"output"}
    o = doc["output"]
    assert set(o) == {"blocklist", "plugins_order", "equalizer#0", "compressor#0"}
    assert o["plugins_order"] == ["equalizer#0", "compressor#0"]
    eq, comp = o["equalizer#0"], o["compressor#0"]
    assert set(eq) == EE_EQ_KEYS
    assert eq["num-bands"] == 6
    for side in ("left", "right"):
        assert set(eq[side]) == {f"band{i}" for i in range(6)}
        for band in eq[side].values():
            assert set(band) == EE_BAND_KEYS
            assert band["mode"] == "APO (DR)"
    assert set(comp) == EE_COMP_KEYS and set(comp["sidechain"]) == EE_SIDECHAIN_KEYS
    b = eq["left"]
    assert [b[f"band{i}"]["type"] for i in range(6)] == ["Lo-shelf", "Bell", "Bell", "Bell", "Bell", "Hi-shelf"]
    assert b["band2"]["frequency"] == pytest.approx(1800.0) and b["band2"]["gain"] == pytest.approx(3.0)
    assert b["band5"]["q"] == pytest.approx(0.58)
    assert comp["threshold"] == -24.0 and comp["ratio"] == 3.0 and comp["makeup"] == 2.0
    assert comp["output-gain"] == 1.5 and comp["bypass"] is False


# ---------- ZamEQ2 .vstpreset ----------

def render_vstpresets(paths, sr, freqs):
    import pedalboard
    x = np.zeros((1, 1 << 15), np.float32)
    x[0, 0] = 1.0
    for path in paths:
        plugin = pedalboard.load_plugin(str(ZAMEQ2))
        plugin.preset_data = Path(path).read_bytes()
        x = plugin.process(x, float(sr), reset=True)
    assert np.all(np.isfinite(x))
    spec = np.abs(np.fft.rfft(x[0].astype(np.float64)))
    return np.interp(freqs, np.fft.rfftfreq(x.shape[1], 1 / sr), 20 * np.log10(spec))


@needs_zam
def test_vstpreset_renders_report_eq_within_half_db(tmp_path):
    rep = write_report(tmp_path / "r.json")
    proc = run_cli("export", rep, "--format", "vstpreset", "-o", tmp_path / "eq.vstpreset")
    assert proc.returncode == 0, proc.stderr
    files = [tmp_path / "eq.ZamEQ2-1.vstpreset", tmp_path / "eq.ZamEQ2-2.vstpreset"]
    assert all(f.exists() for f in files)
    assert "worst-case difference" in proc.stderr
    freqs = np.geomspace(20, 19000, 400)
    err = np.max(np.abs(render_vstpresets(files, 44100, freqs) - report_eq_db(MODERATE, 44100, freqs)))
    print(f"vstpreset vs report max error {err:.3f} dB")
    assert err < 0.5


# ---------- errors ----------

def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_export_missing_report(tmp_path):
    proc = run_cli("export", tmp_path / "nope.json", "--format", "apo", "-o", tmp_path / "eq.txt")
    assert_one_line_error(proc, "nope.json", "not found")
    assert not (tmp_path / "eq.txt").exists()


def test_export_wrong_schema_and_not_json(tmp_path):
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"schema": "something/2", "parameters": {}}))
    proc = run_cli("export", bad, "--format", "apo", "-o", tmp_path / "eq.txt")
    assert_one_line_error(proc, "other.json", "not an afxmatch report")
    text = tmp_path / "t.json"
    text.write_text("hello")
    assert_one_line_error(run_cli("export", text, "--format", "apo", "-o", tmp_path / "eq.txt"), "not JSON")


def test_export_existing_output_needs_force_and_unknown_format(tmp_path):
    rep = write_report(tmp_path / "r.json")
    out = tmp_path / "eq.txt"
    out.write_text("keep me")
    proc = run_cli("export", rep, "--format", "apo", "-o", out)
    assert_one_line_error(proc, "already exists", "--force")
    assert out.read_text() == "keep me"
    assert run_cli("export", rep, "--format", "apo", "-o", out, "--force").returncode == 0
    assert out.read_text().startswith("#")
    assert_one_line_error(run_cli("export", rep, "--format", "wav", "-o", tmp_path / "x"), "unknown preset format")


def test_export_refuses_to_overwrite_the_report(tmp_path):
    rep = write_report(tmp_path / "r.json")
    before = rep.read_text()
    proc = run_cli("export", rep, "--format", "easyeffects", "-o", rep, "--force")
    assert_one_line_error(proc, "would overwrite")
    assert rep.read_text() == before
