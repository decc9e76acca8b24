"""The CLI end to end on real files, and every user error: one line, non-zero exit, no output."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from afxmatch.params import ParamSpace, fingerprint

from audio_fixtures import EXAMPLE_INPUT, EXAMPLE_REFERENCE, write_tone

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "afxmatch", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


@pytest.fixture(scope="module")
def matched(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "out.wav"
    proc = run_cli(EXAMPLE_INPUT, "--ref", EXAMPLE_REFERENCE, "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(out.with_suffix(".json").read_text()), proc


def test_a_peak_safety_cut_is_explained_with_its_remedy(matched):
    """The example's reference is a limited master 13 LU louder: the output gain is cut
    to keep the peaks, the output measures that much under the reference, and the note
    says so and names the option that reaches the reference's loudness instead."""
    out, report, proc = matched
    cut = report["safety"]["gain_reduced_for_peak_db"]
    assert cut > 1.0
    assert report["style_distance"]["after"]["loudness_lu"] == pytest.approx(cut, abs=0.1)
    text = " ".join((proc.stdout + proc.stderr).split())
    assert f"output gain lowered by {cut:.1f} dB" in text
    assert "--true-peak -1" in text and "quieter than the reference" in text


def test_examples_end_to_end_writes_audio_and_report(matched):
    out, report, _ = matched
    data, sr = sf.read(str(out), always_2d=True)
    info_in = sf.info(str(EXAMPLE_INPUT))
    assert sr == info_in.samplerate and data.shape == (info_in.frames, info_in.channels)
    assert sf.info(str(out)).subtype == "PCM_24"
    assert np.max(np.abs(data)) <= 1.0
    before, after = report["style_distance"]["before"], report["style_distance"]["after"]
    assert after["spectral_db"] < before["spectral_db"]
    assert after["loudness_lu"] < before["loudness_lu"]


def test_report_contents(matched):
    out, report, _ = matched
    assert report["schema"] == "afxmatch.report/1"
    assert report["method"] == "model" and report["backend"] == "torch"  # the defaults
    shipped = ROOT / "models" / "default"
    assert report["model"]["sha256"] == (shipped / "model.sha256").read_text().split()[0]
    assert report["model"]["param_fingerprint"] == fingerprint()
    assert report["param_space"]["fingerprint"] == fingerprint()
    space = ParamSpace(report["input"]["sample_rate"])
    assert list(report["parameters"]) == list(space.names)
    for name, entry in report["parameters"].items():
        assert entry["unit"] == space[name].unit
        assert space[name].min - 1e-6 <= entry["value"] <= space[name].max + 1e-6
    for who in ("input", "reference"):
        facts = report[who]
        assert {"path", "sample_rate", "channels", "duration_s", "integrated_lufs", "sample_peak_dbfs"} <= set(facts)
    assert report["reference"]["sample_rate"] == 48000 and report["reference"]["channels"] == 1
    assert report["timings_s"]["total"] > 0
    # the report's loudness of the output is the real one
    data, sr = sf.read(str(out), always_2d=True)
    import pyloudnorm
    assert abs(pyloudnorm.Meter(sr).integrated_loudness(data) - report["output"]["integrated_lufs"]) < 0.05


def test_pedalboard_backend_flac_output_and_subtype(tmp_path):
    out = tmp_path / "out.flac"
    proc = run_cli(EXAMPLE_INPUT, "--ref", EXAMPLE_REFERENCE, "-o", out, "--backend", "pedalboard",
                   "--subtype", "PCM_16", "--report", tmp_path / "r.json", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert sf.info(str(out)).format == "FLAC" and sf.info(str(out)).subtype == "PCM_16"
    assert json.loads((tmp_path / "r.json").read_text())["backend"] == "pedalboard"


def test_mono_48k_input_keeps_rate_channels_length(tmp_path):
    inp = write_tone(tmp_path / "in.wav", sr=48000, seconds=1.3, channels=1)
    ref = write_tone(tmp_path / "ref.ogg", sr=22050, seconds=2.0, channels=2, tilt=3.0, subtype="VORBIS")
    out = tmp_path / "out.wav"
    proc = run_cli(inp, "--ref", ref, "-o", out, "--subtype", "FLOAT")
    assert proc.returncode == 0, proc.stderr
    data, sr = sf.read(str(out), always_2d=True)
    assert sr == 48000 and data.shape == (int(48000 * 1.3), 1)
    assert np.all(np.isfinite(data))


def test_missing_input(tmp_path):
    proc = run_cli(tmp_path / "nope.wav", "--ref", EXAMPLE_REFERENCE, "-o", tmp_path / "o.wav")
    assert_one_line_error(proc, "nope.wav", "not found")
    assert not (tmp_path / "o.wav").exists()


def test_missing_reference(tmp_path):
    proc = run_cli(EXAMPLE_INPUT, "--ref", tmp_path / "nope.flac", "-o", tmp_path / "o.wav")
    assert_one_line_error(proc, "reference", "nope.flac")


def test_non_audio_input(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    proc = run_cli(bad, "--ref", EXAMPLE_REFERENCE, "-o", tmp_path / "o.wav")
    assert_one_line_error(proc, "notes.wav", "not a readable audio file")
    assert not (tmp_path / "o.wav").exists()
    assert not list(tmp_path.glob("*.part"))


def test_output_equal_to_input_is_refused_and_input_untouched(tmp_path):
    inp = write_tone(tmp_path / "in.wav")
    before = inp.read_bytes()
    proc = run_cli(inp, "--ref", EXAMPLE_REFERENCE, "-o", inp, "--force")
    assert_one_line_error(proc, "would overwrite input", "same file")
    assert inp.read_bytes() == before


def test_existing_output_needs_force(tmp_path):
    inp = write_tone(tmp_path / "in.wav")
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    proc = run_cli(inp, "--ref", EXAMPLE_REFERENCE, "-o", out)
    assert_one_line_error(proc, "already exists", "--force")
    assert out.read_bytes() == b"precious"
    proc = run_cli(inp, "--ref", EXAMPLE_REFERENCE, "-o", out, "--force", "-q")
    assert proc.returncode == 0, proc.stderr
    assert sf.info(str(out)).frames == sf.info(str(inp)).frames


def test_bad_options(tmp_path):
    inp = write_tone(tmp_path / "in.wav")
    assert_one_line_error(run_cli(inp, "--ref", EXAMPLE_REFERENCE, "-o", tmp_path / "o.mp3"),
                          "unsupported extension")
    assert_one_line_error(run_cli(inp, "--ref", EXAMPLE_REFERENCE, "-o", tmp_path / "o.wav",
                                  "--backend", "nope"), "unknown backend")
    assert_one_line_error(run_cli(inp, "--ref", EXAMPLE_REFERENCE, "-o", tmp_path / "o.flac",
                                  "--subtype", "FLOAT"), "FLAC")
    assert_one_line_error(run_cli(inp, "--ref", EXAMPLE_REFERENCE, "-o", tmp_path / "nodir" / "o.wav"),
                          "does not exist")
    assert not list(tmp_path.glob("o.*"))


def test_silent_and_too_short_inputs(tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros((44100, 2), np.float32), 44100)
    assert_one_line_error(run_cli(silent, "--ref", EXAMPLE_REFERENCE, "-o", tmp_path / "o.wav"), "silence")
    short = write_tone(tmp_path / "short.wav", seconds=0.1)
    assert_one_line_error(run_cli(short, "--ref", EXAMPLE_REFERENCE, "-o", tmp_path / "o.wav"), "0.10 s")


def test_loud_lossy_input_over_full_scale_is_not_clipped(tmp_path):
    """Decoded lossy files can exceed 0 dBFS; the output must still stay under full scale."""
    hot = tmp_path / "hot.wav"
    t = np.arange(44100 * 2) / 44100
    sf.write(str(hot), (1.6 * np.sin(2 * np.pi * 300 * t))[:, None].astype(np.float32), 44100, subtype="FLOAT")
    out = tmp_path / "o.wav"
    proc = run_cli(hot, "--ref", EXAMPLE_REFERENCE, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert np.max(np.abs(sf.read(str(out))[0])) <= 1.0


def test_version_and_help():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("afxmatch ")
    proc = run_cli("match", "--help")
    assert proc.returncode == 0 and "--ref" in proc.stdout


def test_default_match_never_imports_torch(tmp_path):
    """The default job (method model, built-in chain) runs the network and the chain in
    numpy: ``import torch`` alone would cost about 2 s of start-up."""
    code = ("import sys; from afxmatch.pipeline import match_file; "
            f"r = match_file({str(EXAMPLE_INPUT)!r}, {str(EXAMPLE_REFERENCE)!r}, {str(tmp_path / 'o.wav')!r}); "
            "assert r['method'] == 'model' and r['model']['sha256'], r['method']; "
            "print('torch' in sys.modules, len(r['model']['sha256']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "64"]
