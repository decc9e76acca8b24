"""ZamEQ2 VST3 presets (``.vstpreset``) through pedalboard, for the report's 6-band EQ.

ZamEQ2 (zam-plugins 4.2) has one low shelf, one high shelf and two peaks, so the chain is
two ZamEQ2 instances in series (load both, in order):

- instance 1: low shelf, peak 1, peak 2, high shelf;
- instance 2: peaks 3 and 4 (its shelves at +/-0.01 dB: ZamEQ2 outputs NaN at exactly 0 dB).

ZamEQ2 is not an RBJ EQ, so its settings are *fitted*, not copied, at the report's
sample rate (the presets are exact only at that rate):

- peaks: ZamEQ2's "bandwidth" is an Orfanidis design parameter, not Q (measured: bw 1 ~
  Q 12.5, bw 2 ~ Q 2.9, bw 3 ~ Q 1.1, bw 4 ~ Q 0.48, bw 6 ~ Q 0.08 at 1 kHz, where the
  shapes agree within 0.02-0.06 dB). Frequency, gain and bandwidth of each peak are
  fitted (least squares on a log-frequency grid) to the RBJ band's dB response,
  measured by rendering an impulse through the plugin. Near Nyquist the designs differ
  (Orfanidis keeps the analog gain at Nyquist; RBJ forces 0 dB): a +-12 dB peak at 8 kHz
  at 44.1 kHz is off by up to ~1.5 dB before fitting.
- shelves: ZamEQ2's shelves have a fixed slope (measured: an RBJ shelf of Q ~0.58) and no
  Q control; frequency and gain are fitted. RBJ shelves with another Q cannot be
  reproduced exactly.
- ranges: ZamEQ2 frequencies are 20-14000 Hz and gains -50..+20 dB; settings outside are
  fitted within these limits.

The worst-case difference between the rendered presets and the report's EQ is measured
after export and returned (and reported by the CLI). The compressor and output gain are
not exported in this format. Every value is set through ``parameters[k].raw_value``
(attribute setters snap to a coarse grid), and each plugin processes one block before
``preset_data`` is read (the state only updates then).
"""

from __future__ import annotations

import math

import numpy as np

from ..dsp.numpy_chain import eq_magnitude_db
from ..params import EQ_BANDS
from ..render import vst3_backend
from ..render.vst3_backend import N_EQ as N_INSTANCES, set_value  # noqa: F401
from ..render.zam_map import BW_RANGE, FREQ_RANGE, GAIN_RANGE, MIN_GAIN_DB, peak_bandwidth
from ..render.zam_map import safe_gain as _safe_gain

IR_LEN = 1 << 15
# where each afxmatch band goes: (instance, ZamEQ2 band key)
LAYOUT = vst3_backend.EQ_LAYOUT


def available() -> bool:
    return vst3_backend.available((vst3_backend.EQ_PLUGIN,))


def load_zameq2():
    """A ZamEQ2 instance (found as :func:`afxmatch.render.vst3_backend.find_plugin` does)."""
    from . import PresetError
    try:
        return vst3_backend.load_plugin(vst3_backend.EQ_PLUGIN)
    except vst3_backend.PluginError as err:
        raise PresetError(f"{err} (needed to export .vstpreset)") from None


def neutral(plugin) -> None:
    for band, g in (("1", MIN_GAIN_DB), ("2", -MIN_GAIN_DB), ("l", MIN_GAIN_DB), ("h", -MIN_GAIN_DB)):
        set_value(plugin, f"boost_cut_{band}_db", g)
    set_value(plugin, "master_gain_db", 0.0)


def plugin_response_db(plugins, sample_rate: float, freqs: np.ndarray) -> np.ndarray:
    """dB response of ``plugins`` in series, measured with an impulse, at ``freqs``."""
    x = np.zeros((1, IR_LEN), np.float32)
    x[0, 0] = 1.0
    for plugin in plugins:
        x = plugin.process(x, float(sample_rate), reset=True)
    spec = np.abs(np.fft.rfft(x[0].astype(np.float64)))
    f = np.fft.rfftfreq(IR_LEN, 1.0 / sample_rate)
    return np.interp(freqs, f, 20 * np.log10(spec + 1e-30))


def report_eq_db(params: dict, sample_rate: float, freqs: np.ndarray, only: str | None = None) -> np.ndarray:
    """The report's EQ in dB (``only``: one band prefix, the others flat)."""
    p = dict(params)
    if only is not None:
        for prefix, _ in EQ_BANDS:
            if prefix != only:
                p[f"{prefix}_gain_db"] = 0.0
    return eq_magnitude_db(p, sample_rate, np.asarray(freqs, dtype=np.float64))[0]


def fit_grid(sample_rate: float, n: int = 160) -> np.ndarray:
    return np.geomspace(20.0, min(20000.0, 0.45 * sample_rate), n)


def fit_band(plugin, prefix: str, params: dict, sample_rate: float, grid: np.ndarray) -> dict:
    """ZamEQ2 settings (freq, gain[, bw]) fitted to one RBJ band; returns ``{key: value}``."""
    from scipy.optimize import least_squares

    _, band = LAYOUT[prefix]
    target = report_eq_db(params, sample_rate, grid, only=prefix)
    f0, g0, q0 = (params[f"{prefix}_{s}"] for s in ("freq_hz", "gain_db", "q"))
    is_peak = band in ("1", "2")

    def settings(v):
        s = {f"frequency_{band}_hz": math.exp(v[0]), f"boost_cut_{band}_db": _safe_gain(v[1])}
        if is_peak:
            s[f"bandwidth_{band}"] = v[2]
        return s

    def residual(v):
        neutral(plugin)
        for k, val in settings(v).items():
            set_value(plugin, k, val)
        return plugin_response_db([plugin], sample_rate, grid) - target

    lo = [math.log(FREQ_RANGE[0]), GAIN_RANGE[0]] + ([BW_RANGE[0]] if is_peak else [])
    hi = [math.log(FREQ_RANGE[1]), GAIN_RANGE[1]] + ([BW_RANGE[1]] if is_peak else [])
    x0 = [math.log(min(max(f0, FREQ_RANGE[0]), FREQ_RANGE[1])), min(max(g0, lo[1]), hi[1])]
    if is_peak:
        # start at the mid-gain-edge map (render/zam_map.py), then fit
        x0.append(min(max(peak_bandwidth(math.exp(x0[0]), q0, sample_rate), BW_RANGE[0]), BW_RANGE[1]))
    if abs(g0) < MIN_GAIN_DB:   # a flat band: nothing to fit
        return settings(x0)
    fit = least_squares(residual, x0, bounds=(lo, hi), diff_step=1e-4, max_nfev=60,
                        x_scale=[0.1, 1.0] + ([0.1] if is_peak else []))
    return settings(fit.x)


def zameq2_presets(settings_obj) -> tuple[list[bytes], list[str], float]:
    """Fit, build and verify the ZamEQ2 chain; returns (preset blobs, notes, max error dB)."""
    params, sr = settings_obj.params, settings_obj.sample_rate
    grid = fit_grid(sr)
    work = load_zameq2()
    chosen: list[dict] = [{} for _ in range(N_INSTANCES)]
    for prefix, _ in EQ_BANDS:
        instance, _band = LAYOUT[prefix]
        chosen[instance].update(fit_band(work, prefix, params, sr, grid))
    blobs = []
    silence = np.zeros((1, 1024), np.float32)
    for values in chosen:
        plugin = load_zameq2()
        neutral(plugin)
        for k, v in values.items():
            set_value(plugin, k, v)
        plugin.process(silence, float(sr), reset=True)   # state updates only after a process()
        blobs.append(bytes(plugin.preset_data))
    # verify: fresh plugins loaded from the presets vs the report's EQ
    err = float(np.max(np.abs(render_presets_db(blobs, sr, grid) - report_eq_db(params, sr, grid))))
    notes = [f"ZamEQ2 x{N_INSTANCES} in series (instance 1: low shelf, peaks 1-2, high shelf; "
             f"instance 2: peaks 3-4), fitted at {sr:g} Hz; worst-case difference from the "
             f"report's EQ {err:.2f} dB (20 Hz-{grid[-1] / 1000:.1f} kHz); compressor and output "
             "gain not included"]
    for prefix, _ in EQ_BANDS:
        f = params[f"{prefix}_freq_hz"]
        if f > FREQ_RANGE[1]:
            notes.append(f"{prefix}_freq_hz {f:.0f} Hz is above ZamEQ2's 14 kHz limit; fitted within it")
        if params[f"{prefix}_gain_db"] > GAIN_RANGE[1]:
            notes.append(f"{prefix}_gain_db above ZamEQ2's +20 dB limit; fitted within it")
    return blobs, notes, err


def render_presets_db(blobs, sample_rate: float, freqs: np.ndarray) -> np.ndarray:
    plugins = []
    for blob in blobs:
        plugin = load_zameq2()
        plugin.preset_data = blob
        plugins.append(plugin)
    return plugin_response_db(plugins, sample_rate, freqs)
