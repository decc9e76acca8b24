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
gain -> limit -> measure (BS.1770 integrated loudness, :mod:`afxmatch.analysis.loudness`)
-> correct the gain by the error over the measured slope (secant), until the output is
within :data:`TOLERANCE_LU` of the target (at most :data:`MAX_ITERATIONS` renders). The
finish gain stays within :data:`FINISH_GAIN_RANGE_DB`; a target that needs more is
reported as missed.
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


def apply_finish(rendered: np.ndarray, sample_rate: float, spec: FinishSpec, rendered_lufs: float,
                 gain_range: tuple[float, float] = FINISH_GAIN_RANGE_DB) -> tuple[np.ndarray, float, dict]:
    """Finish gain + limiter so ``rendered`` (the matched chain's output, ``(C, N)``
    float32, integrated loudness ``rendered_lufs``) reaches ``spec``.
    Returns ``(output, finish_gain_db, report)``.

    The output is exactly ``TruePeakLimiter(...)`` streamed over
    ``rendered * np.float32(10 ** (finish_gain_db / 20))``, so a streamed render with the
    same gain and limiter settings writes the same samples.
    """
    from .analysis.loudness import integrated_loudness
    from .dsp.limiter import limit
    from .dsp.truepeak import true_peak_db

    lo, hi = gain_range
    target = spec.target_lufs
    if not math.isfinite(rendered_lufs):   # silent (all gated): nothing to aim with
        gain = 0.0
        out, lim = limit(rendered, sample_rate, spec.ceiling_dbtp)
        loud, history = integrated_loudness(out, sample_rate), []
    else:
        gain = float(np.clip(target - rendered_lufs, lo, hi))
        history = []           # (gain, measured loudness)
        while True:
            out, lim = limit(rendered * np.float32(10 ** (gain / 20)), sample_rate, spec.ceiling_dbtp)
            loud = integrated_loudness(out, sample_rate)
            history.append((gain, loud))
            err = target - loud
            if not math.isfinite(loud) or abs(err) <= TOLERANCE_LU or len(history) >= MAX_ITERATIONS:
                break
            slope = 1.0
            if len(history) >= 2:
                (g0, l0), (g1, l1) = history[-2], history[-1]
                if g1 != g0:
                    slope = min(1.0, max(MIN_SLOPE, (l1 - l0) / (g1 - g0)))
            new = float(np.clip(gain + err / slope, lo, hi))
            if new == gain:    # at the end of the gain range: the target is out of reach
                break
            gain = new
    peak = true_peak_db(out)
    reached = math.isfinite(loud) and abs(target - loud) <= 0.5
    report = {
        "target_lufs": round(target, 3), "target_source": spec.target_source,
        "ceiling_dbtp": spec.ceiling_dbtp, "ceiling_source": spec.ceiling_source,
        "output_lufs": round(loud, 3) if math.isfinite(loud) else None,
        "output_true_peak_dbtp": round(peak, 3) if math.isfinite(peak) else None,
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
        report["note"] = ("target loudness not reached: the finish gain is at the end of its range"
                          if math.isfinite(loud) else "the output is silent: no loudness to aim at")
    return out, gain, report


def safety_for_finish(spec: FinishSpec, wanted_gain_db: float) -> dict:
    """The report's ``safety`` block when the limiter keeps the peaks (no gain cut)."""
    wanted = round(wanted_gain_db, 3) if math.isfinite(wanted_gain_db) else None
    return {"peak_ceiling_dbfs": spec.ceiling_dbtp, "loudness_gain_wanted_db": wanted,
            "gain_reduced_for_peak_db": 0.0,
            "note": f"peaks held at {spec.ceiling_dbtp:g} dBTP (true peak) by the limiter; see finish"}
