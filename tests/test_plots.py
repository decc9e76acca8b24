"""--plot writes a valid PNG of sensible size; the package never imports matplotlib itself."""

import struct
import subprocess
import sys

import pytest

from audio_fixtures import EXAMPLE_INPUT, EXAMPLE_REFERENCE

pytest.importorskip("matplotlib")


def test_match_plot_png(tmp_path):
    png = tmp_path / "fig.png"
    proc = subprocess.run([sys.executable, "-m", "afxmatch", EXAMPLE_INPUT, "--ref", EXAMPLE_REFERENCE,
                           "-o", tmp_path / "o.wav", "--method", "analysis", "--plot", png,
                           "--preset", "apo"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert 1200 <= width <= 2400 and 400 <= height <= 1000, (width, height)
    assert 30_000 < len(data) < 2_000_000
    assert (tmp_path / "o.apo.txt").read_text().count("Filter ") == 6


def test_plot_path_checked_before_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "afxmatch", EXAMPLE_INPUT, "--ref", EXAMPLE_REFERENCE,
                           "-o", tmp_path / "o.wav", "--method", "analysis", "--plot", tmp_path / "f.jpg"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and ".png" in proc.stderr
    assert not (tmp_path / "o.wav").exists()


def test_package_import_does_not_load_matplotlib():
    code = ("import sys, afxmatch.cli, afxmatch.pipeline, afxmatch.apply, afxmatch.presets; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
