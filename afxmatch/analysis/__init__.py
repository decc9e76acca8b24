"""Measurements of audio: spectra, loudness, level statistics and style distances."""

from .features import Features, measure  # noqa: F401
from .distance import style_distances  # noqa: F401
