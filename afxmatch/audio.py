"""Reading and writing audio files: the only module that knows file layouts.

Inside afxmatch audio is ``float32`` numpy, channels first: ``(channels, samples)``.
Writes go to a temporary file in the target folder and are renamed into place, so a
failed or interrupted write never leaves a partial output.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from . import wav_pcm
from .errors import AudioFileError, OutputError

READ_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".w64", ".rf64")
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
SUBTYPES = {"PCM_16", "PCM_24", "PCM_32", "FLOAT"}
FLAC_SUBTYPES = {"PCM_16", "PCM_24"}
DEFAULT_SUBTYPE = "PCM_24"
MIN_DURATION_S = 0.5


@dataclass
class Audio:
    """Samples ``(channels, samples)`` float32 plus where they came from."""

    samples: np.ndarray
    sample_rate: int
    path: Path | None = None
    format: str | None = None
    subtype: str | None = None

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.sample_rate)


def load(path: str | os.PathLike, role: str = "input") -> Audio:
    """Read an audio file; every failure becomes an :class:`AudioFileError` naming the file."""
    p = _check_readable(path, role)
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise _read_error(role, p, err) from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{role} {p} contains no samples")
    samples = np.ascontiguousarray(data.T)
    del data   # the interleaved copy goes before the checks: 2x the decoded size at most
    # min and max propagate NaN and show an infinity: no full-size temporaries for the checks
    lo, hi = float(samples.min()), float(samples.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise _not_finite_error(role, p)
    audio = Audio(samples, int(sr), p, info.format, info.subtype)
    _check_duration(audio.duration_s, role, p)
    if lo == 0.0 and hi == 0.0:
        raise silence_error(role, p)
    return audio


def _check_readable(path, role: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"{role} file not found: {p}")
    if p.is_dir():
        raise AudioFileError(f"{role} {p} is a folder, not an audio file")
    return p


def _read_error(role: str, p: Path, err: Exception) -> AudioFileError:
    reason = str(err).split(":")[-1].strip() or "unknown format"
    return AudioFileError(f"{role} {p} is not a readable audio file ({reason}); "
                          f"supported: {', '.join(READ_EXTENSIONS)}")


def _not_finite_error(role: str, p: Path) -> AudioFileError:
    return AudioFileError(f"{role} {p} contains NaN or infinite samples")


def silence_error(role: str, p) -> AudioFileError:
    return AudioFileError(f"{role} {p} is digital silence; there is nothing to match")


def _check_duration(duration_s: float, role: str, p: Path) -> None:
    if duration_s < MIN_DURATION_S:
        raise AudioFileError(f"{role} {p} is {duration_s:.2f} s long; afxmatch needs at "
                             f"least {MIN_DURATION_S} s to measure loudness and spectrum")


def check_writable(path: str | os.PathLike, what: str, force: bool, protected=()) -> Path:
    """Check that ``path`` may be written as ``what`` ("output", "report", "preset", ...):
    it is none of the ``protected`` files (inputs; same file by path or by link), it does
    not exist unless ``force``, it is not a folder, and its folder exists."""
    p = Path(path)
    for other in protected:
        other_p = Path(other)
        if other_p.exists() and (p.resolve() == other_p.resolve() or
                                 (p.exists() and os.path.samefile(p, other_p))):
            raise OutputError(f"{what} {p} would overwrite input {other_p} (same file); "
                              "choose another path: inputs are never overwritten")
    if p.exists() and p.is_dir():
        raise OutputError(f"{what} {p} is a folder; give a file name")
    if p.exists() and not force:
        raise OutputError(f"{what} {p} already exists; pass --force to overwrite it")
    if not p.parent.exists():
        raise OutputError(f"{what} folder {p.parent} does not exist")
    return p


def check_output(path: str | os.PathLike, inputs: list[str | os.PathLike], force: bool,
                 subtype: str | None) -> tuple[Path, str, str]:
    """Validate an output path before any work is done; return (path, format, subtype)."""
    out = Path(path)
    fmt = WRITE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise OutputError(f"output {out}: unsupported extension {out.suffix or '(none)'!r}; "
                          f"use one of {', '.join(WRITE_FORMATS)}")
    check_writable(out, "output", force, inputs)
    subtype = (subtype or DEFAULT_SUBTYPE).upper()
    if subtype not in SUBTYPES:
        raise OutputError(f"--subtype {subtype} is not supported; use one of {', '.join(sorted(SUBTYPES))}")
    if fmt == "FLAC" and subtype not in FLAC_SUBTYPES:
        raise OutputError(f"FLAC output {out} supports --subtype PCM_16 or PCM_24, not {subtype}")
    return out, fmt, subtype


def temporary_path(path: Path) -> str:
    """A new empty temporary file in ``path``'s folder, named ``.NAME.XXXXXXXX.part`` (the
    name a batch sweeps after a killed process)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=str(path.parent))
    os.close(fd)
    return tmp


def publish(tmp: str, path: Path) -> None:
    """Rename the complete temporary file ``tmp`` onto ``path``, with a normal file mode
    (mkstemp makes 0600 files)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, fmt: str,
         subtype: str) -> None:
    """Write ``(channels, samples)`` audio atomically. Refuses NaN/Inf and samples over full scale."""
    samples = np.asarray(samples, dtype=np.float32)
    _check_output_samples(path, samples, subtype)

    def write(tmp: str) -> None:
        with _open_writer(tmp, sample_rate, samples.shape[0], fmt, subtype, path) as fh:
            fh.write(samples.T)
    atomic_write_bytes(Path(path), write)


def _open_writer(tmp: str, sample_rate: int, channels: int, fmt: str, subtype: str, path):
    """A file writer taking ``(n, channels)`` float blocks: afxmatch's own for integer-PCM
    WAV (:mod:`afxmatch.wav_pcm`, ~2x faster than libsndfile's conversion), else
    libsndfile's. ``path``: the output ``tmp`` stands for, named in errors."""
    if wav_pcm.handles(fmt, subtype):
        return wav_pcm.PcmWavWriter(tmp, sample_rate, channels, subtype, path)
    return sf.SoundFile(tmp, "w", int(sample_rate), int(channels), subtype=subtype, format=fmt)


def _check_output_samples(path, samples: np.ndarray, subtype: str) -> None:
    if not samples.size:
        return
    lo, hi = float(samples.min()), float(samples.max())   # NaN propagates; no full-size temporaries
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise OutputError(f"refusing to write {path}: the render produced NaN/Inf samples")
    if subtype != "FLOAT" and max(-lo, hi) > 1.0:
        raise OutputError(f"refusing to write {path}: samples exceed full scale for {subtype}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    atomic_write_bytes(Path(path), write)


# --- long files: facts without the samples, blocks, windows, streamed writes ----------


@dataclass
class AudioInfo:
    """What :class:`Audio` says about a file, without its samples (for long files)."""

    sample_rate: int
    channels: int
    n_samples: int
    path: Path | None = None
    format: str | None = None
    subtype: str | None = None

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.sample_rate)


def info(path: str | os.PathLike, role: str = "input") -> AudioInfo:
    """The file's rate, channels and length (header only); the errors :func:`load` gives
    for a missing, unreadable, empty or too short file. Silence and NaN are found while
    reading (:func:`iter_blocks`)."""
    p = _check_readable(path, role)
    try:
        i = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise _read_error(role, p, err) from None
    if i.frames <= 0:
        raise AudioFileError(f"{role} {p} contains no samples")
    out = AudioInfo(int(i.samplerate), int(i.channels), int(i.frames), p, i.format, i.subtype)
    _check_duration(out.duration_s, role, p)
    return out


def iter_blocks(src: AudioInfo, role: str, block_frames: int):
    """Yield the file's samples as float32 ``(channels, n)`` blocks of ``block_frames``
    (the last one shorter), exactly ``src.n_samples`` in all. Raises
    :class:`AudioFileError` for NaN/Inf samples or a file shorter than its header says."""
    p = src.path
    got = 0
    try:
        for block in sf.blocks(str(p), blocksize=int(block_frames), dtype="float32", always_2d=True):
            block = block[: src.n_samples - got]
            if not np.all(np.isfinite(block)):
                raise _not_finite_error(role, p)
            got += block.shape[0]
            yield np.ascontiguousarray(block.T)
            if got >= src.n_samples:
                break
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise _read_error(role, p, err) from None
    if got < src.n_samples:
        raise AudioFileError(f"{role} {p} ended after {got} of the {src.n_samples} frames its "
                             "header announces; the file is truncated or damaged")


def read_frames(src: AudioInfo, role: str, start: int, frames: int) -> np.ndarray:
    """``frames`` samples from ``start`` (fewer at the end) as float32 ``(channels, n)``,
    by seeking: only those frames are read."""
    try:
        with sf.SoundFile(str(src.path)) as fh:
            fh.seek(int(start))
            data = fh.read(int(min(frames, src.n_samples - start)), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise _read_error(role, src.path, err) from None
    if not np.all(np.isfinite(data)):
        raise _not_finite_error(role, src.path)
    return np.ascontiguousarray(data.T)


def save_blocks(path: str | os.PathLike, blocks, sample_rate: int, channels: int, fmt: str,
                subtype: str) -> int:
    """Write an iterable of ``(channels, n)`` blocks atomically, as :func:`save` writes a
    whole array: each block is checked (no NaN/Inf, nothing over full scale) before it is
    written to a temporary file in the target folder; on any error or interrupt the
    temporary file is removed and nothing appears at ``path``. Returns the frames written."""
    written = 0

    def write(tmp: str) -> None:
        nonlocal written
        written = write_blocks(tmp, blocks, sample_rate, channels, fmt, subtype, path)

    atomic_write_bytes(Path(path), write)
    return written


def write_blocks(tmp: str, blocks, sample_rate: int, channels: int, fmt: str, subtype: str,
                 path: str | os.PathLike) -> int:
    """:func:`save_blocks`' writing into the temporary file ``tmp`` (not atomic by itself;
    errors name ``path``, the output it stands for). Returns the frames written."""
    written = 0
    with _open_writer(tmp, sample_rate, channels, fmt, subtype, path) as fh:
        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            _check_output_samples(path, block, subtype)
            fh.write(block.T)
            written += block.shape[1]
    return written
