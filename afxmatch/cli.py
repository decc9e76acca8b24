"""Command-line interface (typer). Thin: parse options, call the pipeline, print.

``afxmatch INPUT --ref REF -o OUT`` runs the ``match`` command; other commands are
named explicitly (``afxmatch info``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from . import __version__
from .choices import DEFAULT_METHOD
from .errors import AfxmatchError, InvalidParameterError


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


# shared by the match and batch commands (batch applies them to every file)
AMOUNT_OPTION = typer.Option(1.0, "--amount", help="How much of the match to apply: 0 = input "
                             "unchanged, 1 = full match (EQ gains, compression and gain scale between).")
LOUDNESS_OPTION = typer.Option(None, "--loudness", help="Mastering finish: integrated loudness target "
                               "in LUFS (-70..0, e.g. -14) instead of the reference's; implies "
                               "--true-peak -1 if not given.")
TRUE_PEAK_OPTION = typer.Option(None, "--true-peak", help="Mastering finish: true-peak ceiling in dBTP "
                                "(<= 0, e.g. -1), held by a look-ahead limiter (4x oversampled).")


def fail(err: Exception) -> None:
    """One line on stderr, non-zero exit, no traceback."""
    typer.echo(f"afxmatch: error: {err}", err=True)
    raise typer.Exit(getattr(err, "exit_code", 1))


@app.command("match")
def match_cmd(
    input: Path = typer.Argument(..., help="Recording to process (WAV/FLAC/OGG/MP3, any rate, mono/stereo)."),
    ref: List[Path] = typer.Option(..., "--ref", "-r", help="Reference recording whose style to "
                                   "match; repeat it to match the common style of several."),
    output: Path = typer.Option(..., "--output", "-o", help="Output audio file (.wav or .flac)."),
    method: str = typer.Option(DEFAULT_METHOD, help="Estimation method: model (trained network, "
                               "default), analysis (rule-based, no model), optimise (the model's "
                               "estimate refined by gradient steps against the reference's "
                               "style: EQ and compressor, or the compressor alone) or blackbox "
                               "(CMA-ES search through the VST3 plugins; renders with --backend vst3)."),
    model: Optional[Path] = typer.Option(None, help="Model folder for --method model "
                                         "(default: the shipped model, or $AFXMATCH_MODEL)."),
    backend: Optional[str] = typer.Option(None, help="Renderer: torch (built-in, the default), "
                                          "pedalboard or vst3 (ZamEQ2 + ZamComp plugins; needs "
                                          "zam-plugins; the default for --method blackbox)."),
    steps: Optional[int] = typer.Option(None, help="Search limit of a searching method "
                                        "(--method blackbox: plugin evaluations, default 200; "
                                        "--method optimise: gradient steps per stage, default 40)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Time limit in "
                                                "seconds of a searching method's search "
                                                "(--method blackbox: default 40; --method "
                                                "optimise: default 18, both stages)."),
    subtype: Optional[str] = typer.Option(None, help="Output sample format: PCM_16, PCM_24 "
                                          "(default), PCM_32 or FLOAT (WAV only)."),
    report: Optional[Path] = typer.Option(None, help="Report path (default: OUTPUT with .json)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing output and report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
    preset: Optional[str] = typer.Option(None, help="Also write a preset beside OUTPUT: apo "
                                         "(OUT.apo.txt), easyeffects (OUT.easyeffects.json) or "
                                         "vstpreset (OUT.ZamEQ2-1/-2.vstpreset)."),
    plot: Optional[Path] = typer.Option(None, help="Also write a PNG figure (EQ, compressor, "
                                        "spectra); needs afxmatch\\[plot]."),
    amount: float = AMOUNT_OPTION,
    loudness: Optional[float] = LOUDNESS_OPTION,
    true_peak: Optional[float] = TRUE_PEAK_OPTION,
) -> None:
    """Match INPUT to the style of --ref and write the result and a JSON report."""
    from rich.console import Console

    from .pipeline import MatchOptions, match_file

    console = Console(stderr=True, quiet=quiet)
    options = MatchOptions(method=method, backend=backend, subtype=subtype, force=force,
                           report_path=str(report) if report else None,
                           model_path=str(model) if model else None,
                           preset=preset, plot_path=str(plot) if plot else None,
                           amount=amount, loudness=loudness, true_peak=true_peak,
                           steps=steps, time_budget=time_budget)
    try:
        with console.status("starting") as status:
            result = match_file(input, ref if len(ref) > 1 else ref[0], output, options,
                                progress=lambda s: status.update(s))
    except AfxmatchError as err:
        fail(err)
    except KeyboardInterrupt:
        typer.echo("afxmatch: interrupted; no output written", err=True)
        raise typer.Exit(130)
    if not quiet:
        _print_summary(console, result)
    global _EXIT_NOW
    _EXIT_NOW = True


@app.command("train")
def train_cmd(
    data: Path = typer.Option(..., help="Corpus folder made by scripts/make_corpus.py (has manifest.json)."),
    out: Path = typer.Option(..., help="Output model folder, e.g. models/default."),
    bank: Optional[Path] = typer.Option(None, help="Pair bank folder (default: DATA/bank); built "
                                        "first when absent (synthetic pairs + analysis priors)."),
    bank_pairs: int = typer.Option(2400, help="Training pairs in the bank."),
    valid_pairs: int = typer.Option(64, help="Validation pairs in the bank (from held-out files)."),
    prior_starts: int = typer.Option(1, min=1, help="EQ-fit starts of the bank's analysis priors "
                                     "(the shipped model's: 1; in use it is given the 4-start fit)."),
    steps: int = typer.Option(1600, help="Optimiser steps (cosine learning-rate schedule)."),
    batch_size: int = typer.Option(16, help="Pairs per step."),
    length: int = typer.Option(131072, help="Samples per training excerpt at 44.1 kHz."),
    lr: float = typer.Option(5e-4, help="Peak learning rate."),
    loss: str = typer.Option("sc+log", help="Training loss: sc+log (spectral convergence + log "
                             "magnitude, FFT 512-8192; the shipped model's) or lin+log (the "
                             "benchmark's MR-STFT: linear + log magnitude, FFT 32-32768, hop 50 %) or "
                             "sc+log+lts (sc+log plus the long-term spectrum in 1/6-octave bands)."),
    time_budget: Optional[float] = typer.Option(3000.0, help="Stop cleanly after this many "
                                                "seconds of training (over resumed runs)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    workers: int = typer.Option(2, help="Processes that build the pair bank."),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(True, help="Continue from OUT/checkpoint.pt when present."),
) -> None:
    """Train the matching network (refines the analysis estimate) on synthetic style pairs.

    Builds the pair bank when absent (DeepAFx-ST protocol, analysis priors), then trains
    through the differentiable chain, keeping the best weights on validation.
    """
    import json as _json

    from .model import bank as pair_bank
    from .model.train import train

    if not (data / "manifest.json").is_file():
        fail(AfxmatchError(f"corpus {data} has no manifest.json; build one with "
                           "python scripts/make_corpus.py --out DIR --install"))
    from .model.losses import TERMS

    if loss not in TERMS:
        fail(InvalidParameterError(f"--loss must be one of {', '.join(TERMS)}, got {loss!r}"))
    bank = bank or data / "bank"
    echo = lambda rec: typer.echo(_json.dumps(rec), err=True)  # noqa: E731
    for split, n, split_seed in (("valid", valid_pairs, seed + 2), ("train", bank_pairs, seed + 1)):
        if not (bank / f"{split}_bank.json").is_file():
            echo(pair_bank.build(data, bank, split, n, split_seed, length, workers=workers, progress=echo,
                                 prior_starts=prior_starts))
    try:
        cfg = train(data, out, steps=steps, batch_size=batch_size, length=length, lr=lr,
                    device=device, seed=seed, resume=resume, time_budget_s=time_budget,
                    log_every=10, ckpt_every=50, valid_every=100, n_valid=valid_pairs,
                    bank_dir=bank, progress=echo, loss_terms=loss, prior_starts=prior_starts)
    except AfxmatchError as err:
        fail(err)
    typer.echo(_json.dumps(cfg.get("validation", {})))


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
                      f"{report['safety']['peak_ceiling_dbfs']} dBFS, so the output is that much "
                      f"quieter than the reference; --true-peak -1 reaches the reference's "
                      f"loudness with a limiter instead")
    if report["safety"].get("gain_beyond_range_db"):
        console.print(f"[yellow]note:[/] matching the reference's loudness needs "
                      f"{report['safety']['loudness_gain_wanted_db']:+.1f} dB of output gain, "
                      f"{report['safety']['gain_beyond_range_db']:.1f} dB beyond its range; "
                      f"--loudness LUFS reaches a target with the mastering finish instead")
    if report.get("finish"):
        fin = report["finish"]
        console.print(f"finish: {fin['output_lufs']} LUFS (target {fin['target_lufs']}), true peak "
                      f"{fin['output_true_peak_dbtp']} dBTP (ceiling {fin['ceiling_dbtp']}), limiter "
                      f"max {fin['limiter']['max_gain_reduction_db']:.1f} dB")
        if not fin["target_reached"]:
            console.print(f"[yellow]warning:[/] {fin['note']}")
    console.print(f"wrote {report['output']['path']} and {report['report_path']} "
                  f"in {report['timings_s']['total']:.2f} s")
    for extra in report.get("extra_files", []):
        console.print(f"wrote {extra}")


_EXIT_NOW = False   # set by a command whose work is all written and closed


def run() -> None:
    """Console-script entry point.

    After a single-file match, whose output and report are written and closed, the
    process ends with ``os._exit``: the interpreter's normal teardown (torch's and the
    audio buffers') costs about 0.6 s there and has nothing left to do.
    """
    from .runtime import tune_allocator

    tune_allocator()   # reuse freed memory instead of page-faulting it in again (runtime.py)
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("afxmatch: interrupted\n")
        sys.exit(130)
    except SystemExit as done:
        if _EXIT_NOW and done.code in (0, None):
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        raise


from . import cli_extra  # noqa: E402,F401  (registers export/apply)
from . import cli_batch  # noqa: E402,F401  (registers batch)

if __name__ == "__main__":
    run()
