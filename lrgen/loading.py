"""Loading frames: folders of images, video files and arrays, processed as the original work.

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
Built-in synthetic videos are in :mod:`lrgen.sequences`; writing is in :mod:`lrgen.io`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from lrgen.io import _one_line, read_array_file

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")
ARRAY_EXTENSIONS = (".npy", ".npz")

# Float arrays may carry rounding error from upstream arithmetic; values this far outside
# [0, 1] are clipped silently, anything further is treated as a caller's mistake.
_RANGE_EPS = 1e-6
# PIL modes whose pixels carry a single intensity channel.
_SINGLE_CHANNEL_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# ITU-R 601-2 luma weights, the ones PIL's convert('L') uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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
