"""Mastering finish: a loudness target under a true-peak ceiling (``--loudness``, ``--true-peak``).

Without either option the pipeline keeps its plain behaviour: the output gain matches
the reference's loudness, lowered if needed so the sample peak stays at -0.1 dBFS.
With them, the last stages become output gain -> :class:`~afxmatch.dsp.limiter.TruePeakLimiter`:

- ``--loudness L`` alone: target ``L`` LUFS under the default ceiling of -1 dBTP
  (:data:`DEFAULT_CEILING_DBTP`; the common streaming-platform recommendation);
- ``--true-peak C`` alone: the reference's loudness (scaled by ``--amount`` as usual) is
  the target, under ``C`` dBTP, reached with the limiter instead of a safety gain cut;
- both: ``L`` under ``C``.

The finish is a stage of its own after the matched chain: the chain keeps its
parameters (``out_gain_db`` is the plain loudness-matching gain, without the sample-peak
cut, since the limiter now holds the peaks), then the finish applies its own gain and
the limiter. Limiting lowers the loudness, so the finish gain is found by iteration:
gain -> limit -> measure (BS.1770 integrated loudness, :mod:`afxmatch.analysis.loudness`),
until the output is within :data:`TOLERANCE_LU` of the target (at most
:data:`MAX_ITERATIONS` limiter passes). The finish gain stays within
:data:`FINISH_GAIN_RANGE_DB`; a target that needs more is reported as missed.

Each limiter pass over a 3-minute stereo file costs about 1.5 s, so the gain is aimed
with a model between passes (:class:`LoudnessModel`): the signal's true peaks and
K-weighted energies are measured once, and the loudness after the limiter is then
predicted for any gain from the limiter's gain modelled at ~0.7 ms resolution (coarser on
signals over ~40 minutes, so the model holds at most ~2 million steps)
(:meth:`~afxmatch.dsp.limiter.TruePeakLimiter.coarse_gain_db`), in milliseconds. The
model is solved for the target, offset by what it missed at the last real pass, so
usually one or two passes reach the target where a secant on the passes alone took four.
The output is always a real limiter pass; only the choice of gain uses the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .amount import check_amount
from .errors import InvalidParameterError

DEFAULT_CEILING_DBTP = -1.0
LOUDNESS_RANGE_LUFS = (-70.0, 0.0)
TRUE_PEAK_RANGE_DBTP = (-30.0, 0.0)
TOLERANCE_LU = 0.1      # the iteration stops this close to the target
MAX_ITERATIONS = 8
MIN_SLOPE = 0.05        # dLUFS/dgain assumed at least this (a heavily limited signal)
FINISH_GAIN_RANGE_DB = (-60.0, 60.0)


def check_options(amount: float = 1.0, loudness_lufs: float | None = None,
                  true_peak_dbtp: float | None = None) -> None:
    """Raise :class:`InvalidParameterError` with the value and the valid range."""
    check_amount(amount)
    if loudness_lufs is not None:
        _check_range("--loudness", loudness_lufs, LOUDNESS_RANGE_LUFS, "LUFS", "-14")
    if true_peak_dbtp is not None:
        _check_range("--true-peak", true_peak_dbtp, TRUE_PEAK_RANGE_DBTP, "dBTP", "-1")


def _check_range(option: str, value, bounds: tuple[float, float], unit: str, example: str) -> None:
    lo, hi = bounds
    try:
        ok = math.isfinite(float(value)) and lo <= float(value) <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidParameterError(f"{option} must be from {lo:g} to {hi:g} {unit} "
                                    f"(e.g. {example}), got {value!r}")


@dataclass(frozen=True)
class FinishSpec:
    """What the finish aims at, and where each number came from (for the report)."""

    target_lufs: float
    ceiling_dbtp: float
    target_source: str    # "--loudness" or "reference"
    ceiling_source: str   # "--true-peak" or "default"


def finish_spec(loudness_lufs: float | None, true_peak_dbtp: float | None,
                matched_target_lufs: float) -> FinishSpec | None:
    """The finish for the options, or None when neither is given (plain behaviour).

    ``matched_target_lufs``: the loudness plain matching aims at (the reference's,
    scaled by the amount), used when only ``--true-peak`` is given.
    """
    if loudness_lufs is None and true_peak_dbtp is None:
        return None
    target, t_src = (float(loudness_lufs), "--loudness") if loudness_lufs is not None else \
        (float(matched_target_lufs), "reference")
    ceiling, c_src = (float(true_peak_dbtp), "--true-peak") if true_peak_dbtp is not None else \
        (DEFAULT_CEILING_DBTP, "default")
    return FinishSpec(target, ceiling, t_src, c_src)


MODEL_CHUNK_MAX = 32     # samples per step of the loudness model (the largest divisor of the hop up to this)
MODEL_MAX_CHUNKS = 2_000_000   # longer signals get coarser steps, so the model's memory stays bounded
MODEL_TOLERANCE_LU = 0.005
MODEL_MAX_STEPS = 30
MODEL_GRID_DB = 2.0      # the search when the secant fails: this grid, then 1/8 of it around the best


class LoudnessModel:
    """Integrated loudness of ``limiter`` run over ``x * 10 ** (gain_db / 20)``, for any
    ``gain_db``, without running it: ``x``'s interval true peaks (largest per chunk) and
    K-weighted energies (per chunk and channel) are measured once; :meth:`lufs` weights
    the energies by the limiter's modelled gain and applies BS.1770's blocks and gates.
    Gain changes much slower than the K-weighting filter's response, so weighting the
    energies stands in for K-weighting the limited signal."""

    def __init__(self, chunk_peak_db: np.ndarray, energy: np.ndarray, chunk: int, sample_rate: float,
                 limiter, offset_db: float = 0.0):
        """From the measurements (see :meth:`of_signal`, :class:`LoudnessModelStream`):
        each chunk's largest interval true peak (dB) and its K-weighted energy per channel
        (chunks of whole 100 ms hops only), of a signal that the model then sees raised by
        ``offset_db``."""
        from .analysis.loudness import hop_length

        self.sample_rate, self.limiter, self.chunk = sample_rate, limiter, int(chunk)
        self.chunk_peak_db = np.asarray(chunk_peak_db, np.float64) + offset_db
        self.per_hop = hop_length(sample_rate)[0] // self.chunk
        self.n_hops = energy.shape[1] // self.per_hop
        self.energy = energy[:, : self.n_hops * self.per_hop] * 10.0 ** (offset_db / 10.0)

    @staticmethod
    def chunk_for(sample_rate: float, n_samples: int = 0) -> int:
        """Samples per model step: the largest divisor of the 100 ms hop up to
        MODEL_CHUNK_MAX, or up to ``n_samples / MODEL_MAX_CHUNKS`` on long signals (about
        40 minutes at 48 kHz and more), so the model holds at most ~2 million steps."""
        from .analysis.loudness import hop_length

        hop = hop_length(sample_rate)[0]
        top = max(MODEL_CHUNK_MAX, int(n_samples) // MODEL_MAX_CHUNKS)
        return max(d for d in range(1, min(top, hop) + 1) if hop % d == 0)

    @classmethod
    def of_signal(cls, x: np.ndarray, sample_rate: float, limiter) -> "LoudnessModel":
        """The model of ``(channels, n)`` audio in memory."""
        from .analysis.loudness import hop_length, k_weight
        from .dsp.truepeak import interval_peaks

        channels, n = x.shape
        chunk, hop = cls.chunk_for(sample_rate, n), hop_length(sample_rate)[0]
        whole = n // hop * hop
        y = k_weight(x[:, :whole], sample_rate).reshape(channels, -1, chunk)
        energy = np.einsum("cnk,cnk->cn", y, y, dtype=np.float64)
        return cls(_db(_chunk_max(interval_peaks(x), chunk)), energy, chunk, sample_rate, limiter)

    def lufs(self, gain_db: float) -> float:
        from .analysis.loudness import loudness_from_hops

        g = self.limiter.coarse_gain_db(self.chunk_peak_db, self.chunk, gain_db)[: self.energy.shape[1]]
        weighted = self.energy * 10.0 ** ((gain_db + g) / 10.0)
        hops = weighted.reshape(weighted.shape[0], self.n_hops, self.per_hop).sum(axis=-1)
        return loudness_from_hops(hops, self.sample_rate)

    def solve(self, target_lufs: float, start_db: float, gain_range: tuple[float, float]) -> float:
        """The gain whose modelled loudness is ``target_lufs``, within ``gain_range``: a
        secant from ``start_db``; when that does not converge (the target is out of reach,
        or the loudness is not monotonic in the gain: pushing quiet passages over the
        gates can lower it), the gain of the grid point closest to the target."""
        lo, hi = gain_range
        gain, history = float(np.clip(start_db, lo, hi)), []
        for _ in range(MODEL_MAX_STEPS):
            loud = self.lufs(gain)
            if not math.isfinite(loud):
                break
            history.append((gain, loud))
            err = target_lufs - loud
            if abs(err) <= MODEL_TOLERANCE_LU:
                return gain
            new = float(np.clip(gain + err / _slope(history), lo, hi))
            if new == gain:
                break
            gain = new
        def miss(g: float) -> float:
            loud = self.lufs(g)
            return abs(target_lufs - loud) if math.isfinite(loud) else math.inf

        best = min([g for g, _ in history] + list(np.arange(lo, hi, MODEL_GRID_DB)) + [hi], key=miss)
        fine = np.clip(best + np.arange(-MODEL_GRID_DB, MODEL_GRID_DB + 1e-9, MODEL_GRID_DB / 8), lo, hi)
        return float(min(fine, key=miss))


def _slope(history: list[tuple[float, float]]) -> float:
    """dLUFS/dgain from the last two ``(gain, loudness)`` points (1 with fewer), kept in
    ``[MIN_SLOPE, 1]``: a limiter never raises the loudness faster than the gain."""
    if len(history) < 2:
        return 1.0
    (g0, l0), (g1, l1) = history[-2], history[-1]
    return 1.0 if g1 == g0 else min(1.0, max(MIN_SLOPE, (l1 - l0) / (g1 - g0)))


def _chunk_max(peaks: np.ndarray, chunk: int) -> np.ndarray:
    """Largest of each ``chunk`` consecutive linear peaks (the last chunk may be short)."""
    chunks = -(-len(peaks) // chunk)
    padded = np.zeros(chunks * chunk, np.float32)
    padded[: len(peaks)] = peaks
    return padded.reshape(chunks, chunk).max(axis=1)


def _db(linear: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(np.asarray(linear, np.float64))


class LoudnessModelStream:
    """The measurements of :class:`LoudnessModel` taken block by block (bounded memory: a
    peak and one energy per channel for each of at most ~2 million steps; ``n_samples``,
    the signal's length, sets the step): feed ``(channels, n)`` blocks with
    :meth:`add`, then :meth:`model`. K-weighting by the streamed IIR
    (:class:`afxmatch.analysis.stream.KWeightedEnergies`), so the energies equal the
    in-memory FFT filtering's up to float rounding."""

    def __init__(self, sample_rate: float, channels: int, limiter, n_samples: int = 0):
        from .analysis.stream import KWeightedEnergies
        from .dsp.truepeak import IntervalPeakStream

        self.sample_rate, self.limiter = sample_rate, limiter
        self.chunk = LoudnessModel.chunk_for(sample_rate, n_samples)
        self.kw = KWeightedEnergies(sample_rate, channels, self.chunk)
        self.peaks = IntervalPeakStream(channels)
        self.rest = np.zeros(0, np.float32)       # peaks of a chunk not yet complete
        self.maxima: list[np.ndarray] = []        # per complete chunk

    def add(self, block: np.ndarray) -> None:
        self.kw.add(block)
        p = np.concatenate([self.rest, self.peaks.add(block)])
        whole = len(p) // self.chunk * self.chunk
        self.maxima.append(p[:whole].reshape(-1, self.chunk).max(axis=1))
        self.rest = p[whole:]

    def model(self, offset_db: float = 0.0) -> LoudnessModel:
        """The model of everything fed, raised by ``offset_db``."""
        last = _chunk_max(np.concatenate([self.rest, self.peaks.flush()]), self.chunk)
        return LoudnessModel(_db(np.concatenate(self.maxima + [last])), self.kw.energies(), self.chunk,
                             self.sample_rate, self.limiter, offset_db)


def search_finish(spec: FinishSpec, rendered_lufs: float, rendered_peak_db: float, run_pass, make_model,
                  threshold_db: float, gain_range: tuple[float, float] = FINISH_GAIN_RANGE_DB):
    """The finish gain search, wherever the audio is (in memory or streamed from a file).

    ``run_pass(gain_db) -> (lufs, limiter, result)`` makes one real limiter pass at that
    finish gain; ``make_model()`` gives the :class:`LoudnessModel` of the signal before
    the finish gain (called at most once, when first needed); ``rendered_lufs`` and
    ``rendered_peak_db`` are that signal's loudness and sample peak; ``threshold_db`` the
    limiter's. Returns ``(gain_db, history, lufs, limiter, result)`` of the last pass,
    ``history`` its ``(gain, loudness)`` per pass (empty for silence).
    """
    lo, hi = gain_range
    target = spec.target_lufs
    if not math.isfinite(rendered_lufs):   # silent (all gated): nothing to aim with
        loud, lim, result = run_pass(0.0)
        return 0.0, [], loud, lim, result
    gain = float(np.clip(target - rendered_lufs, lo, hi))
    history, model = [], None
    if rendered_peak_db + gain > threshold_db:
        # sample peaks over the limiter's threshold: it will act, so aim with the model
        model = make_model()
        gain = model.solve(target, gain, gain_range)
    while True:
        loud, lim, result = run_pass(gain)
        history.append((gain, loud))
        err = target - loud
        if not math.isfinite(loud) or abs(err) <= TOLERANCE_LU or len(history) >= MAX_ITERATIONS:
            break
        if lim.max_reduction_db == 0.0:   # the limiter did nothing: loudness follows the gain
            new = float(np.clip(gain + err, lo, hi))
        else:   # aim with the model, offset by what it missed at this pass
            model = model or make_model()
            new = model.solve(target - (loud - model.lufs(gain)), gain + err / _slope(history), gain_range)
        if new == gain:    # at the end of the gain range: the target is out of reach
            break
        gain = new
    return gain, history, loud, lim, result


def finish_report(spec: FinishSpec, gain: float, history: list, loud: float, peak_db: float, lim) -> dict:
    """The report's ``finish`` block."""
    target = spec.target_lufs
    reached = math.isfinite(loud) and abs(target - loud) <= 0.5
    report = {
        "target_lufs": round(target, 3), "target_source": spec.target_source,
        "ceiling_dbtp": spec.ceiling_dbtp, "ceiling_source": spec.ceiling_source,
        "output_lufs": round(loud, 3) if math.isfinite(loud) else None,
        "output_true_peak_dbtp": round(peak_db, 3) if math.isfinite(peak_db) else None,
        "target_reached": reached,
        "gain_db": round(gain, 4),   # the finish's own gain, after the chain, before the limiter
        "iterations": [{"gain_db": round(g, 4), "lufs": round(v, 3) if math.isfinite(v) else None}
                       for g, v in history],
        "limiter": {**lim.settings(),
                    "max_gain_reduction_db": round(lim.max_reduction_db, 3),
                    "mean_gain_reduction_db": round(lim.mean_reduction_db, 4),
                    "limited_fraction": round(lim.limited_fraction, 4)},
        "measured_with": "integrated loudness ITU-R BS.1770-4 (afxmatch.analysis.loudness); "
                         "true peak 4x oversampled (afxmatch.dsp.truepeak)",
    }
    if not reached:
        report["note"] = ("target loudness out of reach under this ceiling: the finish gain that "
                          "comes closest was used" if math.isfinite(loud) else
                          "the output is silent: no loudness to aim at")
    return report


def apply_finish(rendered: np.ndarray, sample_rate: float, spec: FinishSpec, rendered_lufs: float,
                 gain_range: tuple[float, float] = FINISH_GAIN_RANGE_DB) -> tuple[np.ndarray, float, dict]:
    """Finish gain + limiter so ``rendered`` (the matched chain's output, ``(C, N)``
    float32, integrated loudness ``rendered_lufs``) reaches ``spec``.
    Returns ``(output, finish_gain_db, report)``.

    The output is exactly ``TruePeakLimiter(...)`` streamed over
    ``rendered * np.float32(10 ** (finish_gain_db / 20))``, so a streamed render with the
    same gain and limiter settings writes the same samples.
    """
    from .analysis.features import sample_peak_db
    from .analysis.loudness import integrated_loudness
    from .dsp.limiter import TruePeakLimiter, limit
    from .dsp.truepeak import true_peak_db

    settings = TruePeakLimiter(sample_rate, rendered.shape[0], spec.ceiling_dbtp)

    def run_pass(gain_db: float):
        out, lim = limit(rendered * np.float32(10 ** (gain_db / 20)), sample_rate, spec.ceiling_dbtp)
        return integrated_loudness(out, sample_rate), lim, out

    gain, history, loud, lim, out = search_finish(
        spec, rendered_lufs, sample_peak_db(rendered) if rendered.size else -math.inf, run_pass,
        lambda: LoudnessModel.of_signal(rendered, sample_rate, settings), settings.threshold_db, gain_range)
    return out, gain, finish_report(spec, gain, history, loud, true_peak_db(out), lim)


def safety_for_finish(spec: FinishSpec, wanted_gain_db: float) -> dict:
    """The report's ``safety`` block when the limiter keeps the peaks (no gain cut)."""
    wanted = round(wanted_gain_db, 3) if math.isfinite(wanted_gain_db) else None
    return {"peak_ceiling_dbfs": spec.ceiling_dbtp, "loudness_gain_wanted_db": wanted,
            "gain_reduced_for_peak_db": 0.0,
            "note": f"peaks held at {spec.ceiling_dbtp:g} dBTP (true peak) by the limiter; see finish"}
