"""What a recovery writes: a video's workdir, a manifest's summary, JSON records.

A video's workdir (:func:`write_video_results`)::

    metrics.json          psnr, ssim, measurement_loss, iterations, seconds, compile_seconds,
                          seconds_per_iteration, loop, batching, the resolved job, versions and
                          devices (written last: its presence marks a complete run)
    reconstruction.npz    frames (T, H, W, C) in [0, 1] and codes z (T, k)
    grid.png              original / measured (when images) / reconstructed frames
    reconstruction.mp4    the reconstruction as a video (or .gif)
    curves.png            measurement loss and PSNR against iterations
    latent.png            codes in their rank-r basis, numbered by frame (rank 2 or 3)
    generator/            the tuned generator (generator and joint updates), reloadable with
                          ``--generator``

Every file is written under a temporary name and renamed (:func:`lrgen.io.atomic_write`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import checkpoint, io, lowrank, metrics, pixels, report

WORKDIR_FILES = ("metrics.json", "reconstruction.npz", "grid.png", "curves.png", "latent.png")
SUMMARY_FIELDS = ("video", "key", "psnr", "ssim", "measurement_loss", "iterations", "seconds", "device", "batch")


def environment() -> dict:
    """Versions and devices, recorded next to every result."""
    import flax
    import optax

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax, "lib") else "",
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "argv": sys.argv,
    }


def write_json(path: str, data: Any) -> None:
    """``data`` as indented JSON (NumPy scalars and arrays included), written atomically."""
    with io.atomic_write(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, default=_jsonable)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v)}")


def _curves(hist: dict, b: int) -> dict:
    """Per-iteration curves of sequence ``b`` for curves.png."""
    curves = {"measurement loss": (np.arange(1, hist["measurement_loss"].shape[1] + 1), hist["measurement_loss"][b])}
    if "holdout_error" in hist:
        curves["held-out error"] = (np.arange(1, hist["holdout_error"].shape[1] + 1), hist["holdout_error"][b])
    if "psnr" in hist:
        curves["PSNR (dB)"] = (hist["log_iteration"], hist["psnr"][b])
    return curves


def write_video_results(job, workdir: str, seq, result, b: int, spec, recoverer, *, extra: dict | None = None) -> dict:
    """Write sequence ``b`` of ``result`` into ``workdir`` (metrics.json last); return its metrics.

    Args:
      job: the video's :class:`lrgen.recovery.RecoverJob`.
      seq: its prepared :class:`lrgen.recovery.Sequence` (frames, operator, y).
      result: the :class:`lrgen.solver.RecoverResult` holding it at index ``b``.
      spec: the generator's architecture; ``recoverer`` the :class:`lrgen.solver.Recoverer`.
      extra: more entries for metrics.json.
    """
    cfg = job.recover
    rank = (extra or {}).get("chosen", {}).get("rank", cfg.rank)
    x = seq.frames
    x_rec, z = result.x[b], result.z[b]
    T, H, W, C = x.shape
    psnr = float(metrics.psnr(jnp.asarray(x_rec), jnp.asarray(x)))
    ssim = float(metrics.ssim(jnp.asarray(x_rec), jnp.asarray(x)))
    with io.atomic_write(os.path.join(workdir, "reconstruction.npz")) as tmp:
        np.savez_compressed(tmp, frames=x_rec.astype(np.float32), z=z)
    seen = seq.operator.as_image(seq.y)
    rows = [x] + ([np.clip(pixels.to_unit(np.asarray(seen)), 0, 1)] if seen is not None else []) + [x_rec]
    report.save_grid(os.path.join(workdir, "grid.png"), rows)
    io.write_video(os.path.join(workdir, f"reconstruction.{job.video_format}"), x_rec)
    hist = result.history
    logs = ("measurement loss", "held-out error")
    report.plot_curves(os.path.join(workdir, "curves.png"), _curves(hist, b), log_y_keys=logs)
    if rank in (2, 3):
        coords, _ = lowrank.coordinates(jnp.asarray(z), rank)
        title = f"codes in their rank-{rank} basis ({cfg.rank_type})"
        report.plot_latent_path(os.path.join(workdir, "latent.png"), np.asarray(coords), title=title)
    if cfg.trains_generator:
        best = jax.tree.map(lambda p: p[b], result.params)
        checkpoint.save_generator(os.path.join(workdir, "generator"), spec, best, source=job.generator or "random")
    held = "holdout_error" in hist
    out = {
        "psnr": psnr if math.isfinite(psnr) else None,
        "ssim": ssim,
        "measurement_loss": float(result.measurement_loss[b]),
        "final_measurement_loss": float(hist["measurement_loss"][b, -1]),
        "holdout_error": float(result.holdout_error[b]) if held else None,
        "best_iteration": int(result.best_step[b]),
        "iterations": result.iterations,
        "preset": cfg.preset,
        "recover_config": dataclasses.asdict(cfg),
        "seconds": result.seconds,
        "compile_seconds": result.compile_seconds,
        "seconds_per_iteration": result.seconds_per_iteration,
        "loop": result.loop,
        "batching": result.batching,
        "z_step": recoverer.alpha,
        "generator_lr": recoverer.lr,
        "num_frames": T,
        "frame_shape": [H, W, C],
        "generator_spec": spec.to_dict(),
        "psnr_curve": {int(i): float(p) for i, p in zip(hist["log_iteration"], hist["psnr"][b])}
        if "psnr" in hist
        else {},
        "seconds_curve": {int(i): float(t) for i, t in zip(hist["log_iteration"], hist.get("log_seconds", []))},
        "holdout_curve": {int(i): float(hist["holdout_error"][b, i - 1]) for i in hist["log_iteration"]}
        if held
        else {},
        "job": job.to_dict(),
        "environment": environment(),
        **(extra or {}),
    }
    write_json(os.path.join(workdir, "metrics.json"), out)
    return out


def summary_row(video: str, key: str, m: dict) -> dict:
    """A video's row of the summary, from its metrics (in memory, or metrics.json of an earlier run)."""
    row = {"video": video, "key": key}
    row.update({k: m[k] for k in ("psnr", "ssim", "measurement_loss", "iterations", "seconds")})
    row.update({k: m.get(k, "") for k in ("device", "batch")})
    return row


def write_summary(workdir: str, rows: list[dict]) -> list[dict]:
    """``summary.csv`` and ``summary.json`` of ``rows`` (:func:`summary_row`)."""
    write_json(os.path.join(workdir, "summary.json"), rows)
    with io.atomic_write(os.path.join(workdir, "summary.csv")) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
            w.writeheader()
            w.writerows(rows)
    return rows
