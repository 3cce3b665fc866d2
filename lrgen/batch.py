"""Batch jobs: recover every video of a manifest, batched, sharded, preemption-safe.

``run_manifest(job, manifest, workdir)``:

1. Read the manifest (one path or glob per line, ``#`` comments) and take this process's share
   (every ``process_count``-th video, from ``process_index``), so each host reads only its own.
2. Skip videos whose results are complete (``videos/<key>/metrics.json`` exists).
3. Group the rest by frame shape; cut each group into batches of ``batch_size`` sequences
   (rounded up to a multiple of the local device count). A ragged last batch is padded with
   copies of its first sequence whose results are discarded, so every batch of a shape has
   the same shape and compiles once.
4. Recover each batch with one vmapped program, sharded along the sequence axis over the local
   devices (``jax.make_mesh`` + ``NamedSharding``; a trained generator copy travels with its
   sequence, a frozen one is replicated).
5. Every ``checkpoint_every`` iterations the batch state is saved with orbax under
   ``batches/<batch id>/``; a restarted job resumes an unfinished batch from there. A killed
   job therefore loses at most the iterations since the last checkpoint.
6. Each sequence's results are written atomically into its own directory (the same files as
   a single run); the batch checkpoint is deleted once all its results are written.
7. ``summary.csv`` / ``summary.json``: one row per video of the manifest, keyed by its path.

Every video uses the randomness of ``job.seed`` exactly as a single run would, so its result does
not depend on its batch, its position in the batch, or the device it ran on.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lrgen import checkpoint, io, models, pipeline, recover

SUMMARY_FIELDS = ("video", "key", "psnr", "ssim", "measurement_loss", "iterations", "seconds", "device", "batch")


def read_manifest(path: str) -> list[str]:
    """Video paths of a manifest: one path or glob per line, relative to the manifest's folder.

    Raises:
      ValueError: the manifest is missing or empty, or a line matches nothing.
    """
    if not os.path.isfile(path):
        raise ValueError(f"--manifest={path}: no such file")
    base = os.path.dirname(os.path.abspath(path))
    videos: list[str] = []
    with open(path, "rb") as f:
        raw_bytes = f.read()
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"--manifest={path}: not a text file (byte {raw_bytes[e.start]:#04x} at offset {e.start} is not UTF-8); "
            "allowed is a UTF-8 text file with one video path or glob per line"
        ) from None
    if "\0" in text:
        raise ValueError(f"--manifest={path}: not a text file (it holds NUL bytes); allowed is one video path per line")
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern = line if os.path.isabs(line) else os.path.join(base, line)
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise ValueError(f"--manifest={path}: line {lineno} ({line!r}) matches no file")
            videos.extend(matches)
        elif os.path.exists(pattern):
            videos.append(pattern)
        else:
            raise ValueError(f"--manifest={path}: line {lineno}: {line} does not exist")
    videos = list(dict.fromkeys(os.path.normpath(v) for v in videos))
    if not videos:
        raise ValueError(f"--manifest={path}: lists no videos")
    return videos


def video_key(path: str) -> str:
    """A directory name for a video: readable stem plus a hash of the full path (unique)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(path.rstrip("/")))[:60] or "video"
    return f"{stem}-{hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]}"


@dataclasses.dataclass
class _Item:
    path: str
    key: str
    seq: pipeline.Sequence


def _batch_id(keys: list[str], job: pipeline.RecoverJob) -> str:
    text = json.dumps([keys, job.to_dict()], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _stack(trees: list) -> Any:
    return jax.tree.map(lambda *v: jnp.stack(v), *trees)


class _BatchCheckpoint:
    """Orbax checkpoints of one batch's recovery state and history (latest kept)."""

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.manager = ocp.CheckpointManager(
            self.directory,
            # Synchronous: the state's buffers are donated to the next step right after a save.
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                create=False,  # made above: orbax refuses create=True with active_processes
                enable_async_checkpointing=False,
                multiprocessing_options=checkpoint.process_local(),
            ),
        )

    def restore(self, like_state) -> tuple[Any, dict] | None:
        """(state, history) of the latest checkpoint, or None; ``like_state`` gives shapes and shardings."""
        step = self.manager.latest_step()
        if step is None:
            return None
        target = jax.tree.map(_abstract, like_state)
        state = self.manager.restore(step, args=ocp.args.StandardRestore(target))
        with np.load(self._history(step)) as f:
            return state, {k: f[k] for k in f.files}

    def _history(self, step: int) -> str:
        return os.path.join(self.directory, f"history_{step}.npz")

    def save(self, state, hist) -> None:
        step = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])
        # The history (host arrays that grow with the iterations) goes beside the state, first,
        # so that any step orbax reports as saved has its history.
        with io.atomic_write(self._history(step)) as tmp:
            np.savez(tmp, **hist)
        self.manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)))
        for old in os.listdir(self.directory):
            if old.startswith("history_") and old != os.path.basename(self._history(step)):
                os.remove(os.path.join(self.directory, old))

    def close(self, delete: bool) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
        if delete:
            shutil.rmtree(self.directory, ignore_errors=True)


def _abstract(a):
    if isinstance(a, jax.Array):
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding)
    a = np.asarray(a)
    return jax.ShapeDtypeStruct(a.shape, a.dtype)


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """How a manifest is cut and run.

    Attributes:
      batch_size: sequences per vmapped program (rounded up to a multiple of local devices).
      checkpoint_every: iterations between batch checkpoints (a multiple of ``log_every``;
        0 = never).
      process_index, process_count: this host's share of the manifest.
    """

    batch_size: int = 4
    checkpoint_every: int = 500
    process_index: int = 0
    process_count: int = 1

    def validate(self, log_every: int) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch_size={self.batch_size}: must be ≥ 1")
        if self.checkpoint_every < 0 or (self.checkpoint_every and self.checkpoint_every % log_every):
            raise ValueError(
                f"--checkpoint_every={self.checkpoint_every}: must be 0 or a multiple of --log_every={log_every}"
            )


def run_manifest(
    job: pipeline.RecoverJob,
    manifest: str,
    workdir: str,
    options: BatchOptions = BatchOptions(),
    *,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Recover this process's share of ``manifest`` into ``workdir``; returns its summary rows.

    ``job`` is the template every video shares (its ``video`` field is ignored).
    """
    options.validate(job.recover.log_every)
    videos = read_manifest(manifest)
    workdir = os.path.abspath(workdir)
    mine = videos[options.process_index :: options.process_count]
    todo = [v for v in mine if not os.path.isfile(os.path.join(workdir, "videos", video_key(v), "metrics.json"))]
    log(f"{len(videos)} videos in the manifest, {len(mine)} for process {options.process_index}, {len(todo)} to do")

    # Load and check everything first: a bad video stops the job before any compilation.
    spec, params = pipeline.load_model(job, 1 if job.grayscale else 3)
    loaded = []
    for path in todo:
        vjob = dataclasses.replace(job, video=path)
        frames = pipeline.load_frames(vjob)
        if frames.shape[-1] != spec.channels:
            raise ValueError(f"--manifest: {path} has {frames.shape[-1]} channels; the generator makes {spec.channels}")
        pipeline.check_job(vjob, frames.shape, spec)
        loaded.append((path, vjob, frames))
    # Only then measure (eager device work), so the last video's mistake costs no computation.
    items = [_Item(path, video_key(path), pipeline.prepare_sequence(vjob, x, spec)) for path, vjob, x in loaded]
    params = pipeline.init_params(job, spec, params)
    model = models.build_generator(spec)

    devices = jax.local_devices()
    per_batch = -(-options.batch_size // len(devices)) * len(devices)
    mesh = jax.sharding.Mesh(np.array(devices), ("seq",)) if len(devices) > 1 else None
    groups: dict[tuple, list[_Item]] = {}
    for it in items:
        groups.setdefault(it.seq.frames.shape, []).append(it)
    recoverers: dict[tuple, recover.Recoverer] = {}
    for shape, group in groups.items():
        rec = recoverers.setdefault(shape, recover.Recoverer(model, job.recover, shape[0]))
        for start in range(0, len(group), per_batch):
            members = group[start : start + per_batch]
            _run_batch(job, spec, params, rec, members, per_batch, mesh, workdir, options, log)
    return write_summary(videos, workdir) if options.process_count == 1 else []


def _run_batch(job, spec, params, rec, members, per_batch, mesh, workdir, options, log) -> None:
    keys = [m.key for m in members]
    padded = members + [members[0]] * (per_batch - len(members))  # discarded below
    seqs = [m.seq for m in padded]
    z0 = jnp.stack([s.z0 for s in seqs])
    problem = _stack([s.problem for s in seqs])
    truth = jnp.asarray(np.stack([s.frames for s in seqs]))
    bid = _batch_id(keys, job)
    ckpt = _BatchCheckpoint(os.path.join(workdir, "batches", bid)) if options.checkpoint_every else None
    resume = None
    if ckpt is not None:
        resume = ckpt.restore(rec.initial_state(z0, params)[0])
        if resume is not None:
            log(f"batch {bid}: resuming at iteration {int(np.asarray(resume[0].step).reshape(-1)[0])}")
    log(
        pipeline.describe(
            job, rec, members[0].seq.frames.shape, f"{len(members)} videos (batch {bid}, {per_batch} slots)"
        )
    )

    def save(state, hist):
        step = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])
        if step % options.checkpoint_every == 0 and step < job.recover.iterations:
            ckpt.save(state, hist)

    result = rec.run(
        z0,
        problem,
        params,
        truth=truth,
        mesh=mesh,
        resume=resume,
        callback=pipeline.progress_printer(job.recover.iterations, log, f"batch {bid} "),
        checkpoint=save if ckpt is not None else None,
    )
    device = ",".join(sorted({str(d) for d in (mesh.devices.flat if mesh is not None else jax.local_devices()[:1])}))
    for b, m in enumerate(members):
        out = os.path.join(workdir, "videos", m.key)
        vjob = dataclasses.replace(job, video=m.path)
        pipeline.write_outputs(
            vjob, out, m.seq, result, b, spec, rec, extra={"device": device, "batch": bid, "video": m.path}
        )
        log(f"  {m.path}: PSNR {result_psnr(out):.2f} dB → {out}")
    if ckpt is not None:
        ckpt.close(delete=True)


def result_psnr(directory: str) -> float:
    with open(os.path.join(directory, "metrics.json")) as f:
        v = json.load(f)["psnr"]
    return float("nan") if v is None else v


def write_summary(videos: list[str], workdir: str) -> list[dict]:
    """``summary.csv`` and ``summary.json``: one row per manifest video with results."""
    rows = []
    for v in videos:
        path = os.path.join(workdir, "videos", video_key(v), "metrics.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            m = json.load(f)
        rows.append(
            {
                "video": v,
                "key": video_key(v),
                "psnr": m["psnr"],
                "ssim": m["ssim"],
                "measurement_loss": m["measurement_loss"],
                "iterations": m["iterations"],
                "seconds": m["seconds"],
                "device": m.get("device", ""),
                "batch": m.get("batch", ""),
            }
        )
    with io.atomic_write(os.path.join(workdir, "summary.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump(rows, f, indent=1)
    with io.atomic_write(os.path.join(workdir, "summary.csv")) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
            w.writeheader()
            w.writerows(rows)
    return rows
