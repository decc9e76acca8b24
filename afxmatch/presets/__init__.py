"""Presets: the report's effect chain in formats other tools load. No printing.

- ``apo``: Equalizer APO ``ParametricEQ.txt`` (EQ only; see :mod:`.apo`).
- ``easyeffects``: an EasyEffects 7.2 output preset, equalizer in "APO (DR)" mode +
  compressor (see :mod:`.easyeffects`).
- ``vstpreset``: ZamEQ2 VST3 presets, two instances in series (see :mod:`.zam`); needs
  zam-plugins (``scripts/install_zam_plugins.sh``).

``export(settings, fmt, path, force)`` writes the files atomically and returns an
:class:`ExportResult` naming them, with notes on what could not be represented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import audio
from ..errors import AfxmatchError, OutputError

FORMATS = ("apo", "easyeffects", "vstpreset")
# File name suffixes used beside a match's output (OUT.wav -> OUT.apo.txt, ...).
MATCH_SUFFIXES = {"apo": ".apo.txt", "easyeffects": ".easyeffects.json", "vstpreset": ".vstpreset"}


class PresetError(AfxmatchError):
    """A preset cannot be made (unknown format, plugin missing, plugin failure)."""


@dataclass
class ExportResult:
    format: str
    files: list[Path]
    notes: list[str] = field(default_factory=list)
    max_error_db: float | None = None   # vstpreset: rendered vs report EQ, worst case


def output_paths(fmt: str, path) -> list[Path]:
    """The files a format writes for ``-o path``: one, or for ``vstpreset`` one per
    ZamEQ2 instance (``NAME.ZamEQ2-1.vstpreset``, ``NAME.ZamEQ2-2.vstpreset``)."""
    p = Path(path)
    if fmt == "vstpreset":
        from .zam import N_INSTANCES
        stem = p.name[: -len(".vstpreset")] if p.name.lower().endswith(".vstpreset") else p.name
        return [p.with_name(f"{stem}.ZamEQ2-{i + 1}.vstpreset") for i in range(N_INSTANCES)]
    return [p]


def check_format(fmt: str) -> str:
    fmt = (fmt or "").lower()
    if fmt not in FORMATS:
        raise PresetError(f"unknown preset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def check_paths(paths: list[Path], force: bool, protected=()) -> None:
    for p in paths:
        audio.check_writable(p, "preset", force, protected)


def export(settings, fmt: str, path, force: bool = False, protected=()) -> ExportResult:
    """Write ``settings`` (:class:`afxmatch.apply.Settings`) as ``fmt`` at ``path``."""
    from .. import audio

    fmt = check_format(fmt)
    paths = output_paths(fmt, path)
    check_paths(paths, force, protected)
    if fmt == "apo":
        from .apo import apo_text
        text, notes = apo_text(settings)
        audio.atomic_write_text(paths[0], text)
        return ExportResult(fmt, paths, notes)
    if fmt == "easyeffects":
        from .easyeffects import easyeffects_json
        text, notes = easyeffects_json(settings)
        audio.atomic_write_text(paths[0], text)
        return ExportResult(fmt, paths, notes)
    from .zam import zameq2_presets
    blobs, notes, err = zameq2_presets(settings)
    written = []
    try:
        for p, blob in zip(paths, blobs):
            audio.atomic_write_bytes(p, lambda tmp, b=blob: Path(tmp).write_bytes(b))
            written.append(p)
    except OSError as e:
        for p in written:   # only files this call created
            p.unlink(missing_ok=True)
        raise OutputError(f"cannot write preset {p}: {e.strerror}") from None
    return ExportResult(fmt, paths, notes, err)


def match_preset_path(fmt: str, out_path) -> Path:
    """Where ``--preset FMT`` of the match command writes: ``OUT.apo.txt``,
    ``OUT.easyeffects.json``, ``OUT.ZamEQ2-1.vstpreset`` + ``OUT.ZamEQ2-2.vstpreset``."""
    out = Path(out_path)
    return out.with_name(out.stem + MATCH_SUFFIXES[fmt])


def check_match_extras(options, out_path, report_path, inputs) -> None:
    """Fail before any work when ``--preset``/``--plot`` cannot be written."""
    protected = [out_path, report_path, *inputs]
    if options.preset:
        fmt = check_format(options.preset)
        if fmt == "vstpreset":
            from .zam import load_zameq2
            load_zameq2()
        check_paths(output_paths(fmt, match_preset_path(fmt, out_path)), options.force, protected)
    if options.plot_path:
        from ..plots import check_plot_path, require_matplotlib
        require_matplotlib()
        check_plot_path(options.plot_path, options.force, protected)


def write_match_extras(options, out_path, report: dict, result) -> list[str]:
    """Write the preset and/or plot of a finished match; returns the paths written.

    The audio and report are already written and are kept if this fails; the error
    says so."""
    from ..apply import settings_from_report

    written: list[str] = []
    try:
        if options.preset:
            settings = settings_from_report(report, Path(report["report_path"]))
            res = export(settings, options.preset, match_preset_path(check_format(options.preset), out_path),
                         force=options.force)
            written += [str(p) for p in res.files]
        if options.plot_path:
            from ..plots import plot_match
            plot_match(options.plot_path, result.params, report["input"]["sample_rate"],
                       result.features, force=options.force)
            written.append(str(options.plot_path))
    except AfxmatchError as err:
        raise OutputError(f"{err} (the output {out_path} and its report were written)") from None
    return written
