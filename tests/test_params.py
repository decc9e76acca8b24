"""The parameter space: ranges per sample rate, (de)normalisation, validation, fingerprint."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from afxmatch.errors import InvalidParameterError
from afxmatch.params import ParamSpace, fingerprint

RATES = (8000, 16000, 22050, 44100, 48000, 96000)


@pytest.mark.parametrize("sr", RATES)
def test_round_trip_every_spec(sr):
    space = ParamSpace(sr)
    assert len(space) == 6 * 3 + 7
    for spec in space.specs:
        assert spec.scale in ("lin", "log")
        if spec.scale == "log":
            assert spec.min > 0
        assert spec.normalise(spec.min) == pytest.approx(0.0, abs=1e-12)
        assert spec.normalise(spec.max) == pytest.approx(1.0, abs=1e-12)
        for u in np.linspace(0.0, 1.0, 11):
            v = spec.denormalise(u)
            assert spec.min - 1e-9 <= v <= spec.max + 1e-9
            assert spec.normalise(v) == pytest.approx(u, abs=1e-12)
        for v in np.linspace(spec.min, spec.max, 7):
            assert spec.denormalise(spec.normalise(v)) == pytest.approx(v, rel=1e-12, abs=1e-12)
        # the mid point is the arithmetic mean for lin, the geometric mean for log
        mid = spec.denormalise(0.5)
        expected = math.sqrt(spec.min * spec.max) if spec.scale == "log" else (spec.min + spec.max) / 2
        assert mid == pytest.approx(expected, rel=1e-12, abs=1e-12)
        # the default lies in range
        assert spec.min <= spec.default <= spec.max


@pytest.mark.parametrize("sr", RATES)
def test_vector_round_trip(sr):
    space = ParamSpace(sr)
    rng = np.random.default_rng(sr)
    u = rng.uniform(0, 1, len(space))
    phys = space.denormalise(u)
    assert list(phys) == list(space.names)
    np.testing.assert_allclose(space.normalise(phys), u, atol=1e-12)
    np.testing.assert_allclose(space.to_vector(space.from_vector(space.to_vector(phys))),
                               [phys[n] for n in space.names], rtol=1e-15)
    # denormalise clips to [0, 1]
    clipped = space.denormalise(np.full(len(space), 2.0))
    assert all(clipped[s.name] == pytest.approx(s.max) for s in space.specs)
    np.testing.assert_allclose(space.normalise(space.defaults()),
                               [s.normalise(s.default) for s in space.specs])


def test_log_specs_are_the_expected_ones():
    space = ParamSpace(44100)
    log_names = {s.name for s in space.specs if s.scale == "log"}
    expected = {f"{p}_{k}" for p in ("ls", "p1", "p2", "p3", "p4", "hs") for k in ("freq_hz", "q")}
    expected |= {"comp_ratio", "comp_attack_ms", "comp_release_ms"}
    assert log_names == expected


@pytest.mark.parametrize("sr", (44100, 48000))
def test_top_frequency_full_band_rates(sr):
    space = ParamSpace(sr)
    for name in ("p4_freq_hz", "hs_freq_hz"):
        top = space[name].max
        assert 16000.0 <= top <= 0.45 * sr
    assert space["hs_freq_hz"].max == pytest.approx(min(0.45 * sr, 20000.0))
    # nominal ranges are kept at full-band rates
    assert (space["ls_freq_hz"].min, space["ls_freq_hz"].max) == (20.0, 200.0)
    assert (space["p1_freq_hz"].min, space["p1_freq_hz"].max) == (200.0, 2000.0)
    assert (space["p3_freq_hz"].min, space["p3_freq_hz"].max) == (2000.0, 8000.0)


@pytest.mark.parametrize("sr", (8000, 11025, 16000, 22050, 44100, 48000, 96000))
def test_all_band_ranges_valid(sr):
    space = ParamSpace(sr)
    for spec in space.specs:
        assert spec.min < spec.max, spec
        if spec.name.endswith("_freq_hz"):
            assert spec.max <= 0.45 * sr + 1e-9, spec
            assert spec.min >= 20.0 - 1e-9, spec
            assert spec.min <= spec.default <= spec.max


def test_validate_fills_defaults_and_accepts_edges():
    space = ParamSpace(44100)
    full = space.validate({})
    assert full == space.defaults()
    edges = {s.name: s.min for s in space.specs}
    assert space.validate(edges) == edges
    edges = {s.name: s.max for s in space.specs}
    assert space.validate(edges) == edges
    got = space.validate({"p1_gain_db": 3})
    assert got["p1_gain_db"] == 3.0 and isinstance(got["p1_gain_db"], float)


def test_validate_rejects_unknown_names():
    space = ParamSpace(44100)
    with pytest.raises(InvalidParameterError, match="unknown"):
        space.validate({"p5_gain_db": 1.0})
    with pytest.raises(InvalidParameterError):
        space.validate({"p1_gain_db": 1.0, "gain": 2.0}, clip=True)  # clip does not excuse it


@pytest.mark.parametrize("bad", (float("nan"), float("inf"), float("-inf")))
def test_validate_rejects_non_finite(bad):
    space = ParamSpace(44100)
    for clip in (False, True):
        with pytest.raises(InvalidParameterError, match="finite"):
            space.validate({"comp_ratio": bad}, clip=clip)


def test_validate_out_of_range_rejects_or_clips():
    space = ParamSpace(48000)
    for spec in space.specs:
        span = spec.max - spec.min
        for value, bound in ((spec.max + 0.01 * span + 1e-3, spec.max),
                             (spec.min - 0.01 * span - 1e-3, spec.min)):
            with pytest.raises(InvalidParameterError, match=spec.name):
                space.validate({spec.name: value})
            assert space.validate({spec.name: value}, clip=True)[spec.name] == bound
    # the top of p4 depends on the rate: fine at 48 kHz, out of range at 16 kHz
    assert space.validate({"p4_freq_hz": 20000.0})["p4_freq_hz"] == 20000.0
    with pytest.raises(InvalidParameterError):
        ParamSpace(16000).validate({"p4_freq_hz": 20000.0})
    assert ParamSpace(16000).validate({"p4_freq_hz": 20000.0}, clip=True)["p4_freq_hz"] == 7200.0


@pytest.mark.parametrize("sr", (0, -1, float("nan"), float("inf")))
def test_bad_sample_rate(sr):
    with pytest.raises(InvalidParameterError):
        ParamSpace(sr)


def test_bounds_match_specs():
    space = ParamSpace(22050)
    lo, hi, is_log = space.bounds()
    assert lo.shape == hi.shape == is_log.shape == (len(space),)
    for i, s in enumerate(space.specs):
        assert (lo[i], hi[i], bool(is_log[i])) == (s.min, s.max, s.scale == "log")


def test_fingerprint_stable_hex16():
    fp = fingerprint()
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert fingerprint() == fp == fingerprint()
    ParamSpace(8000)  # building other spaces must not change it
    assert fingerprint() == fp


def test_fingerprint_same_in_fresh_process():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "from afxmatch.params import fingerprint; print(fingerprint())"],
                         capture_output=True, text=True, check=True, env={**__import__("os").environ,
                                                                         "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == fingerprint()
