"""Saving and loading the matching network (state_dict + config.json + sha256)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import ModelError
from ..params import fingerprint
from .network import MatchNet

WEIGHTS, CONFIG, CHECKSUM = "model.pt", "config.json", "model.sha256"
ENV_VAR = "AFXMATCH_MODEL"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_model(model: MatchNet, config: dict, out_dir) -> Path:
    """Write ``model.pt`` (state_dict only), ``config.json`` and ``model.sha256`` into ``out_dir``.

    ``config`` must contain ``architecture`` (the MatchNet keyword arguments); the
    param-space fingerprint is filled in here.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / WEIGHTS)
    cfg = dict(config)
    cfg.setdefault("architecture", dict(model.config))
    cfg["param_fingerprint"] = fingerprint()
    _atomic_write_bytes(out / CONFIG, (json.dumps(cfg, indent=2, sort_keys=True) + "\n").encode())
    digest = _sha256(out / WEIGHTS)
    _atomic_write_bytes(out / CHECKSUM, f"{digest}  {WEIGHTS}\n".encode())
    return out


def load_model(path_or_dir) -> tuple[MatchNet, dict]:
    """Load ``(network in eval mode, config dict)`` from a model folder or its ``model.pt``."""
    p = Path(path_or_dir)
    if not p.exists():
        raise ModelError(f"model {p} not found; give a model folder (holding {WEIGHTS}, {CONFIG}, "
                         f"{CHECKSUM}) with --model or {ENV_VAR}, or use --method analysis")
    folder = p if p.is_dir() else p.parent
    weights = p if p.is_file() else folder / WEIGHTS
    for f, what in ((weights, "weights"), (folder / CONFIG, "config"), (folder / CHECKSUM, "checksum")):
        if not f.is_file():
            raise ModelError(f"model {what} file {f} is missing; point --model/{ENV_VAR} at a folder "
                             f"holding {WEIGHTS}, {CONFIG} and {CHECKSUM}")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"model config {folder / CONFIG} is unreadable ({e}); re-train or re-install the model")
    expected = (folder / CHECKSUM).read_text().split()[0].strip().lower() if (folder / CHECKSUM).read_text().split() else ""
    actual = _sha256(weights)
    if actual != expected:
        raise ModelError(f"model weights {weights} fail their checksum ({actual[:12]}... != "
                         f"{expected[:12]}... in {folder / CHECKSUM}): the file is corrupt or was "
                         f"modified; re-install or re-train the model")
    fp = config.get("param_fingerprint")
    if fp != fingerprint():
        raise ModelError(f"model {folder} was trained for parameter space {fp!r} but this afxmatch "
                         f"uses {fingerprint()!r}; re-train the model with this version")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model = MatchNet(**config["architecture"])
        model.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001 - any failure here means an unusable model file
        raise ModelError(f"model weights {weights} cannot be loaded ({type(e).__name__}: {e}); "
                         f"re-install or re-train the model")
    model.eval()
    return model, config


def default_model_dir() -> Path | None:
    """Where the default model lives: ``$AFXMATCH_MODEL``, then ``<package>/_models/default``,
    then ``<repo>/models/default``. Returns the first existing folder (or None)."""
    env = os.environ.get(ENV_VAR)
    if env:  # an explicit choice wins, even if broken (load_model then says why)
        return Path(env).expanduser()
    for cand in model_search_path():
        if cand.is_dir() and (cand / WEIGHTS).is_file():
            return cand
    return None


def model_search_path() -> list[Path]:
    pkg = Path(__file__).resolve().parent.parent
    out = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(Path(env).expanduser())
    out += [pkg / "_models" / "default", pkg.parent / "models" / "default"]
    return out


_CACHE: dict = {}


def load_cached(model_dir=None) -> tuple[MatchNet, dict, dict]:
    """``(network, config, info)``, loaded once per process per folder.

    ``model_dir`` None means the default model (see :func:`default_model_dir`). ``info``
    is what the report records: name, folder, sha256 of the weights, training facts.
    """
    folder = Path(model_dir) if model_dir else default_model_dir()
    if folder is None:
        raise ModelError("no trained model found (looked in: " +
                         ", ".join(str(p) for p in model_search_path()) +
                         "); pass --model DIR, set AFXMATCH_MODEL, or use --method analysis")
    key = str(Path(folder).resolve())
    if key not in _CACHE:
        net, config = load_model(folder)
        training = config.get("training", {})
        home = Path(key) if Path(key).is_dir() else Path(key).parent
        info = {"name": config.get("name", home.name), "path": str(home),
                "sha256": (home / CHECKSUM).read_text().split()[0],
                "param_fingerprint": config.get("param_fingerprint"),
                "steps": training.get("steps"), "wall_time_s": config.get("wall_time_s", training.get("wall_time_s"))}
        _CACHE[key] = (net, config, info)
    return _CACHE[key]
