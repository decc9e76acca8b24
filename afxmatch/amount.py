"""``--amount``: scale a match between neutral settings (0) and the full estimate (1).

Every parameter that sets *how much* the chain changes the sound moves from its neutral
value (``ParamSpace.defaults()``: flat EQ, no compression, unity gain) towards the
estimate; the parameters that say *where* or *how fast* (frequencies, Qs, threshold,
knee, attack, release) stay as estimated, so the half-way chain has the same shape at
half the depth:

- EQ band gains, compressor make-up and output gain (dB): ``neutral + A * (value - neutral)``;
- compressor ratio: interpolated in its slope ``1 / ratio`` (``1 / R_A = 1 + A (1 / R - 1)``),
  so the static gain reduction above the threshold, ``(1 - 1 / R) (level - threshold)`` dB,
  scales exactly by ``A``.

``A = 0`` gives the neutral chain (the input unchanged), ``A = 1`` the estimate itself.
"""

from __future__ import annotations

import math
from typing import Mapping

from .errors import InvalidParameterError
from .params import ParamSpace


def check_amount(amount: float) -> float:
    """``amount`` as a float in [0, 1]; an :class:`InvalidParameterError` otherwise."""
    try:
        value = float(amount)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"--amount must be a number from 0 to 1, got {amount!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidParameterError(f"--amount must be from 0 (input unchanged) to 1 (full match), "
                                    f"got {amount!r}")
    return value


def scaled_names(space: ParamSpace) -> tuple[str, ...]:
    """The parameters that :func:`apply_amount` interpolates linearly (dB amounts)."""
    return tuple(s.name for s in space.specs if s.name.endswith("_gain_db") or s.name == "comp_makeup_db")


def apply_amount(params: Mapping[str, float], amount: float, sample_rate: float) -> dict[str, float]:
    """``params`` scaled by ``amount`` (see the module doc); a new dict. ``amount == 1``
    returns an unchanged copy (bit for bit)."""
    amount = check_amount(amount)
    out = dict(params)
    if amount == 1.0:
        return out
    space = ParamSpace(sample_rate)
    neutral = space.defaults()
    for name in scaled_names(space):
        if name in out:
            out[name] = neutral[name] + amount * (float(out[name]) - neutral[name])
    if "comp_ratio" in out:
        slope0, slope = 1.0 / neutral["comp_ratio"], 1.0 / float(out["comp_ratio"])
        out["comp_ratio"] = 1.0 / (slope0 + amount * (slope - slope0))
    return out


def scaled_target_lufs(rendered_lufs: float, reference_lufs: float, amount: float) -> float:
    """The loudness the output gain aims at: the reference's at ``amount = 1``, the
    rendered (un-gained) loudness at 0, linearly in LU between (so the output gain is
    ``amount`` times the full loudness-matching gain)."""
    if amount == 1.0 or not (math.isfinite(rendered_lufs) and math.isfinite(reference_lufs)):
        return reference_lufs if amount == 1.0 else rendered_lufs
    return rendered_lufs + amount * (reference_lufs - rendered_lufs)


def amount_target_lufs(rendered, reference_lufs: float, amount: float) -> float:
    """:func:`scaled_target_lufs` for a render's :class:`~afxmatch.analysis.Features`
    (measured with ``out_gain_db = 0``). A render under BS.1770's absolute gate (-inf
    LUFS, not silent) aims at the loudness that the amount's share of its full matching
    gain gives (solved on its hop energies); that is -inf still where the share leaves it
    under the gate, and then the output gain is 0, as for silence."""
    target = scaled_target_lufs(rendered.loudness_lufs, reference_lufs, amount)
    if amount == 0 or math.isfinite(target) or not math.isfinite(reference_lufs):
        return target
    from .analysis.loudness import matching_gain_db

    full = matching_gain_db(rendered.loudness_lufs, reference_lufs, rendered.sample_rate,
                            rendered.loudness_hops)
    return rendered.loudness_at(amount * full)
