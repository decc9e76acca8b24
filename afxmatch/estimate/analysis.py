"""The rule-based ``analysis`` method: no model, no rendering in the loop.

1. EQ: least-squares fit of the 6 bands' dB magnitude response (plus a free offset) to the
   smoothed long-term spectral difference ``reference - input``: bounded least squares on
   the normalised parameters from several starting points, the best fit kept.
2. Compressor: the threshold/ratio whose static curve, applied to the EQ'd input's 50 ms
   frame levels, best reproduces the reference's level-distribution shape.
3. Output gain: set later by the pipeline from a render, so the output's integrated
   loudness equals the reference's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares

from ..analysis.features import Features, level_profile
from ..analysis.spectrum import frequency_grid
from ..dsp import formulas, numpy_chain
from ..params import EQ_GAIN_DB, ParamSpace

FIT_FRACTION = 1.0 / 6.0
FIT_LOW_HZ = 20.0
FIT_POINTS = 200
FIT_STARTS = 4
FIT_MAX_EVALS = 100
FD_STEP = 1e-6
ATTACK_MS, RELEASE_MS, KNEE_DB = 1.0, 100.0, 6.0
RATIOS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _eq_names(space: ParamSpace) -> list[str]:
    return [s.name for s in space.specs if s.group == "eq"]


def target_curve(inp: Features, ref: Features, sample_rate: float):
    """``(grid_hz, target_db, weight)``: what the EQ should do to ``inp`` to sound like ``ref``.

    The difference is clipped to the EQ's gain range; frequencies where either signal is
    more than 60 dB below its own maximum carry little weight (there is nothing to shape).
    """
    top = min(inp.top_hz, ref.top_hz, ParamSpace(sample_rate)["hs_freq_hz"].max)
    grid = frequency_grid(top, FIT_POINTS, FIT_LOW_HZ)
    a, b = inp.match_spectrum_db(grid, FIT_FRACTION), ref.match_spectrum_db(grid, FIT_FRACTION)
    diff = np.clip(b - a - np.median(b - a), -EQ_GAIN_DB, EQ_GAIN_DB)
    floor = np.minimum(a - a.max(), b - b.max())
    weight = np.clip((floor + 80.0) / 20.0, 0.05, 1.0)
    return grid, diff, weight


def eq_fit_problem(grid_hz: np.ndarray, target_db: np.ndarray, weight: np.ndarray, sample_rate: float):
    """The least-squares problem :func:`fit_eq_curve` solves, on ``z`` = the normalised EQ
    parameters plus a dB offset: ``(names, idx, base, residual(z), jacobian(z))`` with
    ``idx`` the EQ parameters' places in the full normalised vector ``base``.

    The Jacobian is a forward difference that uses the cascade's separability (its dB
    response is the sum of the bands'): one batched evaluation of each band at the point
    and with every band's frequency, gain or Q stepped at once, 4 settings instead of one
    per parameter (a 4-start fit 0.93 -> 0.58 s)."""
    space = ParamSpace(sample_rate)
    names = _eq_names(space)
    idx = [space.names.index(n) for n in names]
    base = space.normalise(space.defaults())
    grid = np.asarray(grid_hz, dtype=np.float64)
    sw = np.sqrt(weight / weight.sum())
    n_eq = len(idx)
    # parameter j: its band's row in band_magnitude_db's output, and the setting that steps it
    bands = formulas.band_prefixes()
    prefix_of = {n: next(p for p in bands if n.startswith(p + "_")) for n in names}
    band_of = np.array([bands.index(prefix_of[n]) for n in names])
    suffixes = ("freq_hz", "gain_db", "q")
    setting_of = np.array([1 + suffixes.index(n[len(prefix_of[n]) + 1:]) for n in names])

    def band_db(z_eq: np.ndarray) -> np.ndarray:
        """``(batch, n_eq)`` -> each band's dB response ``(batch, n_bands, n_freq)``."""
        u = np.repeat(base[None], len(z_eq), 0)
        u[:, idx] = z_eq
        params = space.denormalise_batch(u)
        return np.concatenate(list(formulas.band_magnitude_db(params, sample_rate, grid)), axis=-2)

    def residual(z):
        return sw * (band_db(z[None, :n_eq])[0].sum(0) + z[n_eq] - target_db)

    def jacobian(z):
        step = FD_STEP * np.where(z[:n_eq] > 0.5, -1.0, 1.0)
        zz = np.repeat(z[None, :n_eq], 4, 0)   # the point, then frequencies, gains, Qs stepped
        zz[setting_of, np.arange(n_eq)] += step
        db = band_db(zz)
        jac = np.empty((len(grid), n_eq + 1))
        jac[:, :n_eq] = ((db[setting_of, band_of] - db[0, band_of]) * sw).T / step
        jac[:, n_eq] = sw   # the offset
        return jac

    return names, idx, base, residual, jacobian


def fit_eq_curve(grid_hz: np.ndarray, target_db: np.ndarray, weight: np.ndarray,
                 sample_rate: float, starts: int = FIT_STARTS,
                 seed: int = 0) -> tuple[dict[str, float], float]:
    """Fit the 6-band EQ (+ a free dB offset) to ``target_db`` on ``grid_hz``.

    Bounded nonlinear least squares (scipy's trust-region reflective) on the normalised
    EQ parameters (:func:`eq_fit_problem`). Several starts (defaults, then random centre
    frequencies); the best fit wins. Returns ``(eq_params, weighted_rms_error_db)``; the
    offset is discarded (the output gain is set elsewhere).
    """
    space = ParamSpace(sample_rate)
    names, idx, base, residual, jacobian = eq_fit_problem(grid_hz, target_db, weight, sample_rate)
    n_eq = len(idx)
    rng = np.random.default_rng(seed)
    best = _multi_start(residual, jacobian, base[idx], names, starts, rng)
    values = space.denormalise(_scatter(base, idx, best.x[:n_eq]))
    return {n: values[n] for n in names}, math.sqrt(2 * best.cost)


def _multi_start(residual, jacobian, z_default, names, starts, rng):
    n_eq = len(z_default)
    lower = np.r_[np.zeros(n_eq), -60.0]
    upper = np.r_[np.ones(n_eq), 60.0]
    best = None
    for k in range(starts):
        z0 = np.r_[z_default, 0.0]
        if k:
            freq = [i for i, n in enumerate(names) if n.endswith("_freq_hz")]
            z0[freq] = rng.uniform(0.05, 0.95, len(freq))
        sol = least_squares(residual, z0, jac=jacobian, bounds=(lower, upper), method="trf",
                            x_scale=np.r_[np.ones(n_eq), 10.0], max_nfev=FIT_MAX_EVALS)
        if best is None or sol.cost < best.cost:
            best = sol
    return best


def _scatter(base: np.ndarray, idx: list[int], values: np.ndarray) -> np.ndarray:
    out = base.copy()
    out[idx] = values
    return out


def fit_compressor(levels: tuple[np.ndarray, np.ndarray, float], ref: Features) -> dict[str, float]:
    """Pick threshold and ratio so the static curve maps the input's frame levels onto a
    level distribution shaped like the reference's (see ``level_profile``).

    ``levels`` is ``(frame_rms_db, frame_peak_db, sample_peak_db)`` of the signal the
    compressor will see (the EQ'd input).
    """
    target = ref.profile()
    rms, peak, sample_peak = levels
    if rms.size < 4:
        return {}
    best, best_err = (0.0, 1.0), float(np.mean(np.abs(level_profile(rms, sample_peak) - target)))
    thresholds = np.unique(np.clip(np.round(np.percentile(peak, np.arange(5, 100, 5))), -60, 0))
    for thr in thresholds:
        for ratio in RATIOS[1:]:
            gc = formulas.static_curve_db(peak, thr, ratio, KNEE_DB)
            out_rms = rms + gc
            out_peak = float(np.max(peak + gc))
            err = float(np.mean(np.abs(level_profile(out_rms, out_peak) - target)))
            if err < best_err - 1e-9:
                best, best_err = (float(thr), ratio), err
    thr, ratio = best
    if ratio == 1.0:
        return {}
    return {"comp_threshold_db": thr, "comp_ratio": ratio, "comp_attack_ms": ATTACK_MS,
            "comp_release_ms": RELEASE_MS, "comp_knee_db": KNEE_DB}


def estimate_analysis(inp: Features, ref: Features, sample_rate: float,
                      eq_levels=None, starts: int = FIT_STARTS) -> dict[str, float]:
    """Parameters (without the final output gain) that move ``inp`` towards ``ref``.

    ``eq_levels`` (optional) measures the input after the fitted EQ, so the compressor is
    fitted on what it will actually see: a callable ``params -> (frame_rms_db,
    frame_peak_db, sample_peak_db)``. Without it the unequalised input's levels are used.
    """
    space = ParamSpace(sample_rate)
    grid, target, weight = target_curve(inp, ref, sample_rate)
    params = space.defaults()
    eq_values, _ = fit_eq_curve(grid, target, weight, sample_rate, starts=starts)
    params.update(eq_values)
    levels = eq_levels(params) if eq_levels is not None else \
        (inp.frame_rms_db, inp.frame_peak_db, inp.peak_db)
    params.update(fit_compressor(levels, ref))
    return params


def analysis_prior(x: np.ndarray | None, sample_rate: float, ref: np.ndarray | None, ref_rate: float,
                   inp: Features | None = None, ref_features: Features | None = None,
                   starts: int = FIT_STARTS, eq_levels=None) -> dict[str, float]:
    """The analysis estimate (EQ + compressor, output gain left neutral) used as the learned
    model's starting point. In use it is the ``analysis`` method's own fit (``starts`` = 4
    EQ-fit starts, ~0.6 s on a 3-minute track); the training bank's priors use
    ``afxmatch.model.bank.PRIOR_STARTS`` (1: cheap for thousands of pairs, and the shipped
    network measured better given the 4-start fit than one retrained on it).
    ``x``/``ref`` are ``(channels, samples)``; features are measured unless given, and
    ``eq_levels`` (see :func:`estimate_analysis`) made from ``x`` unless given."""
    from .. import analysis

    inp = inp if inp is not None else analysis.measure(x, sample_rate)
    ref_features = ref_features if ref_features is not None else analysis.measure(ref, ref_rate)
    eq_levels = eq_levels if eq_levels is not None else eq_levels_fn(x, sample_rate)
    params = estimate_analysis(inp, ref_features, sample_rate, eq_levels=eq_levels, starts=starts)
    return ParamSpace(sample_rate).validate(params, clip=True)


LEVEL_SAMPLE_S = 30.0  # seconds of audio the compressor fit looks at on long files
LEVEL_SEGMENT_S = 1.0


def level_sample_starts(n: int, sample_rate: float) -> tuple[np.ndarray | None, int]:
    """``(starts, segment_length)`` of :func:`level_sample` for ``n`` samples; ``starts``
    is None when the whole signal is the sample."""
    seg = int(LEVEL_SEGMENT_S * sample_rate)
    count = int(LEVEL_SAMPLE_S / LEVEL_SEGMENT_S)
    if n <= 2 * count * seg:
        return None, seg
    return np.linspace(0, n - seg, count).astype(int), seg


def level_sample(x: np.ndarray, sample_rate: float) -> np.ndarray:
    """``x`` itself when short; else ~``LEVEL_SAMPLE_S`` of 1 s segments spread evenly over
    the whole file (an unbiased sample of its level distribution), ``(channels, n)``."""
    starts, seg = level_sample_starts(x.shape[-1], sample_rate)
    if starts is None:
        return x
    return np.concatenate([x[:, s:s + seg] for s in starts], axis=-1)


def eq_levels_fn(x: np.ndarray, sample_rate: float):
    """``params -> (frame_rms_db, frame_peak_db, sample_peak_db)`` of ``x`` after the EQ in
    ``params``: what the compressor will see (levels from :func:`level_sample`, the sample
    peak of the whole EQ'd sample)."""
    return eq_levels_of_sample(level_sample(x, sample_rate), sample_rate)


def eq_levels_of_sample(sample: np.ndarray, sample_rate: float):
    """:func:`eq_levels_fn` given the level sample itself (a long file's segments read
    from disk), ``(channels, n)``."""
    from .. import analysis

    sample = np.ascontiguousarray(sample, dtype=np.float32)

    def levels(p):
        y = numpy_chain.eq_apply(sample, sample_rate, p)
        return (*analysis.features.frame_levels(y, sample_rate), analysis.features.sample_peak_db(y))

    return levels
