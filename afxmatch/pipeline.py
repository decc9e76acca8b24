"""Match one file: load -> analyse -> estimate -> render -> write. No printing.

Progress is reported through an optional ``progress(stage: str)`` callback; the CLI turns
it into a spinner. Every error a user can cause is an :class:`AfxmatchError`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import audio
from .choices import DEFAULT_METHOD, METHODS, check_search_limits, resolve_backend
from .errors import AfxmatchError, AudioFileError, InvalidParameterError, OutputError
from .params import PEAK_CEILING_DB, ParamSpace

# analysis, estimation, rendering and the report pull in scipy and pyloudnorm (and torch
# for --method optimise: seconds of start-up); they are imported where needed, after the
# cheap checks, so a wrong path or option fails at once. The default path (method model,
# the built-in chain) never imports torch: the network and the chain run in numpy.

SWITCH_INTERVAL_S = 0.0005  # GIL switch interval while the warm-up thread imports

Progress = Callable[[str], None]


@dataclass
class MatchOptions:
    method: str = DEFAULT_METHOD
    backend: str | None = None      # None: torch, or vst3 for method blackbox (resolve_backend)
    subtype: str | None = None
    force: bool = False
    report_path: str | None = None
    model_path: str | None = None   # a model folder; None = the shipped default model
    preset: str | None = None       # also write a preset beside the output (afxmatch.presets.FORMATS)
    plot_path: str | None = None    # also write a PNG figure (needs afxmatch[plot])
    # stream (bounded memory) when the input or reference is longer than this many
    # channel-seconds; None = afxmatch.stream_pipeline.STREAM_ABOVE_CHANNEL_S, 0 = always
    stream_above_s: float | None = None
    amount: float = 1.0               # 0 = input unchanged .. 1 = full match (afxmatch.amount)
    loudness: float | None = None     # LUFS target of the mastering finish (afxmatch.finish)
    true_peak: float | None = None    # dBTP ceiling of the finish's limiter (afxmatch.finish)
    steps: int | None = None          # search limit of the searching methods (blackbox: evaluations)
    time_budget: float | None = None  # their time limit in seconds; None: the method's default
    # blocks added to the report as it is written (batch records each file's settings here)
    report_extra: dict | None = None

    def check(self) -> None:
        from .finish import check_options

        if self.method not in METHODS:
            raise InvalidParameterError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        check_options(self.amount, self.loudness, self.true_peak)
        # None (not given): the method's own backend (vst3 for blackbox) or torch
        self.backend = resolve_backend(self.method, self.backend)
        check_search_limits(self.method, self.steps, self.time_budget)


@dataclass
class MatchResult:
    """What :func:`match_arrays` produced: the audio, the parameters, and the facts."""

    output: np.ndarray
    params: dict[str, float]
    safety: dict
    features: dict = field(default_factory=dict)   # input / reference / output Features
    timings: dict = field(default_factory=dict)
    model: dict | None = None                       # which model estimated (method "model")
    backend_info: dict | None = None                # backend "vst3": plugins, settings, search
    amount: float = 1.0                             # the --amount the parameters were scaled by
    finish: dict | None = None                      # loudness target / true-peak limiter facts
    optimise: dict | None = None                    # method "optimise": start, steps, time, objective


def load_default_model(model_path: str | None = None):
    """``(network, config, info)`` for ``model_path`` or the shipped default model.

    The network is the torch-free :class:`~afxmatch.model.numpy_net.NumpyNet` (inference
    needs no gradients, and ``import torch`` alone costs about 2 s of start-up). Loaded
    once per process and cached (batch work reuses it).
    """
    from .model.io import load_cached_numpy

    return load_cached_numpy(model_path)


def model_estimate(x: np.ndarray, sample_rate: float, ref, ref_rate, f_in, f_ref,
                   model_path: str | None = None, prior: dict | None = None) -> tuple[dict[str, float], dict]:
    """The trained model's estimate (refining the analysis prior where the model is
    residual) and the model's facts for the report. ``prior``: the ``analysis`` estimate
    for the same pair where the caller has already made it (it is the prior)."""
    from .estimate.model import estimate_model

    net, config, model_info = load_default_model(model_path)
    if not net.residual:
        prior = None
    elif prior is None:
        from .estimate.analysis import analysis_prior
        prior = analysis_prior(x, sample_rate, ref, ref_rate, f_in, f_ref)
    return estimate_model(x, sample_rate, ref, ref_rate, net, config, prior), model_info


def output_gain(rendered_loudness: float, rendered_peak_db: float, target_lufs: float,
                sample_rate: float, hops: np.ndarray | None = None) -> tuple[float, dict]:
    """The output gain (dB) that brings a render made with ``out_gain_db = 0`` to
    ``target_lufs``, lowered where needed so the sample peak stays at ``PEAK_CEILING_DB``.

    ``hops``: the render's K-weighted hop energies (``Features.loudness_hops``); with them
    the gain is solved with BS.1770's gates re-applied at the new level
    (:func:`~afxmatch.analysis.loudness.gain_for_loudness`), not assumed to shift the
    loudness by itself. Returns ``(gain_db, safety)`` where ``safety`` says what was done,
    for the report.
    """
    from .analysis.loudness import safe_output_gain_db

    spec = ParamSpace(sample_rate)["out_gain_db"]
    gain, wanted, limited = safe_output_gain_db(rendered_loudness, rendered_peak_db, target_lufs, sample_rate,
                                                hops, (spec.min, spec.max), PEAK_CEILING_DB)
    short = abs(wanted - (gain + limited))   # what the gain's range could not give
    safety = {"peak_ceiling_dbfs": PEAK_CEILING_DB, "loudness_gain_wanted_db": round(wanted, 3),
              "gain_reduced_for_peak_db": round(limited, 3),
              "note": ("output gain lowered so the sample peak stays at the ceiling; the output "
                       "is quieter than the reference by this amount") if limited > 0 else
                      "no safety gain needed"}
    if short > 0:
        safety["gain_beyond_range_db"] = round(short, 3)
        safety["note"] += (f"; the loudness match wanted {wanted:+.1f} dB, beyond the output gain's "
                           f"range ({spec.min:g} to {spec.max:+g} dB): the output misses the target by "
                           f"that much (--loudness reaches a target with the finish's own gain)")
    return gain, safety


def gain_before_finish(rendered_lufs: float, target_lufs: float, sample_rate: float,
                       hops: np.ndarray | None = None) -> tuple[float, float]:
    """``(gain_db, wanted_db)``: the output gain ahead of a finish, the loudness-matching
    gain within the parameter's range but without the sample-peak cut (the finish's
    limiter holds the peaks); 0 when the render is silent. ``hops``: the render's
    K-weighted hop energies, used when it is too quiet to pass BS.1770's absolute gate
    (``rendered_lufs`` -inf but not silent): the gain is then solved on them, as
    :func:`output_gain` does, and the finish can aim from there."""
    from .analysis.loudness import matching_gain_db

    spec = ParamSpace(sample_rate)["out_gain_db"]
    audible = np.isfinite(rendered_lufs)
    gain = matching_gain_db(rendered_lufs, target_lufs, sample_rate, None if audible else hops)
    return float(np.clip(gain, spec.min, spec.max)), (target_lufs - rendered_lufs if audible else gain)


def match_arrays(x: np.ndarray, sample_rate: int, ref: np.ndarray, ref_rate: int,
                 method: str = DEFAULT_METHOD, backend: str | None = None,
                 progress: Progress | None = None, model_path: str | None = None,
                 ref_features=None, amount: float = 1.0, loudness_lufs: float | None = None,
                 true_peak_dbtp: float | None = None, steps: int | None = None,
                 time_budget: float | None = None, in_features=None) -> MatchResult:
    """Estimate and render: ``x`` ``(channels, samples)`` towards the style of ``ref``.

    ``method`` is ``"model"`` (the trained network, one forward pass) or ``"analysis"``
    (rule-based) or ``"blackbox"`` (CMA-ES through the VST3 plugins, from the analysis
    estimate; ``steps`` caps its evaluations and ``time_budget`` its seconds, ``None``: the
    method's defaults) or ``"optimise"`` (the model's estimate refined by gradient steps
    against the reference's style, :mod:`afxmatch.estimate.optimise`; ``steps`` /
    ``time_budget`` bound it the same way). ``backend`` ``None``: the method's own (``choices.resolve_backend``).
    Either way the output gain is then set from a render so the output's
    integrated loudness equals the reference's (within the peak-safety ceiling).
    ``ref_features``: ``analysis.measure(ref, ref_rate)`` when the caller already has it
    (batch work caches it per reference); ``in_features`` likewise for ``x``; the result
    is the same.

    Several references: ``ref`` a list of arrays, ``ref_rate`` a list of rates (or one
    rate), ``ref_features`` None or a list; their common style is matched
    (:mod:`afxmatch.analysis.combine`). ``amount`` scales the match from the input
    unchanged (0) to the full match (1) (:mod:`afxmatch.amount`). ``loudness_lufs`` /
    ``true_peak_dbtp``: the mastering finish, a loudness target under a true-peak
    limiter (:mod:`afxmatch.finish`); without them the gain rule above applies.
    """
    from . import analysis
    from .amount import amount_target_lufs, apply_amount
    from .analysis.combine import measure_references
    from .finish import apply_finish, check_options, finish_spec, safety_for_finish

    check_options(amount, loudness_lufs, true_peak_dbtp)
    backend = resolve_backend(method, backend)
    from .estimate import estimate_analysis
    from .estimate.analysis import eq_levels_fn
    from .render import render

    say = progress or (lambda stage: None)
    timings = {}
    t = time.perf_counter()
    say("analysing")
    f_in = in_features if in_features is not None else analysis.measure(x, sample_rate)
    f_refs, f_ref = measure_references(ref, ref_rate, ref_features)  # f_ref: the common style
    timings["analyse"] = time.perf_counter() - t

    t = time.perf_counter()
    say("estimating parameters")
    model_info = backend_info = optimise_info = None
    if method in ("model", "optimise"):   # optimise refines the model's estimate (below)
        params, model_info = model_estimate(x, sample_rate, ref, ref_rate, f_in, f_ref, model_path)
    else:   # analysis; also blackbox's starting point
        params = estimate_analysis(f_in, f_ref, sample_rate, eq_levels=eq_levels_fn(x, sample_rate))
    if method == "blackbox":   # CMA-ES through the VST3 plugins, from the analysis or model estimate
        from .estimate.blackbox import estimate_blackbox

        limits = {k: v for k, v in (("max_evals", steps), ("time_budget", time_budget)) if v is not None}
        others, start_model = {}, None
        try:   # the model's estimate is a second start where a model is at hand
            others["model"], start_model = model_estimate(x, sample_rate, ref, ref_rate, f_in, f_ref, model_path,
                                                          prior=ParamSpace(sample_rate).validate(params, clip=True))
        except AfxmatchError:
            pass
        search = estimate_blackbox(x, sample_rate, f_ref, params, other_starts=others, **limits)
        params, backend_info = search.params, {"blackbox": {**search.info, "start_model": start_model}}
    if method == "optimise":   # gradient refinement through the differentiable chain
        from .estimate.optimise import refine_estimate
        params, optimise_info = refine_estimate(x, sample_rate, ref, ref_rate, params, "model", steps,
                                                time_budget, say, ref_features=f_ref)
    params = apply_amount(ParamSpace(sample_rate).validate(params, clip=True), amount, sample_rate)
    timings["estimate"] = time.perf_counter() - t

    t = time.perf_counter()
    say("rendering")
    params["out_gain_db"] = 0.0
    rendered = render(x, sample_rate, params, backend)
    timings["render"] = time.perf_counter() - t

    t = time.perf_counter()
    say("measuring the result")
    f_rendered = analysis.measure(rendered, sample_rate)
    matched_lufs = amount_target_lufs(f_rendered, f_ref.loudness_lufs, amount)
    spec = finish_spec(loudness_lufs, true_peak_dbtp, matched_lufs)
    finish = None
    if spec is None:
        gain, safety = output_gain(f_rendered.loudness_lufs, f_rendered.peak_db, matched_lufs, sample_rate,
                                   f_rendered.loudness_hops)
        params["out_gain_db"] = gain
        out = rendered   # the render is ours: scaled in place (no second full-length copy)
        out *= np.float32(10 ** (gain / 20))
        f_out = f_rendered.scaled(gain)  # gain is the chain's last stage: levels shift exactly
    else:   # the matched gain without a peak cut, then the finish: its gain + a true-peak limiter
        say("finishing (loudness, true peak)")
        gain, wanted = gain_before_finish(f_rendered.loudness_lufs, matched_lufs, sample_rate,
                                          f_rendered.loudness_hops)
        params["out_gain_db"] = gain
        out, _, finish = apply_finish(rendered * np.float32(10 ** (gain / 20)), sample_rate, spec,
                                      f_rendered.loudness_at(gain))
        safety = safety_for_finish(spec, wanted)
        f_out = analysis.measure(out, sample_rate)   # the limiter is not a plain gain: re-measure
    timings["measure_output"] = time.perf_counter() - t
    if backend == "vst3":
        from .render.vst3_backend import describe
        backend_info = {**describe(params, sample_rate, x.shape[0]), **(backend_info or {})}
    features = {"input": f_in, "reference": f_ref, "output": f_out}
    if len(f_refs) > 1:
        features["references"] = f_refs
    return MatchResult(out, params, safety, features, timings, model_info, backend_info,
                       amount=float(amount), finish=finish, optimise=optimise_info)


def default_report_path(output: Path) -> Path:
    return output.with_suffix(".json")


def match_file(input_path, reference_path, output_path, options: MatchOptions | None = None,
               progress: Progress | None = None, reference=None) -> dict:
    """Match ``input_path`` to ``reference_path``, write ``output_path`` and its report.

    Returns the report (a JSON-ready dict). Nothing is written unless everything succeeded.
    ``reference``: ``(Audio, Features)`` of ``reference_path`` already loaded and measured
    (batch work caches them per reference); the result is the same.
    ``reference_path`` may be a list of several references: their common style is matched.
    """
    options = options or MatchOptions()
    options.check()
    ref_paths = list(reference_path) if isinstance(reference_path, (list, tuple)) else [reference_path]
    if not ref_paths:
        raise InvalidParameterError("no reference given; pass --ref at least once")
    many = len(ref_paths) > 1
    say = progress or (lambda stage: None)
    t_start = time.perf_counter()
    out_path, fmt, subtype = audio.check_output(output_path, [input_path, *ref_paths],
                                                options.force, options.subtype)
    report_path = Path(options.report_path) if options.report_path else default_report_path(out_path)
    _check_report_path(report_path, out_path, [input_path, *ref_paths], options.force)
    if options.preset or options.plot_path:
        from .presets import check_match_extras
        check_match_extras(options, out_path, report_path, [input_path, *ref_paths])

    say("loading")
    t = time.perf_counter()
    from .stream_pipeline import long_file_infos, match_streamed, streams

    # several references and --amount run in memory
    in_memory_only = many or options.amount != 1.0 or not streams(options)
    infos = None if in_memory_only else \
        long_file_infos(input_path, ref_paths[0], reference, options.stream_above_s)
    if infos is not None:   # a long input or reference: streamed, in bounded memory
        t_load = time.perf_counter() - t
        inp, ref, result, timings = match_streamed(infos, out_path, fmt, subtype, options, progress, reference)
        timings = {**timings, "load": t_load, "total": time.perf_counter() - t_start}
    else:
        # the estimators (scipy.optimize), the model and, for optimise, torch load in a
        # thread while the files are read and measured (numpy/scipy release the GIL).
        # Batch work (reference given) has warmed up once per worker: no thread there.
        warm = _WarmUp(options) if reference is None else None
        inp = audio.load(input_path, "input")
        if many:
            ref, ref_features = [audio.load(p, "reference") for p in ref_paths], None
            ref_samples, ref_rates = [a.samples for a in ref], [a.sample_rate for a in ref]
        else:
            ref, ref_features = reference if reference is not None else (audio.load(ref_paths[0], "reference"), None)
            ref_samples, ref_rates = ref.samples, ref.sample_rate
        t_load = time.perf_counter() - t
        from . import analysis

        say("analysing")
        t = time.perf_counter()
        in_features = analysis.measure(inp.samples, inp.sample_rate)
        if not many and ref_features is None:
            ref_features = analysis.measure(ref_samples, ref_rates)
        t_analyse = time.perf_counter() - t
        t = time.perf_counter()
        if warm is not None:
            warm.wait()
        t_wait = time.perf_counter() - t
        result = match_arrays(inp.samples, inp.sample_rate, ref_samples, ref_rates,
                              options.method, options.backend, progress, options.model_path,
                              ref_features=ref_features, amount=options.amount,
                              loudness_lufs=options.loudness, true_peak_dbtp=options.true_peak,
                              steps=options.steps, time_budget=options.time_budget,
                              in_features=in_features)
        result.timings["analyse"] += t_analyse
        result.timings = {"wait_for_imports": t_wait, **result.timings}
        say("writing")
        t = time.perf_counter()
        audio.save(out_path, result.output, inp.sample_rate, fmt, subtype)
        t_write = time.perf_counter() - t
        timings = {"load": t_load, **result.timings, "write": t_write,
                   "total": time.perf_counter() - t_start}

    from .report import build_report, dump_report

    report = build_report(inp, ref, out_path, subtype, result, options.method, options.backend, timings)
    report.update(options.report_extra or {})
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


class _WarmUp:
    """Import the estimation/render modules (and torch where the method needs it), and
    load the model the method needs, in a background thread; :meth:`wait` joins it and
    re-raises its error."""

    def __init__(self, options: MatchOptions):
        import threading

        self.error: BaseException | None = None
        # the import holds the GIL; hand it back to the measuring thread more often
        self.interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.thread = threading.Thread(target=self._run, args=(options,), daemon=True,
                                       name="afxmatch-warm-up")
        self.thread.start()

    def _run(self, options: MatchOptions) -> None:
        try:
            from . import render, report  # noqa: F401  (numpy chain, pyloudnorm)
            from .estimate import analysis  # noqa: F401  (scipy.optimize)
            if options.method in ("model", "optimise"):
                load_default_model(options.model_path)
            if options.method == "optimise":
                from .estimate import optimise  # noqa: F401  (torch: gradients)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self.error = err

    def wait(self) -> None:
        self.thread.join()
        sys.setswitchinterval(self.interval)
        if self.error is not None:
            raise self.error


def _check_report_path(report: Path, out: Path, inputs, force: bool) -> None:
    if report.resolve() == out.resolve():
        raise OutputError(f"report path {report} equals the audio output path")
    audio.check_writable(report, "report", force, inputs)


__all__ = ["MatchOptions", "MatchResult", "match_arrays", "match_file", "AudioFileError"]
