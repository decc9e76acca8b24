"""A one-page PNG of what a match did (needs the optional ``afxmatch[plot]`` extra).

(a) the EQ's magnitude response, (b) the compressor's static curve, (c) the long-term
spectra of input, reference and output. matplotlib is imported only inside these
functions, so the rest of afxmatch never needs it. No printing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import check_writable
from .errors import AfxmatchError, OutputError
from .params import EQ_BANDS

SPECTRUM_FRACTION = 1 / 6   # octave fraction of the spectra's smoothing
COLOURS = {"input": "#7f7f7f", "reference": "#1f77b4", "output": "#d62728", "eq": "#2ca02c"}


class PlotError(AfxmatchError):
    """Plotting is unavailable (matplotlib missing) or failed."""


def require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise PlotError("--plot needs matplotlib: install afxmatch[plot] "
                        "(pip install 'afxmatch[plot]')") from None
    matplotlib.use("Agg")
    return matplotlib


def check_plot_path(path, force: bool, protected=()) -> Path:
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise OutputError(f"plot {p}: use a .png file name")
    return check_writable(p, "plot", force, [o for o in protected if o])


def eq_curve(params: dict, sample_rate: float, freqs: np.ndarray) -> np.ndarray:
    from .dsp.numpy_chain import eq_magnitude_db
    return eq_magnitude_db(params, sample_rate, np.asarray(freqs, dtype=np.float64))[0]


def static_curve(params: dict, levels_db: np.ndarray) -> np.ndarray:
    """Compressor output level (dBFS, before the output gain) for input peak levels."""
    from .dsp.formulas import static_curve_db
    gc = static_curve_db(np.asarray(levels_db, dtype=np.float64), float(params["comp_threshold_db"]),
                         float(params["comp_ratio"]), float(params["comp_knee_db"]))
    return levels_db + gc + float(params["comp_makeup_db"])


def plot_match(path, params: dict, sample_rate: float, features: dict, force: bool = False,
               title: str | None = None) -> Path:
    """Write the figure to ``path`` (PNG, atomically). ``features``: ``{"input", "reference",
    "output"}`` :class:`afxmatch.analysis.Features` (as in ``MatchResult.features``)."""
    require_matplotlib()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from . import audio
    from .params import top_hz

    p = check_plot_path(path, force)
    top = top_hz(sample_rate)
    freqs = np.geomspace(20.0, top, 600)
    hz = FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1.25, 0.9, 1.25]})
    ax = axes[0]
    eq = eq_curve(params, sample_rate, freqs)
    ax.axhline(0, color="black", lw=0.6)
    ax.semilogx(freqs, eq, color=COLOURS["eq"], lw=2, label="EQ (6 bands)")
    for prefix, kind in EQ_BANDS:
        f, g = params[f"{prefix}_freq_hz"], params[f"{prefix}_gain_db"]
        ax.plot([f], [eq_curve(params, sample_rate, np.array([f]))[0]], "o", ms=4, color=COLOURS["eq"])
        ax.annotate(prefix, (f, eq_curve(params, sample_rate, np.array([f]))[0]), textcoords="offset points",
                    xytext=(0, 6 if g >= 0 else -12), ha="center", fontsize=8)
    lim = max(6.0, float(np.max(np.abs(eq))) * 1.15)
    ax.set(xlim=(20, top), ylim=(-lim, lim), xlabel="frequency (Hz)", ylabel="gain (dB)",
           title="(a) EQ magnitude response")
    ax.xaxis.set_major_formatter(hz)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[1]
    levels = np.linspace(-72.0, 0.0, 400)
    out = static_curve(params, levels)
    thr, knee, ratio = params["comp_threshold_db"], params["comp_knee_db"], params["comp_ratio"]
    ax.plot(levels, levels, color="black", lw=0.8, ls=":", label="1:1 (no compression)")
    ax.plot(levels, out, color=COLOURS["output"], lw=2, label=f"ratio {ratio:.1f}:1")
    ax.axvline(thr, color="#444444", ls="--", lw=1, label=f"threshold {thr:.1f} dBFS")
    if knee > 0:
        ax.axvspan(thr - knee / 2, thr + knee / 2, color="orange", alpha=0.2, label=f"knee {knee:.1f} dB")
    ax.set(xlim=(-72, 0), ylim=(-72, 6), xlabel="input peak level (dBFS)",
           ylabel="output level (dBFS, before output gain)",
           title="(b) compressor static curve")
    ax.set_aspect("equal", adjustable="box")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.text(0.98, 0.03, f"make-up {params['comp_makeup_db']:.1f} dB\nattack {params['comp_attack_ms']:.1f} ms\n"
            f"release {params['comp_release_ms']:.0f} ms\noutput gain {params['out_gain_db']:+.1f} dB",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})

    ax = axes[2]
    for who in ("input", "reference", "output"):
        spec = features[who].spectrum_db(freqs, SPECTRUM_FRACTION)
        ax.semilogx(freqs, spec, color=COLOURS[who], lw=1.6 if who != "input" else 1.2, label=who)
    ax.set(xlim=(20, top), xlabel="frequency (Hz)", ylabel="level (dB, Welch power, 1/6-oct smoothed)",
           title="(c) long-term spectra")
    ax.xaxis.set_major_formatter(hz)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    axes[0].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110)
    try:
        audio.atomic_write_bytes(p, write)
    except OSError as err:
        raise OutputError(f"cannot write plot {p}: {err.strerror}") from None
    finally:
        plt.close(fig)
    return p


__all__ = ["plot_match", "PlotError", "require_matplotlib", "check_plot_path"]
