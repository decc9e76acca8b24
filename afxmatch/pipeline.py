"""Match one file: load -> analyse -> estimate -> render -> write. No printing.

Progress is reported through an optional ``progress(stage: str)`` callback; the CLI turns
it into a spinner. Every error a user can cause is an :class:`AfxmatchError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import audio
from .choices import BACKENDS, DEFAULT_METHOD, METHODS
from .errors import AudioFileError, InvalidParameterError, OutputError
from .params import ParamSpace

# analysis, estimation, rendering and the report pull in torch, scipy and pyloudnorm
# (seconds of start-up); they are imported where needed, after the cheap checks, so a
# wrong path or option fails at once.

PEAK_CEILING_DB = -0.1  # sample-peak ceiling of the safety gain (dBFS)

Progress = Callable[[str], None]


@dataclass
class MatchOptions:
    method: str = DEFAULT_METHOD
    backend: str = "torch"
    subtype: str | None = None
    force: bool = False
    report_path: str | None = None
    model_path: str | None = None   # a model folder; None = the shipped default model
    preset: str | None = None       # also write a preset beside the output (afxmatch.presets.FORMATS)
    plot_path: str | None = None    # also write a PNG figure (needs afxmatch[plot])

    def check(self) -> None:
        if self.method not in METHODS:
            raise InvalidParameterError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.backend not in BACKENDS:
            raise InvalidParameterError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")


@dataclass
class MatchResult:
    """What :func:`match_arrays` produced: the audio, the parameters, and the facts."""

    output: np.ndarray
    params: dict[str, float]
    safety: dict
    features: dict = field(default_factory=dict)   # input / reference / output Features
    timings: dict = field(default_factory=dict)
    model: dict | None = None                       # which model estimated (method "model")


def load_default_model(model_path: str | None = None):
    """``(network, config, info)`` for ``model_path`` or the shipped default model.

    Loaded once per process and cached (batch work reuses it).
    """
    from .model.io import load_cached

    return load_cached(model_path)


def output_gain(rendered_loudness: float, rendered_peak_db: float, target_lufs: float,
                sample_rate: float) -> tuple[float, dict]:
    """The output gain (dB) that brings a render made with ``out_gain_db = 0`` to
    ``target_lufs``, lowered where needed so the sample peak stays at ``PEAK_CEILING_DB``.

    Returns ``(gain_db, safety)`` where ``safety`` says what was done, for the report.
    """
    spec = ParamSpace(sample_rate)["out_gain_db"]
    finite = np.isfinite(rendered_loudness) and np.isfinite(target_lufs)
    wanted = target_lufs - rendered_loudness if finite else 0.0
    gain = float(np.clip(wanted, spec.min, spec.max))
    limited = max(0.0, rendered_peak_db + gain - PEAK_CEILING_DB)
    gain -= limited
    safety = {"peak_ceiling_dbfs": PEAK_CEILING_DB, "loudness_gain_wanted_db": round(wanted, 3),
              "gain_reduced_for_peak_db": round(limited, 3),
              "note": ("output gain lowered so the sample peak stays at the ceiling; the output "
                       "is quieter than the reference by this amount") if limited > 0 else
                      "no safety gain needed"}
    return gain, safety


def match_arrays(x: np.ndarray, sample_rate: int, ref: np.ndarray, ref_rate: int,
                 method: str = DEFAULT_METHOD, backend: str = "torch",
                 progress: Progress | None = None, model_path: str | None = None,
                 ref_features=None) -> MatchResult:
    """Estimate and render: ``x`` ``(channels, samples)`` towards the style of ``ref``.

    ``method`` is ``"model"`` (the trained network, one forward pass) or ``"analysis"``
    (rule-based). Either way the output gain is then set from a render so the output's
    integrated loudness equals the reference's (within the peak-safety ceiling).
    ``ref_features``: ``analysis.measure(ref, ref_rate)`` when the caller already has it
    (batch work caches it per reference); the result is the same.
    """
    from . import analysis
    from .estimate import estimate_analysis
    from .estimate.analysis import eq_levels_fn
    from .render import render

    say = progress or (lambda stage: None)
    timings = {}
    t = time.perf_counter()
    say("analysing")
    f_in = analysis.measure(x, sample_rate)
    f_ref = ref_features if ref_features is not None else analysis.measure(ref, ref_rate)
    timings["analyse"] = time.perf_counter() - t

    t = time.perf_counter()
    say("estimating parameters")
    model_info = None
    if method == "model":
        from .estimate.model import estimate_model

        net, config, model_info = load_default_model(model_path)
        prior = None
        if net.residual:
            from .estimate.analysis import analysis_prior
            prior = analysis_prior(x, sample_rate, ref, ref_rate, f_in, f_ref)
        params = estimate_model(x, sample_rate, ref, ref_rate, net, config, prior)
    else:
        params = estimate_analysis(f_in, f_ref, sample_rate, eq_levels=eq_levels_fn(x, sample_rate))
    params = ParamSpace(sample_rate).validate(params, clip=True)
    timings["estimate"] = time.perf_counter() - t

    t = time.perf_counter()
    say("rendering")
    params["out_gain_db"] = 0.0
    rendered = render(x, sample_rate, params, backend)
    timings["render"] = time.perf_counter() - t

    t = time.perf_counter()
    say("measuring the result")
    f_rendered = analysis.measure(rendered, sample_rate)
    gain, safety = output_gain(f_rendered.loudness_lufs, f_rendered.peak_db, f_ref.loudness_lufs, sample_rate)
    params["out_gain_db"] = gain
    out = rendered * np.float32(10 ** (gain / 20))
    f_out = f_rendered.scaled(gain)  # gain is the chain's last stage: levels shift exactly
    timings["measure_output"] = time.perf_counter() - t
    return MatchResult(out, params, safety, {"input": f_in, "reference": f_ref, "output": f_out},
                       timings, model_info)


def default_report_path(output: Path) -> Path:
    return output.with_suffix(".json")


def match_file(input_path, reference_path, output_path, options: MatchOptions | None = None,
               progress: Progress | None = None, reference=None) -> dict:
    """Match ``input_path`` to ``reference_path``, write ``output_path`` and its report.

    Returns the report (a JSON-ready dict). Nothing is written unless everything succeeded.
    ``reference``: ``(Audio, Features)`` of ``reference_path`` already loaded and measured
    (batch work caches them per reference); the result is the same.
    """
    options = options or MatchOptions()
    options.check()
    say = progress or (lambda stage: None)
    t_start = time.perf_counter()
    out_path, fmt, subtype = audio.check_output(output_path, [input_path, reference_path],
                                                options.force, options.subtype)
    report_path = Path(options.report_path) if options.report_path else default_report_path(out_path)
    _check_report_path(report_path, out_path, [input_path, reference_path], options.force)
    if options.preset or options.plot_path:
        from .presets import check_match_extras
        check_match_extras(options, out_path, report_path, [input_path, reference_path])

    say("loading")
    t = time.perf_counter()
    inp = audio.load(input_path, "input")
    ref, ref_features = reference if reference is not None else (audio.load(reference_path, "reference"), None)
    t_load = time.perf_counter() - t

    from .report import build_report, dump_report

    result = match_arrays(inp.samples, inp.sample_rate, ref.samples, ref.sample_rate,
                          options.method, options.backend, progress, options.model_path,
                          ref_features=ref_features)
    say("writing")
    t = time.perf_counter()
    audio.save(out_path, result.output, inp.sample_rate, fmt, subtype)
    t_write = time.perf_counter() - t
    timings = {"load": t_load, **result.timings, "write": t_write,
               "total": time.perf_counter() - t_start}
    report = build_report(inp, ref, out_path, subtype, result, options.method, options.backend, timings)
    try:
        audio.atomic_write_text(report_path, dump_report(report))
    except OSError as err:
        out_path.unlink(missing_ok=True)
        raise OutputError(f"cannot write report {report_path}: {err.strerror}") from None
    report["report_path"] = str(report_path)
    if options.preset or options.plot_path:   # after the audio and report, which stay if this fails
        from .presets import write_match_extras
        report["extra_files"] = write_match_extras(options, out_path, report, result)
    return report


def _check_report_path(report: Path, out: Path, inputs, force: bool) -> None:
    if report.resolve() == out.resolve():
        raise OutputError(f"report path {report} equals the audio output path")
    audio.check_writable(report, "report", force, inputs)


__all__ = ["MatchOptions", "MatchResult", "match_arrays", "match_file", "AudioFileError"]
