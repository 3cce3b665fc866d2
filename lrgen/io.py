"""Files in and out, safely: atomic writers, array files, output checks, pictures and videos.

Writers never leave a half-written file behind: :func:`atomic_write` yields a temporary name in
the destination folder and renames it into place only when the write succeeded (``os.replace`` is
atomic on POSIX and Windows when both names are on the same file system). Paths a user names are
checked before any work (:func:`check_output_file`, :func:`check_output_dir`,
:func:`check_not_inputs`), and a damaged array file fails with one line naming it
(:func:`read_array_file`). Reading videos is in :mod:`lrgen.loading`, the built-in synthetic
videos in :mod:`lrgen.sequences`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

WRITE_VIDEO_EXTENSIONS = (".gif", ".mp4")


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


def _one_line(e: BaseException) -> str:
    """A library's error text on one line, so our message stays one line."""
    return " ".join(str(e).split()) or type(e).__name__


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
