"""``afxmatch batch``: folders in, outputs + reports + summary out; one bad file never stops
the others; --resume; clean interrupts; the same results as the single-file API; Dask.

What counts as audio: files with an audio extension (afxmatch.audio.READ_EXTENSIONS). Other
files (notes.txt) are ignored and listed under "ignored"; a file with an audio extension
that does not decode is a failure of that file. Tests pass --method analysis so they do
not depend on the shipped model.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from afxmatch import audio, batch
from afxmatch.batch import BatchError, BatchOptions, run_batch
from afxmatch.pipeline import MatchOptions, match_file

from audio_fixtures import write_tone

ANALYSIS = BatchOptions(method="analysis")

# 18 good files: (relative path, seconds, sample rate, channels, soundfile subtype)
GOOD = [
    ("a.wav", 1.0, 44100, 2, "PCM_16"),
    ("b.flac", 1.5, 48000, 1, "PCM_24"),
    ("c.ogg", 2.0, 44100, 2, "VORBIS"),
    ("d.wav", 4.0, 22050, 1, "FLOAT"),
    ("e.wav", 1.2, 32000, 2, "PCM_24"),
    ("speech/f.wav", 1.0, 16000, 1, "PCM_16"),
    ("speech/g.flac", 2.5, 44100, 2, "PCM_16"),
    ("speech/h.ogg", 1.1, 48000, 1, "VORBIS"),
    ("speech/i.wav", 3.0, 48000, 2, "PCM_16"),
    ("speech/take 2/j.wav", 1.3, 44100, 1, "PCM_16"),
    ("speech/take 2/k.flac", 1.0, 96000, 2, "PCM_24"),
    ("music/l.wav", 1.4, 44100, 2, "PCM_24"),
    ("music/m.ogg", 3.5, 22050, 2, "VORBIS"),
    ("music/n.flac", 1.0, 32000, 1, "PCM_16"),
    ("music/o.wav", 2.2, 48000, 1, "PCM_32"),
    ("music/deep/p.wav", 1.0, 44100, 2, "PCM_16"),
    ("music/deep/q.flac", 1.6, 44100, 1, "PCM_16"),
    ("music/deep/r.wav", 1.0, 24000, 2, "PCM_16"),
]
CORRUPT = ["music/truncated.flac", "speech/garbage.wav"]


def run_cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "afxmatch", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env, **kw)


def make_folder(root: Path, spec=GOOD, corrupt=True) -> Path:
    for i, (rel, seconds, sr, ch, subtype) in enumerate(spec):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_tone(root / rel, sr=sr, seconds=seconds, channels=ch, subtype=subtype, seed=i)
    if corrupt:
        good = write_tone(root / CORRUPT[0], seconds=1.5).read_bytes()
        (root / CORRUPT[0]).write_bytes(good[: len(good) // 2])            # cut mid-stream
        (root / CORRUPT[1]).write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + os.urandom(3000))
        (root / "notes.txt").write_text("session notes: not audio\n")      # ignored
        (root / ".hidden.wav").write_bytes(b"not searched")                # hidden: not searched
    return root


def reference(tmp: Path) -> Path:
    return write_tone(tmp / "ref.wav", sr=44100, seconds=2.0, tilt=3.0, seed=99)


def out_audio(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.suffix in (".wav", ".flac"))


def no_temporaries(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".part")]


@pytest.fixture(scope="module")
def twenty(tmp_path_factory):
    """The acceptance run: 20 audio files (2 corrupt) + notes.txt, two workers, by the CLI."""
    tmp = tmp_path_factory.mktemp("batch20")
    src, out, ref = make_folder(tmp / "in"), tmp / "out", reference(tmp)
    proc = run_cli("batch", src, "--ref", ref, "-o", out, "--method", "analysis", "--workers", "2")
    return src, out, ref, proc


def test_twenty_files_two_corrupt(twenty):
    src, out, ref, proc = twenty
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    # 18 outputs, the input's sub-folders kept, named {stem}.wav; each with its report
    expected = sorted(str(Path(rel).with_suffix(".wav")) for rel, *_ in GOOD)
    assert out_audio(out) == expected
    for rel, seconds, sr, ch, _ in GOOD:
        o = out / Path(rel).with_suffix(".wav")
        info = sf.info(str(o))
        assert (info.samplerate, info.channels) == (sr, ch)
        assert info.frames == sf.info(str(src / rel)).frames
        assert json.loads(o.with_suffix(".json").read_text())["input"]["path"] == str(src / rel)
    assert no_temporaries(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 18, "failed": 2, "skipped": 0, "interrupted": 0,
                                 "total": 20, "ignored": 1, "redone": 0}
    failed = {f["relative"]: f for f in summary["files"] if f["status"] == "failed"}
    assert sorted(failed) == sorted(CORRUPT)
    assert "lost sync" in failed["music/truncated.flac"]["error"]
    assert "not a readable audio file" in failed["speech/garbage.wav"]["error"]
    assert all(f["output"] is None for f in failed.values())
    assert [i["path"] for i in summary["ignored"]] == [str(src / "notes.txt")]
    ok = [f for f in summary["files"] if f["status"] == "ok"]
    for f in ok:
        assert Path(f["output"]).is_file() and Path(f["report"]).is_file()
        assert isinstance(f["loudness_before_lufs"], float) and isinstance(f["loudness_after_lufs"], float)
    # the CSV says the same
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 20 and sorted(r["relative"] for r in rows if r["status"] == "failed") == sorted(CORRUPT)
    # the last stderr line names both failures
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("afxmatch: 2 of 20 file(s) failed") and all(c in last for c in CORRUPT)


def test_resume_processes_nothing_then_only_what_changed(twenty):
    src, out, ref, _ = twenty
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".wav", ".json")
              and p.name != "summary.json"}
    proc = run_cli("batch", src, "--ref", ref, "-o", out, "--method", "analysis", "--resume", "-q")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["skipped"] == 20 and summary["counts"]["ok"] == 0
    assert summary["counts"]["failed"] == 0
    # nothing was rewritten; the corrupt files are reported again as earlier failures (exit 1)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert proc.returncode == 1 and "failed in an earlier run" in proc.stderr
    skipped_bad = [f for f in summary["files"] if f["error"]]
    assert sorted(f["relative"] for f in skipped_bad) == sorted(CORRUPT)
    # an input newer than its output is done again; so is a fixed corrupt file
    time.sleep(0.01)
    os.utime(src / "a.wav")
    write_tone(src / CORRUPT[1], seconds=1.0)
    proc = run_cli("batch", src, "--ref", ref, "-o", out, "--method", "analysis", "--resume", "-q")
    assert proc.returncode == 1, proc.stderr            # truncated.flac is still broken
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert (counts["ok"], counts["skipped"], counts["failed"]) == (2, 18, 0)
    assert (out / "speech" / "garbage.wav").is_file()


def test_batch_gives_exactly_the_single_file_results(tmp_path, monkeypatch):
    """The per-worker reference cache does not change results; the reference is read once."""
    src = make_folder(tmp_path / "in", GOOD[:3], corrupt=False)
    ref = reference(tmp_path)
    loads = []
    real_load = batch.audio.load
    monkeypatch.setattr(batch.audio, "load", lambda p, role="input": loads.append(role) or real_load(p, role))
    monkeypatch.setattr(batch, "_REF_CACHE", type(batch._REF_CACHE)())
    summary = run_batch(src, tmp_path / "out", ref, options=ANALYSIS)
    assert summary.exit_code == 0 and summary.count("ok") == 3
    assert loads.count("reference") == 1 and loads.count("input") == 3
    for rel, *_ in GOOD[:3]:
        single = tmp_path / "single" / Path(rel).with_suffix(".wav")
        single.parent.mkdir(parents=True, exist_ok=True)
        match_file(src / rel, ref, single, MatchOptions(method="analysis"))
        a = sf.read(str(single))[0]
        b = sf.read(str(tmp_path / "out" / Path(rel).with_suffix(".wav")))[0]
        assert np.array_equal(a, b), rel
        ra = json.loads(single.with_suffix(".json").read_text())["parameters"]
        rb = json.loads((tmp_path / "out" / Path(rel).with_suffix(".json")).read_text())["parameters"]
        assert ra == rb


def test_name_template_pairs_and_clashes(tmp_path):
    src = tmp_path / "in"
    make_folder(src, [("x/a.wav", 1.0, 44100, 1, "PCM_16"), ("x/a.flac", 1.0, 44100, 1, "PCM_16"),
                      ("y/b.wav", 1.0, 48000, 2, "PCM_16"), ("y/c.wav", 1.0, 48000, 2, "PCM_16")],
                corrupt=False)
    refs = tmp_path / "refs"
    refs.mkdir()
    bright = write_tone(refs / "bright.wav", tilt=4.0, seed=5)
    dark = write_tone(refs / "dark.flac", seed=6)
    (refs / "pairs.csv").write_text("input,reference\ny/b.wav,bright.wav\nx/a.wav,dark.flac\n"
                                    "missing.wav,dark.flac\n")
    # no --ref: y/c.wav is not listed and is ignored; missing.wav fails; a.wav/a.flac would clash
    # only with a template without {ext}: here they do not (a.flac is not listed anyway)
    summary = run_batch(src, tmp_path / "out", None, refs / "pairs.csv",
                        BatchOptions(method="analysis", name="{parent}_{stem}.flac", subtype="PCM_16"))
    by = {r.relative: r for r in summary.results}
    assert by["y/b.wav"].status == "ok" and by["x/a.wav"].status == "ok"
    assert Path(by["y/b.wav"].output) == tmp_path / "out" / "y" / "y_b.flac"
    info = sf.info(by["y/b.wav"].output)
    assert info.format == "FLAC" and info.subtype == "PCM_16"
    assert json.loads(Path(by["y/b.wav"].report).read_text())["reference"]["path"] == str(bright)
    assert json.loads(Path(by["x/a.wav"].report).read_text())["reference"]["path"] == str(dark)
    assert by[str(src / "missing.wav")].status == "failed"
    assert "not found" in by[str(src / "missing.wav")].error
    ignored = {Path(i["path"]).name: i["reason"] for i in summary.ignored}
    assert set(ignored) == {"c.wav", "a.flac"} and "pairs" in ignored["c.wav"]
    assert summary.exit_code == 1

    # clash: x/a.wav and x/a.flac both map to x/a.wav -> both fail, nothing is overwritten
    summary = run_batch(src, tmp_path / "out2", bright, options=BatchOptions(method="analysis"))
    by = {r.relative: r for r in summary.results}
    assert by["x/a.wav"].status == by["x/a.flac"].status == "failed"
    assert "would all be written as" in by["x/a.wav"].error and "{ext}" in by["x/a.wav"].error
    assert by["y/b.wav"].status == by["y/c.wav"].status == "ok"

    # existing outputs need --force (or --resume)
    summary = run_batch(src / "y", tmp_path / "out2" / "y", bright, options=BatchOptions(method="analysis"))
    assert [r.status for r in summary.results] == ["failed", "failed"]
    assert "already exists" in summary.results[0].error


@pytest.mark.parametrize("template, fragment", [
    ("{stem}.mp3", "not supported"), ("{nope}.wav", "unknown placeholder {nope}"),
    ("../{stem}.wav", "inside the output folder"), ("{stem", "not a valid template")])
def test_bad_templates(template, fragment):
    with pytest.raises(BatchError, match="--name") as info:
        batch.check_template(template)
    assert fragment in str(info.value)


def test_whole_batch_errors_are_one_line(tmp_path):
    src = make_folder(tmp_path / "in", GOOD[:1], corrupt=False)
    ref = reference(tmp_path)
    cases = [
        (("batch", tmp_path / "nope", "--ref", ref, "-o", tmp_path / "o"), "input folder not found"),
        (("batch", src, "--ref", ref, "-o", src), "is the input folder"),
        (("batch", src, "-o", tmp_path / "o"), "--ref"),
        (("batch", src, "--ref", tmp_path / "nope.wav", "-o", tmp_path / "o"), "reference file not found"),
        (("batch", src, "--ref", ref, "-o", tmp_path / "o", "--name", "{x}.wav"), "unknown placeholder"),
        (("batch", src, "--ref", ref, "-o", tmp_path / "o", "--workers", "0"), "--workers 0"),
        (("batch", src, "--ref", ref, "-o", tmp_path / "o", "--pairs", tmp_path / "p.csv"), "pairs file not found"),
    ]
    for args, fragment in cases:
        proc = run_cli(*args, "--method", "analysis")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and fragment in lines[0], (args, proc.stderr)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_broken_model_stops_the_batch_in_one_line(tmp_path, workers):
    """In this process the model is loaded before any file; with workers, the first file's
    ModelError stops the batch (every file would fail the same way)."""
    src = make_folder(tmp_path / "in", GOOD[:3], corrupt=False)
    proc = run_cli("batch", src, "--ref", reference(tmp_path), "-o", tmp_path / "o", "--method", "model",
                   "--model", tmp_path / "no-model", "--workers", workers)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "no-model not found" in lines[0] and "Traceback" not in proc.stderr  # names the path given
    assert not list((tmp_path / "o").rglob("*.wav")) and not list((tmp_path / "o").rglob("*.part"))


def test_output_folder_inside_input_folder_is_not_searched(tmp_path):
    src = make_folder(tmp_path / "in", GOOD[:1], corrupt=False)
    ref = reference(tmp_path)
    for _ in range(2):
        summary = run_batch(src, src / "out", ref, options=BatchOptions(method="analysis", resume=True))
        assert [r.relative for r in summary.results] == ["a.wav"]


def test_sweep_removes_only_this_batchs_temporaries(tmp_path):
    job = batch.Job(0, "in.wav", "in.wav", "r.wav", str(tmp_path / "a.wav"), str(tmp_path / "a.json"))
    mine = [tmp_path / ".a.wav.k2j4h_x9.part", tmp_path / ".a.json.abcdefgh.part"]
    other = [tmp_path / ".b.wav.abcdefgh.part", tmp_path / "a.wav"]
    for p in mine + other:
        p.write_bytes(b"x")
    batch._sweep_temporaries([job])
    assert not any(p.exists() for p in mine) and all(p.exists() for p in other)


def test_interrupt_between_audio_and_report_removes_the_audio(tmp_path, monkeypatch):
    """Ctrl-C after a file's audio is written but before its report: the audio goes too,
    the files done before stay, and the summary says what happened."""
    src = make_folder(tmp_path / "in", GOOD[:3], corrupt=False)
    ref, out = reference(tmp_path), tmp_path / "out"
    real = audio.atomic_write_text

    def write(path, text):
        if Path(path).name == "b.json":
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(audio, "atomic_write_text", write)
    with pytest.raises(batch.BatchInterrupted) as info:
        run_batch(src, out, ref, options=ANALYSIS)
    s = info.value.summary
    assert [(r.relative, r.status) for r in s.results] == [
        ("a.wav", "ok"), ("b.flac", "interrupted"), ("c.ogg", "interrupted")]
    assert out_audio(out) == ["a.wav"] and no_temporaries(out)
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True


def test_missing_dask_is_one_line(tmp_path, monkeypatch):
    src = make_folder(tmp_path / "in", GOOD[:2], corrupt=False)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(BatchError, match=r"pip install 'afxmatch\[dask\]'"):
        run_batch(src, tmp_path / "out", reference(tmp_path),
                  options=BatchOptions(method="analysis", scheduler="tcp://127.0.0.1:1"))


@pytest.mark.parametrize("processes", [False, True])
def test_dask_local_cluster(tmp_path, processes):
    distributed = pytest.importorskip("distributed")
    src = make_folder(tmp_path / "in", GOOD[:3], corrupt=False)
    (src / "bad.wav").write_bytes(b"not audio at all")
    ref = reference(tmp_path)
    with distributed.LocalCluster(n_workers=2 if processes else 1, threads_per_worker=1,
                                  processes=processes, dashboard_address=None) as cluster:
        summary = run_batch(src, tmp_path / "out", ref, options=BatchOptions(
            method="analysis", scheduler=cluster.scheduler_address))
    by = {r.relative: r for r in summary.results}
    assert [by[rel].status for rel, *_ in GOOD[:3]] == ["ok"] * 3
    assert by["bad.wav"].status == "failed" and summary.exit_code == 1
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["options"]["scheduler"] \
        == cluster.scheduler_address
    # the same audio as the single-file API
    single = tmp_path / "single.wav"
    match_file(src / "a.wav", ref, single, MatchOptions(method="analysis"))
    assert np.array_equal(sf.read(str(single))[0], sf.read(str(tmp_path / "out" / "a.wav"))[0])


def test_cli_scheduler_option(tmp_path):
    """``afxmatch batch --scheduler ADDRESS`` from another process, as on a real cluster."""
    distributed = pytest.importorskip("distributed")
    src = make_folder(tmp_path / "in", GOOD[:2], corrupt=False)
    ref = reference(tmp_path)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  protocol="tcp://", host="127.0.0.1", dashboard_address=None) as cluster:
        proc = run_cli("batch", src, "--ref", ref, "-o", tmp_path / "out", "--method", "analysis",
                       "--scheduler", cluster.scheduler_address)
    assert proc.returncode == 0, proc.stderr
    assert out_audio(tmp_path / "out") == ["a.wav", "b.wav"]


def _processes_with(marker: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "environ").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def _default_sigint():
    """Ctrl-C as in a terminal: a shell starts background jobs (``cmd &``, as a CI runner
    may run this suite) with SIGINT ignored, and Python then never raises
    KeyboardInterrupt; the batch would rightly run to the end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("workers, sig", [(2, signal.SIGTERM), (1, signal.SIGINT)])
def test_interrupt_leaves_no_partial_outputs(tmp_path, workers, sig):
    spec = [(f"f{i}.wav", 3.0, 44100, 2, "PCM_16") for i in range(8)]
    src, out, ref = make_folder(tmp_path / "in", spec, corrupt=False), tmp_path / "out", reference(tmp_path)
    marker = f"AFX_BATCH_TEST={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    proc = subprocess.Popen([sys.executable, "-m", "afxmatch", "batch", str(src), "--ref", str(ref),
                             "-o", str(out), "--method", "analysis", "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 240
    while not list(out.glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.3)   # now some files are in flight
    if sig == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C goes to the whole process group
    else:
        proc.send_signal(signal.SIGTERM)     # SIGTERM only to the main process
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert no_temporaries(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["counts"]["interrupted"] >= 1
    for f in summary["files"]:
        o = out / Path(f["relative"]).with_suffix(".wav")
        assert o.exists() == (f["status"] == "ok"), f        # no audio without its report
        assert o.with_suffix(".json").exists() == (f["status"] == "ok"), f
    time.sleep(0.5)
    assert _processes_with(marker) == []                     # no worker left behind
    # and --resume finishes the job
    proc = run_cli("batch", src, "--ref", ref, "-o", out, "--method", "analysis", "--resume", "-q")
    assert proc.returncode == 0, proc.stderr
    assert out_audio(out) == [f"f{i}.wav" for i in range(8)]


def test_a_killed_worker_costs_a_retry_not_the_files(tmp_path):
    """SIGKILL one worker mid-batch (as the OOM killer would): its files are retried in a
    fresh pool, all finish, and its temporary files are swept."""
    spec = [(f"f{i}.wav", 3.0, 44100, 2, "PCM_16") for i in range(6)]
    src, out, ref = make_folder(tmp_path / "in", spec, corrupt=False), tmp_path / "out", reference(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "afxmatch", "batch", str(src), "--ref", str(ref),
                             "-o", str(out), "--method", "analysis", "--workers", "2", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    workers = [pid for pid in _children(proc.pid) if b"spawn_main" in _cmdline(pid)]
    assert workers, "no worker processes found"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out_audio(out) == [f"f{i}.wav" for i in range(6)] and no_temporaries(out)
    assert json.loads((out / "summary.json").read_text())["counts"]["ok"] == 6


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(parent: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    kids.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def test_batch_mastering_finish_and_amount(tmp_path):
    """--loudness / --true-peak / --amount reach every file of a batch, as in the match
    command: loudness by pyloudnorm, true peak by scipy's 4x polyphase resampler."""
    import pyloudnorm
    from scipy.signal import resample_poly

    src = make_folder(tmp_path / "in", GOOD[:3] + GOOD[11:12], corrupt=False)
    ref = reference(tmp_path)
    proc = run_cli("batch", src, "--ref", ref, "-o", tmp_path / "out", "--method", "analysis",
                   "--loudness", "-16", "--true-peak", "-1.5", "-q")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["options"]["loudness"] == -16 and summary["options"]["true_peak"] == -1.5
    for rel in ("a.wav", "b.wav", "c.wav", "music/l.wav"):
        y, sr = sf.read(str(tmp_path / "out" / rel), always_2d=True)
        assert abs(pyloudnorm.Meter(sr).integrated_loudness(y) - -16.0) < 0.5, rel
        tp = 20 * np.log10(np.abs(resample_poly(y, 4, 1, axis=0)).max())
        assert tp <= -1.5 + 0.02, (rel, tp)
        rep = json.loads((tmp_path / "out" / rel).with_suffix(".json").read_text())
        assert rep["finish"]["ceiling_dbtp"] == -1.5
    # --amount 0: every output is its input (before any finish), within 24-bit rounding
    summary = run_batch(src, tmp_path / "zero", ref, None, BatchOptions(method="analysis", amount=0.0))
    assert summary.count("ok") == 4
    for rel in ("a.wav", "music/l.wav"):
        x, _ = sf.read(str(src / rel), always_2d=True)
        y, _ = sf.read(str(tmp_path / "zero" / rel), always_2d=True)
        assert np.max(np.abs(y - x)) < 1e-6, rel
