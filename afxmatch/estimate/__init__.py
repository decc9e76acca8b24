"""Methods that turn (input, reference) into effect parameters."""

from .analysis import estimate_analysis, fit_eq_curve  # noqa: F401
from ..choices import METHODS  # noqa: F401
