"""One recovery job from a video to a finished workdir (what ``experiments.recover`` runs).

``run_recover(job, workdir)``: load frames → build G → validate everything → measure → recover
(:mod:`lrgen.recover`) → score (PSNR, SSIM) → write the workdir. Every check that can fail on a
user's input runs before anything is compiled; every file is written under a temporary name
and renamed, and ``metrics.json`` is written last, so its presence marks a complete run.

Workdir contents::

    metrics.json          psnr, ssim, measurement_loss, iterations, seconds, compile_seconds,
                          seconds_per_iteration, the resolved job, versions and devices
    reconstruction.npz    frames (T, H, W, C) in [0, 1] and codes z (T, k)
    grid.png              original / measured (when images) / reconstructed frames
    reconstruction.mp4    the reconstruction as a video (or .gif)
    curves.png            measurement loss and PSNR against iterations
    latent.png            codes in their rank-r basis, numbered by frame (rank 2 or 3)
    generator/            the tuned generator (generator and joint updates), reloadable with
                          ``--generator``
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import checkpoint, encoder, io, lowrank, measure, metrics, models, recover, report

BUILTIN = "builtin:rotating_digit"
# Frames used when no count is asked for: the first 32, or all of a shorter video.
DEFAULT_NUM_FRAMES = 32


@dataclasses.dataclass(frozen=True)
class RecoverJob:
    """Everything a recovery run needs; field names are the flag names of ``experiments.recover``.

    Attributes:
      video: a frame folder, video file, .npy/.npz array, or ``builtin:<name>``
        (see :func:`lrgen.io.builtin_sequence`).
      image_size: frames are center-cropped and resized to this square size.
      num_frames: first T frames, which must exist (0 = all; None = all, at most
        ``DEFAULT_NUM_FRAMES``).
      grayscale: convert to one channel (None: keep the source's channels).
      measurement: what is measured (:class:`lrgen.measure.MeasurementSpec`).
      mask_file: path the masks came from ('' if drawn at random), for the record.
      generator: lrgen generator directory, training workdir or original .npz; '' = random init.
      z_dim: latent size k for a randomly initialised generator (None: 32 gray / 256 RGB).
      z_init: ``fixed_z``, ``fixed_seed``, ``random`` (see :func:`lrgen.recover.init_codes`) or
        ``encoder``: z0 = E(frames) with the trained encoder ``encoder`` (codes on the unit sphere;
        an oracle start, since E sees the frames themselves, as a compressor's sender does).
      encoder: encoder directory or encoder training workdir (``--z_init=encoder``).
      encoder_input: what the encoder sees: ``frames`` (the true frames: an oracle start) or
        ``measurements`` (the back-projection Aᵀy, zero-filled where nothing is measured; for
        operators whose adjoint is an image: identity, missing, denoise, frames). An encoder
        trained with ``input_missing_ratio`` matches the latter for missing pixels.
      z_seed: seed of ``fixed_z`` / ``fixed_seed`` codes.
      seed: seed of operators, noise, random codes and random generator weights.
      recover: loop hyperparameters.
      video_format: ``mp4`` or ``gif`` for the reconstruction video.
    """

    video: str = BUILTIN
    image_size: int = 64
    num_frames: int | None = None
    grayscale: bool | None = True
    measurement: measure.MeasurementSpec = dataclasses.field(default_factory=measure.MeasurementSpec)
    mask_file: str = ""
    generator: str = ""
    z_dim: int | None = None
    z_init: str = "fixed_z"
    encoder: str = ""
    encoder_input: str = "frames"
    z_seed: int = 100
    seed: int = 0
    recover: recover.RecoverConfig = dataclasses.field(default_factory=recover.RecoverConfig)
    video_format: str = "mp4"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["measurement"].pop("mask", None)
        return d


def load_frames(job: RecoverJob, log: Callable[[str], None] | None = None) -> np.ndarray:
    """Frames (T, H, W, C) in [0, 1] for ``job.video``.

    ``job.num_frames``: T > 0 takes the first T frames and refuses a shorter video; 0 takes all;
    None (no count asked for) takes the first ``DEFAULT_NUM_FRAMES``, or all of a shorter video,
    which ``log`` then says.
    """
    n = job.num_frames
    if job.video.startswith("builtin:"):
        name = job.video.split(":", 1)[1]
        if n is None:
            n = min(io.BUILTIN_FRAMES.get(name, DEFAULT_NUM_FRAMES), DEFAULT_NUM_FRAMES)
        frames = io.builtin_sequence(
            name, num_frames=n or None, image_size=job.image_size, grayscale=job.grayscale is not False
        )
    elif n is None:
        frames = io.load_video(
            job.video, image_size=job.image_size, grayscale=job.grayscale, max_frames=DEFAULT_NUM_FRAMES
        )
    else:
        frames = io.load_video(job.video, image_size=job.image_size, grayscale=job.grayscale, num_frames=n or None)
    if job.num_frames is None and frames.shape[0] < DEFAULT_NUM_FRAMES and log is not None:
        log(
            f"--video={job.video} has {frames.shape[0]} frames, fewer than the default {DEFAULT_NUM_FRAMES}: "
            f"using all {frames.shape[0]} (--num_frames=N asks for exactly N)"
        )
    return frames


def load_model(job: RecoverJob, channels: int) -> tuple[models.GeneratorSpec, Any]:
    """The generator's architecture and weights, checked against the frames."""
    if job.generator:
        spec, params = checkpoint.load_generator(job.generator)
        if spec.image_size != job.image_size or spec.channels != channels:
            raise ValueError(
                f"--generator={job.generator}: makes {spec.image_size}×{spec.image_size}×{spec.channels} frames "
                f"but the video is {job.image_size}×{job.image_size}×{channels} (--image_size, --grayscale)"
            )
        if job.z_dim is not None and job.z_dim != spec.z_dim:
            raise ValueError(f"--z_dim={job.z_dim}: the generator {job.generator} has k = {spec.z_dim}")
        return spec, params
    spec = models.GeneratorSpec.default(image_size=job.image_size, channels=channels, z_dim=job.z_dim)
    return spec, None


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


def _write_json(path: str, data: dict) -> None:
    with io.atomic_write(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, default=_jsonable)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v)}")


@dataclasses.dataclass
class Sequence:
    """One prepared sequence: its frames, operator, measurements and initial codes."""

    frames: np.ndarray  # (T, H, W, C) in [0, 1]
    operator: measure.Operator
    y: jax.Array
    z0: jax.Array
    holdout: jax.Array | None = None  # measured entries left out of the loss (holdout_fraction > 0)

    @property
    def problem(self) -> recover.Problem:
        return recover.Problem(self.y, self.operator, self.holdout)


WORKDIR_FILES = ("metrics.json", "reconstruction.npz", "grid.png", "curves.png", "latent.png")


def check_workdir(job: RecoverJob, workdir: str) -> None:
    """``workdir`` can be written and is none of the job's inputs (the tuned ``generator/`` included)."""
    io.check_output_dir(workdir, "--workdir")
    inputs = {"--video": job.video, "--mask_file": job.mask_file}
    inputs.update({"--generator": job.generator, "--encoder": job.encoder})
    io.check_not_inputs("--workdir", workdir, inputs)
    for name in WORKDIR_FILES + (f"reconstruction.{job.video_format}",):
        io.check_not_inputs("--workdir", workdir, inputs, written=os.path.join(workdir, name))
    if job.recover.trains_generator:  # generator/ is replaced as a whole
        io.check_not_inputs("--workdir", workdir, inputs, written=os.path.join(workdir, "generator"), inside=True)


def check_job(job: RecoverJob, frame_shape: tuple[int, ...], spec: models.GeneratorSpec) -> None:
    """Every value check that needs the data; raises ValueError naming the flag."""
    T, H, W, C = frame_shape
    recover.check_seed("--seed", job.seed)
    recover.check_seed("--z_seed", job.z_seed)
    job.measurement.validate((H, W, C), T)
    job.recover.validate(T, spec.z_dim)
    if job.z_init not in recover.Z_INITS:
        raise ValueError(f"--z_init={job.z_init}: allowed values are {', '.join(recover.Z_INITS)}")
    check_encoder(job, (H, W, C), spec)
    if job.video_format not in ("mp4", "gif"):
        raise ValueError(f"--video_format={job.video_format}: allowed values are mp4, gif")


@functools.lru_cache(maxsize=4)
def _load_encoder(path: str):
    return encoder.load_encoder(path)


ENCODER_INPUTS = ("frames", "measurements")
IMAGE_ADJOINTS = ("identity", "missing", "denoise", "frames")  # kinds whose Aᵀy is an image


def check_encoder(job: RecoverJob, frame_shape: tuple[int, int, int], spec: models.GeneratorSpec) -> None:
    """``--z_init=encoder`` needs an ``--encoder`` made for this generator's k and frame size."""
    if job.encoder_input not in ENCODER_INPUTS:
        raise ValueError(f"--encoder_input={job.encoder_input}: allowed values are {', '.join(ENCODER_INPUTS)}")
    if job.z_init != "encoder":
        if job.encoder:
            raise ValueError(f"--encoder={job.encoder} is only used with --z_init=encoder (got --z_init={job.z_init})")
        if job.encoder_input != "frames":
            raise ValueError(f"--encoder_input={job.encoder_input} is only used with --z_init=encoder")
        return
    if job.encoder_input == "measurements" and job.measurement.kind not in IMAGE_ADJOINTS:
        raise ValueError(
            f"--encoder_input=measurements: needs a measurement whose adjoint is an image "
            f"({', '.join(IMAGE_ADJOINTS)}); got --measurement={job.measurement.kind}"
        )
    if not job.encoder:
        raise ValueError("--z_init=encoder needs --encoder=<encoder directory or encoder training workdir>")
    e_spec, _ = _load_encoder(job.encoder)
    if e_spec.z_dim != spec.z_dim or (e_spec.image_size, e_spec.image_size, e_spec.channels) != tuple(frame_shape):
        raise ValueError(
            f"--encoder={job.encoder}: maps {e_spec.image_size}×{e_spec.image_size}×{e_spec.channels} frames to "
            f"k={e_spec.z_dim} codes, but the generator has k={spec.z_dim} and the frames are "
            f"{'×'.join(map(str, frame_shape))}"
        )


def init_params(job: RecoverJob, spec: models.GeneratorSpec, params: Any | None) -> Any:
    """The loaded weights, or random ones drawn from the job's seed."""
    if params is not None:
        return params
    return models.init_generator(spec, jax.random.split(jax.random.key(job.seed), 4)[3])


def prepare_sequence(job: RecoverJob, frames: np.ndarray, spec: models.GeneratorSpec) -> Sequence:
    """Operator, measurements and initial codes of one video, all drawn from ``job.seed``.

    The randomness depends on the seed alone, never on where the video sits in a batch, so a
    video gives the same result alone or inside any batch job.
    """
    if not np.all(np.isfinite(frames)):
        raise ValueError(f"--video={job.video}: frames contain NaN or infinite values")
    T, H, W, C = frames.shape
    op_key, noise_key, z_key, _ = jax.random.split(jax.random.key(job.seed), 4)
    operator = measure.make_operator(job.measurement, op_key, T, (H, W, C))
    y = measure.measure(operator, jnp.asarray(2.0 * frames - 1.0), noise_key, job.measurement.noise_snr_db)
    if not bool(jnp.all(jnp.isfinite(y))):
        raise ValueError(
            f"--video={job.video}: measurements contain NaN or infinite values (check the frames and --mask_file)"
        )
    code_key = jax.random.key(job.z_seed) if job.z_init != "random" else z_key
    if job.z_init == "encoder":
        seen = frames
        if job.encoder_input == "measurements":  # Aᵀy: 0 (mid-grey) where nothing is measured
            seen = np.clip((np.asarray(operator.A_adjoint(y)) + 1.0) / 2.0, 0.0, 1.0)
        z0 = encoder.encode(*_load_encoder(job.encoder), seen)
    else:
        z0 = recover.init_codes(code_key, T, spec.z_dim, job.z_init)
    holdout = None
    if job.recover.holdout_fraction > 0:  # its own key: the draws above stay those of the original
        holdout = recover.holdout_mask(_holdout_key(job.seed), operator, y, job.recover.holdout_fraction)
    return Sequence(frames, operator, y, z0, holdout)


def _holdout_key(seed: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), 0x40)


def candidate_batch(
    job: RecoverJob, seq: Sequence, spec: models.GeneratorSpec, params: Any
) -> tuple[jax.Array, recover.Problem, list, Any]:
    """The candidates of one video as one batch: (z0 (B, T, k), batched problem, their settings,
    per-candidate starting weights or None).

    Candidate (r, j) has rank r (each of ``candidate_ranks``) and start j: j = 0 is the job's own
    start; j ≥ 1 draws random unit codes per frame from the seed and j and, when the generator
    is randomly initialised and trained, new random weights too. All share y, the operator and
    the held-out set, so their held-out errors compare like for like.
    """
    cfg = job.recover
    T, k = seq.z0.shape
    fresh_weights = not job.generator and cfg.trains_generator and cfg.restarts > 1
    z0s, ranks, table, weights = [], [], [], []
    for r in cfg.ranks:
        for j in range(cfg.restarts):
            key = jax.random.fold_in(jax.random.key(job.seed), 0x51 + j)
            z_key, w_key = jax.random.split(key)
            z0s.append(seq.z0 if j == 0 else recover.init_codes(z_key, T, k, "random"))
            weights.append(params if j == 0 or not fresh_weights else models.init_generator(spec, w_key))
            ranks.append(r)
            table.append({"rank": r, "start": j})
    B = len(z0s)
    rep = lambda a: jnp.broadcast_to(a, (B, *a.shape))  # noqa: E731
    problem = jax.tree.map(rep, seq.problem).replace(rank=jnp.asarray(ranks, jnp.int32))
    own = jax.tree.map(lambda *w: jnp.stack(w), *weights) if fresh_weights else None
    return jnp.stack(z0s), problem, table, own


def describe(job: RecoverJob, recoverer: recover.Recoverer, shape: tuple[int, ...], what: str) -> str:
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


def write_outputs(
    job: RecoverJob,
    workdir: str,
    seq: Sequence,
    result: recover.RecoverResult,
    b: int,
    spec: models.GeneratorSpec,
    recoverer: recover.Recoverer,
    *,
    extra: dict | None = None,
) -> dict:
    """Write sequence ``b`` of ``result`` into ``workdir`` (metrics.json last); return its metrics."""
    cfg = job.recover
    rank = (extra or {}).get("chosen", {}).get("rank", cfg.rank)
    x = seq.frames
    x_rec, z = result.x[b], result.z[b]
    T, H, W, C = x.shape
    psnr = float(metrics.psnr(jnp.asarray(x_rec), jnp.asarray(x)))
    ssim = float(metrics.ssim(jnp.asarray(x_rec), jnp.asarray(x)))
    with io.atomic_write(os.path.join(workdir, "reconstruction.npz")) as tmp:
        np.savez_compressed(tmp, frames=x_rec.astype(np.float32), z=z)
    seen = measure.observed_image(seq.operator, seq.y)
    rows = [x] + ([np.clip(np.asarray(seen) * 0.5 + 0.5, 0, 1)] if seen is not None else []) + [x_rec]
    report.save_grid(os.path.join(workdir, "grid.png"), rows)
    io.write_video(os.path.join(workdir, f"reconstruction.{job.video_format}"), x_rec)
    hist = result.history
    curves = {"measurement loss": (np.arange(1, hist["measurement_loss"].shape[1] + 1), hist["measurement_loss"][b])}
    if "holdout_error" in hist:
        curves["held-out error"] = (np.arange(1, hist["holdout_error"].shape[1] + 1), hist["holdout_error"][b])
    if "psnr" in hist:
        curves["PSNR (dB)"] = (hist["log_iteration"], hist["psnr"][b])
    report.plot_curves(
        os.path.join(workdir, "curves.png"), curves, log_y_keys=("measurement loss", "held-out error")
    )
    if rank in (2, 3):
        coords, _ = lowrank.coordinates(jnp.asarray(z), rank)
        report.plot_latent_path(
            os.path.join(workdir, "latent.png"),
            np.asarray(coords),
            title=f"codes in their rank-{rank} basis ({cfg.rank_type})",
        )
    if cfg.trains_generator:
        best = jax.tree.map(lambda p: p[b], result.params)
        checkpoint.save_generator(os.path.join(workdir, "generator"), spec, best, source=job.generator or "random")
    out = {
        "psnr": psnr if math.isfinite(psnr) else None,
        "ssim": ssim,
        "measurement_loss": float(result.measurement_loss[b]),
        "final_measurement_loss": float(hist["measurement_loss"][b, -1]),
        "holdout_error": float(result.holdout_error[b]) if "holdout_error" in hist else None,
        "best_iteration": int(result.best_step[b]),
        "iterations": result.iterations,
        "preset": cfg.preset,
        "recover_config": dataclasses.asdict(cfg),
        "seconds": result.seconds,
        "compile_seconds": result.compile_seconds,
        "seconds_per_iteration": result.seconds_per_iteration,
        "loop": result.loop,
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
        if "holdout_error" in hist
        else {},
        "job": job.to_dict(),
        "environment": environment(),
        **(extra or {}),
    }
    _write_json(os.path.join(workdir, "metrics.json"), out)
    return out


def screen_then_continue(recoverer, z0, problem, params, truth, own, progress, log, table):
    """All candidates for ``screen`` iterations, then the one with the lowest held-out error alone.

    The survivor continues from its own state (codes, weights, optimiser states, best iterate)
    up to ``iterations``; the returned result (B = 1) carries the screening result as
    ``screened`` and the time of both phases, compilations included.
    """
    cfg = recoverer.config
    first = recoverer.run(z0, problem, params, truth=truth, callback=progress, own_params=own, until=cfg.screen)
    score = first.holdout_error if "holdout_error" in first.history else first.measurement_loss
    b = int(np.argmin(score))
    log(f"screened {len(table)} candidates for {first.iterations} iterations: continuing {table[b]}")
    one = lambda t: jax.tree.map(lambda a: a[b : b + 1], t)  # noqa: E731
    hist = {k: (v[b : b + 1] if v.ndim == 2 else v) for k, v in first.history.items()}
    rest = recoverer.run(
        z0[b : b + 1],
        one(problem),
        params,
        truth=truth[b : b + 1],
        callback=progress,
        resume=(one(first.state), hist),
    )
    rest.screened = first
    rest.compile_seconds += first.compile_seconds
    rest.seconds += first.seconds
    return rest


def choose_candidate(result: recover.RecoverResult, table: list[dict], frames: np.ndarray) -> tuple[int, list[dict]]:
    """(index of the chosen candidate, its table with measured columns), without ground truth.

    The lowest held-out error wins (the lowest measurement loss without a held-out set). The
    PSNR against ``frames`` is added to the table for the record only.
    """
    held = "holdout_error" in result.history
    score = result.holdout_error if held else result.measurement_loss
    b = int(np.argmin(score))
    rows = []
    for i, row in enumerate(table):
        psnr = float(metrics.psnr(jnp.asarray(result.x[i]), jnp.asarray(frames)))
        rows.append(
            {
                **row,
                "holdout_error": float(result.holdout_error[i]) if held else None,
                "measurement_loss": float(result.measurement_loss[i]),
                "best_iteration": int(result.best_step[i]),
                "psnr": psnr,
                "chosen": i == b,
            }
        )
    return b, rows


def run_recover(
    job: RecoverJob, workdir: str, *, log: Callable[[str], None] = print, flags: dict | None = None
) -> dict:
    """Run one recovery job and write its workdir; returns the metrics dictionary.

    Raises:
      ValueError: a user input is wrong (the message names the flag or file, the value and
        what is allowed); nothing is written in that case.
      FloatingPointError: the optimisation diverged.

    ``flags`` (e.g. every resolved command-line flag) is recorded verbatim in metrics.json.
    """
    # Inputs and every check, before compiling anything.
    check_workdir(job, workdir)
    frames = load_frames(job, log)
    spec, params = load_model(job, frames.shape[-1])
    check_job(job, frames.shape, spec)
    params = init_params(job, spec, params)
    seq = prepare_sequence(job, frames, spec)

    recoverer = recover.Recoverer(models.build_generator(spec), job.recover, frames.shape[0])
    log(describe(job, recoverer, frames.shape, job.video))
    start = time.perf_counter()
    truth = jnp.asarray(frames)[None]
    own = None
    if job.recover.candidates > 1:
        z0, problem, table, own = candidate_batch(job, seq, spec, params)
        truth = jnp.broadcast_to(truth, (len(table), *truth.shape[1:]))
    else:
        batch = lambda a: jax.tree.map(lambda v: v[None], a)  # noqa: E731
        z0, problem, table = seq.z0[None], batch(seq.problem), [{"rank": job.recover.rank, "start": 0}]
    progress = progress_printer(job.recover.iterations, log)
    cfg = job.recover
    if len(table) > 1 and 0 < cfg.screen < cfg.iterations:
        result = screen_then_continue(recoverer, z0, problem, params, truth, own, progress, log, table)
        b, table = choose_candidate(result.screened, table, frames)
        b_final = 0
    else:
        result = recoverer.run(z0, problem, params, truth=truth, callback=progress, own_params=own)
        b, table = choose_candidate(result, table, frames)
        b_final = b
    if len(table) > 1:
        log("candidates (chosen by held-out error; PSNR for information only):")
        for row in table:
            log("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    out = write_outputs(
        job,
        workdir,
        seq,
        result,
        b_final,
        spec,
        recoverer,
        extra={
            "flags": flags or {},
            "total_seconds": time.perf_counter() - start,
            "candidates": table,  # with screening: as measured when the survivor was chosen
            "chosen": table[b],
        },
    )
    log(
        f"PSNR {out['psnr']:.2f} dB, SSIM {out['ssim']:.4f}, "
        f"{result.seconds_per_iteration * 1e3:.1f} ms/iteration → {workdir}"
    )
    return out
