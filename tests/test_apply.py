"""apply: a saved report re-rendered onto files reproduces the match exactly; folders;
sample-rate changes; user errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audio_fixtures import EXAMPLE_INPUT, EXAMPLE_REFERENCE, write_tone
from preset_fixtures import write_report

from afxmatch.apply import SettingsError, apply_file, load_settings


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "afxmatch", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def matched(tmp_path_factory):
    d = tmp_path_factory.mktemp("apply")
    out = d / "out.wav"
    proc = run_cli(EXAMPLE_INPUT, "--ref", EXAMPLE_REFERENCE, "-o", out, "--method", "analysis",
                   "--subtype", "FLOAT", "-q")
    assert proc.returncode == 0, proc.stderr
    return d, out, out.with_suffix(".json")


def test_cli_apply_reproduces_match_output(matched):
    d, out, report = matched
    again = d / "again.wav"
    proc = run_cli("apply", report, EXAMPLE_INPUT, "-o", again, "--subtype", "FLOAT")
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    a, sr_a = sf.read(str(out), always_2d=True)
    b, sr_b = sf.read(str(again), always_2d=True)
    assert sr_a == sr_b and a.shape == b.shape
    diff = float(np.max(np.abs(a - b)))
    print(f"apply (CLI) vs match max abs diff {diff:.3g}")
    assert diff <= 1e-5


def test_library_apply_reproduces_match_output(matched, tmp_path):
    d, out, report = matched
    settings = load_settings(report)
    res = apply_file(settings, EXAMPLE_INPUT, tmp_path / "lib.wav", subtype="FLOAT")
    assert res.safety_gain_db == 0.0 and res.warnings == []
    a, _ = sf.read(str(out), always_2d=True)
    b, _ = sf.read(str(tmp_path / "lib.wav"), always_2d=True)
    assert float(np.max(np.abs(a - b))) <= 1e-5


def test_apply_other_rate_clips_frequencies_with_warning(tmp_path):
    rep = write_report(tmp_path / "r.json", dict(hs_freq_hz=15000.0, hs_gain_db=3.0), sample_rate=44100)
    inp = write_tone(tmp_path / "low.wav", sr=16000, seconds=1.0, channels=1)
    res = apply_file(load_settings(rep), inp, tmp_path / "o.wav")
    assert res.params["hs_freq_hz"] == pytest.approx(0.45 * 16000)
    assert any("hs_freq_hz" in w and "clipped" in w for w in res.warnings)
    data, sr = sf.read(str(tmp_path / "o.wav"), always_2d=True)
    assert sr == 16000 and data.shape == (16000, 1) and np.all(np.isfinite(data))


def test_apply_folder_keeps_names_and_skips_non_audio(tmp_path):
    rep = write_report(tmp_path / "r.json")
    src = tmp_path / "in"
    src.mkdir()
    write_tone(src / "a.wav", seconds=0.8)
    write_tone(src / "b.flac", seconds=0.8, channels=1)
    (src / "notes.txt").write_text("not audio")
    proc = run_cli("apply", rep, src, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "b.flac"]
    assert "skipped 1 non-audio" in proc.stderr
    # an existing output is not overwritten without --force; the other file still runs
    (tmp_path / "out" / "a.wav").unlink()
    proc = run_cli("apply", rep, src, "-o", tmp_path / "out")
    assert proc.returncode == 1 and "b.flac" in proc.stderr and "already exists" in proc.stderr
    assert (tmp_path / "out" / "a.wav").exists()


def test_apply_errors(tmp_path):
    inp = write_tone(tmp_path / "in.wav")
    before = inp.read_bytes()
    proc = run_cli("apply", tmp_path / "missing.json", inp, "-o", tmp_path / "o.wav")
    assert proc.returncode != 0 and "missing.json" in proc.stderr and "not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    wrong = tmp_path / "w.json"
    wrong.write_text(json.dumps({"schema": "afxmatch.report/99"}))
    proc = run_cli("apply", wrong, inp, "-o", tmp_path / "o.wav")
    assert proc.returncode != 0 and "not an afxmatch report" in proc.stderr
    rep = write_report(tmp_path / "r.json")
    proc = run_cli("apply", rep, inp, "-o", inp, "--force")      # never overwrite an input
    assert proc.returncode != 0 and "would overwrite input" in proc.stderr
    assert inp.read_bytes() == before
    (tmp_path / "o.wav").write_bytes(b"x")
    proc = run_cli("apply", rep, inp, "-o", tmp_path / "o.wav")
    assert proc.returncode != 0 and "--force" in proc.stderr
    assert (tmp_path / "o.wav").read_bytes() == b"x"
    with pytest.raises(SettingsError):
        load_settings(tmp_path)
