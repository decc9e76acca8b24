"""audio.py: formats, layouts and safe writing."""

import os

import numpy as np
import pytest
import soundfile as sf

from afxmatch import audio, wav_pcm
from afxmatch.errors import AudioFileError, OutputError

from audio_fixtures import write_tone


@pytest.mark.parametrize("ext,subtype", [(".wav", "PCM_16"), (".flac", "PCM_24"), (".ogg", "VORBIS"),
                                         (".mp3", "MPEG_LAYER_III")])
def test_reads_common_formats_channels_first(tmp_path, ext, subtype):
    path = write_tone(tmp_path / f"x{ext}", sr=32000, seconds=1.0, channels=2, subtype=subtype)
    a = audio.load(path)
    assert a.samples.dtype == np.float32 and a.samples.shape[0] == 2
    assert a.sample_rate == 32000
    assert abs(a.duration_s - 1.0) < 0.1  # lossy codecs pad a little


def test_save_roundtrip_is_atomic_and_exact_for_float(tmp_path):
    x = np.random.default_rng(0).uniform(-0.9, 0.9, (2, 1000)).astype(np.float32)
    path = tmp_path / "y.wav"
    audio.save(path, x, 44100, "WAV", "FLOAT")
    back, sr = sf.read(str(path), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(back.T, x)
    assert os.listdir(tmp_path) == ["y.wav"]
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's private 0600


def test_save_refuses_nan_and_over_full_scale(tmp_path):
    with pytest.raises(OutputError, match="NaN"):
        audio.save(tmp_path / "a.wav", np.full((1, 10), np.nan, np.float32), 44100, "WAV", "PCM_24")
    with pytest.raises(OutputError, match="full scale"):
        audio.save(tmp_path / "b.wav", np.full((1, 10), 1.5, np.float32), 44100, "WAV", "PCM_24")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt,subtype,owner,name", [("WAV", "PCM_24", wav_pcm, "pcm_bytes"),
                                                     ("WAV", "FLOAT", sf.SoundFile, "write"),
                                                     ("FLAC", "PCM_16", sf.SoundFile, "write")])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, fmt, subtype, owner, name):
    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(owner, name, boom)
    with pytest.raises(RuntimeError):
        audio.save(tmp_path / f"c.{fmt.lower()}", np.zeros((1, 10), np.float32), 44100, fmt, subtype)
    with pytest.raises(RuntimeError):
        audio.save_blocks(tmp_path / f"d.{fmt.lower()}", [np.zeros((1, 10), np.float32)], 44100, 1, fmt, subtype)
    assert os.listdir(tmp_path) == []


def _pcm_codes(x: np.ndarray, bits: int) -> np.ndarray:
    """The integer codes a correct writer stores: round to nearest, clip to the range."""
    scale = 2.0 ** (bits - 1)
    return np.clip(np.rint(x.astype(np.float64) * scale), -scale, scale - 1).astype(np.int64)


@pytest.mark.parametrize("subtype,bits", [("PCM_16", 16), ("PCM_24", 24)])
@pytest.mark.parametrize("channels,frames", [(1, 1001), (2, 70001), (3, 5)])
def test_pcm_wav_is_exact_and_readable_by_libsndfile_and_scipy(tmp_path, subtype, bits, channels, frames):
    """Our integer-PCM WAV writer: the header libsndfile reads back, the codes rounded to
    nearest (clipped at +-full scale), and scipy's independent reader agrees; odd-sized
    data is padded to an even chunk."""
    from scipy.io import wavfile

    rng = np.random.default_rng(channels * frames)
    x = rng.uniform(-1.0, 1.0, (channels, frames)).astype(np.float32)
    x[:, :4] = np.array([1.0, -1.0, 0.0, 1.5 / 2 ** (bits - 1)], np.float32)   # full scale, a half step
    path = tmp_path / "y.wav"
    audio.save(path, x, 48000, "WAV", subtype)
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.channels, info.frames, info.samplerate) == \
        ("WAV", subtype, channels, frames, 48000)
    assert os.path.getsize(path) % 2 == 0
    codes = _pcm_codes(x, bits)
    back = sf.read(str(path), dtype="int32", always_2d=True)[0].T >> (32 - bits)
    np.testing.assert_array_equal(back, codes)
    assert codes[0, 0] == 2 ** (bits - 1) - 1 and codes[0, 1] == -2 ** (bits - 1)
    rate, data = wavfile.read(str(path))
    assert rate == 48000
    shift = 8 if data.dtype == np.int32 else 0   # scipy puts 24-bit codes in an int32's top bytes
    np.testing.assert_array_equal(data.reshape(frames, channels).T.astype(np.int64) >> shift, codes)
    # libsndfile's own writer (it truncates where we round): within one step
    sf.write(str(tmp_path / "lib.wav"), x.T, 48000, subtype=subtype)
    lib = sf.read(str(tmp_path / "lib.wav"), dtype="int32", always_2d=True)[0].T >> (32 - bits)
    assert np.abs(lib - codes).max() <= 1


def test_pcm_wav_blocks_equal_one_write_and_refuse_over_4gb(tmp_path, monkeypatch):
    x = np.random.default_rng(3).uniform(-1, 1, (2, 100003)).astype(np.float32)
    audio.save(tmp_path / "one.wav", x, 44100, "WAV", "PCM_24")
    blocks = [x[:, s:s + 7919] for s in range(0, x.shape[1], 7919)]
    assert audio.save_blocks(tmp_path / "blocks.wav", blocks, 44100, 2, "WAV", "PCM_24") == x.shape[1]
    assert (tmp_path / "one.wav").read_bytes() == (tmp_path / "blocks.wav").read_bytes()
    monkeypatch.setattr(wav_pcm, "MAX_DATA_BYTES", 6 * 1000)
    with pytest.raises(OutputError, match="4 GB.*FLAC"):
        audio.save_blocks(tmp_path / "big.wav", [x[:, :600], x[:, 600:1200]], 44100, 2, "WAV", "PCM_24")
    assert not (tmp_path / "big.wav").exists()
    assert sorted(os.listdir(tmp_path)) == ["blocks.wav", "one.wav"]


def test_check_output_rules(tmp_path):
    inp = write_tone(tmp_path / "in.wav")
    with pytest.raises(OutputError, match="would overwrite input"):
        audio.check_output(inp, [inp], True, None)
    link = tmp_path / "link.wav"
    link.symlink_to(inp)
    with pytest.raises(OutputError, match="would overwrite input"):
        audio.check_output(link, [inp], True, None)
    with pytest.raises(OutputError, match="already exists"):
        audio.check_output(inp, [], False, None)
    assert audio.check_output(tmp_path / "new.flac", [inp], False, None)[1:] == ("FLAC", "PCM_24")


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(AudioFileError, match="missing.wav"):
        audio.load(tmp_path / "missing.wav")
    with pytest.raises(AudioFileError, match="folder"):
        audio.load(tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_load_refuses_non_finite_samples(tmp_path, bad):
    x = np.full((44100, 2), 0.1, np.float32)
    x[30000, 1] = bad   # one sample, in the second channel
    sf.write(str(tmp_path / "bad.wav"), x, 44100, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="NaN or infinite"):
        audio.load(tmp_path / "bad.wav")


@pytest.mark.parametrize("value", [0.0, -1e-6, 1e-6])
def test_load_calls_only_all_zero_samples_silence(tmp_path, value):
    x = np.zeros((44100, 2), np.float32)
    x[100, 1] = value   # a single non-zero sample (negative or positive) is not silence
    sf.write(str(tmp_path / "s.wav"), x, 44100, subtype="FLOAT")
    if value == 0.0:
        with pytest.raises(AudioFileError, match="digital silence"):
            audio.load(tmp_path / "s.wav")
    else:
        a = audio.load(tmp_path / "s.wav")
        assert a.samples.shape == (2, 44100) and a.samples[1, 100] == np.float32(value)
        assert a.samples.flags.c_contiguous and np.count_nonzero(a.samples) == 1
