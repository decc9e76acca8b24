"""Match a folder of recordings: a loop over :func:`afxmatch.pipeline.match_file`. No printing.

:func:`run_batch` finds the audio files below ``in_dir`` (recursively), gives each an
output path in ``out_dir`` that keeps its relative folder, matches each to its reference
(one ``--ref`` for all, or one per file from a ``--pairs`` CSV) and writes
``summary.json`` and ``summary.csv`` into ``out_dir``. Work runs in this process
(``workers=1``), in a pool of worker processes (``workers>1``), or on a Dask cluster
(``scheduler=ADDRESS``). Progress is reported through an optional callback.

What counts as audio: a file whose extension is one of :data:`afxmatch.audio.READ_EXTENSIONS`
(hidden files and folders are not searched). Other files are ignored and listed in the
summary under ``ignored``. A file with an audio extension that does not decode is a
failure of that file (status ``failed``), never of the batch.

Each worker loads the model (``method="model"``) and reads and measures each reference
once (:func:`cached_reference`, keyed by path, mtime and size); the results are the same
as calling ``match_file`` per file. An interrupted batch (Ctrl-C, SIGTERM) stops its
workers and leaves no partial output: the writer is atomic, an audio file whose report
was not written is removed, and stray temporary files are swept.

Each file's settings (:func:`job_settings`: reference, input, the options that change the
output, the model's sha256, the VST3 plugin files, format) go into its report's ``batch`` block; ``resume`` keeps
an output only when they are unchanged, and replaces only outputs that afxmatch wrote.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import signal
import string
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PurePath
from typing import Callable

from . import __version__, audio
from .choices import DEFAULT_METHOD
from .errors import AfxmatchError, AudioFileError, ModelError, OutputError

DEFAULT_NAME = "{stem}.wav"
PLACEHOLDERS = ("stem", "ext", "parent")
SUMMARY_JSON, SUMMARY_CSV = "summary.json", "summary.csv"
SUMMARY_SCHEMA = "afxmatch.batch/1"
CSV_COLUMNS = ("relative", "status", "input", "reference", "output", "report",
               "loudness_before_lufs", "loudness_after_lufs", "reference_lufs", "seconds", "error", "note",
               "redo", "settings_fingerprint")
REPORT_BLOCK = "batch"   # the report's {"settings_fingerprint", "settings"}, written by run_job
REFERENCE_CACHE_SIZE = 4
TERMINATE_WAIT_S = 10.0
DASK_CONNECT_TIMEOUT = "10s"


class BatchError(AfxmatchError):
    """The batch as a whole cannot run (missing folder, bad template, bad pairs file)."""


@dataclass
class BatchOptions:
    """How to run a batch. ``name`` is the output-name template: ``{stem}`` (input name
    without extension), ``{ext}`` (input extension without the dot), ``{parent}`` (the
    input's folder name); its extension (.wav/.flac) sets the output format."""

    name: str = DEFAULT_NAME
    method: str = DEFAULT_METHOD
    backend: str | None = None      # None: the method's own (pipeline.MatchOptions)
    subtype: str | None = None
    force: bool = False
    resume: bool = False
    workers: int = 1
    model_path: str | None = None
    scheduler: object = None   # a Dask scheduler address ("tcp://host:8786") or a distributed.Client
    amount: float = 1.0               # as the match command's --amount
    loudness: float | None = None     # mastering finish, as --loudness / --true-peak
    true_peak: float | None = None

    def match_options(self, overwrite: bool):
        from .pipeline import MatchOptions

        return MatchOptions(method=self.method, backend=self.backend, subtype=self.subtype,
                            force=overwrite, model_path=self.model_path, amount=self.amount,
                            loudness=self.loudness, true_peak=self.true_peak)


@dataclass(frozen=True)
class Job:
    """One file to match. Paths are strings so that jobs travel to other processes/hosts."""

    index: int
    input: str
    relative: str
    reference: str
    output: str
    report: str
    overwrite: bool = False
    input_stat: tuple[int, int] | None = None   # (mtime_ns, size) when planned
    # what makes this file's output (see job_settings) and its sha256; run_job stores both
    # in the report, where the next --resume compares them
    settings: dict | None = field(default=None, hash=False)
    fingerprint: str | None = None
    redo: str | None = None   # why an earlier output of afxmatch is replaced (--resume)
    output_before: tuple | None = None   # the output's (inode, mtime_ns, size) when planned


@dataclass
class FileResult:
    """What happened to one file. ``status``: ok, failed, skipped or interrupted (the batch
    stopped first). ``resume`` skips a file whose output and report are complete, newer
    than its input and made with the same settings (``settings_fingerprint``), and a file
    that failed in the previous run with the same settings and input (then ``error`` is
    that failure and ``note`` says so). ``redo`` says why an earlier output was replaced
    (settings changed, no settings record, older than its sources)."""

    relative: str
    status: str
    input: str
    reference: str | None = None
    output: str | None = None
    report: str | None = None
    loudness_before_lufs: float | None = None
    loudness_after_lufs: float | None = None
    reference_lufs: float | None = None
    seconds: float = 0.0
    error: str | None = None
    cause: str | None = None    # of a failure: input (unreadable), reference, model, or other
    note: str | None = None
    input_stat: tuple[int, int] | None = None
    redo: str | None = None
    settings_fingerprint: str | None = None


@dataclass
class BatchEvent:
    """Sent to the progress callback: ``kind`` "planned" (``total`` known, ``result`` None)
    or "file" (one file finished or was skipped; ``done`` of ``total``)."""

    kind: str
    done: int
    total: int
    result: FileResult | None = None


Progress = Callable[[BatchEvent], None]


@dataclass
class BatchSummary:
    input_dir: str
    output_dir: str
    results: list[FileResult] = field(default_factory=list)
    ignored: list[dict] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    summary_json: str | None = None
    summary_csv: str | None = None

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def redone(self) -> list[FileResult]:
        """Matched again by ``resume`` because their earlier output was out of date."""
        return [r for r in self.results if r.status == "ok" and r.redo]

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def failed_before(self) -> list[FileResult]:
        """Skipped by ``resume`` because they failed in the previous run, unchanged since."""
        return [r for r in self.results if r.status == "skipped" and r.error]

    @property
    def exit_code(self) -> int:
        """130 if interrupted; 1 if a file failed now or (not retried) in the previous run."""
        return 130 if self.interrupted else (1 if self.failed or self.failed_before else 0)

    def to_dict(self, options: BatchOptions) -> dict:
        counts = {s: self.count(s) for s in ("ok", "failed", "skipped", "interrupted")}
        opts = {f.name: getattr(options, f.name) for f in fields(options)}   # not asdict: a Client
        opts["scheduler"] = _scheduler_name(options.scheduler)              # does not deep-copy
        return {"schema": SUMMARY_SCHEMA, "afxmatch_version": __version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "input_dir": self.input_dir, "output_dir": self.output_dir, "options": opts,
                "counts": {**counts, "total": len(self.results), "ignored": len(self.ignored),
                           "redone": len(self.redone)},
                "interrupted": self.interrupted, "seconds": round(self.seconds, 3),
                "files": [{**asdict(r), "seconds": round(r.seconds, 3)} for r in self.results],
                "ignored": self.ignored}


class BatchInterrupted(KeyboardInterrupt):
    """Raised by :func:`run_batch` after an interrupt, once workers are stopped, partial
    outputs removed and the summary written; ``.summary`` says what was done."""

    def __init__(self, summary: BatchSummary):
        super().__init__("batch interrupted")
        self.summary = summary


# --------------------------------------------------------------------------- planning

def check_template(template: str) -> None:
    """Refuse unknown placeholders, paths that leave the output folder, and extensions
    other than .wav/.flac (when the extension is not itself a placeholder)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise BatchError(f"--name {template!r} is not a valid template ({err}); "
                         f"use placeholders like {DEFAULT_NAME!r}") from None
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown:
        raise BatchError(f"--name {template!r}: unknown placeholder {{{unknown[0]}}}; use "
                         + ", ".join("{" + p + "}" for p in PLACEHOLDERS))
    parts = PurePath(template).parts
    if not template.strip() or PurePath(template).is_absolute() or ".." in parts:
        raise BatchError(f"--name {template!r} must be a relative file name inside the output folder")
    suffix = PurePath(template).suffix.lower()
    if "{" not in suffix and suffix not in audio.WRITE_FORMATS:
        raise BatchError(f"--name {template!r}: output extension {suffix or '(none)'!r} is not "
                         f"supported; end the template with {' or '.join(audio.WRITE_FORMATS)}")


def _check_subtype(options: BatchOptions) -> None:
    if options.subtype is None:
        return
    subtype = options.subtype.upper()
    if subtype not in audio.SUBTYPES:
        raise BatchError(f"--subtype {options.subtype} is not supported; use one of "
                         f"{', '.join(sorted(audio.SUBTYPES))}")
    if options.name.lower().endswith(".flac") and subtype not in audio.FLAC_SUBTYPES:
        raise BatchError(f"FLAC outputs ({options.name}) support --subtype PCM_16 or PCM_24, not {subtype}")


def output_name(template: str, path: Path) -> str:
    return template.format(stem=path.stem, ext=path.suffix[1:], parent=path.parent.name)


def find_audio(in_dir: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """``(audio_files, other_files)`` below ``in_dir``, sorted; hidden files and folders,
    and the folder ``exclude`` (an output folder inside the input folder), are not searched."""
    found, other = [], []
    skip = exclude.resolve() if exclude is not None else None
    for root, dirs, files in os.walk(in_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (skip is None or (Path(root) / d).resolve() != skip))
        for name in sorted(files):
            if name.startswith("."):
                continue
            p = Path(root) / name
            (found if p.suffix.lower() in audio.READ_EXTENSIONS else other).append(p)
    return found, other


def read_pairs(csv_path: Path, in_dir: Path) -> dict[Path, Path]:
    """``{input: reference}`` from a CSV with columns ``input,reference``. Relative inputs
    are resolved against ``in_dir``; relative references against the CSV's folder."""
    if not csv_path.is_file():
        raise BatchError(f"pairs file not found: {csv_path}")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise BatchError(f"cannot read pairs file {csv_path}: {err}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)
            and not r[0].lstrip().startswith("#")]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "input" not in header or "reference" not in header:
        raise BatchError(f"pairs file {csv_path} needs a header row with columns input,reference "
                         f"(found {', '.join(header) or 'nothing'})")
    i_in, i_ref = header.index("input"), header.index("reference")
    pairs: dict[Path, Path] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) <= max(i_in, i_ref) or not row[i_in].strip() or not row[i_ref].strip():
            raise BatchError(f"pairs file {csv_path}, row {line_no}: needs both an input and a reference")
        inp = Path(row[i_in].strip()).expanduser()
        ref = Path(row[i_ref].strip()).expanduser()
        inp = inp if inp.is_absolute() else in_dir / inp
        ref = ref if ref.is_absolute() else csv_path.parent / ref
        key = Path(os.path.abspath(inp))
        if key in pairs:
            raise BatchError(f"pairs file {csv_path}, row {line_no}: {row[i_in].strip()} is listed twice")
        pairs[key] = ref
    if not pairs:
        raise BatchError(f"pairs file {csv_path} lists no files")
    return pairs


def _is_fresh(job: Job) -> bool:
    """Output and report exist and are at least as new as the input and the reference."""
    try:
        newest_source = max(os.stat(job.input).st_mtime_ns, os.stat(job.reference).st_mtime_ns)
        return all(os.stat(p).st_mtime_ns >= newest_source for p in (job.output, job.report))
    except OSError:
        return False


def _previous_failures(out_dir: Path) -> dict[str, dict]:
    """``{input: entry}`` of the files that failed in the summary.json of the last run
    because the input itself could not be read (not for output or reference problems).
    ``resume`` skips one only if its ``settings_fingerprint`` is the job's."""
    try:
        data = json.loads((out_dir / SUMMARY_JSON).read_text(encoding="utf-8"))
        return {f["input"]: f for f in data["files"]
                if f.get("cause") == "input" and f.get("status") in ("failed", "skipped")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _stat_of(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return None


# --------------------------------------------------------------------------- settings (resume)

def _file_identity(stat: tuple[int, int] | None) -> dict:
    """A source file as the settings see it: its size and mtime (ns), from ``_stat_of``."""
    return {"size": stat[1] if stat else None, "mtime_ns": stat[0] if stat else None}


def _model_identity(model_path: str | None) -> dict | None:
    """The model the method loads: the sha256 of its weights (from its checksum file, which
    loading checks), or its path when that cannot be read."""
    from .model.io import CHECKSUM, default_model_dir

    p = Path(model_path) if model_path else default_model_dir()
    if p is None:
        return None
    folder = p if p.is_dir() else p.parent
    try:
        return {"sha256": (folder / CHECKSUM).read_text().split()[0].lower()}
    except (OSError, IndexError):
        return {"path": str(p.resolve())}


def common_settings(options: BatchOptions) -> dict:
    """The part of every job's settings that comes from the options: what reaches
    ``match_file`` and changes the output. Not the workers, scheduler, quiet or progress."""
    match = options.match_options(False)
    match.check()   # resolves the method's default backend: None and its name are one setting

    def num(v):
        return None if v is None else float(v)

    settings = {"method": match.method, "backend": match.backend,
                "model": _model_identity(options.model_path) if match.method in ("model", "optimise") else None,
                "amount": num(options.amount), "loudness": num(options.loudness),
                "true_peak": num(options.true_peak),
                "subtype": (options.subtype or audio.DEFAULT_SUBTYPE).upper()}
    if match.backend == "vst3":   # the plugins render (and, for blackbox, are searched): which files
        from .render.vst3_backend import plugin_identity
        settings["plugins"] = plugin_identity()
    return settings


def job_settings(common: dict, job: Job) -> dict:
    """Everything that makes ``job``'s output: the common settings, the output format, the
    input (size, mtime) and this job's reference (resolved path, size, mtime)."""
    return {**common, "format": audio.WRITE_FORMATS.get(Path(job.output).suffix.lower()),
            "input": _file_identity(job.input_stat),
            "reference": {"path": str(Path(job.reference).resolve()), **_file_identity(_stat_of(job.reference))}}


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _own_report(job: Job) -> dict | None:
    """The report beside ``job.output`` if afxmatch wrote it and the audio there: an
    afxmatch report naming this output, and no audio newer than it (the audio is written
    first). ``None`` when there is none or when it, or the audio, may be someone else's."""
    try:
        written = os.stat(job.report).st_mtime_ns
        report = json.loads(Path(job.report).read_text(encoding="utf-8"))
        if not (str(report["schema"]).startswith("afxmatch.report/")
                and Path(report["output"]["path"]).name == Path(job.output).name):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    out = _stat_of(job.output)
    return None if out is not None and out[0] > written else report


def _stored_settings(report: dict) -> tuple[str | None, dict | None]:
    block = report.get(REPORT_BLOCK)
    if not isinstance(block, dict):
        return None, None
    return block.get("settings_fingerprint"), block.get("settings")


def _redo_reason(stored: dict | None, current: dict) -> str:
    """Why a complete output afxmatch made earlier is not kept, in words."""
    if not isinstance(stored, dict):
        return "no settings record (made by an older afxmatch or the single-file command)"
    changed = []
    for key in [*current, *(k for k in stored if k not in current)]:
        old, new = stored.get(key), current.get(key)
        if old != new:
            changed.append(key if isinstance(old, dict) or isinstance(new, dict) else f"{key} {old} -> {new}")
    if changed:
        return "settings changed: " + ", ".join(changed)
    return "older than its input or reference"


def _result(job: Job, status: str, **facts) -> FileResult:
    return FileResult(job.relative, status, job.input, job.reference, input_stat=job.input_stat,
                      redo=job.redo, settings_fingerprint=job.fingerprint, **facts)


def _facts_from_report(result: FileResult, report: dict) -> FileResult:
    try:
        result.loudness_before_lufs = report["input"]["integrated_lufs"]
        result.loudness_after_lufs = report["output"]["integrated_lufs"]
        result.reference_lufs = report["reference"]["integrated_lufs"]
    except (KeyError, TypeError):
        pass
    return result


def plan_batch(in_dir, out_dir, reference=None, pairs=None,
               options: BatchOptions | None = None) -> tuple[list[Job], list[FileResult], list[dict]]:
    """``(jobs, settled, ignored)``: the files to match, the files already decided (skipped
    by ``resume``, or failed before any work: clashing names, missing pairs), and the
    files that are not audio. Creates ``out_dir``. Raises :class:`BatchError` (or another
    :class:`AfxmatchError`) when the batch as a whole cannot run."""
    from .pipeline import default_report_path

    options = options or BatchOptions()
    common = common_settings(options)   # checks the options too
    check_template(options.name)
    _check_subtype(options)
    if not isinstance(options.workers, int) or options.workers < 1:
        raise BatchError(f"--workers {options.workers}: give 1 or more")
    # absolute paths: jobs may run in other processes or on other machines (other cwd)
    src, dst = Path(os.path.abspath(in_dir)), Path(os.path.abspath(out_dir))
    reference = os.path.abspath(reference) if reference is not None else None
    if not src.is_dir():
        raise BatchError(f"input folder not found: {src}" if not src.exists() else
                         f"input {src} is a file; batch takes a folder (use afxmatch INPUT for one file)")
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"output {dst} is a file; give a folder")
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"output folder {dst} is the input folder; choose another "
                          "(inputs are never overwritten)")
    if not dst.exists() and not dst.parent.exists():
        raise OutputError(f"output folder's parent {dst.parent} does not exist")
    if reference is None and pairs is None:
        raise BatchError("give --ref REFERENCE (one for all files) or --pairs CSV (one per file)")
    elsewhere = options.workers > 1 or options.scheduler is not None   # files run in other processes
    if reference is not None:   # fail at once, not once per file
        if elsewhere:
            audio.load(reference, "reference")   # workers measure it; this process needs no torch
        else:
            cached_reference(str(reference))     # measured here, for the files run here
    if options.method == "model" and not elsewhere:
        from .pipeline import load_default_model
        load_default_model(options.model_path)   # a missing or broken model: fail at once
        # (with workers, the first ModelError stops the batch instead: see run_batch)
    pair_map = read_pairs(Path(os.path.abspath(pairs)), src) if pairs is not None else {}

    found, other = find_audio(src, exclude=dst)
    ignored = [{"path": str(p), "reason": "not an audio file extension"} for p in other]
    found_keys = {Path(os.path.abspath(p)) for p in found}
    settled: list[FileResult] = []
    for listed, ref in pair_map.items():
        if listed in found_keys:
            continue
        if not listed.exists():
            why = "listed in the pairs file but not found"
        elif listed.is_relative_to(Path(os.path.abspath(src))):
            why = "listed in the pairs file but not an audio file (by extension)"
        else:
            why = f"listed in the pairs file but not inside the input folder {src}"
        settled.append(FileResult(str(listed), "failed", str(listed), str(ref), error=why))

    candidates = []
    for p in found:
        ref = pair_map.get(Path(os.path.abspath(p)), reference)
        if ref is None:
            ignored.append({"path": str(p), "reason": "not listed in the pairs file and no --ref given"})
            continue
        rel = p.relative_to(src)
        out = dst / rel.parent / output_name(options.name, p)
        job = Job(0, str(p), str(rel), str(ref), str(out), str(default_report_path(out)),
                  input_stat=_stat_of(p))
        settings = job_settings(common, job)
        candidates.append(replace(job, settings=settings, fingerprint=settings_fingerprint(settings)))

    # two inputs must never write the same file (a.wav and a.flac with "{stem}.wav")
    claims: dict[Path, list[Job]] = {}
    for job in candidates:
        for target in {job.output, job.report}:
            claims.setdefault(Path(os.path.abspath(target)), []).append(job)
    reserved = {Path(os.path.abspath(dst / SUMMARY_JSON)), Path(os.path.abspath(dst / SUMMARY_CSV))}
    clash: dict[str, str] = {}
    for target, owners in claims.items():
        if target in reserved:
            for job in owners:
                clash[job.input] = f"its output {target} is the batch summary's name; change --name"
        elif len({j.input for j in owners}) > 1:
            names = ", ".join(j.relative for j in owners)
            for job in owners:
                clash[job.input] = (f"{names} would all be written as {target}; use a --name "
                                    "that tells them apart, e.g. '{stem}_{ext}.wav'")
    jobs: list[Job] = []
    before = _previous_failures(dst) if options.resume else {}
    for job in candidates:
        if job.input in clash:
            settled.append(FileResult(job.relative, "failed", job.input, job.reference, error=clash[job.input]))
            continue
        if not options.resume:
            jobs.append(replace(job, index=len(jobs), overwrite=options.force,
                                output_before=_stat_key(job.output)))
            continue
        prev = before.get(job.input)
        own = _own_report(job)
        complete = own is not None and Path(job.output).exists()
        stored_fp, stored = _stored_settings(own) if own is not None else (None, None)
        if complete and stored_fp == job.fingerprint and _is_fresh(job):
            settled.append(_facts_from_report(_result(job, "skipped", output=job.output, report=job.report), own))
            continue
        if prev and prev.get("settings_fingerprint") == job.fingerprint:
            settled.append(_result(job, "skipped", error=prev["error"], cause="input",
                                   note="failed in an earlier run with the same settings and "
                                        "unchanged since, so not retried"))
            continue
        there = [p for p in (job.output, job.report) if Path(p).exists()]
        if there and own is None and not options.force:
            settled.append(_result(job, "failed", error=f"{there[0]} already exists and was not written "
                                   "by afxmatch (no afxmatch report for it, or the audio is newer than "
                                   "its report); --resume keeps it: pass --force to overwrite it"))
        else:   # an earlier output of afxmatch (or, with --force, anything) is replaced
            jobs.append(replace(job, index=len(jobs), overwrite=bool(there), output_before=_stat_key(job.output),
                                redo=_redo_reason(stored, job.settings) if complete else None))
    if not jobs and not settled:
        raise AudioFileError(f"no audio files ({', '.join(audio.READ_EXTENSIONS)}) found in {src}")
    dst.mkdir(exist_ok=True)
    for job in jobs:
        Path(job.output).parent.mkdir(parents=True, exist_ok=True)
    return jobs, settled, ignored


# --------------------------------------------------------------------------- one file

_REF_CACHE: OrderedDict = OrderedDict()
_REF_LOCK = threading.Lock()


def cached_reference(path: str):
    """``(Audio, Features)`` of a reference, read and measured once per process while the
    file is unchanged (keyed by the path as given, its mtime and its size)."""
    from . import analysis

    st = os.stat(path) if os.path.exists(path) else None
    key = (str(path), st.st_mtime_ns, st.st_size) if st else None
    with _REF_LOCK:
        if key in _REF_CACHE:
            _REF_CACHE.move_to_end(key)
            return _REF_CACHE[key]
    ref = audio.load(path, "reference")
    entry = (ref, analysis.measure(ref.samples, ref.sample_rate))
    with _REF_LOCK:
        _REF_CACHE[key] = entry
        while len(_REF_CACHE) > REFERENCE_CACHE_SIZE:
            _REF_CACHE.popitem(last=False)
    return entry


def _stat_key(path: str):
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        return None


def run_job(job: Job, options: BatchOptions) -> FileResult:
    """Match one file; every error becomes a ``failed`` result. On an interrupt, an audio
    file written by this job without its report is removed before re-raising."""
    from .pipeline import match_file

    t = time.perf_counter()
    base = _result(job, "failed")
    before = (_stat_key(job.output), _stat_key(job.report))
    cause = "reference"
    try:
        ref = cached_reference(job.reference)
        cause = "other"
        match = options.match_options(job.overwrite)
        if job.fingerprint is not None:   # what the next --resume compares, in the report itself
            match.report_extra = {REPORT_BLOCK: {"settings_fingerprint": job.fingerprint,
                                                 "settings": job.settings}}
        report = match_file(job.input, job.reference, job.output, match, reference=ref)
    except AfxmatchError as err:
        if isinstance(err, AudioFileError) and cause == "other":
            cause = "input"   # match_file reads only the input: the reference came from the cache
        elif isinstance(err, ModelError):
            cause = "model"
        return replace(base, seconds=time.perf_counter() - t, error=str(err), cause=cause)
    except Exception as err:  # noqa: BLE001 - one bad file never stops the batch
        return replace(base, seconds=time.perf_counter() - t, cause=cause,
                       error=f"unexpected {type(err).__name__}: {err}")
    except BaseException:
        _remove_partial(job, before)
        raise
    return replace(base, status="ok", output=job.output, report=report["report_path"],
                   loudness_before_lufs=report["input"]["integrated_lufs"],
                   loudness_after_lufs=report["output"]["integrated_lufs"],
                   reference_lufs=report["reference"]["integrated_lufs"],
                   seconds=time.perf_counter() - t)


def _remove_partial(job: Job, before) -> None:
    """After an interrupt: an output this job wrote without writing its report goes."""
    wrote_audio = _stat_key(job.output) not in (None, before[0])
    wrote_report = _stat_key(job.report) not in (None, before[1])
    if wrote_audio and not wrote_report:
        Path(job.output).unlink(missing_ok=True)


def _sweep_temporaries(jobs: list[Job]) -> None:
    """Remove the atomic writer's temporary files (``.NAME.XXXXXXXX.part``) of these jobs'
    outputs and reports (a killed worker cannot): one listing per output folder."""
    wanted: dict[Path, set[str]] = {}
    for job in jobs:
        for target in (Path(job.output), Path(job.report)):
            wanted.setdefault(target.parent, set()).add(target.name)
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            n = entry.name
            if n.startswith(".") and n.endswith(".part") and n[1:].rsplit(".", 2)[0] in names:
                Path(entry.path).unlink(missing_ok=True)


def warm_up(options: BatchOptions, references: list[str]) -> None:
    """Import the heavy modules, load the model and measure the references once, so no
    file pays for them. Errors are left for the files to report."""
    from . import analysis, estimate, render, report  # noqa: F401

    if options.method == "model":
        try:
            from .pipeline import load_default_model
            load_default_model(options.model_path)
        except AfxmatchError:
            pass
    for ref in references[:REFERENCE_CACHE_SIZE]:
        try:
            cached_reference(ref)
        except AfxmatchError:
            pass


# --------------------------------------------------------------------------- worker processes

class _Terminated(BaseException):
    pass


_BUSY = False


def _on_worker_sigterm(signum, frame):
    if _BUSY:
        raise _Terminated()
    os._exit(128 + signum)


# a pool worker's threads: the pool is the parallelism. Read by BLAS (numpy's matrix
# products in the network) and by torch (the optimise method) when they load, so they
# are put in the workers' environment at spawn time (see _run_pool).
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _init_pool_worker(options: BatchOptions, references: list[str]) -> None:
    """Worker process initializer: one FFT thread (and one BLAS / torch thread, from
    :data:`SINGLE_THREAD_ENV`), Ctrl-C left to the parent (it stops workers with
    SIGTERM), then the warm-up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_worker_sigterm)
    from .analysis import loudness
    from .dsp import numpy_chain
    from .runtime import tune_allocator

    tune_allocator()   # spawned workers start with glibc's defaults
    loudness.FFT_WORKERS = numpy_chain.FFT_WORKERS = 1
    warm_up(options, references)


def _pool_job(job: Job, options: BatchOptions) -> FileResult:
    global _BUSY
    _BUSY = True
    try:
        return run_job(job, options)
    except _Terminated:
        os._exit(128 + signal.SIGTERM)   # run_job removed what it wrote; nothing else to do
    finally:
        _BUSY = False


def _run_in_process(jobs, options, references, emit) -> None:
    warm_up(options, references)
    for job in jobs:
        emit(job, run_job(job, options))


def _run_pool(jobs, options, references, emit) -> None:
    saved_env = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)   # inherited by the spawned workers only
    try:
        _pool_rounds(list(jobs), options, references, emit)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pool_rounds(todo, options, references, emit) -> None:
    """Run ``todo`` in a process pool; after a worker dies, a new pool retries the files it
    broke, once each."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    broke_once = set()
    while todo:
        pool = ProcessPoolExecutor(max_workers=min(options.workers, len(todo)),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_pool_worker, initargs=(options, references))
        futures = {pool.submit(_pool_job, job, options): job for job in todo}
        retry = []
        try:
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    emit(job, fut.result())
                except BrokenProcessPool:
                    if job.index in broke_once:
                        emit(job, _result(job, "failed", error="the worker process died while "
                                                               "matching it (crash or out of memory)"))
                    else:   # what the dead worker wrote for this file is this run's to replace
                        broke_once.add(job.index)
                        wrote = _stat_key(job.output) not in (None, job.output_before)
                        retry.append(replace(job, overwrite=job.overwrite or wrote))
        except BaseException:
            _stop_pool(pool, futures)
            raise
        pool.shutdown(wait=True)
        todo = sorted(retry, key=lambda j: j.index)


def _stop_pool(pool, futures) -> None:
    """Cancel what has not started and stop the workers: SIGTERM (a busy worker removes
    its partial output and exits), then SIGKILL after ``TERMINATE_WAIT_S``.

    The pool's own thread cancels the queued futures (``shutdown(cancel_futures=True)``);
    only once none is pending are the workers stopped, because Python 3.11's pool fails
    with InvalidStateError when a future cancelled by hand is then marked broken."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)   # shutdown() forgets it
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + 2.0
    while any(not (f.running() or f.done()) for f in futures) and time.monotonic() < deadline:
        time.sleep(0.01)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + TERMINATE_WAIT_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)
    # Let the pool's manager thread finish its clean-up (it closes its wake-up pipe) before
    # the interpreter exits: Python 3.11's exit hook writes to that pipe without a lock
    # and printed "OSError: [Errno 9] Bad file descriptor" when the two raced.
    if manager is not None:
        manager.join(TERMINATE_WAIT_S)


def _scheduler_name(scheduler) -> str | None:
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    return getattr(scheduler, "scheduler_info", lambda: {})().get("address") or type(scheduler).__name__


def connect_dask(scheduler):
    """A ``distributed.Client`` for an address (or the client given). One-line errors when
    Dask is not installed or the scheduler cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise BatchError("--scheduler needs Dask: pip install 'afxmatch[dask]'") from None
    if not isinstance(scheduler, str):
        return scheduler
    try:
        return Client(scheduler, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as err:
        raise BatchError(f"cannot connect to the Dask scheduler {scheduler}: {err}") from None


def _run_dask(jobs, options, references, emit) -> None:
    """Submit every job to the cluster of ``options.scheduler`` (a connected Client).
    Workers need afxmatch installed and the same paths (a shared file system)."""
    from distributed import as_completed

    client, local = options.scheduler, replace(options, scheduler=None)   # what travels
    token = f"{os.getpid()}-{time.time_ns()}"
    futures = {}
    try:
        for job in jobs:
            futures[client.submit(run_job, job, local, pure=False,
                                  key=f"afxmatch-{token}-{job.index}")] = job
        for fut in as_completed(list(futures)):
            job = futures[fut]
            try:
                emit(job, fut.result())
            except Exception as err:  # noqa: BLE001 - a lost worker (KilledWorker) fails that file only
                emit(job, _result(job, "failed", error=f"the Dask task failed: {type(err).__name__}: {err}"))
    except BaseException:
        client.cancel(list(futures))
        raise


# --------------------------------------------------------------------------- the batch

def run_batch(in_dir, out_dir, reference=None, pairs=None, options: BatchOptions | None = None,
              progress: Progress | None = None) -> BatchSummary:
    """Match every audio file below ``in_dir`` and write outputs, reports and the summary
    into ``out_dir``. Returns the :class:`BatchSummary` (its ``exit_code`` is 1 when a
    file failed). Raises :class:`AfxmatchError` when the batch cannot start, and
    :class:`BatchInterrupted` after a clean stop on Ctrl-C or SIGTERM."""
    options = options or BatchOptions()
    t0 = time.perf_counter()
    client = connect_dask(options.scheduler) if options.scheduler is not None else None
    try:
        return _run_batch(in_dir, out_dir, reference, pairs, options, progress, client, t0)
    finally:
        if client is not None and client is not options.scheduler:
            client.close()


def _run_batch(in_dir, out_dir, reference, pairs, options, progress, client, t0) -> BatchSummary:
    jobs, settled, ignored = plan_batch(in_dir, out_dir, reference, pairs, options)
    summary = BatchSummary(os.path.abspath(in_dir), os.path.abspath(out_dir), ignored=ignored)
    results: dict[int, FileResult] = {}
    total, done = len(jobs) + len(settled), 0
    say = progress or (lambda event: None)
    say(BatchEvent("planned", 0, total))

    def emit(job: Job | None, result: FileResult) -> None:
        nonlocal done
        if result.cause == "model":   # every file would fail the same way: stop the batch
            raise ModelError(result.error)
        if job is None:
            summary.results.append(result)
        else:
            results[job.index] = result
        done += 1
        say(BatchEvent("file", done, total, result))

    for r in settled:
        emit(None, r)
    references = sorted({job.reference for job in jobs})
    runner = (_run_dask if client is not None else
              _run_pool if options.workers > 1 and len(jobs) > 1 else _run_in_process)
    previous = _raise_on_sigterm()
    try:
        if jobs:
            runner(jobs, replace(options, scheduler=client), references, emit)
    except KeyboardInterrupt:
        summary.interrupted = True
    except BaseException:   # the batch cannot go on (a model error): no temporary files left
        _sweep_temporaries(jobs)
        raise
    finally:
        _restore_sigterm(previous)
    for job in jobs:
        summary.results.append(results.get(job.index) or _settle_unreported(job))
    _sweep_temporaries(jobs)   # a killed worker's leftovers, even for files redone since
    summary.results.sort(key=lambda r: r.relative)
    summary.seconds = time.perf_counter() - t0
    _write_summary(summary, options, Path(out_dir))
    if summary.interrupted:
        raise BatchInterrupted(summary)
    return summary


def _settle_unreported(job: Job) -> FileResult:
    """The result of a file that had none when the batch stopped. A worker may still have
    finished it (audio and report are each written atomically: both present, fresh and
    the report holding this job's settings means done), or died between its audio and
    its report: audio this run wrote without a report (or newer than the report there)
    is removed, so the disk and the summary agree. A pair whose report lacks this job's
    settings stays, and the next ``resume`` redoes it."""
    own = _own_report(job)
    if (own is not None and Path(job.output).exists() and _is_fresh(job)
            and _stored_settings(own)[0] == job.fingerprint):
        return _result(job, "ok", output=job.output, report=job.report,
                       note="finished while the batch was stopping")
    if own is None and _stat_key(job.output) not in (None, job.output_before):
        Path(job.output).unlink(missing_ok=True)
    return _result(job, "interrupted", error="not done: the batch was interrupted")


def _raise_on_sigterm():
    """While the batch runs, SIGTERM stops it like Ctrl-C (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _write_summary(summary: BatchSummary, options: BatchOptions, out_dir: Path) -> None:
    data = summary.to_dict(options)
    summary.summary_json, summary.summary_csv = str(out_dir / SUMMARY_JSON), str(out_dir / SUMMARY_CSV)
    audio.atomic_write_text(out_dir / SUMMARY_JSON, json.dumps(data, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in data["files"]:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
    audio.atomic_write_text(out_dir / SUMMARY_CSV, buf.getvalue())


__all__ = ["BatchOptions", "BatchSummary", "BatchEvent", "BatchInterrupted", "BatchError",
           "FileResult", "Job", "plan_batch", "run_batch", "run_job", "cached_reference"]
