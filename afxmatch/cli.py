"""Command-line interface (typer). Thin: parse options, call the pipeline, print.

``afxmatch INPUT --ref REF -o OUT`` runs the ``match`` command; other commands are
named explicitly (``afxmatch info``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from . import __version__
from .errors import AfxmatchError


class DefaultCommandGroup(TyperGroup):
    """Routes ``afxmatch FILE ...`` to the ``match`` command."""

    default_command = "match"

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=DefaultCommandGroup, add_completion=False, no_args_is_help=True,
                  help="Match an input recording to a reference: estimate a 6-band EQ + "
                       "compressor + gain, render it, and report exactly what was done.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"afxmatch {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """afxmatch: audio production style transfer with an editable effect chain."""


def fail(err: Exception) -> None:
    """One line on stderr, non-zero exit, no traceback."""
    typer.echo(f"afxmatch: error: {err}", err=True)
    raise typer.Exit(getattr(err, "exit_code", 1))


@app.command("match")
def match_cmd(
    input: Path = typer.Argument(..., help="Recording to process (WAV/FLAC/OGG/MP3, any rate, mono/stereo)."),
    ref: Path = typer.Option(..., "--ref", "-r", help="Reference recording whose style to match."),
    output: Path = typer.Option(..., "--output", "-o", help="Output audio file (.wav or .flac)."),
    method: str = typer.Option("analysis", help="Estimation method: analysis (rule-based)."),
    backend: str = typer.Option("torch", help="Renderer: torch (built-in) or pedalboard."),
    subtype: Optional[str] = typer.Option(None, help="Output sample format: PCM_16, PCM_24 "
                                          "(default), PCM_32 or FLOAT (WAV only)."),
    report: Optional[Path] = typer.Option(None, help="Report path (default: OUTPUT with .json)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing output and report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Match INPUT to the style of --ref and write the result and a JSON report."""
    from rich.console import Console

    from .pipeline import MatchOptions, match_file

    console = Console(stderr=True, quiet=quiet)
    options = MatchOptions(method=method, backend=backend, subtype=subtype, force=force,
                           report_path=str(report) if report else None)
    try:
        with console.status("starting") as status:
            result = match_file(input, ref, output, options, progress=lambda s: status.update(s))
    except AfxmatchError as err:
        fail(err)
    except KeyboardInterrupt:
        typer.echo("afxmatch: interrupted; no output written", err=True)
        raise typer.Exit(130)
    if not quiet:
        _print_summary(console, result)


def _print_summary(console, report: dict) -> None:
    from rich.table import Table

    before, after = report["style_distance"]["before"], report["style_distance"]["after"]
    table = Table(title="style distance to the reference (lower is closer)", title_justify="left")
    table.add_column("measure")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    units = {"spectral_db": "dB", "loudness_lu": "LU", "dynamics_db": "dB"}
    for key, unit in units.items():
        fmt = lambda v: "n/a" if v is None else f"{v:.2f} {unit}"  # noqa: E731
        table.add_row(key.rsplit("_", 1)[0], fmt(before[key]), fmt(after[key]))
    console.print(table)
    if report["safety"]["gain_reduced_for_peak_db"] > 0:
        console.print(f"[yellow]note:[/] output gain lowered by "
                      f"{report['safety']['gain_reduced_for_peak_db']:.1f} dB to keep peaks at "
                      f"{report['safety']['peak_ceiling_dbfs']} dBFS")
    console.print(f"wrote {report['output']['path']} and {report['report_path']} "
                  f"in {report['timings_s']['total']:.2f} s")


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("afxmatch: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    run()
