"""Apply a saved report's parameters to new files. No printing.

``load_settings(report.json)`` reads the parameters of a match (``report["parameters"]
[name]["value"]``); :func:`apply_file` renders them onto one file and
:func:`apply_folder` onto every audio file of a folder. Rendering is exactly the
pipeline's: the chain with ``out_gain_db = 0`` through the chosen backend, then the output
gain as a float32 multiply (see :func:`afxmatch.pipeline.match_arrays`), so applying a
report to the file it was made from reproduces the match's output sample for sample.

A report made with a mastering finish (``--loudness`` / ``--true-peak``, its ``finish``
block) is applied with that finish by default, through :func:`afxmatch.finish.apply_finish`
as the pipeline does: the chain with the report's output gain (no sample-peak cut), then
the finish gain and the true-peak limiter. On another file the finish aims at the same
integrated loudness as the report's (the finish gain is solved again on this file, not
reused) under the same true-peak ceiling; ``loudness`` / ``true_peak`` override either,
``finish=False`` renders the chain only. Applied to the file the report was made from, the
finish reproduces the match's output (exactly when the target was a ``--loudness`` value;
a reference-derived target is stored to 0.001 LU: the output moves by thousandths of a dB).
Reports without a ``finish`` block (older versions, or no finish asked for) render the
chain only, unless ``loudness`` / ``true_peak`` ask for a finish.

Inputs longer than the match command's streaming threshold are rendered block by block
(:func:`afxmatch.stream_pipeline.apply_streamed`: a measuring pass, then the write pass or
the streamed finish), in bounded memory and with the in-memory result.

A different sample rate changes the top of the frequency ranges: frequencies above the
new rate's top are clipped into range and a warning says so. Without a finish, if the new
file would peak above the pipeline's ceiling (-0.1 dBFS), the output gain is lowered and a
warning says by how much: outputs never clip (with a finish the limiter holds the peaks).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import audio
from .choices import BACKENDS
from .errors import AfxmatchError, AudioFileError, InvalidParameterError, OutputError
from .finish import TRUE_PEAK_RANGE_DBTP, FinishSpec, apply_finish, check_options, finish_spec
from .params import ParamSpace

REPORT_SCHEMA = "afxmatch.report/1"


class SettingsError(AfxmatchError):
    """A settings (report) file is missing, unreadable or not an afxmatch report."""


@dataclass
class Settings:
    """Parameters read from a report, with the sample rate they were estimated at."""

    params: dict[str, float]
    sample_rate: float
    backend: str
    path: Path | None = None
    report: dict = field(default_factory=dict)
    finish: FinishSpec | None = None   # the report's mastering finish; None: none recorded


@dataclass
class ApplyResult:
    input: Path
    output: Path
    sample_rate: int
    params: dict[str, float]
    peak_dbfs: float
    safety_gain_db: float = 0.0
    warnings: list[str] = field(default_factory=list)
    # the finish applied (afxmatch.finish.apply_finish's report: target, ceiling and where
    # each came from, output_lufs, output_true_peak_dbtp, gain, limiter); None: chain only
    finish: dict | None = None


def load_settings(path: str | os.PathLike) -> Settings:
    """Read and check an afxmatch report; every failure is a :class:`SettingsError`."""
    p = Path(path)
    if not p.exists():
        raise SettingsError(f"settings file not found: {p}")
    if p.is_dir():
        raise SettingsError(f"settings {p} is a folder; give an afxmatch report (.json)")
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"cannot read settings {p}: {err}") from None
    except json.JSONDecodeError as err:
        raise SettingsError(f"settings {p} is not JSON (line {err.lineno}: {err.msg}); "
                            "give the .json report written by afxmatch") from None
    return settings_from_report(report, p)


def settings_from_report(report: dict, path: Path | None = None) -> Settings:
    where = str(path) if path else "report"
    if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise SettingsError(f"{where} is not an afxmatch report (schema {found!r}, expected "
                            f"{REPORT_SCHEMA!r})")
    try:
        sample_rate = float(report["param_space"]["sample_rate"])
        block = report["parameters"]
        params = {name: float(entry["value"]) for name, entry in block.items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise SettingsError(f"{where}: parameters block is missing or malformed "
                            "(expected parameters.<name>.value numbers)") from None
    space = ParamSpace(sample_rate)
    missing = [n for n in space.names if n not in params]
    if missing:
        raise SettingsError(f"{where}: parameters missing: {', '.join(missing)}")
    try:
        params = space.validate(params)
    except InvalidParameterError as err:
        raise SettingsError(f"{where}: {err}") from None
    backend = report.get("backend") if report.get("backend") in BACKENDS else "torch"
    return Settings(params, sample_rate, backend, path, report, recorded_finish(report, where))


def recorded_finish(report: dict, where: str = "report") -> FinishSpec | None:
    """The report's mastering finish (its ``finish`` block's target and ceiling), or None
    when it has none (no finish asked for, or a report older than the finish)."""
    block = report.get("finish")
    if block is None:
        return None
    bad = SettingsError(f"{where}: finish block is malformed (expected finish.target_lufs a "
                        f"number and finish.ceiling_dbtp from {TRUE_PEAK_RANGE_DBTP[0]:g} to "
                        f"{TRUE_PEAK_RANGE_DBTP[1]:g})")
    if not isinstance(block, dict):
        raise bad
    target, ceiling = block.get("target_lufs"), block.get("ceiling_dbtp")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for v in (target, ceiling))
    if not numbers or not TRUE_PEAK_RANGE_DBTP[0] <= ceiling <= TRUE_PEAK_RANGE_DBTP[1]:
        raise bad
    return FinishSpec(float(target), float(ceiling), "report", "report")


def check_finish_options(loudness: float | None, true_peak: float | None, finish: bool) -> None:
    """``--loudness`` / ``--true-peak`` as the match command checks them; neither goes
    with ``--no-finish``."""
    check_options(1.0, loudness, true_peak)
    if not finish and (loudness is not None or true_peak is not None):
        raise InvalidParameterError("--no-finish renders the chain only; it cannot be combined "
                                    "with --loudness or --true-peak")


def wants_finish(settings: Settings, loudness: float | None = None, true_peak: float | None = None,
                 finish: bool = True) -> bool:
    """Whether a file gets a finish: the report has one or an option asks for one, and
    ``finish`` (not ``--no-finish``)."""
    return finish and (settings.finish is not None or loudness is not None or true_peak is not None)


def finish_for_file(settings: Settings, chain_lufs: float, loudness: float | None = None,
                    true_peak: float | None = None, finish: bool = True) -> FinishSpec | None:
    """The finish to apply to one file, or None for the chain only.

    The target is ``loudness``, else the report's target (the same integrated loudness on
    every file), else ``chain_lufs`` (what the report's output gain gives this file); the
    ceiling is ``true_peak``, else the report's, else the finish's default. Each ``*_source``
    says which.
    """
    if not wants_finish(settings, loudness, true_peak, finish):
        return None
    rec = settings.finish
    target = loudness if loudness is not None else rec.target_lufs if rec is not None else None
    ceiling = true_peak if true_peak is not None else rec.ceiling_dbtp if rec is not None else None
    spec = finish_spec(target, ceiling, chain_lufs)
    t_src = "--loudness" if loudness is not None else "report" if rec is not None else \
        "this file's chain output"
    c_src = "--true-peak" if true_peak is not None else "report" if rec is not None else spec.ceiling_source
    return replace(spec, target_source=t_src, ceiling_source=c_src)


def params_for_rate(settings: Settings, sample_rate: float) -> tuple[dict[str, float], list[str]]:
    """The settings' parameters valid at ``sample_rate``: frequencies above that rate's
    range are clipped into it (with a warning each); everything else is unchanged."""
    space = ParamSpace(sample_rate)
    params, warnings = dict(settings.params), []
    for name, value in settings.params.items():
        spec = space[name]
        tol = 1e-6 * spec.max   # JSON round trips of a value at a bound are not out of range
        if name.endswith("_freq_hz") and not (spec.min - tol <= value <= spec.max + tol):
            clipped = min(max(value, spec.min), spec.max)
            warnings.append(f"{name} {value:.1f} Hz is outside {spec.min:g}-{spec.max:g} Hz at "
                            f"{sample_rate:g} Hz; clipped to {clipped:.1f} Hz")
            params[name] = clipped
    return space.validate(params, clip=True), warnings


def render_settings(samples: np.ndarray, sample_rate: int, params: dict[str, float],
                    backend: str) -> tuple[np.ndarray, float]:
    """Render exactly as :func:`afxmatch.pipeline.match_arrays` does: chain with output
    gain 0, then the output gain as the last stage (a float32 multiply). The gain is
    lowered where needed so the sample peak stays at the pipeline's ceiling.

    Returns ``(output, safety_gain_db)`` (the dB by which the gain was lowered, >= 0).
    """
    from .analysis.features import sample_peak_db
    from .render import render

    gain = float(params["out_gain_db"])
    rendered = render(samples, sample_rate, {**params, "out_gain_db": 0.0}, backend)
    out = rendered * np.float32(10 ** (gain / 20))
    safety = peak_cut_db(sample_peak_db(out) if out.size else -math.inf)
    if safety > 0:
        out = rendered * np.float32(10 ** ((gain - safety) / 20))
    return out, safety


def peak_cut_db(peak_db: float) -> float:
    """How far (dB, >= 0) apply lowers the output gain so a sample peak of ``peak_db``
    stays at the pipeline's ceiling. 1e-5 over it is float32 rounding of the pipeline's
    own gain, not an overshoot."""
    from .params import PEAK_CEILING_DB

    if not peak_db > PEAK_CEILING_DB + 20 * math.log10(1 + 1e-5):
        return 0.0
    return peak_db - PEAK_CEILING_DB + 1e-6


def render_finished(samples: np.ndarray, sample_rate: int, params: dict[str, float], backend: str,
                    settings: Settings, loudness: float | None = None, true_peak: float | None = None,
                    finish: bool = True) -> tuple[np.ndarray, float, dict | None]:
    """Render ``params`` and, where :func:`finish_for_file` gives a finish, apply it as
    :func:`afxmatch.pipeline.match_arrays` does: the chain with output gain 0, the output
    gain (a float32 multiply, no sample-peak cut: the limiter holds the peaks), then
    :func:`afxmatch.finish.apply_finish`. Without a finish this is :func:`render_settings`.

    Returns ``(output, safety_gain_db, finish_report)``; ``finish_report`` None: chain only.
    """
    if not wants_finish(settings, loudness, true_peak, finish):
        return (*render_settings(samples, sample_rate, params, backend), None)
    from .analysis.loudness import integrated_loudness
    from .render import render

    gain = float(params["out_gain_db"])
    rendered = render(samples, sample_rate, {**params, "out_gain_db": 0.0}, backend)
    rendered_lufs = integrated_loudness(rendered, sample_rate) + gain
    spec = finish_for_file(settings, rendered_lufs, loudness, true_peak, finish)
    out, _, report = apply_finish(rendered * np.float32(10 ** (gain / 20)), sample_rate, spec,
                                  rendered_lufs)
    return out, 0.0, report


def apply_file(settings: Settings, input_path, output_path, backend: str | None = None,
               subtype: str | None = None, force: bool = False, *, loudness: float | None = None,
               true_peak: float | None = None, finish: bool = True,
               stream_above_s: float | None = None) -> ApplyResult:
    """Render ``settings`` onto ``input_path`` and write ``output_path`` atomically.

    The report's finish is applied unless ``finish`` is False; ``loudness`` (LUFS) and
    ``true_peak`` (dBTP) override its target and ceiling (or ask for a finish when the
    report has none), with the match command's ranges. An input longer than
    ``stream_above_s`` channel-seconds (default: the match command's threshold) is
    rendered block by block in bounded memory, with the same result
    (:func:`afxmatch.stream_pipeline.apply_streamed`; not with the VST3 backend).
    """
    backend = backend or settings.backend
    if backend not in BACKENDS:
        raise InvalidParameterError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    check_finish_options(loudness, true_peak, finish)
    out, fmt, subtype = audio.check_output(output_path, [input_path], force, subtype)
    if settings.path is not None and Path(settings.path).resolve() == out.resolve():
        raise OutputError(f"output {out} is the settings file; choose another output path")
    from .stream_pipeline import STREAM_ABOVE_CHANNEL_S, STREAMED_BACKENDS, apply_streamed

    info = audio.info(input_path, "input")
    threshold = STREAM_ABOVE_CHANNEL_S if stream_above_s is None else float(stream_above_s)
    streamed = backend in STREAMED_BACKENDS and info.duration_s * info.channels > threshold
    if streamed:
        rate = info.sample_rate
        params, warnings = params_for_rate(settings, rate)
        peak_db, safety, fin = apply_streamed(
            info, params, backend, out, fmt, subtype,
            lambda chain_lufs: finish_for_file(settings, 0.0 if chain_lufs is None else chain_lufs,
                                               loudness, true_peak, finish))
    else:
        inp = audio.load(input_path, "input")
        rate = inp.sample_rate
        params, warnings = params_for_rate(settings, rate)
        y, safety, fin = render_finished(inp.samples, rate, params, backend, settings,
                                         loudness, true_peak, finish)
        from .analysis.features import sample_peak_db

        peak_db = sample_peak_db(y)
    if safety > 0:
        warnings.append(f"output gain lowered by {safety:.2f} dB so the peak stays at "
                        f"-0.1 dBFS (this file is louder than the one the settings came from)")
    if fin is not None and not fin["target_reached"]:
        warnings.append(f"finish: target {fin['target_lufs']:g} LUFS not reached "
                        f"(output {fin['output_lufs']} LUFS): {fin['note']}")
    if not streamed:
        audio.save(out, y, rate, fmt, subtype)
    return ApplyResult(Path(input_path), out, rate, params, peak_db, safety, warnings, fin)


@dataclass
class FolderResult:
    done: list[ApplyResult] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)   # not audio (by extension)


def folder_output_name(path: Path) -> str:
    """Keep the name; inputs that cannot be written as-is (OGG, MP3, AIFF...) become .wav."""
    return path.name if path.suffix.lower() in audio.WRITE_FORMATS else path.stem + ".wav"


def apply_folder(settings: Settings, input_dir, output_dir, backend: str | None = None,
                 subtype: str | None = None, force: bool = False,
                 progress=None, *, loudness: float | None = None, true_peak: float | None = None,
                 finish: bool = True) -> FolderResult:
    """Apply to every audio file directly in ``input_dir``; outputs keep their names in
    ``output_dir`` (created if missing). One bad file does not stop the others.
    ``loudness`` / ``true_peak`` / ``finish``: as :func:`apply_file`, for every file."""
    check_finish_options(loudness, true_peak, finish)
    src, dst = Path(input_dir), Path(output_dir)
    if not src.is_dir():
        raise AudioFileError(f"input folder not found: {src}")
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"output {dst} is a file; give a folder for a folder input")
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"output folder {dst} is the input folder; choose another "
                          "(inputs are never overwritten)")
    if not dst.parent.exists():
        raise OutputError(f"output folder's parent {dst.parent} does not exist")
    files = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
    result = FolderResult()
    audio_files = [p for p in files if p.suffix.lower() in audio.READ_EXTENSIONS]
    result.skipped = [p for p in files if p.suffix.lower() not in audio.READ_EXTENSIONS]
    if not audio_files:
        raise AudioFileError(f"no audio files ({', '.join(audio.READ_EXTENSIONS)}) in {src}")
    names = [folder_output_name(p) for p in audio_files]
    clashes = {n for n in names if names.count(n) > 1}
    dst.mkdir(exist_ok=True)
    for path, name in zip(audio_files, names):
        if progress:
            progress(path.name)
        if name in clashes:
            result.failed.append((path, f"two inputs would both be written as {name}"))
            continue
        try:
            result.done.append(apply_file(settings, path, dst / name, backend, subtype, force,
                                          loudness=loudness, true_peak=true_peak, finish=finish))
        except AfxmatchError as err:
            result.failed.append((path, str(err)))
    return result
