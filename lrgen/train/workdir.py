"""A training workdir's records: config.json and its fingerprint, metrics.jsonl, curves, samples, result.json.

A rerun resumes a workdir only if its settings match the checkpoint's (:func:`check_workdir`);
length and cadence (``num_steps``, ``checkpoint_every``, …) may change between runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import numpy as np

from lrgen import data, io, outputs, report
from lrgen.train.config import DataConfig

CHECKPOINTS = "checkpoints"
CADENCE = ("num_steps", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every")


def fingerprint(cfg) -> dict:
    """The settings a resumed run must share with the checkpoint (length and cadence may change)."""
    d = dataclasses.asdict(cfg)
    for name in CADENCE:
        d["loop"].pop(name)
    return d


def check_workdir(workdir: str, cfg) -> None:
    """Refuse, writing nothing, a workdir that cannot be written or holds a checkpoint of another run.

    Only a saved checkpoint step makes a workdir "another run's": a run refused or stopped
    before its first checkpoint leaves nothing that a corrected rerun must match.
    """
    io.check_output_dir(workdir, "--workdir")
    config_path = os.path.join(workdir, "config.json")
    ckpt_dir = os.path.join(workdir, CHECKPOINTS)
    if not (os.path.isdir(ckpt_dir) and any(name.isdigit() for name in os.listdir(ckpt_dir))):
        return
    fp = json.loads(json.dumps(fingerprint(cfg)))
    try:
        with open(config_path) as f:
            old = json.load(f).get("fingerprint")
    except (OSError, ValueError, AttributeError):  # missing, not JSON, not text, not an object
        old = None
    if isinstance(old, dict):  # settings added since the checkpoint was written take their defaults
        _fill_missing(old, json.loads(json.dumps(fingerprint(type(cfg)()))))
    if old is not None and old != fp:
        diff = sorted(_diff(old, fp))
        raise ValueError(
            f"--workdir={workdir}: holds a checkpoint of another run (differs in {', '.join(diff[:4])}); "
            "use another --workdir or the same settings"
        )


def write_config(workdir: str, cfg, flags: dict | None, extra: dict) -> None:
    """config.json: the settings (and the fingerprint a resumed run must match), flags, versions, devices."""
    os.makedirs(workdir, exist_ok=True)
    out = {
        "config": dataclasses.asdict(cfg),
        "fingerprint": fingerprint(cfg),
        "flags": flags or {},
        "environment": outputs.environment(),
        **extra,
    }
    _write_json(os.path.join(workdir, "config.json"), out)


def _fill_missing(d: dict, defaults: dict) -> None:
    for key, value in defaults.items():
        if key not in d:
            d[key] = value
        elif isinstance(d[key], dict) and isinstance(value, dict):
            _fill_missing(d[key], value)


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in set(a) | set(b):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def load_data(cfg: DataConfig, log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray]:
    images = data.load_images(
        cfg.dataset,
        cfg.data_dir,
        image_size=cfg.image_size,
        grayscale=cfg.grayscale,
        crop=cfg.crop,
        max_images=cfg.max_images,
    )
    train, holdout = data.split(images, cfg.num_holdout)
    log(f"{cfg.dataset}: {len(train)} training and {len(holdout)} held-out images of {images.shape[1:]}")
    return train, holdout


def _write_json(path: str, obj: dict) -> None:
    with io.atomic_write(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, default=str)


def finish(workdir: str, out: dict, log: Callable[[str], None]) -> dict:
    """Write result.json (last: its presence marks a finished run) and log the throughput."""
    _write_json(os.path.join(workdir, "result.json"), out)
    sps = out.get("steps_per_second")
    log(f"done: {out['num_steps']} steps" + (f", {sps:.2f} steps/s" if sps else "") + f" → {workdir}")
    return out


def append_jsonl(path: str, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def truncate_jsonl(path: str, last_step: int) -> list[dict]:
    """Keep the rows of steps ≤ last_step (a resumed run rewrites what came after)."""
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if row.get("step", 0) <= last_step:
                rows.append(row)
    with io.atomic_write(path) as tmp:
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


def plot_curves(workdir: str, rows: list[dict]) -> None:
    keys = [k for k in (rows[-1] if rows else {}) if k.endswith("loss") or k.startswith("psnr")]
    curves = {}
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if k in r and r[k] is not None]
        if pts:
            curves[k] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    if curves:
        report.plot_curves(os.path.join(workdir, "curves.png"), curves, log_y_keys=("loss",))


def save_samples(workdir: str, s: int, rows: list[np.ndarray]) -> None:
    """samples/step_<s>.png: a grid of image rows in [0, 1], 10 columns."""
    report.save_grid(os.path.join(workdir, "samples", f"step_{s:07d}.png"), rows, num_columns=10)


def provenance(cfg, s: int) -> dict:
    """What an exported model records about the run that made it."""
    return {"source": "lrgen.train", "method": getattr(cfg, "method", "encoder"), "step": s, "latent": "sphere"}
