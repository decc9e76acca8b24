"""Saving and loading the matching network (state_dict + config.json + sha256).

Only :func:`save_model` and :func:`load_model` need torch (imported inside them). The
folder checks (:func:`check_model_folder`), :func:`read_state_dict` (``model.pt`` read
with a restricted unpickler) and :func:`load_numpy_model` (a :class:`NumpyNet`) do not.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from ..params import fingerprint
from .numpy_net import NumpyNet

if TYPE_CHECKING:  # pragma: no cover
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
    import torch

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


def check_model_folder(path_or_dir) -> tuple[Path, dict]:
    """``(weights file, config dict)`` of a model folder (or its ``model.pt``) after the
    checks every loader makes: files present, config readable, weights matching their
    sha256, config made for this parameter space. Raises :class:`ModelError`."""
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
    return weights, config


def _build(weights: Path, build):
    """``build()``, any failure reported as the unusable weights file it means."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - any failure here means an unusable model file
        raise ModelError(f"model weights {weights} cannot be loaded ({type(e).__name__}: {e}); "
                         f"re-install or re-train the model")


def load_model(path_or_dir) -> tuple[MatchNet, dict]:
    """Load ``(network in eval mode, config dict)`` from a model folder or its ``model.pt``."""
    weights, config = check_model_folder(path_or_dir)
    import torch

    from .network import MatchNet

    def build():
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model = MatchNet(**config["architecture"])
        model.load_state_dict(state, strict=True)
        return model

    model = _build(weights, build)
    model.eval()
    return model, config


def load_numpy_model(path_or_dir) -> tuple[NumpyNet, dict]:
    """:func:`load_model` without torch: ``(NumpyNet, config dict)``, same checks and errors."""
    weights, config = check_model_folder(path_or_dir)
    return _build(weights, lambda: NumpyNet(read_state_dict(weights), config["architecture"])), config


# ---------- reading model.pt without torch ----------

# the storage classes torch.save names for each dtype a state dict of ours may hold
_STORAGE_DTYPES = {"FloatStorage": "f4", "DoubleStorage": "f8", "LongStorage": "i8"}


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, _STORAGE_DTYPES[name]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` for a 1-D numpy storage: a contiguous copy."""
    if not isinstance(storage, np.ndarray):
        raise ModelError(f"a tensor in the weights file has no storage ({type(storage).__name__})")
    offset, size, stride = int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise ModelError(f"a tensor in the weights file has an invalid layout (offset {offset}, "
                         f"size {size}, stride {stride})")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * st for n, st in zip(size, stride))
    if last >= storage.size:
        raise ModelError(f"a tensor in the weights file reaches element {last} of a storage of "
                         f"{storage.size}")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(st * storage.itemsize for st in stride),
                                           writeable=False)
    return np.array(view, order="C")


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a plain tensor state dict; any other global is refused (never imported)."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise ModelError(f"the weights file refers to {module}.{name}, which a plain tensor state "
                         f"dict does not need; refusing to load it")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise ModelError(f"the weights file holds an unknown persistent record {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}data/{key}")
            except KeyError:
                raise ModelError(f"the weights file lacks the data of storage {key!r}") from None
            dtype = np.dtype(("<" if self.byteorder == "little" else ">") + storage_type.dtype)
            if len(raw) < int(numel) * dtype.itemsize:
                raise ModelError(f"storage {key!r} holds {len(raw)} bytes, fewer than its "
                                 f"{numel} elements need")
            arr = np.frombuffer(raw, dtype=dtype, count=int(numel))
            self.storages[key] = arr.astype(dtype.newbyteorder("="), copy=False)
        return self.storages[key]


def read_state_dict(weights_path) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save(state_dict)`` file (zip format) as numpy arrays,
    without torch. Only what a plain tensor state dict needs is unpickled; anything
    else raises :class:`ModelError` before it is imported or called."""
    path = Path(weights_path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ModelError(f"model weights {path} are not a torch zip archive ({e})") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ModelError(f"model weights {path} hold {len(pickles)} data.pkl records, not one")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise ModelError(f"model weights {path} have an unknown byte order {byteorder!r}")
        with archive.open(pickles[0]) as f:
            try:
                state = _StateDictUnpickler(f, archive, prefix, byteorder).load()
            except ModelError:
                raise
            except Exception as e:  # noqa: BLE001 - a malformed pickle
                raise ModelError(f"model weights {path} cannot be unpickled ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray)
                                              for k, v in state.items()):
        raise ModelError(f"model weights {path} do not hold a state dict of tensors")
    return dict(state)


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


def _cached(model_dir, kind: str, loader) -> tuple:
    """``(network, config, info)`` from ``loader(folder)``, once per process, folder and ``kind``."""
    folder = Path(model_dir) if model_dir else default_model_dir()
    if folder is None:
        raise ModelError("no trained model found (looked in: " +
                         ", ".join(str(p) for p in model_search_path()) +
                         "); pass --model DIR, set AFXMATCH_MODEL, or use --method analysis")
    key = str(Path(folder).resolve())
    if (kind, key) not in _CACHE:
        net, config = loader(folder)
        training = config.get("training", {})
        home = Path(key) if Path(key).is_dir() else Path(key).parent
        info = {"name": config.get("name", home.name), "path": str(home),
                "sha256": (home / CHECKSUM).read_text().split()[0],
                "param_fingerprint": config.get("param_fingerprint"),
                "steps": training.get("steps"), "wall_time_s": config.get("wall_time_s", training.get("wall_time_s"))}
        _CACHE[kind, key] = (net, config, info)
    return _CACHE[kind, key]


def load_cached(model_dir=None) -> tuple[MatchNet, dict, dict]:
    """``(network, config, info)``, loaded once per process per folder.

    ``model_dir`` None means the default model (see :func:`default_model_dir`). ``info``
    is what the report records: name, folder, sha256 of the weights, training facts.
    """
    return _cached(model_dir, "torch", load_model)


def load_cached_numpy(model_dir=None) -> tuple[NumpyNet, dict, dict]:
    """:func:`load_cached` without torch: ``(NumpyNet, config, info)`` (the same ``info``)."""
    return _cached(model_dir, "numpy", load_numpy_model)
