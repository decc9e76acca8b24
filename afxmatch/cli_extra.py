"""The ``export`` and ``apply`` commands (registered on :data:`afxmatch.cli.app`). Thin."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import app, fail
from .errors import AfxmatchError


@app.command("export")
def export_cmd(
    report: Path = typer.Argument(..., help="A report (.json) written by afxmatch."),
    format: str = typer.Option(..., "--format", help="apo (Equalizer APO ParametricEQ.txt), "
                               "easyeffects (EasyEffects 7.2 preset .json) or vstpreset "
                               "(ZamEQ2 VST3 presets, two files NAME.ZamEQ2-1/-2.vstpreset)."),
    output: Path = typer.Option(..., "--output", "-o", help="Preset file to write."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing preset files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Write a report's effect chain as a preset for another tool."""
    from .apply import load_settings
    from .presets import export

    try:
        settings = load_settings(report)
        result = export(settings, format, output, force=force, protected=[report])
    except AfxmatchError as err:
        fail(err)
    if not quiet:
        for note in result.notes:
            typer.echo(f"note: {note}", err=True)
        for path in result.files:
            typer.echo(f"wrote {path}", err=True)


@app.command("apply")
def apply_cmd(
    settings: Path = typer.Argument(..., help="A report (.json) written by afxmatch."),
    input: Path = typer.Argument(..., help="Audio file, or a folder of audio files."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file (.wav/.flac), or a folder "
                                "when INPUT is a folder (names are kept)."),
    backend: Optional[str] = typer.Option(None, help="Renderer: torch or pedalboard "
                                          "(default: the report's)."),
    subtype: Optional[str] = typer.Option(None, help="Output sample format: PCM_16, PCM_24 "
                                          "(default), PCM_32 or FLOAT (WAV only)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
    loudness: Optional[float] = typer.Option(None, "--loudness", help="Mastering finish: integrated "
                                             "loudness target in LUFS (-70..0, e.g. -14) instead of "
                                             "the report's (default: the report's finish, if any; "
                                             "ceiling -1 dBTP when the report has none)."),
    true_peak: Optional[float] = typer.Option(None, "--true-peak", help="Mastering finish: true-peak "
                                              "ceiling in dBTP (-30..0, e.g. -1) instead of the "
                                              "report's, held by a look-ahead limiter (4x oversampled)."),
    no_finish: bool = typer.Option(False, "--no-finish", help="Render the chain only, without the "
                                   "report's mastering finish (loudness target, true-peak limiter)."),
) -> None:
    """Render a saved report's parameters onto new files, with its mastering finish if it has one."""
    from .apply import apply_file, apply_folder, load_settings

    def say(msg: str) -> None:
        if not quiet:
            typer.echo(msg, err=True)

    def done(r) -> None:
        for w in r.warnings:
            typer.echo(f"afxmatch: warning: {r.input}: {w}", err=True)
        if r.finish is not None:
            f = r.finish
            say(f"finish: {f['output_lufs']} LUFS (target {f['target_lufs']:g}, {f['target_source']}), "
                f"true peak {f['output_true_peak_dbtp']} dBTP (ceiling {f['ceiling_dbtp']:g}, "
                f"{f['ceiling_source']}), limiter max {max(0.0, f['limiter']['max_gain_reduction_db']):.1f} dB")
        say(f"wrote {r.output}")

    finish = dict(loudness=loudness, true_peak=true_peak, finish=not no_finish)
    try:
        s = load_settings(settings)
        if input.is_dir():
            res = apply_folder(s, input, output, backend, subtype, force, **finish)
        else:
            done(apply_file(s, input, output, backend, subtype, force, **finish))
            return
    except AfxmatchError as err:
        fail(err)
    for r in res.done:
        done(r)
    if res.skipped:
        say(f"skipped {len(res.skipped)} non-audio file(s): {', '.join(p.name for p in res.skipped)}")
    for path, why in res.failed:
        typer.echo(f"afxmatch: error: {path}: {why}", err=True)
    if res.failed:
        typer.echo(f"afxmatch: {len(res.failed)} of {len(res.failed) + len(res.done)} file(s) failed",
                   err=True)
        raise typer.Exit(1)
