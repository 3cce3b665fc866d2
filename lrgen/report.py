"""Pictures of a run: frame grids, training curves and the path of the latent codes.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure`` on a
``FigureCanvasAgg``), never through ``pyplot``: nothing here selects a global backend, opens a
window or keeps figures alive, so importing lrgen leaves a user's matplotlib setup alone and
works on headless machines. Every writer creates the parent folder and writes atomically
(:func:`lrgen.io.atomic_write`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lrgen.io import atomic_write, save_png


def _as_rgb_video(row, index: int) -> np.ndarray:
    v = np.asarray(row)
    if v.ndim == 3:
        v = v[..., None]
    if v.ndim != 4 or v.shape[-1] not in (1, 3) or 0 in v.shape:
        raise ValueError(
            f"frame_grid: rows[{index}] has shape {np.shape(row)}; allowed are non-empty (T, H, W, C) with "
            "C in {1, 3}, or (T, H, W)"
        )
    if not np.issubdtype(v.dtype, np.floating) and not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"frame_grid: rows[{index}] has dtype {v.dtype}; allowed are float in [0, 1] and uint8")
    if v.dtype == np.uint8:
        v = v.astype(np.float32) / 255.0
    v = np.clip(np.nan_to_num(v.astype(np.float32), nan=0.0), 0.0, 1.0)
    return np.repeat(v, 3, axis=-1) if v.shape[-1] == 1 else v


def frame_grid(rows: Sequence[np.ndarray], *, num_columns: int = 10, gap: int = 2) -> np.ndarray:
    """Tile several videos of one sequence into one image: a row per video, a column per time.

    Column j shows frame t_j = round(j · (T − 1) / (n − 1)), j = 0..n−1, n = min(num_columns, T),
    i.e. ``np.linspace(0, T - 1, n)`` rounded, so the columns span the whole sequence evenly and
    every row shows the same time instants (e.g. original / measured / reconstructed). Tiles are
    separated by ``gap`` white pixels; grayscale rows are replicated to RGB; values are clipped to
    [0, 1] (NaN shows as black).

    Args:
        rows: videos (T, H, W, C) with C ∈ {1, 3} (or (T, H, W)), float in [0, 1] or uint8, all
            with the same T, H and W.
        num_columns: the most frames to show per row.
        gap: white pixels between tiles.

    Returns:
        uint8 image (R·H + (R−1)·gap, n·W + (n−1)·gap, 3).

    Raises:
        ValueError: if ``rows`` is empty, the videos disagree in T, H or W, or an argument is out
            of range.
    """
    if len(rows) == 0:
        raise ValueError("frame_grid: rows is empty; allowed is a list of at least one (T, H, W, C) video")
    if isinstance(num_columns, bool) or not isinstance(num_columns, (int, np.integer)) or num_columns < 1:
        raise ValueError(f"frame_grid: num_columns={num_columns!r}; allowed is a positive integer")
    if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 0:
        raise ValueError(f"frame_grid: gap={gap!r}; allowed is a non-negative integer")
    videos = [_as_rgb_video(r, i) for i, r in enumerate(rows)]
    t, h, w = videos[0].shape[:3]
    for i, v in enumerate(videos[1:], start=1):
        if v.shape[:3] != (t, h, w):
            raise ValueError(
                f"frame_grid: rows[{i}] has (T, H, W) = {v.shape[:3]} but rows[0] has {(t, h, w)}; all rows must agree"
            )
    n = min(num_columns, t)
    idx = np.round(np.linspace(0, t - 1, n)).astype(int)
    grid = np.ones((len(videos) * h + (len(videos) - 1) * gap, n * w + (n - 1) * gap, 3), np.float32)
    for r, v in enumerate(videos):
        for c, frame in enumerate(idx):
            top, left = r * (h + gap), c * (w + gap)
            grid[top : top + h, left : left + w] = v[frame]
    return np.round(grid * 255.0).astype(np.uint8)


def save_grid(
    path: str | os.PathLike, rows: Sequence[np.ndarray], *, labels: Sequence[str] | None = None, **kwargs
) -> None:
    """Write :func:`frame_grid` (``rows``, ``**kwargs``) as a PNG, atomically.

    ``labels`` (one per row) are written in a white margin left of the rows, so a grid that
    compares methods says which row is which.
    """
    grid = frame_grid(rows, **kwargs)
    if labels is not None:
        grid = _label_rows(grid, list(labels), len(rows), kwargs.get("gap", 2))
    save_png(path, grid)


def _label_rows(grid: np.ndarray, labels: list[str], num_rows: int, gap: int) -> np.ndarray:
    """``grid`` with each row's label in a left margin (PIL's built-in bitmap font)."""
    from PIL import Image, ImageDraw, ImageFont

    if len(labels) != num_rows:
        raise ValueError(f"save_grid: {len(labels)} labels for {num_rows} rows")
    font = ImageFont.load_default()
    width = max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(t, font=font)) for t in labels) + 8
    h = (grid.shape[0] - (num_rows - 1) * gap) // num_rows
    image = Image.new("RGB", (grid.shape[1] + width, grid.shape[0]), (255, 255, 255))
    image.paste(Image.fromarray(grid), (width, 0))
    draw = ImageDraw.Draw(image)
    for r, text in enumerate(labels):
        draw.text((4, r * (h + gap) + h // 2 - 5), text, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def _save_figure(fig: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(fig)  # attaches an Agg canvas to this figure only
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_curves(
    path: str | os.PathLike,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    log_y_keys: Sequence[str] = ("loss",),
) -> None:
    """Plot each curve in its own panel of one PNG (at most three panels per row).

    A panel's y axis is logarithmic when one of ``log_y_keys`` occurs in the curve's name
    (case-insensitive), e.g. ``"measurement loss"``, and all its values are positive; otherwise
    it is linear. Typical use: ``{"measurement loss": (iters, loss), "PSNR (dB)": (iters, psnr)}``.

    Args:
        path: destination PNG; the parent folder is created if needed.
        curves: name → (iterations, values), two 1-D arrays of equal length.
        log_y_keys: substrings that select a log-scale y axis.

    Raises:
        ValueError: if ``curves`` is empty or a curve's arrays are not 1-D of equal length.
    """
    if len(curves) == 0:
        raise ValueError(f"plot_curves({path}): curves is empty; allowed is a dict name -> (iterations, values)")
    checked = {}
    for name, pair in curves.items():
        if len(pair) != 2:
            raise ValueError(f"plot_curves({path}): curves[{name!r}] must be a pair (iterations, values)")
        it, val = np.asarray(pair[0], dtype=np.float64), np.asarray(pair[1], dtype=np.float64)
        if it.ndim != 1 or val.ndim != 1 or it.shape != val.shape:
            raise ValueError(
                f"plot_curves({path}): curves[{name!r}] has iterations {it.shape} and values {val.shape}; "
                "allowed are two 1-D arrays of equal length"
            )
        checked[name] = (it, val)
    ncols = min(3, len(checked))
    nrows = -(-len(checked) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), layout="constrained")
    keys = [k.lower() for k in log_y_keys]
    for i, (name, (it, val)) in enumerate(checked.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.plot(it, val, lw=1.5)
        finite = val[np.isfinite(val)]
        if any(k in name.lower() for k in keys) and finite.size and np.all(finite > 0):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.grid(True, which="both", alpha=0.3)
    _save_figure(fig, path)


def plot_latent_path(
    path: str | os.PathLike,
    coords: np.ndarray,
    *,
    title: str = "",
    highlight: np.ndarray | None = None,
    labels: tuple[str, str] = ("highlighted", "other"),
) -> None:
    """Draw the latent codes in their low-rank basis: points joined in frame order, numbered.

    ``coords[t]`` are the coordinates of code z_t in an orthonormal basis of the rank-r subspace
    (for r ≤ 3, e.g. Z = U S Vᵀ gives coords = U S). A smooth, short path is what the temporal
    prior of the method asks for; jumps show frames the recovery treats as unrelated. Points are
    coloured by frame number and labelled with it; with d = 3 the axes are 3-D.

    Args:
        path: destination PNG; the parent folder is created if needed.
        coords: (T, d) with d ∈ {2, 3}.
        title: figure title.
        highlight: optional boolean (T,) mask; those points get a star marker, the rest circles,
            and a legend names the two groups (e.g. observed vs generated frames).
        labels: legend names for (highlighted, other) points.

    Raises:
        ValueError: if ``coords`` is not (T, d) with d ∈ {2, 3} and finite, or ``highlight`` is not a
            boolean (T,) mask.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3) or coords.shape[0] == 0:
        raise ValueError(
            f"plot_latent_path({path}): coords has shape {coords.shape}; allowed is (T, d) with d in {{2, 3}}"
        )
    if not np.all(np.isfinite(coords)):
        raise ValueError(f"plot_latent_path({path}): coords hold non-finite values; allowed are finite values")
    t, d = coords.shape
    if highlight is not None:
        highlight = np.asarray(highlight)
        if highlight.dtype != np.bool_ or highlight.shape != (t,):
            raise ValueError(
                f"plot_latent_path({path}): highlight has shape {highlight.shape} and dtype "
                f"{highlight.dtype}; allowed is a boolean mask of shape ({t},)"
            )
    fig = Figure(figsize=(5.5, 5.0), layout="constrained")
    ax = fig.add_subplot(projection="3d" if d == 3 else None)
    cols = [coords[:, i] for i in range(d)]
    ax.plot(*cols, color="0.6", lw=1.0, zorder=1)
    colour = np.arange(t)
    groups = (
        [(np.ones(t, bool), "o", None)]
        if highlight is None
        else [
            (highlight, "*", labels[0]),
            (~highlight, "o", labels[1]),
        ]
    )
    for mask, marker, label in groups:
        if mask.any():
            size = 90 if marker == "*" else 30
            ax.scatter(
                *[c[mask] for c in cols],
                c=colour[mask],
                cmap="viridis",
                vmin=0,
                vmax=max(t - 1, 1),
                marker=marker,
                s=size,
                label=label,
                edgecolors="k",
                linewidths=0.4,
                zorder=2,
            )
    for i in range(t):
        if d == 3:
            ax.text(*coords[i], f" {i}", fontsize=7)
        else:
            ax.annotate(str(i), coords[i], textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel("basis 1")
    ax.set_ylabel("basis 2")
    if d == 3:
        ax.set_zlabel("basis 3")
    if highlight is not None:
        # Neutral handles: the scatter colours encode time, which would make the legend misleading.
        handles = [
            Line2D([], [], marker=m, ls="none", color="0.45", markeredgecolor="k", markersize=s, label=lab)
            for m, s, lab in (("*", 11, labels[0]), ("o", 6, labels[1]))
        ]
        ax.legend(handles=handles, loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    _save_figure(fig, path)
