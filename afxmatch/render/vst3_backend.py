"""The chain rendered through real VST3 plugins: ZamEQ2 and ZamComp / ZamCompX2
(zam-plugins 4.2) hosted by pedalboard.

Plugins are looked up in ``$AFXMATCH_VST3_PATH`` (folders separated by ``os.pathsep``)
and then in the standard VST3 folders (``~/.vst3``, ``/usr/lib/vst3``,
``/usr/local/lib/vst3``, ``/usr/lib64/vst3``); a missing plugin is a :class:`PluginError`
that names the folders searched and how to install zam-plugins.

Parameter map (afxmatch's 25 parameters -> plugin parameters; ``zam_map`` has the
derivations and ``docs/backends.md`` the measurements):

=====================  =========================================  ===========================
afxmatch               plugin                                      notes
=====================  =========================================  ===========================
ls_freq_hz, ls_gain_db ZamEQ2 #1 ``frequency_l_hz``, ``boost_cut_l_db``   exact RBJ shelf with
ls_q                   (none: fixed slope)                          Q = zam_map.shelf_q(gain)
p1_*, p2_*             ZamEQ2 #1 ``frequency/boost_cut/bandwidth_1, _2``  bandwidth: mid-gain
p3_*, p4_*             ZamEQ2 #2 ``frequency/boost_cut/bandwidth_1, _2``  edges matched
hs_freq_hz, hs_gain_db ZamEQ2 #1 ``frequency_h_hz``, ``boost_cut_h_db``   as the low shelf
comp_threshold_db      ZamComp ``threshold_db`` (-80..0)                  exact, hard knee
comp_ratio             ``ratio`` (1..20)                                  exact
comp_attack_ms         ``attack_ms`` (0.1..100)                           same one-pole tau
comp_release_ms        ``release_ms`` (1..500)                            clipped at 500 ms
comp_knee_db           ``knee_db`` = 0 always                             not representable
comp_makeup_db         ``makeup_db`` (0..30)                              exact
out_gain_db            a multiply after the plugins                       exact
=====================  =========================================  ===========================

- ZamEQ2 is mono with 4 bands (low shelf, 2 peaks, high shelf), so the 6-band EQ is two
  instances in series per channel (#2's shelves idle at +-0.01 dB). Frequencies are
  clipped to 20-14000 Hz, gains to -50..+20 dB and kept >= 0.01 dB from 0 (ZamEQ2 gives
  NaN at exactly 0 dB); bandwidths to 0.1-6.
- Compressor: ZamComp (mono) for one channel; ZamCompX2 with ``stereo_detection`` = max
  for two, so both channels get the same gain (linked, as afxmatch's); ZamComp per
  channel (not linked) for more. ZamComp's static curve is afxmatch's hard-knee curve on
  the *sample* peak level; its attack/release are one-pole smoothers of the gain
  reduction with time constants equal to the ms values (measured). Its knee is never
  used: with a knee ZamComp boosts levels below the threshold.
- Values are set through ``parameters[k].raw_value`` (normalised, linear in every Zam
  parameter): the attribute setters snap to a coarse grid.

Everything streams: :class:`Vst3Chain` has pedalboard's ``process(x, sr, reset)``, and
:func:`render_vst3` feeds it fixed ``BLOCK``-sample blocks, exactly as
``render.stream.StreamRenderer`` does, so a streamed and a whole render are identical.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import AfxmatchError
from ..params import EQ_BANDS
from . import zam_map
from .stream import PEDALBOARD_BLOCK

ENV_VAR = "AFXMATCH_VST3_PATH"
STANDARD_DIRS = ("~/.vst3", "/usr/lib/vst3", "/usr/local/lib/vst3", "/usr/lib64/vst3")
EQ_PLUGIN, COMP_MONO, COMP_STEREO = "ZamEQ2", "ZamComp", "ZamCompX2"
BLOCK = PEDALBOARD_BLOCK   # the streamed renderer's block: whole and streamed renders agree
N_EQ = 2
# where each afxmatch band goes: (ZamEQ2 instance, ZamEQ2 band key)
EQ_LAYOUT = {"ls": (0, "l"), "p1": (0, "1"), "p2": (0, "2"), "hs": (0, "h"), "p3": (1, "1"), "p4": (1, "2")}
COMP_RELEASE_MAX_MS = 500.0
STAGES = ("eq", "comp", "gain")


class PluginError(AfxmatchError):
    """A VST3 plugin is missing or cannot be loaded."""


def search_dirs() -> list[Path]:
    extra = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return [Path(p).expanduser() for p in (*extra, *STANDARD_DIRS)]


def find_plugin(name: str) -> Path:
    """The path of ``NAME.vst3`` in the first folder of :func:`search_dirs` that has it."""
    for folder in search_dirs():
        path = folder / f"{name}.vst3"
        if path.exists():
            return path
    raise PluginError(f"VST3 plugin {name}.vst3 not found in {', '.join(str(d) for d in search_dirs())}; "
                      f"install zam-plugins (scripts/install_zam_plugins.sh) or set ${ENV_VAR} "
                      "to the folder that holds it")


def plugin_identity(names=(EQ_PLUGIN, COMP_MONO, COMP_STEREO)) -> dict:
    """Which plugin files a render would load, for ``batch --resume``: per name the
    bundle's resolved path and each file in it as ``[relative path, size, mtime_ns]``
    (None where the plugin is not found). An updated, replaced or moved plugin changes it."""
    out: dict = {}
    for name in names:
        try:
            bundle = find_plugin(name).resolve()
        except PluginError:
            out[name] = None
            continue
        files = [bundle] if bundle.is_file() else sorted(f for f in bundle.rglob("*") if f.is_file())
        out[name] = {"path": str(bundle),
                     "files": [[f.relative_to(bundle).as_posix() if f != bundle else "", st.st_size,
                                st.st_mtime_ns] for f in files for st in (f.stat(),)]}
    return out


def available(names=(EQ_PLUGIN, COMP_MONO, COMP_STEREO)) -> bool:
    try:
        for n in names:
            find_plugin(n)
    except PluginError:
        return False
    return True


def load_plugin(name: str):
    import pedalboard

    path = find_plugin(name)
    try:
        return pedalboard.load_plugin(str(path))
    except Exception as err:  # pedalboard raises plain ImportError/RuntimeError
        raise PluginError(f"cannot load VST3 plugin {path}: {err}") from None


def set_value(plugin, key: str, value: float) -> None:
    """Set ``key`` to ``value`` (plugin units) exactly, through the normalised raw value."""
    par = plugin.parameters[key]
    lo, hi = float(par.range[0]), float(par.range[1])
    par.raw_value = min(max((float(value) - lo) / (hi - lo), 0.0), 1.0)


def release_quietly(plugins) -> None:
    """Drop plugin instances with stderr muted: the DPF plugins print a warning on every
    deletion ("asked to delete component while audio processor still active")."""
    import gc

    plugins.clear()
    try:
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:
        gc.collect()
        return
    try:
        os.dup2(null, 2)
        gc.collect()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


# --------------------------------------------------------------------------------------
# the parameter map
# --------------------------------------------------------------------------------------

def eq_settings(params: Mapping[str, float], sample_rate: float) -> list[dict[str, float]]:
    """ZamEQ2 settings (plugin units) of each instance, in order."""
    out = [{"master_gain_db": 0.0, "boost_cut_l_db": zam_map.MIN_GAIN_DB,
            "boost_cut_h_db": -zam_map.MIN_GAIN_DB} for _ in range(N_EQ)]
    for prefix, kind in EQ_BANDS:
        inst, band = EQ_LAYOUT[prefix]
        f = zam_map.clip_freq(params[f"{prefix}_freq_hz"])
        out[inst][f"frequency_{band}_hz"] = f
        out[inst][f"boost_cut_{band}_db"] = zam_map.safe_gain(params[f"{prefix}_gain_db"])
        if kind == "peak":
            bw = zam_map.peak_bandwidth(f, float(params[f"{prefix}_q"]), sample_rate)
            out[inst][f"bandwidth_{band}"] = min(max(bw, zam_map.BW_RANGE[0]), zam_map.BW_RANGE[1])
    return out


def comp_settings(params: Mapping[str, float]) -> dict[str, float]:
    return {"threshold_db": float(params["comp_threshold_db"]), "ratio": float(params["comp_ratio"]),
            "attack_ms": float(params["comp_attack_ms"]),
            "release_ms": min(float(params["comp_release_ms"]), COMP_RELEASE_MAX_MS),
            "knee_db": 0.0, "makeup_db": float(params["comp_makeup_db"]), "slew": 1.0}


def unrepresented(params: Mapping[str, float], sample_rate: float, tol_db: float = 0.1) -> list[str]:
    """What the plugins cannot do exactly for ``params``, one sentence each."""
    notes = []
    for prefix, kind in EQ_BANDS:
        f, g = params[f"{prefix}_freq_hz"], params[f"{prefix}_gain_db"]
        if not zam_map.FREQ_RANGE[0] <= f <= zam_map.FREQ_RANGE[1]:
            notes.append(f"{prefix}_freq_hz {f:.0f} Hz is outside ZamEQ2's 20-14000 Hz; clipped")
        if g > zam_map.GAIN_RANGE[1]:
            notes.append(f"{prefix}_gain_db {g:+.1f} dB is above ZamEQ2's +20 dB; clipped")
        if kind != "peak" and abs(params[f"{prefix}_q"] - zam_map.shelf_q(g)) > 0.01:
            notes.append(f"{prefix}_q {params[f'{prefix}_q']:.3f}: ZamEQ2 shelves have a fixed slope "
                         f"(Q {zam_map.shelf_q(g):.3f} at {g:+.1f} dB)")
        if kind == "peak":
            bw = zam_map.peak_bandwidth(zam_map.clip_freq(f), params[f"{prefix}_q"], sample_rate)
            if not zam_map.BW_RANGE[0] <= bw <= zam_map.BW_RANGE[1]:
                notes.append(f"{prefix}_q {params[f'{prefix}_q']:.3f} needs ZamEQ2 bandwidth {bw:.2f}, "
                             "outside 0.1-6; clipped")
            err = float(zam_map.peak_errors_db(f, g, params[f"{prefix}_q"], sample_rate)[0])
            if err > tol_db:
                notes.append(f"{prefix}: ZamEQ2's peak (Orfanidis design) differs from the RBJ "
                             f"band by up to {err:.2f} dB")
    if params["comp_release_ms"] > COMP_RELEASE_MAX_MS:
        notes.append(f"comp_release_ms {params['comp_release_ms']:.0f} ms is above ZamComp's "
                     f"{COMP_RELEASE_MAX_MS:.0f} ms; clipped")
    if params["comp_knee_db"] > 0 and params["comp_ratio"] > 1:
        notes.append(f"comp_knee_db {params['comp_knee_db']:.1f} dB not rendered: ZamComp runs "
                     "with a hard knee (its knee boosts below the threshold)")
    return notes


def project(params: Mapping[str, float], sample_rate: float, tol_db: float = 0.4,
            q_range: tuple[float, float] = (0.1, 10.0)) -> dict[str, float]:
    """The closest parameters the plugins render as written: frequencies within 20-14000
    Hz, gains <= +20 dB and >= 0.01 dB from 0, shelf Q = ``shelf_q(gain)``, peak Qs
    raised until the ZamEQ2 EQ is within ``tol_db`` of the RBJ EQ (each band alone, then
    the sum of the bands' analytic differences), release <= 500 ms, knee 0.
    """
    p = dict(params)
    peaks = []
    for prefix, kind in EQ_BANDS:
        f = zam_map.clip_freq(p[f"{prefix}_freq_hz"])
        g = zam_map.safe_gain(p[f"{prefix}_gain_db"])
        p[f"{prefix}_freq_hz"], p[f"{prefix}_gain_db"] = f, g
        if kind == "peak":
            q_min = zam_map.min_representable_q(f, g, sample_rate, tol_db, q_range)
            p[f"{prefix}_q"] = min(max(p[f"{prefix}_q"], q_min), q_range[1])
            peaks.append(prefix)
        else:
            p[f"{prefix}_q"] = zam_map.shelf_q(g)
    _limit_sum_error(p, peaks, sample_rate, tol_db, q_range[1])
    p["comp_release_ms"] = min(p["comp_release_ms"], COMP_RELEASE_MAX_MS)
    p["comp_knee_db"] = 0.0
    return p


def _limit_sum_error(p: dict, peaks: list[str], sample_rate: float, tol_db: float, q_max: float,
                     step: float = 1.15, max_steps: int = 60) -> None:
    """Band errors add in dB: while their sum passes ``tol_db`` somewhere, raise the Q of
    the peak that contributes most there (in place)."""
    grid = zam_map.error_grid(sample_rate)

    def curve(prefix):
        return zam_map.peak_error_curves_db(p[f"{prefix}_freq_hz"], p[f"{prefix}_gain_db"],
                                            p[f"{prefix}_q"], sample_rate, grid)[0]

    curves = {prefix: curve(prefix) for prefix in peaks}
    for _ in range(max_steps):
        if not curves:
            return
        total = sum(curves.values())
        i = int(np.argmax(np.abs(total)))
        if abs(total[i]) <= tol_db:
            return
        movable = [b for b in curves if p[f"{b}_q"] < q_max]
        if not movable:
            return
        worst = max(movable, key=lambda b: curves[b][i] * np.sign(total[i]))
        p[f"{worst}_q"] = min(p[f"{worst}_q"] * step, q_max)
        curves[worst] = curve(worst)


# --------------------------------------------------------------------------------------
# the plugin chain
# --------------------------------------------------------------------------------------

class Vst3Chain:
    """The plugin chain for ``channels`` channels, with pedalboard's ``process`` call.

    ``update(params)`` re-sets every plugin parameter (no reload), so one chain serves
    many renders (the black-box search). Call :meth:`close` when done.
    """

    def __init__(self, channels: int, sample_rate: float, params: Mapping[str, float],
                 stages: tuple[str, ...] = STAGES):
        self.channels, self.sr, self.stages = int(channels), float(sample_rate), tuple(stages)
        self.eq: list[list] = []      # [channel][instance]
        self.comp: list = []          # one (linked) plugin, or one per channel
        self.plugins: list = []
        if "eq" in self.stages:
            self.eq = [[load_plugin(EQ_PLUGIN) for _ in range(N_EQ)] for _ in range(self.channels)]
        if "comp" in self.stages:
            if self.channels == 2:
                self.comp = [load_plugin(COMP_STEREO)]
                set_value(self.comp[0], "stereo_detection", 1.0)   # max of the channels: linked
            else:
                self.comp = [load_plugin(COMP_MONO) for _ in range(self.channels)]
        self.plugins = [p for row in self.eq for p in row] + self.comp
        self.update(params)

    def update(self, params: Mapping[str, float]) -> None:
        self.params = dict(params)
        if self.eq:
            settings = eq_settings(params, self.sr)
            for row in self.eq:
                for plugin, values in zip(row, settings):
                    for k, v in values.items():
                        set_value(plugin, k, v)
        for plugin in self.comp:
            for k, v in comp_settings(params).items():
                set_value(plugin, k, v)
        gain_db = float(params["out_gain_db"]) if "gain" in self.stages else 0.0
        self.gain = np.float32(10.0 ** (gain_db / 20.0))

    def process(self, x: np.ndarray, sample_rate: float, reset: bool = False) -> np.ndarray:
        """``(channels, n)`` float32 -> same shape; ``reset`` clears the plugins' state."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.eq:
            x = np.concatenate([self._eq_channel(row, x[c:c + 1], sample_rate, reset)
                                for c, row in enumerate(self.eq)], axis=0)
        if len(self.comp) == 1 and self.channels == 2:
            x = self.comp[0].process(x, sample_rate, reset=reset)
        elif self.comp:
            x = np.concatenate([p.process(x[c:c + 1], sample_rate, reset=reset)
                                for c, p in enumerate(self.comp)], axis=0)
        return x * self.gain if self.gain != 1 else x

    @staticmethod
    def _eq_channel(row, x, sample_rate, reset):
        for plugin in row:
            x = plugin.process(x, sample_rate, reset=reset)
        return x

    def close(self) -> None:
        self.eq, self.comp = [], []
        release_quietly(self.plugins)


def build_chain(params: Mapping[str, float], sample_rate: float, channels: int,
                stages: tuple[str, ...] = STAGES) -> Vst3Chain:
    return Vst3Chain(channels, sample_rate, params, stages)


def process_blocks(chain, x: np.ndarray, sample_rate: float, block: int = BLOCK) -> np.ndarray:
    """Run ``x`` through ``chain`` (state kept) in fixed ``block``-sample blocks, the last
    zero-padded (the chain is causal, so the padding changes nothing before it)."""
    n = x.shape[-1]
    out = []
    for i in range(0, n, block):
        part = x[:, i:i + block]
        r = part.shape[-1]
        if r < block:
            part = np.pad(part, ((0, 0), (0, block - r)))
        out.append(chain.process(part, float(sample_rate), reset=False)[:, :r])
    return np.concatenate(out, axis=1) if out else np.asarray(x, np.float32)


def render_vst3(samples: np.ndarray, sample_rate: float, params: Mapping[str, float],
                stages: tuple[str, ...] = STAGES) -> np.ndarray:
    """Render ``(channels, n)`` audio through fresh plugin instances, block by block."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    chain = build_chain(params, sample_rate, x.shape[0], stages)
    try:
        return process_blocks(chain, x, sample_rate)
    finally:
        chain.close()


def eq_response_db(params: Mapping[str, float], sample_rate: float, freqs: np.ndarray,
                   ir_len: int = 1 << 15) -> np.ndarray:
    """The plugin EQ's magnitude (dB) at ``freqs``, measured with an impulse."""
    x = np.zeros((1, ir_len), np.float32)
    x[0, 0] = 1.0
    y = render_vst3(x, sample_rate, params, stages=("eq",))
    spec = np.abs(np.fft.rfft(y[0].astype(np.float64)))
    f = np.fft.rfftfreq(ir_len, 1.0 / sample_rate)
    return np.interp(freqs, f, 20 * np.log10(spec + 1e-30))


def describe(params: Mapping[str, float], sample_rate: float, channels: int) -> dict:
    """For the report: the plugins, their exact settings, what is not represented and the
    measured worst-case difference between the plugin EQ and the report's EQ."""
    from ..dsp.numpy_chain import eq_magnitude_db

    grid = zam_map.error_grid(sample_rate)
    rbj = eq_magnitude_db(params, sample_rate, grid)[0]
    err = float(np.max(np.abs(eq_response_db(params, sample_rate, grid) - rbj)))
    comp = COMP_STEREO + " (linked: stereo_detection=max)" if channels == 2 else (
        COMP_MONO if channels == 1 else f"{COMP_MONO} x{channels} (per channel, not linked)")
    return {
        "plugins": {"eq": f"{EQ_PLUGIN} x{N_EQ} in series per channel "
                          "(#1: low shelf, peaks 1-2, high shelf; #2: peaks 3-4)",
                    "compressor": comp, "paths": {n: str(find_plugin(n)) for n in
                                                  (EQ_PLUGIN, COMP_STEREO if channels == 2 else COMP_MONO)}},
        "settings": {f"{EQ_PLUGIN}#{i + 1}": s for i, s in enumerate(eq_settings(params, sample_rate))}
                    | {"compressor": comp_settings(params)},
        "not_represented": unrepresented(params, sample_rate),
        "eq_max_difference_db": round(err, 3),
        "eq_difference_band_hz": [round(float(grid[0]), 1), round(float(grid[-1]), 1)],
    }
