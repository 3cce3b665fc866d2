"""Recovery jobs, from video files to finished workdirs: one video is a manifest of one.

``run_recover(job, workdir)`` (one video, written into ``workdir``) and ``run_manifest(job,
manifest, workdir)`` (every video of a manifest, written into ``workdir/videos/<key>/``) take
the same path, :func:`run_videos`:

1. Load every video and check everything (flags, data, generator, encoder) before anything is
   compiled: a wrong input stops the job with one ValueError naming the flag or file.
2. Measure each video (:func:`prepare_sequence`) with the randomness of ``job.seed`` alone, so
   its result does not depend on its batch, its position in it, or the device it ran on.
3. Group the videos by frame shape; cut each group into batches of ``batch_size`` sequences
   (rounded up to a multiple of the local device count; a ragged last batch is padded with
   copies of its first sequence whose results are discarded, so a shape compiles once).
   A single video's batch holds its candidates instead (``candidate_ranks`` × ``restarts``,
   optionally screened), and the one with the lowest held-out error is kept, or the mean of the
   best of them (:mod:`lrgen.candidates`).
4. Recover each batch with :class:`lrgen.solver.Recoverer`, sharded along the sequence axis
   over the local devices; every ``checkpoint_every`` iterations the batch state is saved
   (:class:`lrgen.checkpoint.BatchCheckpoint`) and a restarted job resumes from there.
5. Write each video's results (:func:`lrgen.outputs.write_video_results`; metrics.json last,
   so a manifest job skips videos whose metrics.json exists) and, for a manifest, the summary
   from the results in memory (and the metrics.json of videos finished by earlier runs).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import candidates, checkpoint, fusion, io, outputs, pixels, solver
from lrgen.jobs import (  # noqa: F401  (part of this API)
    BUILTIN,
    DEFAULT_NUM_FRAMES,
    ENCODER_INPUTS,
    JOB_Z_INITS,
    RecoverJob,
    Sequence,
    candidate_batch,
    check_encoder,
    check_job,
    check_workdir,
    init_params,
    load_frames,
    load_model,
    prepare_sequence,
)
from lrgen.nets import generators


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


def describe(job: RecoverJob, recoverer: solver.Recoverer, shape: tuple[int, ...], what: str) -> str:
    T, H, W, C = shape
    cfg = job.recover
    return (
        f"recovering {T}×{H}×{W}×{C} frames from {what}: {job.measurement.kind}, {cfg.update} update, "
        f"rank {cfg.rank} {cfg.rank_type}, {cfg.iterations} iterations, α={recoverer.alpha:g}, "
        f"η={recoverer.lr:g}, loop={recoverer.loop}, backend={jax.default_backend()}"
    )


def progress_printer(iterations: int, log: Callable[[str], None], label: str = "") -> Callable[[int, dict], None]:
    """A ``Recoverer.run`` callback printing loss, PSNR and an ETA (first sequence of the batch)."""
    start = time.perf_counter()
    first: list[tuple[int, float]] = []  # (iteration, time) of the first report: a resumed run starts late

    def progress(it: int, m: dict) -> None:
        now = time.perf_counter()
        if not first:
            first.append((it, now))
        it0, t0 = first[0]
        rate = (now - t0) / (it - it0) if it > it0 else (now - start) / it
        eta = rate * (iterations - it)
        each = lambda v, f: "|".join(format(float(a), f) for a in np.ravel(v)[: 1 if label else None])  # noqa: E731
        psnr = f" psnr {each(m['psnr'], '6.2f')} dB" if "psnr" in m else ""
        held = f" held-out {each(m['holdout_error'], '.3e')}" if "holdout_error" in m else ""
        log(
            f"{label}[{it:>{len(str(iterations))}}/{iterations}] loss {float(m['measurement_loss'][0]):.3e}"
            f"{held}{psnr}  {now - start:6.1f}s elapsed, ETA {eta:6.1f}s"
        )

    return progress


@dataclasses.dataclass
class _Video:
    path: str
    key: str
    out: str  # its output directory
    seq: Sequence


@dataclasses.dataclass
class _Run:
    """What every batch of one job shares."""

    job: RecoverJob
    spec: generators.GeneratorSpec
    params: object
    mesh: jax.sharding.Mesh | None
    options: BatchOptions
    workdir: str
    single: bool  # one video into workdir itself: candidates, the job's flags recorded
    log: Callable[[str], None]
    flags: dict


def _batch_id(keys: list[str], job: RecoverJob) -> str:
    text = json.dumps([keys, job.to_dict()], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _recover_candidates(run: _Run, rec: solver.Recoverer, video: _Video):
    """A single video's batch: its candidates (or just itself), screened; (result, index, extra)."""
    job, seq, cfg = run.job, video.seq, run.job.recover
    run.log(describe(job, rec, seq.frames.shape, job.video))
    truth, own = jnp.asarray(seq.frames)[None], None
    if cfg.candidates > 1:
        z0, problem, table, own = candidate_batch(job, seq, run.spec, run.params)
        truth = jnp.broadcast_to(truth, (len(table), *truth.shape[1:]))
    else:
        z0, problem = seq.z0[None], jax.tree.map(lambda v: v[None], seq.problem)
        table = [{"rank": cfg.rank, "start": 0}]
    progress, extra = progress_printer(cfg.iterations, run.log), {}
    if len(table) > 1 and 0 < cfg.screen < cfg.iterations:
        result = candidates.screen_then_continue(rec, z0, problem, run.params, truth, own, progress, run.log, table)
        b, table = candidates.choose(result.screened, table, seq.frames)
        b_final = 0
    else:
        result = rec.run(z0, problem, run.params, truth=truth, callback=progress, own_params=own)
        b, table = candidates.choose(result, table, seq.frames)
        b_final = b
        if cfg.ensemble:
            extra = candidates.average(result, b, table, seq, run.log)
    if cfg.fusion:
        extra["fusion"] = _fuse(run, result, b_final, video.seq)
    if len(table) > 1:
        run.log("candidates (chosen by held-out error; PSNR for information only):")
        for row in table:
            run.log("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    # With screening the table is as measured when the survivor was chosen.
    return result, [b_final], {"flags": run.flags, "candidates": table, "chosen": table[b], **extra}


def _fuse(run: _Run, result, b: int, seq) -> dict:
    """Replace sequence ``b``'s frames by their motion-compensated fusion with the measured pixels
    (:mod:`lrgen.fusion`) when the held-out pixels choose it; return the record."""
    kind = run.job.measurement.kind
    if kind != "missing":
        run.log(f"fusion: needs sampled pixels (--measurement=missing), not {kind}; skipped")
        return {"chosen": None, "note": f"not applicable to --measurement={kind}"}
    mask = np.asarray(seq.operator.mask, np.float32)
    values = np.asarray(pixels.to_unit(seq.y), np.float32)
    noiseless = run.job.measurement.noise_snr_db is None
    run.log("fusion: the measured pixels of neighbouring frames, carried along the recovery's flow")
    held = np.asarray(seq.holdout, np.float32)
    flows: dict = {}  # the recovery's flows, computed once for the choice and the fusion
    setting, record = fusion.choose(result.x[b], values, mask, held, noiseless=noiseless, flows=flows, log=run.log)
    if setting is not None:
        x = np.array(result.x)
        x[b] = fusion.fuse(x[b], values, mask, mu=setting[0], reach=setting[1], noiseless=noiseless, flows=flows)
        result.x = x
    run.log(f"fusion: {'μ={:g}, K={}'.format(*setting) if setting else 'none (the recovery alone predicts best)'}")
    return record


def _recover_batch(run: _Run, rec: solver.Recoverer, members: list[_Video], per_batch: int):
    """Several videos as one batch (padded to ``per_batch``), sharded and checkpointed."""
    job, options = run.job, run.options
    seqs = [m.seq for m in members + [members[0]] * (per_batch - len(members))]  # padding: discarded
    z0 = jnp.stack([s.z0 for s in seqs])
    problem = jax.tree.map(lambda *v: jnp.stack(v), *[s.problem for s in seqs])
    truth = jnp.asarray(np.stack([s.frames for s in seqs]))
    bid = _batch_id([m.key for m in members], job)
    ckpt, resume = None, None
    if options.checkpoint_every:
        ckpt = checkpoint.BatchCheckpoint(os.path.join(run.workdir, "batches", bid))
        resume = ckpt.restore(rec.initial_state(z0, run.params)[0])
        if resume is not None:
            run.log(f"batch {bid}: resuming at iteration {int(np.asarray(resume[0].step).reshape(-1)[0])}")
    what = f"{len(members)} videos (batch {bid}, {per_batch} slots)"
    run.log(describe(job, rec, members[0].seq.frames.shape, what))

    def save(state, hist):
        step = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])
        if step % options.checkpoint_every == 0 and step < job.recover.iterations:
            ckpt.save(state, hist)

    progress = progress_printer(job.recover.iterations, run.log, f"batch {bid} ")
    result = rec.run(
        z0,
        problem,
        run.params,
        truth=truth,
        mesh=run.mesh,
        resume=resume,
        callback=progress,
        checkpoint=save if ckpt is not None else None,
    )
    devices = run.mesh.devices.flat if run.mesh is not None else jax.local_devices()[:1]
    extra = {"device": ",".join(sorted({str(d) for d in devices})), "batch": bid}
    return result, list(range(len(members))), extra, ckpt


def run_videos(job: RecoverJob, videos: list[str], run: _Run) -> dict[str, dict]:
    """Recover ``videos`` (not yet done) as ``job`` does; returns {path: metrics} (see module docstring)."""
    # Load and check everything first: a bad video stops the job before any compilation.
    spec, params = load_model(job, 1 if job.grayscale else 3) if not run.single else (None, None)
    loaded = []
    for path in videos:
        vjob = dataclasses.replace(job, video=path)
        frames = load_frames(vjob, run.log if run.single else None)
        if run.single:
            spec, params = load_model(job, frames.shape[-1])
        elif frames.shape[-1] != spec.channels:
            raise ValueError(f"--manifest: {path} has {frames.shape[-1]} channels; the generator makes {spec.channels}")
        check_job(vjob, frames.shape, spec)
        loaded.append((path, vjob, frames))
    params = init_params(job, spec, params)  # the job's own seed: the same weights for every video
    # Only then measure (eager device work), so the last video's mistake costs no computation.
    items = []
    for path, vjob, x in loaded:
        key = video_key(path)
        out = run.workdir if run.single else os.path.join(run.workdir, "videos", key)
        items.append(_Video(path, key, out, prepare_sequence(vjob, x, spec)))
    run = dataclasses.replace(run, spec=spec, params=params)
    model = generators.build_generator(spec)
    per_batch = 1 if run.single else -(-run.options.batch_size // len(jax.local_devices())) * len(jax.local_devices())
    groups: dict[tuple, list[_Video]] = {}
    for it in items:
        groups.setdefault(it.seq.frames.shape, []).append(it)
    done: dict[str, dict] = {}
    for shape, group in groups.items():
        rec = solver.Recoverer(model, job.recover, shape[0])
        for start in range(0, len(group), per_batch):
            members, t0, ckpt = group[start : start + per_batch], time.perf_counter(), None
            if run.single:
                result, slots, extra = _recover_candidates(run, rec, members[0])
            else:
                result, slots, extra, ckpt = _recover_batch(run, rec, members, per_batch)
            for m, b in zip(members, slots):
                vjob = dataclasses.replace(job, video=m.path)
                more = {"total_seconds": time.perf_counter() - t0} if run.single else {"video": m.path}
                m_out = outputs.write_video_results(vjob, m.out, m.seq, result, b, spec, rec, extra={**extra, **more})
                done[m.path] = m_out
                if not run.single:
                    psnr = float("nan") if m_out["psnr"] is None else m_out["psnr"]
                    run.log(f"  {m.path}: PSNR {psnr:.2f} dB → {m.out}")
            if ckpt is not None:
                ckpt.close(delete=True)
    return done


def run_recover(
    job: RecoverJob, workdir: str, *, log: Callable[[str], None] = print, flags: dict | None = None
) -> dict:
    """Run one recovery job (a manifest of one video) and write ``workdir``; returns its metrics.

    Raises:
      ValueError: a user input is wrong (the message names the flag or file, the value and
        what is allowed); nothing is written in that case.
      FloatingPointError: the optimisation diverged.

    ``flags`` (e.g. every resolved command-line flag) is recorded verbatim in metrics.json.
    """
    check_workdir(job, workdir)
    options = BatchOptions(batch_size=1, checkpoint_every=0)
    run = _Run(job, None, None, None, options, workdir, True, log, flags or {})
    out = run_videos(job, [job.video], run)[job.video]
    log(
        f"PSNR {out['psnr']:.2f} dB, SSIM {out['ssim']:.4f}, "
        f"{out['seconds_per_iteration'] * 1e3:.1f} ms/iteration → {workdir}"
    )
    return out


def run_manifest(
    job: RecoverJob,
    manifest: str,
    workdir: str,
    options: BatchOptions = BatchOptions(),
    *,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Recover this process's share of ``manifest`` into ``workdir``; returns its summary rows.

    ``job`` is the template every video shares (its ``video`` field is ignored). Each process
    takes every ``process_count``-th video from ``process_index``; with one process the summary
    is written here (several: by :func:`write_summary` once all are done).
    """
    options.validate(job.recover.log_every)
    videos = read_manifest(manifest)
    workdir = os.path.abspath(workdir)
    mine = videos[options.process_index :: options.process_count]
    todo = [v for v in mine if not os.path.isfile(os.path.join(workdir, "videos", video_key(v), "metrics.json"))]
    log(f"{len(videos)} videos in the manifest, {len(mine)} for process {options.process_index}, {len(todo)} to do")
    if job.recover.candidates > 1:
        log(f"candidates run for single videos only: each manifest video runs once, rank {job.recover.rank}")
    if job.recover.fusion:
        log("fusion runs for single videos only: manifest videos are written as recovered")
    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("seq",)) if len(devices) > 1 else None
    run = _Run(job, None, None, mesh, options, workdir, False, log, {})
    done = run_videos(job, todo, run)
    if options.process_count == 1:
        return write_summary(videos, workdir, done)
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("lrgen manifest done")
    if options.process_index == 0:  # every process has written its videos' metrics.json
        rows = write_summary(videos, workdir, done)
        log(f"summary of {len(rows)} videos → {workdir}/summary.csv")
    return []


def check_manifest_workdir(workdir: str, manifest: str, job: RecoverJob) -> None:
    """``workdir`` can be written and is neither the manifest nor the generator."""
    io.check_output_dir(workdir, "--workdir")
    io.check_not_inputs("--workdir", workdir, {"--manifest": manifest, "--generator": job.generator})


def write_summary(videos: list[str], workdir: str, done: dict[str, dict] | None = None) -> list[dict]:
    """``summary.csv`` and ``summary.json``: one row per manifest video with results.

    Results of this run come from memory (``done``: path → metrics); those finished earlier
    (a resumed job) or by other processes from their metrics.json.
    """
    rows = []
    for v in videos:
        m = (done or {}).get(v)
        if m is None:
            path = os.path.join(workdir, "videos", video_key(v), "metrics.json")
            if not os.path.isfile(path):
                continue
            with open(path) as f:
                m = json.load(f)
        rows.append(outputs.summary_row(v, video_key(v), m))
    return outputs.write_summary(workdir, rows)
