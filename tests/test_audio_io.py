"""audio.py: formats, layouts and safe writing."""

import os

import numpy as np
import pytest
import soundfile as sf

from afxmatch import audio
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


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(sf, "write", boom)
    with pytest.raises(RuntimeError):
        audio.save(tmp_path / "c.wav", np.zeros((1, 10), np.float32), 44100, "WAV", "PCM_24")
    assert os.listdir(tmp_path) == []


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
