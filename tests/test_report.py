"""Tests for lrgen.report: grid layout and that every writer leaves one valid PNG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrgen import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_frame_grid_layout():
    t, h, w = 7, 4, 5
    gray = np.arange(t, dtype=np.float32)[:, None, None, None] / 10 * np.ones((1, h, w, 1), np.float32)
    rgb = np.repeat(gray, 3, axis=-1) * 0.5
    grid = report.frame_grid([gray, rgb], num_columns=4, gap=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 * h + 2, 4 * w + 3 * 2, 3)
    idx = [0, 2, 4, 6]  # np.linspace(0, 6, 4) = 0, 2, 4, 6
    for c, frame in enumerate(idx):
        left = c * (w + 2)
        assert np.all(grid[:h, left : left + w] == round(frame / 10 * 255))
        assert np.all(grid[h + 2 :, left : left + w] == round(frame / 20 * 255))
    assert np.all(grid[h : h + 2] == 255) and np.all(grid[:, w : w + 2] == 255)  # white gaps
    assert report.frame_grid([gray], num_columns=50).shape[1] == t * w + (t - 1) * 2


def test_frame_grid_errors():
    with pytest.raises(ValueError, match="rows"):
        report.frame_grid([])
    with pytest.raises(ValueError, match=r"rows\[1\]"):
        report.frame_grid([np.zeros((3, 4, 4, 1)), np.zeros((2, 4, 4, 1))])


def test_save_grid_png(tmp_path):
    path = tmp_path / "out" / "grid.png"
    report.save_grid(path, [np.random.default_rng(0).random((5, 8, 8, 1))], num_columns=3)
    _assert_png(path)
    assert Image.open(path).size == (3 * 8 + 2 * 2, 8)


def test_plot_curves_png(tmp_path):
    it = np.arange(1, 51)
    path = tmp_path / "c" / "curves.png"
    report.plot_curves(path, {"measurement loss": (it, 1.0 / it), "PSNR (dB)": (it, np.log(it))})
    _assert_png(path)
    with pytest.raises(ValueError, match="curves"):
        report.plot_curves(tmp_path / "bad.png", {"loss": (it, it[:-1])})


@pytest.mark.parametrize("d", [2, 3])
def test_plot_latent_path_png(tmp_path, d):
    coords = np.random.default_rng(d).standard_normal((8, d))
    path = tmp_path / str(d) / "latent.png"
    report.plot_latent_path(path, coords, title="codes", highlight=np.arange(8) % 2 == 0)
    _assert_png(path)
    plain = tmp_path / f"plain{d}" / "latent.png"
    report.plot_latent_path(plain, coords)
    _assert_png(plain)


def test_plot_latent_path_errors(tmp_path):
    p = tmp_path / "x.png"
    with pytest.raises(ValueError, match="coords"):
        report.plot_latent_path(p, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="highlight"):
        report.plot_latent_path(p, np.zeros((5, 2)), highlight=np.ones(4, bool))


def test_import_leaves_pyplot_alone():
    # A fresh interpreter: importing and using lrgen.report must not pull in pyplot (which
    # would pick a global backend for the user).
    code = (
        "import sys, numpy as np, tempfile, os; from lrgen import report; "
        "curves = {'loss': (np.arange(3), np.ones(3))}; "
        "report.plot_curves(os.path.join(tempfile.mkdtemp(), 'c.png'), curves); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
