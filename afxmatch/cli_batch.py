"""The ``batch`` command (registered on :data:`afxmatch.cli.app`). Thin: options in, a
progress bar and a summary table out; the work is :func:`afxmatch.batch.run_batch`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .choices import DEFAULT_METHOD
from .cli import AMOUNT_OPTION, LOUDNESS_OPTION, TRUE_PEAK_OPTION, app, fail
from .errors import AfxmatchError

STATUS_STYLE = {"ok": "green", "failed": "red", "skipped": "dim", "interrupted": "yellow",
                "redone": "cyan"}


def _lufs(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


@app.command("batch")
def batch_cmd(
    in_dir: Path = typer.Argument(..., help="Folder of recordings; searched recursively for "
                                  "audio files (.wav .flac .ogg .mp3 .aif(f) ...)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (created if missing); "
                                "keeps the input's sub-folders."),
    ref: Optional[Path] = typer.Option(None, "--ref", "-r", help="Reference for every file."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="CSV with columns input,reference: a "
                                         "reference per file (inputs relative to IN_DIR, references "
                                         "relative to the CSV's folder). With --ref, files not "
                                         "listed use --ref; without, they are ignored."),
    name: str = typer.Option("{stem}.wav", "--name", help="Output name template: {stem}, {ext}, "
                             "{parent}; its extension (.wav/.flac) sets the format."),
    method: str = typer.Option(DEFAULT_METHOD, help="Estimation method: model or analysis."),
    model: Optional[Path] = typer.Option(None, help="Model folder for --method model."),
    backend: Optional[str] = typer.Option(None, help="Renderer: torch (built-in, the default) "
                                          "or pedalboard (vst3 for --method blackbox)."),
    subtype: Optional[str] = typer.Option(None, help="Output sample format: PCM_16, PCM_24 "
                                          "(default), PCM_32 or FLOAT (WAV only)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs and reports."),
    resume: bool = typer.Option(False, "--resume", help="Skip files whose output and report exist, "
                                "are newer than the input and reference and were made with the "
                                "same settings (reference, method, model, amount, loudness, "
                                "format...), and files that could not be read last run and are "
                                "unchanged; redo the rest, replacing afxmatch's earlier outputs."),
    workers: int = typer.Option(1, "--workers", "-j", help="Worker processes on this machine."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run on a Dask cluster at "
                                            "this address (tcp://host:8786); needs Dask "
                                            "(the dask extra of afxmatch)."),
    amount: float = AMOUNT_OPTION,
    loudness: Optional[float] = LOUDNESS_OPTION,
    true_peak: Optional[float] = TRUE_PEAK_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only failures."),
) -> None:
    """Match every audio file in IN_DIR to a reference; write outputs, reports and
    summary.json / summary.csv into OUTPUT. Exit code 1 if any file failed."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    from .batch import BatchInterrupted, BatchOptions, run_batch

    console = Console(stderr=True)
    options = BatchOptions(name=name, method=method, backend=backend, subtype=subtype, force=force,
                           resume=resume, workers=workers, model_path=str(model) if model else None,
                           scheduler=scheduler, amount=amount, loudness=loudness, true_peak=true_peak)
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                   TimeRemainingColumn(), console=console, disable=quiet, transient=True)
    task = bar.add_task("planning", total=None)

    def on_event(event) -> None:
        if event.kind == "planned":   # the bar appears once the batch can run
            bar.update(task, total=event.total, description="matching")
            bar.start()
            return
        r = event.result
        bar.update(task, completed=event.done, description=r.relative)
        if r.status == "failed" or r.error:
            why = f"{r.error} ({r.note})" if r.note else r.error
            bar.console.print(f"[{STATUS_STYLE[r.status]}]{r.status:<7}[/] {escape(r.relative)}: {escape(why)}",
                              markup=True, highlight=False, soft_wrap=True)
        elif not quiet:
            label = "redone" if r.status == "ok" and r.redo else r.status
            extra = (f"{_lufs(r.loudness_before_lufs)} -> {_lufs(r.loudness_after_lufs)} LUFS"
                     if r.status in ("ok", "skipped") else "")
            if label == "redone":
                extra += f" ({r.redo})"
            bar.console.print(f"[{STATUS_STYLE[label]}]{label:<7}[/] {escape(r.relative)}  {escape(extra)}",
                              markup=True, highlight=False, soft_wrap=True)

    try:
        try:
            summary = run_batch(in_dir, output, ref, pairs, options, progress=on_event)
        finally:
            bar.stop()
    except AfxmatchError as err:
        fail(err)
    except BatchInterrupted as stop:
        s = stop.summary
        typer.echo(f"afxmatch: interrupted; {s.count('ok')} file(s) done, {s.count('interrupted')} not "
                   f"done, no partial outputs; summary in {s.summary_json}", err=True)
        raise typer.Exit(130)
    _print_table(console, summary, quiet)
    if summary.failed:
        typer.echo(f"afxmatch: {len(summary.failed)} of {len(summary.results)} file(s) failed: "
                   + ", ".join(r.relative for r in summary.failed), err=True)
    if summary.failed_before:
        typer.echo(f"afxmatch: {len(summary.failed_before)} file(s) failed in an earlier run and "
                   "were not retried (same settings, input unchanged): "
                   + ", ".join(r.relative for r in summary.failed_before), err=True)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _print_table(console, summary, quiet: bool) -> None:
    from rich.table import Table

    if quiet:
        return
    table = Table(title=f"batch summary ({summary.seconds:.1f} s)", title_justify="left")
    for col, just in (("status", "left"), ("files", "right")):
        table.add_column(col, justify=just)
    for status in ("ok", "skipped", "failed"):
        table.add_row(f"[{STATUS_STYLE[status]}]{status}[/]", str(summary.count(status)))
        if status == "ok" and summary.redone:
            table.add_row(f"  [{STATUS_STYLE['redone']}]of which redone[/] (out of date)",
                          str(len(summary.redone)))
    table.add_row("ignored (not audio)", str(len(summary.ignored)))
    console.print(table)
    console.print(f"summary: {summary.summary_json} and {summary.summary_csv}", highlight=False)
