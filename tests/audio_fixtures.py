"""Audio helpers shared by the integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_INPUT = ROOT / "examples" / "input.wav"
EXAMPLE_REFERENCE = ROOT / "examples" / "reference.flac"


def write_tone(path: Path, sr: int = 44100, seconds: float = 2.0, channels: int = 2,
               subtype: str = "PCM_16", tilt: float = 0.0, seed: int = 0) -> Path:
    """Write a noise+tone test file; ``tilt`` > 0 makes it brighter."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    noise = rng.standard_normal((channels, n))
    if tilt:
        noise = noise + tilt * np.diff(noise, axis=1, prepend=0)
    x = 0.05 * noise + 0.2 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    x = 0.5 * x / np.max(np.abs(x))
    sf.write(str(path), x.T.astype(np.float32), sr, subtype=subtype)
    return path
