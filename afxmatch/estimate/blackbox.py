"""The ``blackbox`` method: derivative-free search (CMA-ES) over a VST3 plugin chain's
parameters, for effects that have no differentiable twin (as ST-ITO does).

What is searched: afxmatch's parameters that the plugin chain (ZamEQ2 x2 + ZamComp /
ZamCompX2, :mod:`afxmatch.render.vst3_backend`) can render, in their normalised ``[0, 1]``
space (``ParamSpace.normalise``: log scale for frequencies, Q and times):

- each band's frequency and gain (bounded to ZamEQ2's 20-14000 Hz and <= +20 dB);
- each peak's Q (the shelves' Q is not free in ZamEQ2: it follows the gain);
- compressor threshold, ratio, attack, release (<= ZamComp's 500 ms).

Every candidate is passed through :func:`vst3_backend.project` before it is rendered,
so each peak's Q stays where ZamEQ2 renders the RBJ band within ``PROJECT_TOL_DB``: the
parameters the report prints are the ones the plugins play. Make-up and output gain are
not searched: the objective is measured at the output gain the pipeline will set, so
pure gains are invisible to it.

The objective is the report's style distance (:func:`afxmatch.analysis.style_distances`,
numpy side), ``spectral_db + dynamics_db + loudness_lu``, between the plugin chain's
output on windows chosen across the input (the loudest of equal sections, as the model
method chooses them; at most ``MAX_TOTAL_S`` seconds in all, native rate and channels) and
the reference's features, at the pipeline's output gain
(:func:`afxmatch.analysis.distance.distances_at_output_gain`: the reference's loudness,
gates re-applied, lowered where the sample peak would pass the ceiling; ``loudness_lu``
is then what that cut costs). Each evaluation renders those windows through the plugins.

Search: CMA-ES (Hansen's (mu/mu_w, lambda) rules with rank-one and rank-mu updates and
cumulative step-size adaptation), started at the given estimate with step ``SIGMA0``;
candidates outside the box are evaluated at the nearest point in the box, plus a small
quadratic penalty for the distance. The start is evaluated first and the best evaluated
point is returned, so the result is never worse than the start on the objective. The
search stops after ``max_evals`` evaluations or ``time_budget`` seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..choices import check_search_limits
from ..params import EQ_BANDS, ParamSpace
from ..render import zam_map

WINDOW_S = 4.0
MAX_TOTAL_S = 12.0
DEFAULT_EVALS = 200
DEFAULT_TIME_BUDGET_S = 40.0
SIGMA0 = 0.06
BOX_PENALTY = 10.0
PROJECT_TOL_DB = 0.4
COMP_SEARCHED = ("comp_threshold_db", "comp_ratio", "comp_attack_ms", "comp_release_ms")


@dataclass
class BlackboxResult:
    params: dict[str, float]
    info: dict = field(default_factory=dict)


def searched_names() -> list[str]:
    names = []
    for prefix, kind in EQ_BANDS:
        names += [f"{prefix}_freq_hz", f"{prefix}_gain_db"] + ([f"{prefix}_q"] if kind == "peak" else [])
    return names + list(COMP_SEARCHED)


def search_box(space: ParamSpace, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised bounds of each searched parameter: the spec's range cut to what the
    plugins accept."""
    from ..render.vst3_backend import COMP_RELEASE_MAX_MS

    caps = {"freq_hz": zam_map.FREQ_RANGE[1], "gain_db": zam_map.GAIN_RANGE[1],
            "release_ms": COMP_RELEASE_MAX_MS}
    lo, hi = np.zeros(len(names)), np.ones(len(names))
    for i, n in enumerate(names):
        spec = space[n]
        for suffix, cap in caps.items():
            if n.endswith(suffix) and cap < spec.max:
                hi[i] = spec.normalise(max(cap, spec.min))
    return lo, hi


def select_input_windows(x: np.ndarray, sample_rate: float) -> np.ndarray:
    """``(channels, n)``: loud windows across ``x`` (at most ``MAX_TOTAL_S`` s), joined."""
    from .model import choose_windows

    win = int(WINDOW_S * sample_rate)
    if x.shape[-1] <= int(MAX_TOTAL_S * sample_rate):
        return np.ascontiguousarray(x, dtype=np.float32)
    starts = sorted(choose_windows(x.mean(axis=0), win, max(1, int(MAX_TOTAL_S / WINDOW_S))))
    return np.ascontiguousarray(np.concatenate([x[:, s:s + win] for s in starts], axis=1), dtype=np.float32)


class StyleObjective:
    """``params -> spectral_db + dynamics_db + loudness_lu`` of the plugin chain's output on
    ``windows`` vs ``ref_features``, at the pipeline's output gain. Keeps one plugin chain
    loaded."""

    def __init__(self, windows: np.ndarray, sample_rate: float, ref_features, params: Mapping[str, float]):
        from ..render.vst3_backend import build_chain

        self.x, self.sr, self.ref = windows, float(sample_rate), ref_features
        self.chain = build_chain(params, sample_rate, windows.shape[0])
        self.evaluations = 0

    def parts(self, params: Mapping[str, float]) -> dict[str, float]:
        from ..analysis import measure
        from ..analysis.distance import distances_at_output_gain

        self.chain.update(params)
        y = self.chain.process(self.x, self.sr, reset=True)
        self.evaluations += 1
        if not np.all(np.isfinite(y)):
            return {"spectral_db": math.inf, "dynamics_db": math.inf, "loudness_lu": math.inf}
        f = measure(y, self.sr)
        if not math.isfinite(f.loudness_lufs):
            return {"spectral_db": math.inf, "dynamics_db": math.inf, "loudness_lu": math.inf}
        return distances_at_output_gain(f, self.ref)

    def __call__(self, params: Mapping[str, float]) -> float:
        d = self.parts(params)
        return float(d["spectral_db"] + d["dynamics_db"] + (d["loudness_lu"] or 0.0))

    def close(self) -> None:
        self.chain.close()


class CMAES:
    """A small CMA-ES (minimisation) in numpy: ``ask()`` -> candidates, ``tell(fitness)``."""

    def __init__(self, x0: np.ndarray, sigma0: float, rng: np.random.Generator, popsize: int | None = None):
        n = len(x0)
        self.n, self.rng = n, rng
        self.lam = popsize or 4 + int(3 * math.log(n))
        self.mu = self.lam // 2
        w = math.log(self.mu + 0.5) - np.log(np.arange(1, self.mu + 1))
        self.w = w / w.sum()
        self.mueff = 1.0 / np.sum(self.w ** 2)
        self.cc = (4 + self.mueff / n) / (n + 4 + 2 * self.mueff / n)
        self.cs = (self.mueff + 2) / (n + self.mueff + 5)
        self.c1 = 2 / ((n + 1.3) ** 2 + self.mueff)
        self.cmu = min(1 - self.c1, 2 * (self.mueff - 2 + 1 / self.mueff) / ((n + 2) ** 2 + self.mueff))
        self.damps = 1 + 2 * max(0.0, math.sqrt((self.mueff - 1) / (n + 1)) - 1) + self.cs
        self.chin = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        self.mean, self.sigma = np.array(x0, dtype=np.float64), float(sigma0)
        self.pc, self.ps = np.zeros(n), np.zeros(n)
        self.B, self.D, self.C = np.eye(n), np.ones(n), np.eye(n)
        self.generation = 0

    def ask(self) -> np.ndarray:
        z = self.rng.standard_normal((self.lam, self.n))
        return self.mean + self.sigma * (z * self.D) @ self.B.T

    def tell(self, xs: np.ndarray, fitness: np.ndarray) -> None:
        n = self.n
        order = np.argsort(fitness)[: self.mu]
        old = self.mean
        self.mean = self.w @ xs[order]
        y = (self.mean - old) / self.sigma
        inv_sqrt_c = self.B @ np.diag(1 / self.D) @ self.B.T
        self.ps = (1 - self.cs) * self.ps + math.sqrt(self.cs * (2 - self.cs) * self.mueff) * inv_sqrt_c @ y
        self.generation += 1
        hsig = (np.linalg.norm(self.ps) / math.sqrt(1 - (1 - self.cs) ** (2 * self.generation))
                < (1.4 + 2 / (n + 1)) * self.chin)
        self.pc = (1 - self.cc) * self.pc + hsig * math.sqrt(self.cc * (2 - self.cc) * self.mueff) * y
        ys = (xs[order] - old) / self.sigma
        rank_mu = (ys.T * self.w) @ ys
        self.C = ((1 - self.c1 - self.cmu) * self.C
                  + self.c1 * (np.outer(self.pc, self.pc) + (1 - hsig) * self.cc * (2 - self.cc) * self.C)
                  + self.cmu * rank_mu)
        self.sigma *= math.exp((self.cs / self.damps) * (np.linalg.norm(self.ps) / self.chin - 1))
        self.C = (self.C + self.C.T) / 2
        d2, self.B = np.linalg.eigh(self.C)
        self.D = np.sqrt(np.maximum(d2, 1e-20))


def fitted_start(start: Mapping[str, float], sample_rate: float) -> tuple[dict[str, float], dict]:
    """The plugin-renderable parameters whose ZamEQ2 chain best follows ``start``'s RBJ EQ
    (:func:`afxmatch.render.zam_fit.fit_eq`, from ``start`` and from its projection), then
    projected (:func:`vst3_backend.project`) so the report's parameters describe what the
    plugins play. The compressor maps directly. Returns ``(params, fit info)``."""
    from ..dsp.numpy_chain import eq_magnitude_db
    from ..render import zam_fit
    from ..render.vst3_backend import project

    freqs, weights = zam_fit.fit_grid(sample_rate)
    target = eq_magnitude_db(start, sample_rate, np.asarray(freqs, dtype=np.float64))[0]
    snapped = project(start, sample_rate, PROJECT_TOL_DB)
    fitted, info = zam_fit.fit_eq(target, start, sample_rate, freqs, weights, extra_starts=[snapped])
    return project(fitted, sample_rate, PROJECT_TOL_DB), info


def estimate_blackbox(x: np.ndarray, sample_rate: float, ref_features, start: Mapping[str, float],
                      max_evals: int = DEFAULT_EVALS, time_budget: float | None = DEFAULT_TIME_BUDGET_S,
                      seed: int = 0, progress: Callable[[int, float], None] | None = None,
                      other_starts: Mapping[str, Mapping[str, float]] | None = None) -> BlackboxResult:
    """Search the plugin chain's parameters from ``start`` towards the reference's style.

    ``x``: ``(channels, samples)`` input; ``ref_features``: ``analysis.measure(ref, rate)``.
    ``start`` (e.g. the analysis estimate), and each of ``other_starts`` (e.g. ``{"model":
    the model's estimate}``), is turned into plugin settings by a fit of the plugin EQ to
    its RBJ EQ (:func:`fitted_start`); those points and the plain projections are
    evaluated and the best one starts the CMA-ES. Stops after ``max_evals`` evaluations
    (those included) or ``time_budget`` seconds (``None``: no limit). Returns the best
    evaluated (projected, plugin-renderable) parameters with ``out_gain_db = 0`` -- never
    worse on the objective than the evaluated starts -- and a summary: evaluations,
    seconds, objective at the start and at the best point.
    """
    from ..render.vst3_backend import project

    check_search_limits("blackbox", max_evals, time_budget)
    t0 = time.perf_counter()
    space = ParamSpace(sample_rate)
    starts, fit_info = {}, None
    for name, estimate in {"": start, **dict(other_starts or {})}.items():
        base = space.validate(dict(estimate), clip=True)
        base["out_gain_db"] = 0.0
        fitted, info = fitted_start(base, sample_rate)
        fit_info = fit_info or info   # the first start's fit, for the report
        starts[f"{name} fitted".strip()] = fitted
        starts[f"{name} projected".strip()] = project(base, sample_rate, PROJECT_TOL_DB)
    names = searched_names()
    idx = [space.names.index(n) for n in names]
    lo, hi = search_box(space, names)

    def to_params(u: np.ndarray) -> dict[str, float]:
        full = u_base.copy()
        full[idx] = u
        return project(space.denormalise(full), sample_rate, PROJECT_TOL_DB)

    windows = select_input_windows(x, sample_rate)
    objective = StyleObjective(windows, sample_rate, ref_features, starts["fitted"])
    fit_time = time.perf_counter() - t0
    es = None
    try:
        start_values = {k: objective(p) for k, p in starts.items()}
        first = min(start_values, key=start_values.get)
        best_p, best_f = starts[first], start_values[first]
        start_f = best_f
        u_base = space.normalise(best_p)   # the unsearched settings (knee, make-up) too
        u0 = np.clip(np.asarray(space.normalise(best_p))[idx], lo, hi)
        es = CMAES(u0, SIGMA0, np.random.default_rng(seed))

        def out_of_time() -> bool:
            return objective.evaluations >= max_evals or (
                time_budget is not None and time.perf_counter() - t0 > time_budget)

        stop = out_of_time()
        while not stop:
            xs = es.ask()
            fit = np.empty(len(xs))
            for i, u in enumerate(xs):
                inside = np.clip(u, lo, hi)
                p = to_params(inside)
                f = objective(p)
                fit[i] = f + BOX_PENALTY * float(np.sum((u - inside) ** 2))
                if f < best_f:
                    best_p, best_f = p, f
                if out_of_time():
                    stop = True
                    break
            if progress is not None:
                progress(objective.evaluations, best_f)
            if not stop:
                es.tell(xs, fit)
        evaluations = objective.evaluations
        parts = objective.parts(best_p)
    finally:
        objective.close()
    info = {"search": "CMA-ES", "evaluations": evaluations, "generations": es.generation if es else 0,
            "population": es.lam if es else 0, "seed": seed, "dimensions": len(names),
            "objective": "spectral_db + dynamics_db + loudness_lu (report style distance at the "
                         "pipeline's output gain) on input windows rendered through the plugins",
            "start": {"from": "EQ fitted to the start estimate's RBJ response (zam_fit), "
                              "compressor mapped directly", **fit_info,
                      "objective_fitted": round(start_values["fitted"], 4),
                      "objective_projected": round(start_values["projected"], 4), "chosen": first,
                      "candidates": {k: round(v, 4) for k, v in start_values.items()},
                      "seconds": round(fit_time, 2)},
            "window_s": round(windows.shape[-1] / sample_rate, 3),
            "limits": {"evaluations": int(max_evals), "time_budget_s": time_budget},
            "objective_start": round(start_f, 4), "objective_best": round(best_f, 4),
            "best_parts": parts, "seconds": round(time.perf_counter() - t0, 2)}
    return BlackboxResult(dict(best_p), info)
