"""Long files in bounded memory (afxmatch.stream_pipeline): the streamed measurement equals
``analysis.measure`` on the whole array, and a streamed ``match_file`` (threshold forced to
0, small blocks) writes the same audio (within 1e-4) and an equivalent report as the
in-memory path, for both methods and both backends; nothing partial is ever left."""

import json
import os

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from afxmatch import analysis, audio, stream_pipeline
from afxmatch.analysis.stream import FeatureAccumulator
from afxmatch.errors import AudioFileError
from afxmatch.estimate import analysis as est_analysis
from afxmatch.estimate import model as est_model
from afxmatch.pipeline import MatchOptions, match_file

from audio_fixtures import write_tone

SR = 16000
# longer than 8 model windows (~23.8 s at any rate), so the model's windows are chosen
# from the streamed hop energies, not from the whole file
LONG_S = 26.0


def signal(sr: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """A tone gated on and off plus noise: loud and quiet frames, a non-flat spectrum."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    gate = np.where(np.sin(2 * np.pi * 0.4 * t) > 0, 1.0, 0.03)
    x = gate * 0.3 * np.sin(2 * np.pi * 310 * t) + 0.05 * rng.standard_normal((channels, n))
    return x.astype(np.float32)


def feed(acc, x, sizes):
    i, k = 0, 0
    while i < x.shape[1]:
        acc.add(x[:, i:i + sizes[k % len(sizes)]])
        i, k = i + sizes[k % len(sizes)], k + 1
    return acc.result()


@pytest.mark.parametrize("sr, channels, seconds", [(44100, 2, 4.3), (48000, 1, 2.1),
                                                   (SR, 2, 40.0)])   # 40 s: > 256 Welch segments, thinned
def test_streamed_features_equal_whole(sr, channels, seconds):
    x = signal(sr, seconds, channels)
    whole = analysis.measure(x, sr)
    streamed = feed(FeatureAccumulator(sr, channels, x.shape[1]), x, [1000, 7919, 1, 44100, 22])
    # the spectrum is bit-identical (the EQ fit amplifies any difference)
    assert np.array_equal(streamed.freqs_hz, whole.freqs_hz)
    assert np.array_equal(streamed.power, whole.power)
    assert np.array_equal(streamed.log_power, whole.log_power)
    assert np.array_equal(streamed.frame_peak_db, whole.frame_peak_db)
    # numpy's float64 einsum may sum a frame in another order for another number of frames
    assert streamed.frame_rms_db.shape == whole.frame_rms_db.shape
    assert np.max(np.abs(streamed.frame_rms_db - whole.frame_rms_db)) < 1e-9
    # the ungated frames (what a gain re-gates) too, and the same gain re-gates them alike
    for a, b in zip(streamed.frames_ungated, whole.frames_ungated):
        assert a.shape == b.shape and np.max(np.abs(a - b)) < 1e-9
    assert streamed.scaled(30.0).frame_rms_db.shape == whole.scaled(30.0).frame_rms_db.shape
    assert streamed.peak_db == whole.peak_db
    assert abs(streamed.rms_db - whole.rms_db) < 1e-9
    # K-weighting as a float64 IIR vs the float32 FFT filter: same to ~1e-6 LU
    assert abs(streamed.loudness_lufs - whole.loudness_lufs) < 1e-4
    assert -40 < whole.loudness_lufs < -5 and whole.frame_rms_db.size > 20   # not a degenerate case


def test_accumulator_checks_its_length():
    acc = FeatureAccumulator(SR, 1, 20000)
    acc.add(np.zeros((1, 10000), np.float32))
    with pytest.raises(ValueError, match="10000 of the announced 20000"):
        acc.result()
    with pytest.raises(ValueError, match="more than the announced"):
        acc.add(np.zeros((1, 10001), np.float32))


def test_model_windows_from_hop_energies_equal_whole(tmp_path):
    """The windows chosen from streamed hop energies and read by seeking are the in-memory ones."""
    x = signal(SR, LONG_S, 2, seed=3)
    path = tmp_path / "x.wav"
    sf.write(str(path), x.T, SR, subtype="FLOAT")
    win = 131072
    src = stream_pipeline._Source("input", info=audio.info(path))
    tap = stream_pipeline._ModelWindows(src, win)
    assert src.n > tap.src_win * est_model.MAX_WINDOWS      # the long-file branch
    stream_pipeline._measure(src, [tap])
    windows, peak = tap.windows()
    whole_windows, whole_peak = est_model._windows_at_model_rate(x, SR, win)
    assert peak == whole_peak
    assert windows.shape == whole_windows.shape == (est_model.MAX_WINDOWS, win)
    assert np.array_equal(windows, whole_windows)
    # the level sample read by seeking is the in-memory one
    assert np.array_equal(stream_pipeline._level_sample(src), est_analysis.level_sample(x, SR))


def comparable(report: dict) -> dict:
    r = json.loads(json.dumps(report))
    for k in ("created", "timings_s", "report_path"):
        r.pop(k, None)
    r["output"].pop("path")
    return r


def assert_reports_equivalent(a: dict, b: dict):
    a, b = comparable(a), comparable(b)
    pa, pb = a.pop("parameters"), b.pop("parameters")
    assert pa.keys() == pb.keys()
    for k in pa:
        assert abs(pa[k]["value"] - pb[k]["value"]) <= 1e-4 * max(1.0, abs(pa[k]["value"])), k
    sa, sb = a.pop("safety"), b.pop("safety")
    assert sa.keys() == sb.keys() and sa["note"] == sb["note"]
    for k in ("loudness_gain_wanted_db", "gain_reduced_for_peak_db"):
        assert abs(sa[k] - sb[k]) <= 1e-3
    da, db = a.pop("style_distance"), b.pop("style_distance")
    for when in ("before", "after"):
        for k in da[when]:
            assert abs(da[when][k] - db[when][k]) <= 1e-3, (when, k)
    assert a == b   # everything else (files' facts, loudness, peaks, method, model...) is equal


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    sf.write(str(d / "in.wav"), signal(SR, LONG_S, 2, seed=1).T, SR, subtype="PCM_24")
    sf.write(str(d / "short.wav"), signal(SR, 4.0, 2, seed=4).T, SR, subtype="PCM_24")
    write_tone(d / "ref.flac", sr=22050, seconds=5.0, channels=1, tilt=2.0, seed=2)
    return d


def run_both(files, tmp_path, monkeypatch, **opts):
    monkeypatch.setattr(stream_pipeline, "BLOCK_FRAMES", 5000)
    out = {}
    for name, threshold in (("memory", None), ("streamed", 0.0)):
        path = tmp_path / f"{name}.wav"
        report = match_file(files / "in.wav", files / "ref.flac", path,
                            MatchOptions(subtype="FLOAT", stream_above_s=threshold, **opts))
        out[name] = (sf.read(str(path), dtype="float32")[0], report)
    return out["memory"], out["streamed"]


@pytest.mark.parametrize("backend", ["torch", "pedalboard"])
@pytest.mark.parametrize("method", ["model", "analysis"])
def test_streamed_match_equals_in_memory(files, tmp_path, monkeypatch, method, backend):
    if method == "analysis":   # fewer fit iterations: the same on both paths, 3x faster
        monkeypatch.setattr(est_analysis, "FIT_MAX_EVALS", 25)
    (a, ra), (b, rb) = run_both(files, tmp_path, monkeypatch, method=method, backend=backend)
    assert a.shape == b.shape == (int(SR * LONG_S), 2)
    assert np.max(np.abs(a)) > 0.1
    assert np.max(np.abs(a - b)) < 1e-4
    assert_reports_equivalent(ra, rb)
    assert ra["output"]["integrated_lufs"] == pytest.approx(ra["reference"]["integrated_lufs"], abs=0.01)


@pytest.mark.parametrize("finish", [dict(loudness=-14.0, true_peak=-1.0), dict(true_peak=-2.0)])
def test_streamed_finish_equals_in_memory(files, tmp_path, monkeypatch, finish):
    """--loudness / --true-peak on a long file: the finish search streams (model measured on
    the render pass, each limiter pass written and measured block by block) and gives the
    in-memory output and finish; checked with pyloudnorm and scipy's 4x resampler too."""
    (a, ra), (b, rb) = run_both(files, tmp_path, monkeypatch, method="model", **finish)
    assert np.max(np.abs(a - b)) < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.json", "memory.wav",
                                                          "streamed.json", "streamed.wav"]
    fa, fb = ra.pop("finish"), rb.pop("finish")
    assert len(fa["iterations"]) == len(fb["iterations"]) and fa["target_reached"] and fb["target_reached"]
    assert fb["gain_db"] == pytest.approx(fa["gain_db"], abs=1e-3)
    assert fb["output_lufs"] == pytest.approx(fa["output_lufs"], abs=2e-3)
    assert fb["output_true_peak_dbtp"] == pytest.approx(fa["output_true_peak_dbtp"], abs=2e-3)
    assert fb["limiter"]["max_gain_reduction_db"] == pytest.approx(fa["limiter"]["max_gain_reduction_db"], abs=1e-3)
    assert_reports_equivalent(ra, rb)
    target = finish.get("loudness", ra["reference"]["integrated_lufs"])
    lufs = pyloudnorm.Meter(SR).integrated_loudness(b.astype(np.float64))
    assert lufs == pytest.approx(target, abs=0.5)
    up = resample_poly(b.astype(np.float64), 4, 1, axis=0)
    assert 20 * np.log10(np.abs(up).max()) <= finish["true_peak"]


def test_streamed_quiet_recording_is_lifted_like_in_memory(files, tmp_path, monkeypatch):
    """A long recording under BS.1770's -70 LUFS absolute gate (-inf LUFS): both paths
    solve the gain on the hop energies, and the finish reaches its target on both."""
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    x, _ = sf.read(str(files / "in.wav"), dtype="float32")
    sf.write(str(quiet / "in.wav"), x * np.float32(10 ** (-70 / 20)), SR, subtype="FLOAT")
    (quiet / "ref.flac").write_bytes((files / "ref.flac").read_bytes())
    assert analysis.measure(x.T * np.float32(10 ** (-70 / 20)), SR).loudness_lufs == -np.inf
    (a, ra), (b, rb) = run_both(quiet, tmp_path, monkeypatch, method="model", loudness=-14.0, true_peak=-1.0)
    assert np.max(np.abs(a - b)) < 1e-4
    assert ra["finish"]["target_reached"] and rb["finish"]["target_reached"]
    assert pyloudnorm.Meter(SR).integrated_loudness(b.astype(np.float64)) == pytest.approx(-14.0, abs=0.5)


def test_streamed_finish_passes_leave_only_the_last_and_nothing_on_interrupt(files, tmp_path, monkeypatch):
    """Several limiter passes (a tolerance no pass meets): one output, the last pass's, no
    temporary file; an interrupt in the second pass leaves no output at all."""
    from afxmatch import finish as finish_mod

    monkeypatch.setattr(finish_mod, "TOLERANCE_LU", 1e-9)
    monkeypatch.setattr(finish_mod, "MAX_ITERATIONS", 3)
    (a, ra), (b, rb) = run_both(files, tmp_path, monkeypatch, method="analysis", loudness=-14.0, true_peak=-1.0)
    assert len(ra["finish"]["iterations"]) == len(rb["finish"]["iterations"]) == 3
    assert np.max(np.abs(a - b)) < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.json", "memory.wav",
                                                          "streamed.json", "streamed.wav"]
    real_save, calls = audio.write_blocks, []

    def interrupted_second_pass(path, blocks, *args):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(path, blocks, *args)

    monkeypatch.setattr(audio, "write_blocks", interrupted_second_pass)
    with pytest.raises(KeyboardInterrupt):
        match_file(files / "in.wav", files / "ref.flac", tmp_path / "cut.wav",
                   MatchOptions(method="analysis", loudness=-14.0, true_peak=-1.0, stream_above_s=0.0))
    assert len(calls) == 2 and not [p for p in tmp_path.iterdir() if p.name.startswith((".cut", "cut"))]


def test_streamed_progress_reports_each_pass_in_percent(files, tmp_path, monkeypatch):
    monkeypatch.setattr(stream_pipeline, "BLOCK_FRAMES", 5000)
    said = []
    match_file(files / "in.wav", files / "ref.flac", tmp_path / "p.wav",
               MatchOptions(method="analysis", loudness=-14.0, stream_above_s=0.0), progress=said.append)
    for stage in ("analysing", "rendering", "writing (finish: loudness, true peak)"):
        percents = [int(m.rsplit(" ", 2)[-2]) for m in said if m.startswith(stage + "  ")]
        assert percents[-1] == 100 and percents == sorted(percents) and len(percents) >= 5, (stage, said)
    assert said.index("rendering") < said.index("rendering  100 %")


def test_streamed_with_reference_in_memory(files, tmp_path, monkeypatch):
    """Batch work passes the reference already loaded and measured; streaming the input
    then reads only the input from disk, with the same result."""
    monkeypatch.setattr(stream_pipeline, "BLOCK_FRAMES", 7000)
    ref = audio.load(files / "ref.flac", "reference")
    cached = (ref, analysis.measure(ref.samples, ref.sample_rate))
    opts = dict(method="model", subtype="FLOAT")
    ra = match_file(files / "short.wav", files / "ref.flac", tmp_path / "a.wav", MatchOptions(**opts))
    rb = match_file(files / "short.wav", files / "ref.flac", tmp_path / "b.wav",
                    MatchOptions(stream_above_s=0.0, **opts), reference=cached)
    a, b = (sf.read(str(tmp_path / n), dtype="float32")[0] for n in ("a.wav", "b.wav"))
    assert np.max(np.abs(a - b)) < 1e-4
    assert_reports_equivalent(ra, rb)


def test_threshold(files):
    info = audio.info(files / "in.wav")
    ch_s = info.duration_s * info.channels
    assert stream_pipeline.long_file_infos(files / "in.wav", files / "ref.flac", None, ch_s - 1) is not None
    assert stream_pipeline.long_file_infos(files / "in.wav", files / "ref.flac", None, ch_s + 1) is None
    # a long reference alone also streams
    assert stream_pipeline.long_file_infos(files / "ref.flac", files / "in.wav", None, ch_s - 1) is not None
    # the default keeps ordinary files in memory
    assert stream_pipeline.long_file_infos(files / "in.wav", files / "ref.flac", None, None) is None


class HalfDelayed:
    """A block post-processor that holds back 123 samples and halves the level."""

    def __init__(self, channels):
        self.held = np.zeros((channels, 0), np.float32)

    def process(self, block):
        x = np.concatenate([self.held, block], axis=1)
        self.held = x[:, max(0, x.shape[1] - 123):]
        return 0.5 * x[:, : max(0, x.shape[1] - 123)]

    def flush(self):
        return 0.5 * self.held


def test_finish_hook_runs_last(files, tmp_path, monkeypatch):
    monkeypatch.setattr(stream_pipeline, "BLOCK_FRAMES", 6000)
    opts = MatchOptions(method="model", subtype="FLOAT")
    match_file(files / "short.wav", files / "ref.flac", tmp_path / "a.wav", opts)
    infos = stream_pipeline.long_file_infos(files / "short.wav", files / "ref.flac", None, 0.0)
    out, fmt, subtype = audio.check_output(tmp_path / "b.wav", [], False, "FLOAT")
    stream_pipeline.match_streamed(infos, out, fmt, subtype, opts, finish=HalfDelayed(2))
    a, b = (sf.read(str(tmp_path / n), dtype="float32")[0] for n in ("a.wav", "b.wav"))
    assert a.shape == b.shape
    assert np.max(np.abs(0.5 * a - b)) < 1e-4


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_no_partial_output_on_interrupt(files, tmp_path, monkeypatch):
    """Ctrl-C in the middle of the writing pass: no output, no temporary file, no report."""
    real = stream_pipeline._render_blocks

    def interrupted(src, params, backend, gain_db=0.0, finish=None):
        for i, block in enumerate(real(src, params, backend, gain_db, finish)):
            if gain_db and i == 1:   # one block already written to the temporary file
                raise KeyboardInterrupt
            yield block

    monkeypatch.setattr(stream_pipeline, "BLOCK_FRAMES", 3000)
    monkeypatch.setattr(stream_pipeline, "_render_blocks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        match_file(files / "short.wav", files / "ref.flac", tmp_path / "out.wav",
                   MatchOptions(method="model", stream_above_s=0.0))
    assert leftovers(tmp_path) == []


def test_bad_samples_found_while_streaming(tmp_path, monkeypatch):
    """NaN in the middle of a long file: a one-line AudioFileError naming the file, nothing written."""
    monkeypatch.setattr(stream_pipeline, "BLOCK_FRAMES", 4096)
    x = signal(SR, 3.0, 2)
    x[1, 30000] = np.nan
    sf.write(str(tmp_path / "nan.wav"), x.T, SR, subtype="FLOAT")
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros((SR * 2, 1), np.float32), SR)
    write_tone(tmp_path / "ref.wav", sr=SR, seconds=2.0)
    for bad, fragment in (("nan.wav", "NaN or infinite"), ("silent.wav", "digital silence")):
        with pytest.raises(AudioFileError, match=fragment) as err:
            match_file(tmp_path / bad, tmp_path / "ref.wav", tmp_path / "out.wav",
                       MatchOptions(method="analysis", stream_above_s=0.0))
        assert str(tmp_path / bad) in str(err.value) and "\n" not in str(err.value)
    assert leftovers(tmp_path) == ["nan.wav", "ref.wav", "silent.wav"]
    assert not any(name.endswith(".part") for name in os.listdir(tmp_path))
