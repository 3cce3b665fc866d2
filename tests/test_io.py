"""Tests for lrgen.io, lrgen.loading and lrgen.sequences: every source round-trips, processing matches PIL, every error names the path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrgen import io, loading, sequences

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ROT_MNIST = SHARED / "data" / "gmlr" / "rot_mnist" / "seq1"


def _smooth_video(t=6, h=16, w=16, c=3, seed=0) -> np.ndarray:
    """Smooth random-phase sinusoids in [0, 1]: survive lossy codecs with small error."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    frames = []
    for i in range(t):
        chans = [0.5 + 0.4 * np.sin(2 * xx + 3 * yy + 0.4 * i + rng.uniform(0, 0.1) + k) for k in range(c)]
        frames.append(np.stack(chans, axis=-1))
    return np.asarray(frames, dtype=np.float32)


def _write_folder(folder: Path, frames_u8: np.ndarray, ext=".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames_u8):
        Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f).save(folder / f"frame{i:03d}{ext}")


# --------------------------------------------------------------------------- folders
def test_folder_round_trip_exact(tmp_path):
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, size=(5, 12, 12, 3), dtype=np.uint8)
    _write_folder(tmp_path / "seq", u8)
    (tmp_path / "seq" / "notes.txt").write_text("ignored")
    x = loading.load_video(tmp_path / "seq", image_size=12)
    assert x.shape == (5, 12, 12, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, u8.astype(np.float32) / 255)


def test_folder_sorted_by_name_and_extension_case(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for name, value in [("b.PNG", 200), ("a.jpg", 10), ("c.Tif", 90)]:
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(folder / name)
    x = loading.load_video(folder, image_size=8)
    np.testing.assert_allclose(x[:, 4, 4, 0] * 255, [10, 200, 90], atol=2)  # jpg is lossy
    assert x.shape == (3, 8, 8, 1)  # all sources are 'L' → one channel


def test_center_crop_and_resize_match_pil(tmp_path):
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)  # H=20, W=30
    wide[:, :5] = 255  # the 5 columns cropped away on the left ...
    wide[:, -5:] = 0  # ... and on the right
    _write_folder(tmp_path / "seq", wide[None])
    x = loading.load_video(tmp_path / "seq", image_size=8)
    crop = Image.fromarray(wide[:, 5:25])  # centred 20×20 square
    want = np.asarray(crop.resize((8, 8), Image.BILINEAR), np.float32) / 255
    np.testing.assert_array_equal(x[0], want)
    assert loading.load_video(tmp_path / "seq", image_size=None).shape == (1, 20, 20, 3)


def test_grayscale_conversion(tmp_path):
    rng = np.random.default_rng(3)
    u8 = rng.integers(0, 256, size=(2, 10, 10, 3), dtype=np.uint8)
    _write_folder(tmp_path / "seq", u8)
    g = loading.load_video(tmp_path / "seq", image_size=10, grayscale=True)
    want = np.stack([np.asarray(Image.fromarray(f).convert("L"), np.float32) / 255 for f in u8])
    np.testing.assert_array_equal(g[..., 0], want)
    gray_src = tmp_path / "gray"
    _write_folder(gray_src, u8[..., :1])
    assert loading.load_video(gray_src, image_size=10).shape[-1] == 1
    rgb = loading.load_video(gray_src, image_size=10, grayscale=False)
    assert rgb.shape[-1] == 3 and np.array_equal(rgb[..., 0], rgb[..., 2])


def test_num_frames_truncates(tmp_path):
    u8 = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 1), np.uint8) * 40
    _write_folder(tmp_path / "seq", u8)
    x = loading.load_video(tmp_path / "seq", image_size=8, num_frames=4)
    np.testing.assert_array_equal(x[:, 0, 0, 0] * 255, [0, 40, 80, 120])


@pytest.mark.skipif(not ROT_MNIST.is_dir(), reason=f"shared rotating-MNIST frames not found at {ROT_MNIST}")
def test_rot_mnist_matches_pil_exactly():
    x = loading.load_video(ROT_MNIST)
    assert x.shape == (32, 64, 64, 1)
    files = sorted(ROT_MNIST.glob("*.jpg"))
    want = np.stack([np.asarray(Image.open(f).convert("L"), np.float32) / np.float32(255) for f in files])
    np.testing.assert_array_equal(x[..., 0], want)


# --------------------------------------------------------------------------- arrays
@pytest.mark.parametrize("layout", ["THW", "THWC1", "THWC3", "TCHW1", "TCHW3"])
@pytest.mark.parametrize("ext", [".npy", ".npz"])
def test_array_layouts(tmp_path, layout, ext):
    rng = np.random.default_rng(4)
    c = 3 if layout.endswith("3") else 1
    thwc = rng.integers(0, 256, size=(3, 8, 8, c), dtype=np.uint8)
    stored = {"THW": thwc[..., 0], "THWC1": thwc, "THWC3": thwc}.get(layout, thwc.transpose(0, 3, 1, 2))
    path = tmp_path / f"v{ext}"
    if ext == ".npy":
        np.save(path, stored)
    else:
        np.savez(path, other=np.zeros(2), frames=stored)  # 'frames' wins over other keys
    x = loading.load_video(path, image_size=8)
    assert x.shape == (3, 8, 8, c)
    np.testing.assert_array_equal(x, thwc.astype(np.float32) / 255)


def test_npz_single_unnamed_array(tmp_path):
    a = np.random.default_rng(5).random((2, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "v.npz", a)
    np.testing.assert_allclose(loading.load_video(tmp_path / "v.npz", image_size=8)[..., 0], a)


def test_float_array_resized_in_float(tmp_path):
    a = np.random.default_rng(6).random((2, 16, 24, 3))  # float64, non-square
    np.save(tmp_path / "v.npy", a)
    x = loading.load_video(tmp_path / "v.npy", image_size=8)
    assert x.shape == (2, 8, 8, 3) and x.dtype == np.float32
    crop = a[1, :, 4:20, 0].astype(np.float32)
    want = np.asarray(Image.fromarray(crop).resize((8, 8), Image.BILINEAR))
    np.testing.assert_allclose(x[1, ..., 0], want, atol=1e-6)
    # not quantised: values are generally not multiples of 1/255
    assert np.abs(x * 255 - np.round(x * 255)).max() > 1e-3
    g = loading.load_video(tmp_path / "v.npy", image_size=None, grayscale=True)
    np.testing.assert_allclose(g[..., 0], a[:, :, 4:20] @ [0.299, 0.587, 0.114], atol=1e-6)


# --------------------------------------------------------------------------- video files
def test_gif_round_trip(tmp_path):
    x = _smooth_video(t=5, h=16, w=16, c=1)
    io.write_video(tmp_path / "v.gif", x, fps=10)
    back = loading.load_video(tmp_path / "v.gif", image_size=16, grayscale=True)
    assert back.shape == (5, 16, 16, 1)
    np.testing.assert_allclose(back, x, atol=1 / 255 + 1e-6)  # 8-bit gray gif: only rounding


def test_mp4_round_trip_with_odd_size(tmp_path):
    x = _smooth_video(t=6, h=17, w=21, c=3)
    path = tmp_path / "sub" / "v.mp4"  # parent is created
    io.write_video(path, x, fps=8)
    assert [p.name for p in path.parent.iterdir()] == ["v.mp4"]  # no temporary left behind
    back = loading.load_video(path, image_size=None)
    assert back.shape == (6, 18, 18, 3)  # padded to 18×22, then centre-cropped to 18×18
    # Compare away from the padded edge; H.264 + 4:2:0 is lossy, smooth content survives well.
    err = np.abs(back[:, :16, :16] - x[:, :16, 2:18])
    assert err.mean() < 0.02 and err.max() < 0.2, (err.mean(), err.max())


def test_mp4_grayscale_and_num_frames(tmp_path):
    x = _smooth_video(t=5, h=16, w=16, c=1)
    io.write_video(tmp_path / "g.mp4", x)
    back = loading.load_video(tmp_path / "g.mp4", image_size=16, grayscale=True, num_frames=3)
    assert back.shape == (3, 16, 16, 1)
    assert np.abs(back - x[:3]).mean() < 0.02
    with pytest.raises(ValueError, match="has 5 frames"):
        loading.load_video(tmp_path / "g.mp4", num_frames=9)


# --------------------------------------------------------------------------- errors
def _assert_value_error_names(path, fn, *args, **kwargs):
    with pytest.raises(ValueError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


def test_error_missing_path(tmp_path):
    p = tmp_path / "nope"
    assert "does not exist" in _assert_value_error_names(p, loading.load_video, p)


def test_error_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    assert "no frame images" in _assert_value_error_names(tmp_path, loading.load_video, tmp_path)


def test_error_undecodable_frame(tmp_path):
    _write_folder(tmp_path, np.zeros((2, 8, 8, 1), np.uint8))
    (tmp_path / "frame005.png").write_bytes(b"not a png")
    msg = _assert_value_error_names(tmp_path, loading.load_video, tmp_path)
    assert "frame005.png" in msg


def test_error_unsupported_extension(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("x")
    assert "unsupported extension" in _assert_value_error_names(p, loading.load_video, p)


def test_error_undecodable_video(tmp_path):
    p = tmp_path / "v.mp4"
    p.write_bytes(b"\x00" * 64)
    _assert_value_error_names(p, loading.load_video, p)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((2, 8, 8, 5), np.uint8), "shape"),
        (np.zeros((8, 8), np.uint8), "shape"),
        (np.zeros((2, 8, 8), np.int32), "dtype"),
        (np.full((2, 8, 8), 2.0), "[0, 1]"),
        (np.full((2, 8, 8), np.nan), "non-finite"),
    ],
)
def test_error_bad_arrays(tmp_path, array, words):
    p = tmp_path / "v.npy"
    np.save(p, array)
    assert words in _assert_value_error_names(p, loading.load_video, p)


def test_float_array_tiny_eps_allowed(tmp_path):
    np.save(tmp_path / "v.npy", np.full((1, 8, 8), 1.0 + 1e-8))
    assert loading.load_video(tmp_path / "v.npy", image_size=8).max() == 1.0


def test_error_npz_ambiguous(tmp_path):
    p = tmp_path / "v.npz"
    np.savez(p, a=np.zeros((1, 8, 8)), b=np.zeros((1, 8, 8)))
    _assert_value_error_names(p, loading.load_video, p)


def test_error_frame_sizes_differ(tmp_path):
    _write_folder(tmp_path, np.zeros((2, 8, 8, 1), np.uint8))
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "frame002.png")
    Image.fromarray(np.zeros((7, 8), np.uint8)).save(tmp_path / "frame003.png")
    msg = _assert_value_error_names(tmp_path, loading.load_video, tmp_path)
    assert "frame002.png" in msg and "frame003.png" not in msg


def test_error_too_few_frames(tmp_path):
    _write_folder(tmp_path, np.zeros((3, 8, 8, 1), np.uint8))
    msg = _assert_value_error_names(tmp_path, loading.load_video, tmp_path, num_frames=4)
    assert "has 3 frames" in msg and "num_frames=4" in msg


def test_error_bad_arguments(tmp_path):
    _assert_value_error_names(tmp_path, loading.load_video, tmp_path, image_size=0)
    _assert_value_error_names(tmp_path, loading.load_video, tmp_path, num_frames=-1)
    with pytest.raises(ValueError, match="unsupported extension"):
        io.write_video(tmp_path / "v.avi", np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match="shape"):
        io.write_video(tmp_path / "v.gif", np.zeros((2, 8, 8, 2)))
    with pytest.raises(ValueError, match="fps"):
        io.write_video(tmp_path / "v.gif", np.zeros((2, 8, 8, 1)), fps=0)


# --------------------------------------------------------------------------- builtin sequences
def test_builtin_rotating_digit():
    x = sequences.builtin_sequence()
    assert x.shape == (32, 64, 64, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x, sequences.builtin_sequence())  # deterministic
    diffs = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))
    assert np.all(diffs > 1e-3)  # every frame moves
    rows = np.nonzero(x[16, ..., 0].max(axis=1) > 0.5)[0]  # the middle frame is upright
    assert 35 <= rows[-1] - rows[0] + 1 <= 50  # an MNIST-sized digit
    assert np.all(x[:, :3, :3] == 0.0)  # black background


def test_builtin_variants():
    rgb = sequences.builtin_sequence(num_frames=4, image_size=32, grayscale=False)
    assert rgb.shape == (4, 32, 32, 3)
    assert not np.array_equal(rgb[..., 0], rgb[..., 2])
    disc = sequences.builtin_sequence("translating_disc", num_frames=5, image_size=32)
    assert disc.shape == (5, 32, 32, 1) and disc.min() >= 0.0 and disc.max() <= 1.0
    assert np.all(np.abs(np.diff(disc, axis=0)).sum(axis=(1, 2, 3)) > 0)
    with pytest.raises(ValueError, match="rotating_digit, translating_disc, two_digits"):
        sequences.builtin_sequence("mnist")


def test_builtin_two_digits_move_apart():
    x = sequences.builtin_sequence("two_digits")
    assert x.shape == (20, 64, 64, 1) and x.dtype == np.float32  # natural length 20
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(x, sequences.builtin_sequence("two_digits"))  # seeded

    def spread(frame):  # distance between the ink's two extreme corners
        r, c = np.nonzero(frame > 0.5)
        return np.hypot(r.max() - r.min(), c.max() - c.min())

    assert spread(x[-1, ..., 0]) > spread(x[0, ..., 0]) + 20  # the digits move apart
    assert sequences.builtin_sequence("two_digits", num_frames=5, image_size=32).shape == (5, 32, 32, 1)


# --------------------------------------------------------------------------- atomic writing
def test_atomic_write_success_and_suffix(tmp_path):
    target = tmp_path / "a" / "b" / "out.png"
    with io.atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and tmp != target
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]


def test_atomic_write_leaves_nothing_on_exception(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), io.atomic_write(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    with pytest.raises(RuntimeError), io.atomic_write(tmp_path / "new.gif") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_atomic_write_nothing_written(tmp_path):
    with pytest.raises(ValueError, match="nothing was written"), io.atomic_write(tmp_path / "x.png"):
        pass


def test_save_png_round_trip(tmp_path):
    img = np.random.default_rng(7).random((6, 5, 3))
    io.save_png(tmp_path / "d" / "x.png", img)
    back = np.asarray(Image.open(tmp_path / "d" / "x.png"))
    np.testing.assert_array_equal(back, np.round(img * 255).astype(np.uint8))
    io.save_png(tmp_path / "g.png", np.zeros((4, 4, 1), np.uint8))
    assert Image.open(tmp_path / "g.png").mode == "L"
    with pytest.raises(ValueError, match="shape"):
        io.save_png(tmp_path / "bad.png", np.zeros((4, 4, 2)))
