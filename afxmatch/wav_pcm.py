"""A fast writer for the default output: integer-PCM WAV (16 or 24 bit).

libsndfile converts float samples to 24-bit PCM one sample at a time: saving a 3-minute
stereo file took 0.35-0.44 s that way (median 0.39 s, 7 runs), about a tenth of a whole
match; converting in numpy, a block at a time, takes 0.14-0.19 s (median 0.17 s, same
runs). The file has the layout libsndfile writes for these subtypes: a RIFF/WAVE header
with a 16-byte PCM ``fmt`` chunk, then the ``data`` chunk. Samples are scaled by
``2**(bits - 1)``, rounded to nearest and clipped to the largest code, so a reader that
divides by the same power of two (libsndfile, soundfile, scipy) gets every sample back
within half a step. The caller has refused NaN/Inf and samples beyond full scale already
(``audio._check_output_samples``).
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import OutputError

BITS = {"PCM_16": 16, "PCM_24": 24}
CHUNK_FRAMES = 1 << 17   # converted at a time: temporaries stay in the cache
HEADER_BYTES = 44
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8) - 1   # RIFF sizes are 32-bit (and one pad byte)


def handles(fmt: str, subtype: str) -> bool:
    """Whether this writer makes files of ``fmt``/``subtype`` (else libsndfile does)."""
    return fmt == "WAV" and subtype in BITS


def pcm_bytes(frames: np.ndarray, bits: int) -> np.ndarray:
    """``(n, channels)`` float samples in [-1, 1] (any memory order) -> interleaved
    little-endian PCM, a flat ``uint8`` array."""
    scale = float(1 << (bits - 1))
    y = np.multiply(frames, np.float32(scale), order="C", dtype=np.float32)
    np.rint(y, out=y)
    np.clip(y, -scale, scale - 1, out=y)
    if bits == 16:
        return y.astype("<i2").reshape(-1).view(np.uint8)
    codes = y.astype("<i4").reshape(-1).view(np.uint8).reshape(-1, 4)
    out = np.empty((codes.shape[0], 3), np.uint8)
    for k in range(3):   # one byte column at a time: ~3x faster than copying 3-byte rows
        out[:, k] = codes[:, k]
    return out.reshape(-1)


class PcmWavWriter:
    """Write a PCM WAV block by block, like ``soundfile.SoundFile`` (frames first); the
    header's sizes are filled in by :meth:`close`."""

    def __init__(self, path: str, sample_rate: int, channels: int, subtype: str, target=None):
        self.bits = BITS[subtype]
        self.channels = int(channels)
        self.sample_rate = int(sample_rate)
        self.target = target if target is not None else path   # named in errors
        self.data_bytes = 0
        self.fh = open(path, "wb")
        self.fh.write(self._header())

    def _header(self) -> bytes:
        block_align = self.channels * self.bits // 8
        riff = HEADER_BYTES - 8 + self.data_bytes + (self.data_bytes & 1)
        return (b"RIFF" + struct.pack("<I", riff) + b"WAVE"
                + b"fmt " + struct.pack("<IHHIIHH", 16, 1, self.channels, self.sample_rate,
                                        self.sample_rate * block_align, block_align, self.bits)
                + b"data" + struct.pack("<I", self.data_bytes))

    def write(self, frames: np.ndarray) -> None:
        """Append ``(n, channels)`` float samples."""
        n = frames.shape[0]
        if self.data_bytes + n * self.channels * self.bits // 8 > MAX_DATA_BYTES:
            raise OutputError(f"cannot write {self.target}: over 4 GB of audio does not fit a WAV file; "
                              "write FLAC (-o NAME.flac) or split the input")
        for s in range(0, n, CHUNK_FRAMES):
            data = pcm_bytes(frames[s:s + CHUNK_FRAMES], self.bits)
            self.fh.write(data.data)
            self.data_bytes += data.size

    def close(self) -> None:
        if self.data_bytes & 1:
            self.fh.write(b"\0")   # RIFF chunks are padded to an even length
        self.fh.seek(0)
        self.fh.write(self._header())
        self.fh.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.fh.close()
