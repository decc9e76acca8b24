#!/usr/bin/env python3
"""Regenerate the bundled example audio in examples/.

Usage (from the repository root):

    python scripts/make_examples.py

Needs the Debian package `sonic-pi-samples` (CC0 samples from freesound.org):

    apt-get install sonic-pi-samples

and numpy, scipy, soundfile, pedalboard, pyloudnorm. Output is deterministic
(fixed seed, no time-dependent input):

  examples/input.wav       dull, uncompressed take: guitar + piano + drums,
                           stereo 44.1 kHz 16-bit WAV, high-shelf cut, peak -6 dBFS
  examples/reference.flac  different material (two loops + bass), bright and
                           compressed: mono 48 kHz 16-bit FLAC, about -11.5 LUFS,
                           true peak <= -1 dBTP
"""
import os
import sys

import numpy as np
import pedalboard as pb
import pyloudnorm as pyln
import soundfile as sf
from scipy import signal

PKG = "sonic-pi-samples"
SAMPLE_DIR = "/usr/share/sonic-pi/samples"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "examples")
SEED = 20240611
SR_IN, SR_REF = 44100, 48000
DUR_IN, DUR_REF = 8.0, 8.0


def load(name, sr=SR_IN):
    """Load a sample as float32 stereo (n, 2) at its native rate (44.1 kHz)."""
    path = os.path.join(SAMPLE_DIR, name + ".flac")
    x, fs = sf.read(path, dtype="float32", always_2d=True)
    assert fs == sr, f"{name}: unexpected rate {fs}"
    return np.repeat(x, 2, axis=1) if x.shape[1] == 1 else x[:, :2]


def place(buf, x, t, gain, pan=0.0):
    """Mix sample x into buf at time t (s) with a gain and constant-power pan."""
    i = int(round(t * SR_IN))
    n = min(len(x), len(buf) - i)
    if n <= 0:
        return
    theta = (pan + 1.0) * np.pi / 4.0
    lr = np.array([np.cos(theta), np.sin(theta)]) * np.sqrt(2.0)
    buf[i:i + n] += gain * x[:n] * lr


def fade(x, sr, t_in=0.01, t_out=0.3):
    """Short fade-in and fade-out so the files start/end cleanly."""
    x = x.copy()
    a, b = int(t_in * sr), int(t_out * sr)
    x[:a] *= np.linspace(0.0, 1.0, a)[:, None]
    x[-b:] *= np.linspace(1.0, 0.0, b)[:, None]
    return x


def run_board(x, board, sr):
    """Apply a pedalboard chain to (n, ch) audio."""
    return board(x.T.astype(np.float32), sr).T


def make_input(rng):
    """Dull, dynamic 3-bar phrase at 90 BPM: soft intro, drums enter, accented end."""
    beat = 60.0 / 90.0
    buf = np.zeros((int(DUR_IN * SR_IN), 2), np.float32)
    guit, piano = load("guit_em9"), load("ambi_piano")
    kick, snare = load("drum_heavy_kick"), load("drum_snare_soft")
    hat, crash = load("drum_cymbal_closed"), load("drum_cymbal_soft")
    place(buf, guit, 0.0, 0.55, pan=-0.3)
    for k, t in enumerate([0, 4, 8]):               # low piano note every bar, growing
        place(buf, piano, t * beat, 0.12 + 0.08 * k, pan=0.35)
    place(buf, load("guit_harmonics"), 6 * beat, 0.5, pan=0.4)
    for i in range(24):                             # closed hats on eighths
        vel = rng.uniform(0.05, 0.15) if i < 8 else rng.uniform(0.1, 0.35)
        place(buf, hat, i * beat / 2, vel, pan=0.5)
    for b in range(4, 12):                          # drums from bar 2 on
        v = 0.35 + 0.65 * (b - 4) / 7 * rng.uniform(0.7, 1.0)
        place(buf, kick if b % 2 == 0 else snare, b * beat, v * (0.8 if b % 2 == 0 else 1.6))
    place(buf, crash, 8 * beat, 0.6, pan=-0.5)
    place(buf, kick, 11.5 * beat, 1.0)              # accented pickup
    # Dull it: -9 dB high shelf at 3.5 kHz plus a gentle 7 kHz low-pass.
    dull = pb.Pedalboard([pb.HighShelfFilter(3500, -9.0, 0.7), pb.LowpassFilter(7000)])
    y = fade(run_board(buf, dull, SR_IN), SR_IN)
    return y * (10 ** (-6.0 / 20) / np.abs(y).max())   # peak -6 dBFS, no compression


def make_reference():
    """Bright, compressed, loud: two loops + bass, mono, 48 kHz."""
    buf = np.zeros((int(DUR_REF * SR_IN), 2), np.float32)
    place(buf, load("loop_garzul"), 0.0, 0.7)
    place(buf, load("loop_safari"), 0.0, 0.9)
    bass = load("bass_woodsy_c")
    for t in (0.0, 4.0):
        place(buf, bass, t, 0.3)
    mono = buf.mean(axis=1, keepdims=True)
    mono = signal.resample_poly(mono, SR_REF, SR_IN, axis=0)[: int(DUR_REF * SR_REF)]
    bright = pb.Pedalboard([
        pb.HighpassFilter(40),
        pb.PeakFilter(3000, 3.0, 0.8),             # presence
        pb.HighShelfFilter(5000, 6.0, 0.7),        # air
        pb.Compressor(threshold_db=-24, ratio=4, attack_ms=5, release_ms=80),
    ])
    y = run_board(mono, bright, SR_REF)
    meter = pyln.Meter(SR_REF)
    y = y * 10 ** ((-10.0 - meter.integrated_loudness(y)) / 20)   # make-up gain
    y = run_board(y, pb.Pedalboard([pb.Limiter(threshold_db=-1.5, release_ms=60)]), SR_REF)
    y = fade(y, SR_REF)
    true_peak = np.abs(signal.resample_poly(y, 4, 1, axis=0)).max()  # 4x oversampled
    return y * min(1.0, 10 ** (-1.0 / 20) / true_peak)             # <= -1 dBTP


def describe(path):
    x, sr = sf.read(path, always_2d=True)
    mono = x.mean(axis=1)
    peak = 20 * np.log10(np.abs(x).max())
    tpk = 20 * np.log10(np.abs(signal.resample_poly(x, 4, 1, axis=0)).max())
    rms = 20 * np.log10(np.sqrt(np.mean(x ** 2)))
    f, p = signal.welch(mono, sr, nperseg=4096)
    centroid = np.sum(f * p) / np.sum(p)
    hf = 10 * np.log10(p[f >= 4000].sum() / p.sum())
    lufs = pyln.Meter(sr).integrated_loudness(x)
    print(f"{os.path.relpath(path)}: {len(x) / sr:.2f} s, {sr} Hz, {x.shape[1]} ch, "
          f"{os.path.getsize(path) / 1e6:.3f} MB\n"
          f"  integrated {lufs:.1f} LUFS, peak {peak:.1f} dBFS ({tpk:.1f} dBTP), "
          f"crest {peak - rms:.1f} dB, spectral centroid {centroid:.0f} Hz, "
          f"energy >4 kHz {hf:.1f} dB")


def main():
    if not os.path.isdir(SAMPLE_DIR):
        sys.exit(f"error: {SAMPLE_DIR} not found.\n"
                 f"Install the samples first:  apt-get install {PKG}")
    os.makedirs(OUT_DIR, exist_ok=True)
    rng = np.random.default_rng(SEED)
    inp = os.path.join(OUT_DIR, "input.wav")
    ref = os.path.join(OUT_DIR, "reference.flac")
    sf.write(inp, make_input(rng), SR_IN, subtype="PCM_16")
    sf.write(ref, make_reference(), SR_REF, subtype="PCM_16", format="FLAC")
    for path in (inp, ref):
        describe(path)


if __name__ == "__main__":
    main()
