"""Names of the estimation methods and render backends (a light module: no torch import,
so the CLI can validate options before loading the heavy parts)."""

METHODS = ("model", "analysis", "blackbox", "optimise")
DEFAULT_METHOD = "model"
BACKENDS = ("torch", "pedalboard", "vst3")
DEFAULT_BACKEND = "torch"
# methods that can only render through one backend (black-box search runs the VST3 plugins)
METHOD_BACKENDS = {"blackbox": "vst3"}


def resolve_backend(method: str, backend: str | None) -> str:
    """The backend to render with: ``backend``, or when it is ``None`` (not given) the
    method's own backend (``METHOD_BACKENDS``) or ``DEFAULT_BACKEND``. A backend that the
    method cannot use is an ``InvalidParameterError``."""
    from .errors import InvalidParameterError

    needed = METHOD_BACKENDS.get(method)
    if backend is None:
        return needed or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise InvalidParameterError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if needed is not None and backend != needed:
        raise InvalidParameterError(f"--method {method} searches through the {needed} backend's plugins "
                                    f"and renders with them; --backend {backend} cannot be used with it "
                                    f"(leave --backend out or pass --backend {needed})")
    return backend

# methods that search and take --steps / --time-budget
SEARCH_METHODS = ("blackbox", "optimise")


def check_search_limits(method: str, steps, time_budget) -> None:
    """``--steps`` / ``--time-budget``: only for a searching method; a whole number >= 1
    and a number of seconds >= 0."""
    import math

    from .errors import InvalidParameterError

    if (steps is not None or time_budget is not None) and method not in SEARCH_METHODS:
        raise InvalidParameterError(f"--steps and --time-budget limit a search; --method {method} "
                                    f"does not search (use them with --method "
                                    f"{' or '.join(m for m in SEARCH_METHODS if m in METHODS)})")
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise InvalidParameterError(f"--steps must be a whole number >= 1, got {steps}")
    if time_budget is not None and not (math.isfinite(time_budget) and time_budget >= 0):
        raise InvalidParameterError(f"--time-budget must be a number of seconds >= 0, got {time_budget}")
