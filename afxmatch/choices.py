"""Names of the estimation methods and render backends (a light module: no torch import,
so the CLI can validate options before loading the heavy parts)."""

METHODS = ("model", "analysis")
DEFAULT_METHOD = "model"
BACKENDS = ("torch", "pedalboard")
