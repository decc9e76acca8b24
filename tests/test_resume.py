"""``afxmatch batch --resume`` keeps an output only when it was made with the same settings.

Each file job has a settings fingerprint (the reference file by resolved path, size and
mtime, the input's size and mtime, the options that reach match_file, the model's sha256,
the output format and subtype) that run_job stores in the file's report (the ``batch``
block) and summary.json records. ``--resume`` skips a file only when its output is
complete, fresh and its stored fingerprint is the current one; an output of afxmatch made
otherwise (or by an older afxmatch, without a fingerprint) is redone in place, and a file
afxmatch did not write is never overwritten without ``--force``. Small generated audio and
``--method analysis`` keep this fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from afxmatch import batch
from afxmatch.batch import BatchOptions, run_batch

from audio_fixtures import write_tone

FILES = ["a.wav", "sub/b.wav", "sub/c.flac"]


@pytest.fixture
def folder(tmp_path):
    """Three short inputs, a reference, and a first (complete) batch run into ``out``."""
    src = tmp_path / "in"
    for i, rel in enumerate(FILES):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        write_tone(src / rel, sr=22050, seconds=0.8, channels=1 + i % 2, seed=i)
    ref = write_tone(tmp_path / "ref.wav", sr=22050, seconds=1.0, tilt=3.0, seed=99)
    out = tmp_path / "out"
    first = run_batch(src, out, ref, options=BatchOptions(method="analysis"))
    assert [r.status for r in first.results] == ["ok"] * 3
    return src, out, ref


def outputs(out: Path) -> dict[str, np.ndarray]:
    return {rel: sf.read(str(out / Path(rel).with_suffix(".wav")))[0] for rel in FILES}


def mtimes(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".wav", ".json")
            and p.name != "summary.json"}


def statuses(summary) -> list[tuple[str, str, str | None]]:
    return [(r.relative, r.status, r.redo) for r in summary.results]


def resume(src, out, ref, **options):
    return run_batch(src, out, ref, options=BatchOptions(method="analysis", resume=True, **options))


def test_the_report_and_summary_record_the_settings(folder):
    src, out, ref = folder
    summary = json.loads((out / "summary.json").read_text())
    for entry in summary["files"]:
        report = json.loads(Path(entry["report"]).read_text())
        block = report["batch"]
        assert block["settings_fingerprint"] == entry["settings_fingerprint"]
        assert block["settings_fingerprint"] == batch.settings_fingerprint(block["settings"])
        s = block["settings"]
        st_ref, st_in = os.stat(ref), os.stat(entry["input"])
        assert s["reference"] == {"path": str(ref.resolve()), "size": st_ref.st_size,
                                  "mtime_ns": st_ref.st_mtime_ns}
        assert s["input"] == {"size": st_in.st_size, "mtime_ns": st_in.st_mtime_ns}
        assert (s["method"], s["backend"], s["model"], s["amount"], s["loudness"], s["true_peak"],
                s["format"], s["subtype"]) == ("analysis", "torch", None, 1.0, None, None, "WAV", "PCM_24")
        # the rest of the report is what match_file wrote
        assert report["schema"] == "afxmatch.report/1" and "report_path" not in report
    assert summary["counts"]["redone"] == 0


def test_same_settings_or_other_workers_process_nothing(folder):
    src, out, ref = folder
    before = mtimes(out)
    # the same settings spelt differently (backend named, amount an int) and other workers
    for options in ({}, {"backend": "torch", "amount": 1}, {"workers": 2}):
        summary = resume(src, out, ref, **options)
        assert statuses(summary) == [(rel, "skipped", None) for rel in FILES], options
        assert summary.exit_code == 0 and summary.redone == []
        assert all(r.loudness_after_lufs is not None for r in summary.results)
    assert mtimes(out) == before


def test_changed_amount_redoes_every_file_in_place(folder):
    src, out, ref = folder
    full = outputs(out)
    summary = resume(src, out, ref, amount=0.5)
    assert statuses(summary) == [(rel, "ok", "settings changed: amount 1.0 -> 0.5") for rel in FILES]
    half = outputs(out)
    for rel in FILES:
        assert np.max(np.abs(half[rel] - full[rel])) > 1e-3, rel
        assert json.loads((out / Path(rel).with_suffix(".json")).read_text())["amount"] == 0.5
    data = json.loads((out / "summary.json").read_text())
    assert data["counts"]["redone"] == 3 and data["counts"]["ok"] == 3
    assert [f["redo"] for f in data["files"]] == ["settings changed: amount 1.0 -> 0.5"] * 3
    # now up to date at 0.5: nothing to do; back to 1.0 redoes them again, as the first run
    assert [r.status for r in resume(src, out, ref, amount=0.5).results] == ["skipped"] * 3
    again = resume(src, out, ref)
    assert [r.redo for r in again.results] == ["settings changed: amount 0.5 -> 1.0"] * 3
    for rel, y in outputs(out).items():
        assert np.array_equal(y, full[rel]), rel


def test_a_reference_replaced_by_an_older_file_is_noticed(folder):
    """Same path, other content, mtime set back (cp -p): fresh by mtime, not by settings."""
    src, out, ref = folder
    old = os.stat(ref)
    write_tone(ref, sr=22050, seconds=1.5, tilt=-2.0, seed=7)
    os.utime(ref, ns=(old.st_atime_ns, old.st_mtime_ns - 10**9))
    assert batch._is_fresh(batch.Job(0, str(src / "a.wav"), "a.wav", str(ref), str(out / "a.wav"),
                                     str(out / "a.json")))
    before = outputs(out)
    summary = resume(src, out, ref)
    assert statuses(summary) == [(rel, "ok", "settings changed: reference") for rel in FILES]
    after = outputs(out)
    assert all(np.max(np.abs(after[rel] - before[rel])) > 1e-3 for rel in FILES)


def test_other_format_subtype_or_method_settings_are_named(folder):
    src, out, ref = folder
    summary = resume(src, out, ref, subtype="PCM_16", loudness=-20.0)
    assert [r.redo for r in summary.results] == ["settings changed: loudness None -> -20.0, "
                                                 "subtype PCM_24 -> PCM_16"] * 3
    assert sf.info(str(out / "a.wav")).subtype == "PCM_16"


def test_an_output_without_a_settings_record_is_redone(folder):
    """An output of an older afxmatch (no ``batch`` block in its report) is redone."""
    src, out, ref = folder
    report = out / "sub" / "b.json"
    data = json.loads(report.read_text())
    del data["batch"]
    report.write_text(json.dumps(data))
    before = mtimes(out)
    summary = resume(src, out, ref)
    assert statuses(summary) == [
        ("a.wav", "skipped", None),
        ("sub/b.wav", "ok", "no settings record (made by an older afxmatch or the single-file command)"),
        ("sub/c.flac", "skipped", None)]
    changed = sorted(str(p.relative_to(out)) for p, t in mtimes(out).items() if before[p] != t)
    assert changed == ["sub/b.json", "sub/b.wav"]
    assert "batch" in json.loads(report.read_text())


def test_files_afxmatch_did_not_write_need_force(folder):
    """A user's audio (no report, or newer than the report) or a foreign .json is kept."""
    src, out, ref = folder
    (out / "a.json").unlink()                                    # audio alone: whose?
    (out / "sub" / "b.json").write_text('{"notes": "mine"}')     # not an afxmatch report
    mine = out / "sub" / "c.wav"
    os.utime(mine, ns=(0, (out / "sub" / "c.json").stat().st_mtime_ns + 10**9))   # newer than its report
    kept = {p: p.read_bytes() for p in (out / "a.wav", out / "sub" / "b.json", mine)}
    summary = resume(src, out, ref, amount=0.5)
    assert [r.status for r in summary.results] == ["failed"] * 3 and summary.exit_code == 1
    assert all("was not written by afxmatch" in r.error and "--force" in r.error for r in summary.results)
    assert {p: p.read_bytes() for p in kept} == kept
    summary = resume(src, out, ref, amount=0.5, force=True)
    assert [r.status for r in summary.results] == ["ok"] * 3
    assert json.loads((out / "sub" / "b.json").read_text())["amount"] == 0.5


def test_an_earlier_failure_is_retried_under_other_settings(folder):
    src, out, ref = folder
    (src / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(200))
    first = resume(src, out, ref)
    assert [(r.relative, r.status) for r in first.results if r.relative == "bad.wav"] == [("bad.wav", "failed")]
    # same settings: not retried, still reported (exit 1)
    same = resume(src, out, ref)
    bad = [r for r in same.results if r.relative == "bad.wav"][0]
    assert (bad.status, bad.cause, bad.error is not None) == ("skipped", "input", True)
    assert "same settings" in bad.note and same.exit_code == 1
    # other settings: retried (and fails again), the good files are redone
    other = resume(src, out, ref, amount=0.5)
    by = {r.relative: r for r in other.results}
    assert by["bad.wav"].status == "failed" and by["bad.wav"].note is None
    assert [by[rel].status for rel in FILES] == ["ok"] * 3
    # a summary.json of an older afxmatch (no fingerprints): the failure is retried
    data = json.loads((out / "summary.json").read_text())
    for entry in data["files"]:
        entry.pop("settings_fingerprint")
    (out / "summary.json").write_text(json.dumps(data))
    assert [r.status for r in resume(src, out, ref, amount=0.5).results if r.relative == "bad.wav"] == ["failed"]


def test_settings_fingerprint_covers_what_changes_the_output(tmp_path):
    """Unit: options that change a file's output change the fingerprint; the others do not."""
    models = []
    for i in range(2):
        m = tmp_path / f"model{i}"
        m.mkdir()
        (m / "model.sha256").write_text(f"{i:064x}  model.pt\n")
        models.append(str(m))
    job = batch.Job(0, str(write_tone(tmp_path / "in.wav", seconds=0.2)), "in.wav",
                    str(write_tone(tmp_path / "ref.wav", seconds=0.2, seed=1)), str(tmp_path / "o.wav"),
                    str(tmp_path / "o.json"))

    def fp(**kw):
        return batch.settings_fingerprint(batch.job_settings(batch.common_settings(BatchOptions(**kw)), job))

    base = fp(method="model", model_path=models[0])
    for same in ({"workers": 4}, {"scheduler": "tcp://x:8786"}, {"force": True}, {"resume": True},
                 {"backend": "torch"}, {"amount": 1}):
        assert fp(method="model", model_path=models[0], **same) == base, same
    others = [fp(method="model", model_path=models[1]), fp(method="analysis"), fp(method="model",
              model_path=models[0], amount=0.9), fp(method="model", model_path=models[0], true_peak=-1.0),
              fp(method="model", model_path=models[0], subtype="FLOAT")]
    assert len({base, *others}) == 1 + len(others)
    assert batch.common_settings(BatchOptions(method="model", model_path=models[1]))["model"] == \
        {"sha256": f"{1:064x}"}


def test_a_stopped_batch_does_not_call_an_old_output_done(folder):
    """_settle_unreported: output and report present and fresh, but made with other
    settings: the file was not done in this run (interrupted), and the earlier output stays."""
    src, out, ref = folder
    jobs, settled, _ = batch.plan_batch(src, out, ref, options=BatchOptions(method="analysis", resume=True,
                                                                             amount=0.25))
    assert [j.redo for j in jobs] == ["settings changed: amount 1.0 -> 0.25"] * 3 and not settled
    result = batch._settle_unreported(jobs[0])
    assert (result.status, result.redo) == ("interrupted", "settings changed: amount 1.0 -> 0.25")
    assert (out / "a.wav").is_file() and (out / "a.json").is_file()
    # a worker died after writing b's new audio, before its report: that audio goes
    b = out / "sub" / "b.wav"
    b.write_bytes(b.read_bytes())
    os.utime(b, ns=(0, (out / "sub" / "b.json").stat().st_mtime_ns + 10**9))
    assert batch._settle_unreported(jobs[1]).status == "interrupted"
    assert not b.exists() and (out / "sub" / "b.json").is_file() and (out / "sub" / "c.wav").is_file()
    # the same job finished by a worker: its report holds the job's fingerprint
    batch.run_job(jobs[0], BatchOptions(method="analysis", amount=0.25))
    assert batch._settle_unreported(jobs[0]).status == "ok"


def test_cli_says_why_a_file_is_redone(folder):
    src, out, ref = folder
    proc = subprocess.run([sys.executable, "-m", "afxmatch", "batch", str(src), "--ref", str(ref), "-o",
                           str(out), "--method", "analysis", "--resume", "--amount", "0.8"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("redone")]
    assert len(lines) == 3 and all("(settings changed: amount 1.0 -> 0.8)" in ln for ln in lines)
    row = [ln for ln in proc.stderr.splitlines() if "of which redone" in ln]
    assert len(row) == 1 and re.search(r"\b3\b", row[0].split("out of date")[1]), proc.stderr


def test_vst3_settings_name_the_plugin_files(tmp_path, monkeypatch):
    """With --backend vst3 the settings carry each plugin bundle's files (path, size,
    mtime), so a plugin updated in place changes the fingerprint; other backends do not
    look for plugins at all."""
    from afxmatch.render import vst3_backend

    plugins = tmp_path / "vst3"
    for name in (vst3_backend.EQ_PLUGIN, vst3_backend.COMP_MONO, vst3_backend.COMP_STEREO):
        lib = plugins / f"{name}.vst3" / "Contents" / "x86_64-linux" / f"{name}.so"
        lib.parent.mkdir(parents=True)
        lib.write_bytes(b"\0" * 100)
    monkeypatch.setenv(vst3_backend.ENV_VAR, str(plugins))
    monkeypatch.setattr(vst3_backend, "STANDARD_DIRS", ())   # only the fake folder

    before = batch.common_settings(BatchOptions(method="analysis", backend="vst3"))
    eq = before["plugins"][vst3_backend.EQ_PLUGIN]
    assert eq["path"] == str((plugins / "ZamEQ2.vst3").resolve())
    assert [f[:2] for f in eq["files"]] == [["Contents/x86_64-linux/ZamEQ2.so", 100]]
    assert "plugins" not in batch.common_settings(BatchOptions(method="analysis"))

    (plugins / "ZamEQ2.vst3" / "Contents" / "x86_64-linux" / "ZamEQ2.so").write_bytes(b"\0" * 101)
    after = batch.common_settings(BatchOptions(method="analysis", backend="vst3"))
    assert after["plugins"][vst3_backend.EQ_PLUGIN]["files"][0][1] == 101
    assert batch.settings_fingerprint(after) != batch.settings_fingerprint(before)

    shutil.rmtree(plugins / "ZamCompX2.vst3")
    assert batch.common_settings(BatchOptions(method="analysis", backend="vst3"))["plugins"]["ZamCompX2"] is None
