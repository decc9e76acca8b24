"""Match long files in bounded memory: :func:`afxmatch.pipeline.match_file` comes here when
the input (or the reference) is longer than :data:`STREAM_ABOVE_CHANNEL_S` channel-seconds
(duration x channels; ``MatchOptions.stream_above_s`` overrides it, 0 = always).

The result equals the in-memory path (``match_arrays`` + ``audio.save``) to float rounding
(``tests/test_stream_pipeline.py``: output within 1e-4, same report), while no more than a
few blocks of audio are held at a time:

1. Measure: the input is read once, block by block (``audio.iter_blocks``), into
   :class:`~afxmatch.analysis.stream.FeatureAccumulator` (the same ``Features`` as
   ``analysis.measure``) and, for ``--method model``, into the mono hop energies from
   which the model's windows are chosen. The reference likewise, unless the caller
   already has it in memory (batch work caches it).
2. Estimate on windows read from across the whole file by seeking (``audio.read_frames``):
   the compressor fit's level sample (``estimate.analysis.level_sample_starts``) and the
   model's windows (``estimate.model.choose_windows_long``): the same windows, so the same
   parameters, as in memory.
3. Render pass 1, with ``out_gain_db = 0``, through
   :class:`~afxmatch.render.stream.StreamRenderer`, measured on the fly (nothing stored);
   then :func:`afxmatch.pipeline.output_gain`. With a mastering finish (``--loudness`` /
   ``--true-peak``) this pass also feeds :class:`afxmatch.finish.LoudnessModelStream`.
4. Render pass 2, the gain applied block by block, then an optional block post-processor
   (``finish``: anything with ``process(block) -> block`` and ``flush() -> block``, e.g. a
   streaming limiter), written by ``audio.save_blocks``: a temporary file in the output's
   folder, renamed into place only when complete (removed on any error or Ctrl-C). With
   a mastering finish, each limiter pass of :func:`afxmatch.finish.search_finish` is such
   a pass (finish gain + :class:`~afxmatch.dsp.limiter.TruePeakLimiter`), measured while
   it is written; usually the first is within the tolerance and is kept.

Each pass costs one decode of the input (three in all, plus the windows), so this is
slower than the in-memory path on files that fit; that is why it is used only above the
threshold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

from . import audio
from .pipeline import MatchResult, Progress, gain_before_finish, load_default_model, output_gain
from .params import ParamSpace

# Above this many channel-seconds (duration x channels) of input or reference, match_file
# streams. 480 = 4 min stereo / 8 min mono. The in-memory path is about twice as fast (one
# decode, one render) but its peak RSS grows ~175 MiB per stereo 48 kHz minute (752 MiB
# at 2 min, 2147 MiB at 10 min; benchmarks/results/long_file.md): at 4 min, ~1.1 GiB.
STREAM_ABOVE_CHANNEL_S = 480.0
BLOCK_FRAMES = 1 << 16   # frames per block read, rendered and written


class BlockProcessor(Protocol):
    """A streaming stage after the gain (e.g. a limiter): may delay its output, but the
    total it returns over ``process`` calls and one ``flush`` has the input's length."""

    def process(self, block: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...


@dataclass
class _Source:
    """One signal to read in blocks or windows: a file (``info``) or samples in memory."""

    role: str
    info: audio.AudioInfo | None = None
    memory: audio.Audio | None = None
    progress: Callable[[float], None] | None = None   # told the fraction read by each pass

    @property
    def facts(self):
        """What the report's file facts read (``Audio`` or ``AudioInfo``)."""
        return self.memory if self.memory is not None else self.info

    @property
    def sample_rate(self) -> int:
        return self.facts.sample_rate

    @property
    def channels(self) -> int:
        return self.facts.channels

    @property
    def n(self) -> int:
        return self.facts.n_samples

    def blocks(self) -> Iterator[np.ndarray]:
        done = 0
        source = audio.iter_blocks(self.info, self.role, BLOCK_FRAMES) if self.memory is None else \
            (self.memory.samples[:, i:i + BLOCK_FRAMES] for i in range(0, self.n, BLOCK_FRAMES))
        for block in source:
            yield block
            done += block.shape[-1]
            if self.progress is not None:
                self.progress(done / max(1, self.n))

    def read(self, start: int, frames: int) -> np.ndarray:
        if self.memory is None:
            return audio.read_frames(self.info, self.role, start, frames)
        return self.memory.samples[:, start:start + frames]


STREAMED_METHODS = ("model", "analysis")
STREAMED_BACKENDS = ("torch", "pedalboard")


def streams(options) -> bool:
    """Whether the streamed path supports these options' method and backend (the others,
    black-box search and the VST3 backend, run in memory whatever the length)."""
    return options.method in STREAMED_METHODS and options.backend in STREAMED_BACKENDS


def long_file_infos(input_path, reference_path, reference, threshold_s: float | None):
    """``(input_info, reference_info or None)`` when the input, or the reference that is not
    already in memory (``reference``), is longer than the threshold (channel-seconds);
    None when the in-memory path should run."""
    threshold = STREAM_ABOVE_CHANNEL_S if threshold_s is None else float(threshold_s)
    inp = audio.info(input_path, "input")
    ref = audio.info(reference_path, "reference") if reference is None else None
    if max(inp.duration_s * inp.channels, ref.duration_s * ref.channels if ref else 0.0) > threshold:
        return inp, ref
    return None


class _ModelWindows:
    """The model's windows of a long signal: mono hop energies and peak gathered while the
    measuring pass streams by (``add``), then only the chosen windows read (``windows``)."""

    def __init__(self, src: _Source, win: int):
        from .estimate import model

        self.m, self.src, self.win = model, src, win
        self.src_win = model.source_window(src.sample_rate, win)
        self.hop = model.window_hop(self.src_win)
        self.rest = np.zeros(0, np.float32)
        self.energies: list[np.ndarray] = []
        self.peak = 0.0

    def add(self, block: np.ndarray) -> None:
        mono = np.asarray(block, dtype=np.float32).mean(axis=0)
        if mono.size:
            self.peak = max(self.peak, float(np.max(np.abs(mono))))
        x = np.concatenate([self.rest, mono])
        k = x.shape[0] // self.hop
        self.energies.append(self.m.hop_energies(x[: k * self.hop], self.hop))
        self.rest = x[k * self.hop:]

    def windows(self) -> tuple[np.ndarray, float]:
        """``((n, win) windows at 44.1 kHz, full-length mono peak)`` as
        ``estimate.model._windows_at_model_rate`` gives on the whole signal."""
        n, src_win = self.src.n, self.src_win
        if n <= src_win * self.m.MAX_WINDOWS:   # short: the whole signal is a few windows
            starts = self.m.choose_windows(self.src.read(0, n).mean(axis=0), src_win)
        else:
            starts = self.m.choose_windows_long(np.concatenate(self.energies), n, src_win)
        segments = [self.src.read(s, src_win).mean(axis=0) for s in starts]
        return self.m.to_model_rate(segments, self.src.sample_rate, self.win), self.peak


def _measure(src: _Source, taps=()):
    """One pass over ``src``: its ``Features``; every block also goes to each tap."""
    from .analysis.stream import FeatureAccumulator

    acc = FeatureAccumulator(src.sample_rate, src.channels, src.n)
    for block in src.blocks():
        acc.add(block)
        for tap in taps:
            tap.add(block)
    features = acc.result()
    if not np.isfinite(features.peak_db):
        raise audio.silence_error(src.role, src.info.path if src.info else src.memory.path)
    return features


def _level_sample(src: _Source) -> np.ndarray:
    """``estimate.analysis.level_sample`` of the source, reading only its segments."""
    from .estimate.analysis import level_sample_starts

    starts, seg = level_sample_starts(src.n, src.sample_rate)
    if starts is None:
        return src.read(0, src.n)
    return np.concatenate([src.read(int(s), seg) for s in starts], axis=-1)


def _render_blocks(src: _Source, params: dict, backend: str, gain_db: float = 0.0,
                   finish: BlockProcessor | None = None) -> Iterator[np.ndarray]:
    """The chain's output, block by block: ``params`` rendered with ``out_gain_db = 0``,
    times ``gain_db`` (as ``match_arrays`` applies it), then ``finish``."""
    from .render.stream import StreamRenderer

    renderer = StreamRenderer(src.sample_rate, src.channels, {**params, "out_gain_db": 0.0}, backend)
    g = np.float32(10 ** (gain_db / 20))

    def stage(y: np.ndarray, last: bool) -> np.ndarray:
        if gain_db:
            y = y * g
        if finish is not None:
            y = finish.process(y)
            if last:
                y = np.concatenate([y, finish.flush()], axis=1)
        return y

    for block in src.blocks():
        y = stage(renderer.process(block), False)
        if y.shape[-1]:
            yield y
    y = stage(renderer.flush(), True)
    if y.shape[-1]:
        yield y


class _PercentProgress:
    """A ``progress(stage)`` callback that also hears each pass's fraction of the input
    read, and passes on ``"stage  NN %"`` when the whole percent changes: a long file's
    passes take minutes."""

    def __init__(self, progress: Progress):
        self.progress, self.stage, self.percent = progress, "", -1

    def __call__(self, stage: str) -> None:
        self.stage, self.percent = stage, -1
        self.progress(stage)

    def fraction(self, done: float) -> None:
        percent = int(100 * min(1.0, done))
        if percent != self.percent:
            self.percent = percent
            self.progress(f"{self.stage}  {percent} %")


def match_streamed(infos, out_path, fmt: str, subtype: str, options,
                   progress: Progress | None = None, reference=None,
                   finish: BlockProcessor | None = None):
    """The streamed twin of ``match_arrays`` + ``audio.save`` for :func:`match_file`.

    ``infos``: from :func:`long_file_infos`; ``reference``: ``(Audio, Features)`` already
    loaded and measured, or None. Writes ``out_path`` atomically and returns
    ``(input_facts, reference_facts, MatchResult, timings)``; the result's ``output`` is
    None (the audio went to disk block by block).
    """
    from .estimate.analysis import analysis_prior, eq_levels_of_sample, estimate_analysis

    say = _PercentProgress(progress or (lambda stage: None))
    inp_info, ref_info = infos
    src = _Source("input", info=inp_info, progress=say.fraction)
    ref = _Source("reference", info=ref_info) if reference is None else \
        _Source("reference", memory=reference[0])
    sr = src.sample_rate
    timings = {"load": 0.0}

    t = time.perf_counter()
    say("analysing")
    net = config = model_info = None
    taps, ref_taps = [], []
    if options.method == "model":
        from .estimate.model import model_window

        net, config, model_info = load_default_model(options.model_path)
        taps = [_ModelWindows(src, model_window(config))]
        ref_taps = [_ModelWindows(ref, model_window(config))] if reference is None else []
    f_in = _measure(src, taps)
    f_ref = _measure(ref, ref_taps) if reference is None else reference[1]
    timings["analyse"] = time.perf_counter() - t

    t = time.perf_counter()
    say("estimating parameters")
    eq_levels = eq_levels_of_sample(_level_sample(src), sr)
    if options.method == "model":
        from .estimate.model import _windows_at_model_rate, estimate_from_windows

        prior = analysis_prior(None, sr, None, ref.sample_rate, f_in, f_ref, eq_levels=eq_levels) \
            if net.residual else None
        xw, x_peak = taps[0].windows()
        rw, r_peak = ref_taps[0].windows() if ref_taps else \
            _windows_at_model_rate(ref.memory.samples, ref.sample_rate, model_window(config))
        params = estimate_from_windows(xw, x_peak, sr, rw, r_peak, net, prior)
    else:
        params = estimate_analysis(f_in, f_ref, sr, eq_levels=eq_levels)
    params = ParamSpace(sr).validate(params, clip=True)
    params["out_gain_db"] = 0.0
    timings["estimate"] = time.perf_counter() - t

    t = time.perf_counter()
    say("rendering")
    from .finish import finish_spec, safety_for_finish

    spec = finish_spec(options.loudness, options.true_peak, f_ref.loudness_lufs)
    f_rendered, model_tap = render_pass(src, params, options.backend, spec.ceiling_dbtp if spec else None)
    timings["render"] = time.perf_counter() - t

    t = time.perf_counter()
    finish_info = None
    if spec is None:
        gain, safety = output_gain(f_rendered.loudness_lufs, f_rendered.peak_db, f_ref.loudness_lufs, sr,
                                   f_rendered.loudness_hops)
        params["out_gain_db"] = gain
        f_out = f_rendered.scaled(gain)  # gain is the chain's last stage: levels shift exactly
        timings["measure_output"] = time.perf_counter() - t
        t = time.perf_counter()
        say("writing")
        audio.save_blocks(out_path, _render_blocks(src, params, options.backend, gain, finish),
                          sr, src.channels, fmt, subtype)
    else:   # as match_arrays: the matched gain without a peak cut, then the finish, pass by pass
        timings["measure_output"] = time.perf_counter() - t
        t = time.perf_counter()
        say("writing (finish: loudness, true peak)")
        gain, wanted = gain_before_finish(f_rendered.loudness_lufs, f_ref.loudness_lufs, sr,
                                          f_rendered.loudness_hops)
        params["out_gain_db"] = gain
        f_out, finish_info = write_finished(src, params, options.backend, f_rendered, spec, model_tap,
                                            out_path, fmt, subtype)
        safety = safety_for_finish(spec, wanted)
    timings["write"] = time.perf_counter() - t
    result = MatchResult(None, params, safety, {"input": f_in, "reference": f_ref, "output": f_out},
                         {}, model_info, finish=finish_info)
    return src.facts, ref.facts, result, timings


class _FinishStage:
    """The finish after the chain's gain: the finish gain (a float32 multiply, as
    ``apply_finish`` does it) and a true-peak limiter, streamed."""

    def __init__(self, sample_rate: float, channels: int, ceiling_dbtp: float, gain_db: float):
        from .dsp.limiter import TruePeakLimiter

        self.g = np.float32(10 ** (gain_db / 20))
        self.limiter = TruePeakLimiter(sample_rate, channels, ceiling_dbtp)

    def process(self, block: np.ndarray) -> np.ndarray:
        return self.limiter.process(block * self.g)

    def flush(self) -> np.ndarray:
        return self.limiter.flush()


def write_finished(src: _Source, params: dict, backend: str, f_rendered, spec, model_tap,
                   out_path, fmt: str, subtype: str):
    """Write ``src`` rendered with ``params`` (its ``out_gain_db`` the chain's gain ahead of
    the finish) and finished to ``spec``: each limiter pass of the finish search renders,
    limits, measures and writes a temporary file next to ``out_path``
    (:func:`afxmatch.audio.temporary_path`, which a batch sweeps after a killed process),
    and the last pass's file is renamed onto ``out_path``: the usual single pass is also
    the write, and an interrupted later pass never leaves a superseded output behind.
    ``f_rendered``: the render pass's features (gain 0); ``model_tap``: the
    :class:`~afxmatch.finish.LoudnessModelStream` it fed.
    Returns ``(output features, finish report)``."""
    import os

    from .analysis.stream import FeatureAccumulator
    from .dsp.truepeak import IntervalPeakStream
    from .finish import finish_report, search_finish

    sr, channels, gain = src.sample_rate, src.channels, float(params["out_gain_db"])
    out = Path(out_path)
    passes: list[str] = []

    def drop_passes() -> None:
        for done in passes:
            if os.path.exists(done):
                os.unlink(done)

    def run_pass(finish_gain: float):
        drop_passes()   # superseded by this pass
        tmp = audio.temporary_path(out)
        passes.append(tmp)
        stage = _FinishStage(sr, channels, spec.ceiling_dbtp, finish_gain)
        acc, peaks, top = FeatureAccumulator(sr, channels, src.n), IntervalPeakStream(channels), [0.0]

        def measured(blocks):
            for y in blocks:
                acc.add(y)
                top[0] = max(top[0], float(peaks.add(y).max(initial=0.0)))
                yield y
            top[0] = max(top[0], float(peaks.flush().max(initial=0.0)))

        audio.write_blocks(tmp, measured(_render_blocks(src, params, backend, gain, stage)),
                           sr, channels, fmt, subtype, out)
        f_out = acc.result()
        peak_db = 20 * np.log10(top[0]) if top[0] > 0 else float("-inf")
        return f_out.loudness_lufs, stage.limiter, (f_out, peak_db)

    try:
        finish_gain, history, loud, lim, (f_out, peak_db) = search_finish(
            spec, f_rendered.loudness_at(gain), f_rendered.peak_db + gain, run_pass,
            lambda: model_tap.model(gain), model_tap.limiter.threshold_db)
        audio.publish(passes[-1], out)
    finally:
        drop_passes()
    return f_out, finish_report(spec, finish_gain, history, loud, float(peak_db), lim)


def render_pass(src: _Source, params: dict, backend: str, ceiling_dbtp: float | None):
    """Render pass 1 (``out_gain_db = 0``), measured: ``(features, model tap)``, the tap a
    :class:`~afxmatch.finish.LoudnessModelStream` fed on the way when ``ceiling_dbtp`` (a
    finish's) is given, else None."""
    from .analysis.stream import FeatureAccumulator

    acc = FeatureAccumulator(src.sample_rate, src.channels, src.n)
    model_tap = None
    if ceiling_dbtp is not None:
        from .dsp.limiter import TruePeakLimiter
        from .finish import LoudnessModelStream

        model_tap = LoudnessModelStream(src.sample_rate, src.channels,
                                        TruePeakLimiter(src.sample_rate, src.channels, ceiling_dbtp), src.n)
    for y in _render_blocks(src, params, backend):
        acc.add(y)
        if model_tap is not None:
            model_tap.add(y)
    return acc.result(), model_tap


def apply_streamed(info: audio.AudioInfo, params: dict, backend: str, out_path, fmt: str, subtype: str,
                   spec_for):
    """:func:`afxmatch.apply.apply_file` for a long input, in bounded memory: render pass 1
    measures, then the write pass renders with the report's output gain (lowered if the
    peak would pass the ceiling) or, when ``spec_for(chain_lufs)`` gives a finish, the
    streamed finish. ``spec_for(None)`` must already give the finish's ceiling (or None).
    Returns ``(output peak dBFS, safety gain dB, finish report or None)``."""
    from .apply import peak_cut_db

    src = _Source("input", info=info)
    first = spec_for(None)
    f_rendered, model_tap = render_pass(src, params, backend, first.ceiling_dbtp if first else None)
    gain = float(params["out_gain_db"])
    spec = spec_for(f_rendered.loudness_lufs + gain) if first is not None else None
    if spec is not None:
        f_out, fin = write_finished(src, params, backend, f_rendered, spec, model_tap, out_path, fmt, subtype)
        return f_out.peak_db, 0.0, fin
    safety = peak_cut_db(f_rendered.peak_db + gain)
    audio.save_blocks(out_path, _render_blocks(src, params, backend, gain - safety), info.sample_rate,
                      info.channels, fmt, subtype)
    return f_rendered.peak_db + gain - safety, safety, None
