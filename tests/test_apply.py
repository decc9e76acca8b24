"""apply: a saved report re-rendered onto files reproduces the match exactly; folders;
sample-rate changes; user errors; the report's mastering finish (--loudness / --true-peak)
applied again, overridden or left out (--no-finish)."""

import json
import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from audio_fixtures import EXAMPLE_INPUT, EXAMPLE_REFERENCE, write_tone
from preset_fixtures import write_report

from afxmatch.apply import (SettingsError, apply_file, apply_folder, load_settings, render_settings,
                            settings_from_report)
from afxmatch.dsp.truepeak import true_peak_db
from afxmatch.errors import InvalidParameterError
from afxmatch.pipeline import MatchOptions, match_file


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


# -- the mastering finish ---------------------------------------------------------------

def lufs(path) -> float:
    data, sr = sf.read(str(path), always_2d=True)
    return pyloudnorm.Meter(sr).integrated_loudness(data)


def dbtp(path) -> float:
    """True peak with the project's 4x-oversampled meter."""
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return true_peak_db(np.ascontiguousarray(data.T))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two matches of one take with a finish that limits: ``--loudness -8 --true-peak -1``
    towards a hot reference (-6.6 LUFS: the chain's output gain alone would peak above
    -0.1 dBFS) and ``--true-peak -8`` alone (the reference's loudness as the target); and
    another take, 12 dB quieter, longer, at 48 kHz."""
    d = tmp_path_factory.mktemp("finish")
    inp = write_tone(d / "in.wav", seconds=2.0, seed=1)
    ref = write_tone(d / "ref.wav", seconds=2.0, tilt=1.0, seed=2)
    data, sr = sf.read(str(ref))
    sf.write(str(d / "hot.wav"), np.clip(data * 2.15, -0.9, 0.9), sr, subtype="FLOAT")
    other = write_tone(d / "other.wav", sr=48000, seconds=2.5, seed=3, subtype="FLOAT")
    data, sr = sf.read(str(other))
    sf.write(str(other), data * 10 ** (-12 / 20), sr, subtype="FLOAT")
    reports = {}
    for name, r, opts in (("loud", d / "hot.wav", dict(loudness=-8.0, true_peak=-1.0)),
                          ("tp", ref, dict(true_peak=-8.0))):
        rep = match_file(inp, r, d / f"{name}.wav", MatchOptions(method="analysis", subtype="FLOAT", **opts))
        assert rep["finish"]["limiter"]["max_gain_reduction_db"] > 0.5   # the limiter is at work
        reports[name] = d / f"{name}.json"
    return d, inp, other, reports


def test_apply_with_finish_reproduces_the_match_on_its_input(finished, tmp_path):
    d, inp, _, reports = finished
    # --loudness -8: the target is stored exactly, the output is the match's sample for sample
    settings = load_settings(reports["loud"])
    data, sr = sf.read(str(inp), dtype="float32", always_2d=True)
    _, cut = render_settings(np.ascontiguousarray(data.T), sr, settings.params, "torch")
    assert cut > 0.5   # the chain alone would lower its gain; with the finish the limiter holds the peaks
    res = apply_file(settings, inp, tmp_path / "loud.wav", subtype="FLOAT")
    a, _ = sf.read(str(d / "loud.wav"), always_2d=True)
    b, _ = sf.read(str(tmp_path / "loud.wav"), always_2d=True)
    assert a.shape == b.shape and float(np.max(np.abs(a - b))) == 0.0
    assert res.finish["target_lufs"] == -8.0 and res.finish["ceiling_dbtp"] == -1.0
    assert res.finish["target_source"] == res.finish["ceiling_source"] == "report"
    assert res.safety_gain_db == 0.0 and res.warnings == []
    # --true-peak alone: the reference's loudness, stored to 0.001 LU; measured 2.1e-5 max diff
    report = json.loads(reports["tp"].read_text())
    res = apply_file(load_settings(reports["tp"]), inp, tmp_path / "tp.wav", subtype="FLOAT")
    a, _ = sf.read(str(d / "tp.wav"), always_2d=True)
    b, _ = sf.read(str(tmp_path / "tp.wav"), always_2d=True)
    diff = float(np.max(np.abs(a - b)))
    print(f"apply with --true-peak finish vs match: max abs diff {diff:.3g}")
    assert diff <= 3e-4
    assert res.finish["output_lufs"] == pytest.approx(report["finish"]["output_lufs"], abs=0.01)


def test_apply_finish_reaches_the_reports_loudness_on_another_file(finished, tmp_path):
    d, _, other, reports = finished
    settings = load_settings(reports["loud"])
    res = apply_file(settings, other, tmp_path / "o.wav")
    loud, peak = lufs(tmp_path / "o.wav"), dbtp(tmp_path / "o.wav")
    print(f"other file: {loud:.2f} LUFS, {peak:.2f} dBTP, finish gain {res.finish['gain_db']} dB")
    assert abs(loud - -8.0) <= 0.5 and peak <= -1.0 + 0.05
    assert res.finish["limiter"]["max_gain_reduction_db"] > 0.5
    assert res.finish["output_lufs"] == pytest.approx(loud, abs=0.05)
    # the finish gain was solved on this file (12 dB quieter): not the match's gain
    match_gain = json.loads(reports["loud"].read_text())["finish"]["gain_db"]
    assert res.finish["gain_db"] > match_gain + 6
    # the ceiling alone (--true-peak -8 report): the report's loudness under -8 dBTP
    report = json.loads(reports["tp"].read_text())["finish"]
    apply_file(load_settings(reports["tp"]), other, tmp_path / "tp.wav")
    assert abs(lufs(tmp_path / "tp.wav") - report["target_lufs"]) <= 0.5
    assert dbtp(tmp_path / "tp.wav") <= -8.0 + 0.05


def test_no_finish_renders_the_chain_only(finished, tmp_path):
    _, _, other, reports = finished
    settings = load_settings(reports["loud"])
    res = apply_file(settings, other, tmp_path / "chain.wav", subtype="FLOAT", finish=False)
    assert res.finish is None
    data, sr = sf.read(str(other), dtype="float32", always_2d=True)
    expected, safety = render_settings(np.ascontiguousarray(data.T), sr, settings.params, "torch")
    got, _ = sf.read(str(tmp_path / "chain.wav"), dtype="float32", always_2d=True)
    assert np.array_equal(got.T, expected) and res.safety_gain_db == safety
    assert abs(lufs(tmp_path / "chain.wav") - -8.0) > 3   # what apply gave before it had the finish
    with pytest.raises(InvalidParameterError, match="--no-finish"):
        apply_file(settings, other, tmp_path / "x.wav", finish=False, loudness=-14.0)


def test_finish_overrides(finished, tmp_path):
    _, _, other, reports = finished
    settings = load_settings(reports["loud"])
    res = apply_file(settings, other, tmp_path / "both.wav", loudness=-16.0, true_peak=-3.0)
    assert abs(lufs(tmp_path / "both.wav") - -16.0) <= 0.5 and dbtp(tmp_path / "both.wav") <= -3.0 + 0.05
    assert (res.finish["target_source"], res.finish["ceiling_source"]) == ("--loudness", "--true-peak")
    # one override keeps the report's other number
    res = apply_file(settings, other, tmp_path / "tp.wav", true_peak=-3.0)
    assert abs(lufs(tmp_path / "tp.wav") - -8.0) <= 0.5 and dbtp(tmp_path / "tp.wav") <= -3.0 + 0.05
    assert (res.finish["target_lufs"], res.finish["target_source"]) == (-8.0, "report")
    res = apply_file(settings, other, tmp_path / "l.wav", loudness=-12.0)
    assert abs(lufs(tmp_path / "l.wav") - -12.0) <= 0.5
    assert (res.finish["ceiling_dbtp"], res.finish["ceiling_source"]) == (-1.0, "report")
    for bad in (dict(loudness=3.0), dict(loudness=-80.0), dict(true_peak=0.5)):
        with pytest.raises(InvalidParameterError, match="--loudness|--true-peak"):
            apply_file(settings, other, tmp_path / "bad.wav", **bad)
    assert not (tmp_path / "bad.wav").exists()


def test_apply_folder_with_finish(finished, tmp_path):
    _, _, other, reports = finished
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.wav").write_bytes(other.read_bytes())
    settings = load_settings(reports["loud"])
    with pytest.raises(InvalidParameterError, match="--loudness"):   # before any file is written
        apply_folder(settings, src, tmp_path / "out", loudness=5.0)
    assert not (tmp_path / "out").exists()
    res = apply_folder(settings, src, tmp_path / "out", true_peak=-2.0)
    assert [r.output.name for r in res.done] == ["a.wav"] and res.failed == []
    assert (res.done[0].finish["target_lufs"], res.done[0].finish["ceiling_dbtp"]) == (-8.0, -2.0)
    assert abs(lufs(tmp_path / "out" / "a.wav") - -8.0) <= 0.5
    assert dbtp(tmp_path / "out" / "a.wav") <= -2.0 + 0.05
    res = apply_folder(settings, src, tmp_path / "chain", finish=False)
    assert res.done[0].finish is None


def test_report_without_finish(tmp_path):
    """A report from before the finish (no ``finish`` key) or without one (null): the
    chain only, as before; an option asks for a finish."""
    rep = write_report(tmp_path / "old.json")
    inp = write_tone(tmp_path / "in.wav", seconds=1.5)
    settings = load_settings(rep)
    assert "finish" not in json.loads(rep.read_text()) and settings.finish is None
    res = apply_file(settings, inp, tmp_path / "o.wav", subtype="FLOAT")
    data, sr = sf.read(str(inp), dtype="float32", always_2d=True)
    expected, _ = render_settings(np.ascontiguousarray(data.T), sr, settings.params, "torch")
    got, _ = sf.read(str(tmp_path / "o.wav"), dtype="float32", always_2d=True)
    assert res.finish is None and np.array_equal(got.T, expected)
    assert settings_from_report({**settings.report, "finish": None}).finish is None
    # --loudness on a report without a finish: that target under the default -1 dBTP
    res = apply_file(settings, inp, tmp_path / "l.wav", loudness=-10.0)
    assert abs(lufs(tmp_path / "l.wav") - -10.0) <= 0.5 and dbtp(tmp_path / "l.wav") <= -1.0 + 0.05
    assert (res.finish["ceiling_dbtp"], res.finish["ceiling_source"]) == (-1.0, "default")
    # --true-peak alone: the loudness the report's output gain gives this file, limited
    chain_lufs = lufs(tmp_path / "o.wav")
    res = apply_file(settings, inp, tmp_path / "t.wav", true_peak=-12.0)
    assert res.finish["target_source"] == "this file's chain output"
    assert abs(lufs(tmp_path / "t.wav") - chain_lufs) <= 0.5 and dbtp(tmp_path / "t.wav") <= -12.0 + 0.05
    for block in ({"target_lufs": "loud", "ceiling_dbtp": -1}, {"target_lufs": -14}, [1, 2],
                  {"target_lufs": -14, "ceiling_dbtp": 3.0}):
        with pytest.raises(SettingsError, match="finish"):
            settings_from_report({**settings.report, "finish": block})


def test_cli_apply_finish(finished, tmp_path):
    _, _, other, reports = finished
    proc = run_cli("apply", reports["loud"], other, "-o", tmp_path / "o.wav")
    assert proc.returncode == 0, proc.stderr
    assert "finish: " in proc.stderr and "(target -8, report)" in proc.stderr
    assert "(ceiling -1, report)" in proc.stderr and "dBTP" in proc.stderr
    assert abs(lufs(tmp_path / "o.wav") - -8.0) <= 0.5
    proc = run_cli("apply", reports["loud"], other, "-o", tmp_path / "c.wav", "--no-finish")
    assert proc.returncode == 0 and "finish:" not in proc.stderr
    assert abs(lufs(tmp_path / "c.wav") - -8.0) > 3
    proc = run_cli("apply", reports["loud"], other, "-o", tmp_path / "v.wav", "--loudness", "-12",
                   "--true-peak", "-2")
    assert proc.returncode == 0 and "(target -12, --loudness)" in proc.stderr
    assert "(ceiling -2, --true-peak)" in proc.stderr
    proc = run_cli("apply", reports["loud"], other, "-o", tmp_path / "e.wav", "--true-peak", "1")
    assert proc.returncode != 0 and "--true-peak must be from -30 to 0 dBTP" in proc.stderr
    assert not (tmp_path / "e.wav").exists()


@pytest.mark.parametrize("case", ["finish loud", "finish tp", "no finish, peak cut", "no finish"])
def test_apply_streams_long_inputs_with_the_in_memory_result(finished, tmp_path, monkeypatch, case):
    """Above the streaming threshold apply renders block by block: the same samples (within
    1e-4), safety cut, warnings and finish as in memory."""
    from afxmatch import stream_pipeline

    monkeypatch.setattr(stream_pipeline, "BLOCK_FRAMES", 7000)
    d, inp, other, reports = finished
    settings = load_settings(reports["tp" if case == "finish tp" else "loud"])
    source = inp if case != "finish loud" else other
    opts = dict(finish=case.startswith("finish"), subtype="FLOAT")
    if case == "no finish":
        settings.params["out_gain_db"] -= 12.0   # well under the ceiling: no cut
    results = {}
    for name, threshold in (("memory", None), ("streamed", 0.0)):
        results[name] = apply_file(settings, source, tmp_path / f"{name}.wav", stream_above_s=threshold, **opts)
    a, _ = sf.read(str(tmp_path / "memory.wav"), always_2d=True)
    b, _ = sf.read(str(tmp_path / "streamed.wav"), always_2d=True)
    assert a.shape == b.shape and float(np.max(np.abs(a))) > 0.01
    assert float(np.max(np.abs(a - b))) < 1e-4
    ra, rb = results["memory"], results["streamed"]
    assert rb.safety_gain_db == pytest.approx(ra.safety_gain_db, abs=1e-4)
    assert (ra.safety_gain_db > 0.5) == (case == "no finish, peak cut")
    assert rb.peak_dbfs == pytest.approx(ra.peak_dbfs, abs=1e-3) and len(rb.warnings) == len(ra.warnings)
    if opts["finish"]:
        assert rb.finish["gain_db"] == pytest.approx(ra.finish["gain_db"], abs=1e-3)
        assert rb.finish["output_lufs"] == pytest.approx(ra.finish["output_lufs"], abs=2e-3)
        assert len(rb.finish["iterations"]) == len(ra.finish["iterations"])
    else:
        assert ra.finish is None and rb.finish is None
