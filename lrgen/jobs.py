"""A recovery job and the prepared sequences it turns into: load, check, measure, start.

:class:`RecoverJob` holds everything one recovery needs (field names are the flag names of
``experiments.recover``). :func:`load_frames` and :func:`load_model` read the inputs,
:func:`check_job` runs every value check that needs the data (before anything is compiled),
:func:`prepare_sequence` measures one video and draws its starting codes from ``job.seed``
alone, and :func:`candidate_batch` lays a video's candidates out as one batch.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import checkpoint, config, encoder, engine, io, loading, operators, outputs, pixels, sequences
from lrgen.nets import generators

BUILTIN = "builtin:rotating_digit"
# Frames used when no count is asked for: the first 32, or all of a shorter video.
DEFAULT_NUM_FRAMES = 32
# A job's initial codes: the engine's draws, or encoder: z0 = E(frames) (an oracle start).
JOB_Z_INITS = (*config.Z_INITS, "encoder")
ENCODER_INPUTS = ("frames", "measurements")


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
      measurement: what is measured (:class:`lrgen.operators.MeasurementSpec`).
      mask_file: path the masks came from ('' if drawn at random), for the record.
      generator: lrgen generator directory, training workdir or original .npz; '' = random init.
      z_dim: latent size k for a randomly initialised generator (None: 32 gray / 256 RGB).
      z_init: ``fixed_z``, ``fixed_seed``, ``random`` (see :func:`lrgen.engine.init_codes`) or
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
    measurement: operators.MeasurementSpec = dataclasses.field(default_factory=operators.MeasurementSpec)
    mask_file: str = ""
    generator: str = ""
    z_dim: int | None = None
    z_init: str = "fixed_z"
    encoder: str = ""
    encoder_input: str = "frames"
    z_seed: int = 100
    seed: int = 0
    recover: config.RecoverConfig = dataclasses.field(default_factory=config.RecoverConfig)
    video_format: str = "mp4"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["measurement"].pop("mask", None)
        return d


def load_frames(job: RecoverJob, log: Callable[[str], None] | None = None) -> np.ndarray:
    """Frames (T, H, W, C) in [0, 1] for ``job.video`` (:func:`load_video_frames`)."""
    return load_video_frames(
        job.video, image_size=job.image_size, grayscale=job.grayscale, num_frames=job.num_frames, log=log
    )


def load_video_frames(
    video: str, *, image_size: int, grayscale: bool | None, num_frames: int | None, log: Callable[[str], None] | None
) -> np.ndarray:
    """Frames (T, H, W, C) in [0, 1] of a video file, frame folder, array or ``builtin:<name>``.

    ``num_frames``: T > 0 takes the first T frames and refuses a shorter video; 0 takes all;
    None (no count asked for) takes the first ``DEFAULT_NUM_FRAMES``, or all of a shorter video,
    which ``log`` then says. ``grayscale`` None keeps the file's channels (built-ins: gray).
    """
    n, most = num_frames, DEFAULT_NUM_FRAMES
    if video.startswith("builtin:"):
        name = video.split(":", 1)[1]
        n = min(sequences.BUILTIN_FRAMES.get(name, most), most) if n is None else n
        frames = sequences.builtin_sequence(
            name, num_frames=n or None, image_size=image_size, grayscale=grayscale is not False
        )
    elif n is None:
        frames = loading.load_video(video, image_size=image_size, grayscale=grayscale, max_frames=most)
    else:
        frames = loading.load_video(video, image_size=image_size, grayscale=grayscale, num_frames=n or None)
    if num_frames is None and frames.shape[0] < most and log is not None:
        log(
            f"--video={video} has {frames.shape[0]} frames, fewer than the default {most}: "
            f"using all {frames.shape[0]} (--num_frames=N asks for exactly N)"
        )
    return frames


def load_model(job: RecoverJob, channels: int) -> tuple[generators.GeneratorSpec, Any]:
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
    spec = generators.GeneratorSpec.default(image_size=job.image_size, channels=channels, z_dim=job.z_dim)
    return spec, None


@dataclasses.dataclass
class Sequence:
    """One prepared sequence: its frames, operator, measurements and initial codes."""

    frames: np.ndarray  # (T, H, W, C) in [0, 1]
    operator: operators.Operator
    y: jax.Array
    z0: jax.Array
    holdout: jax.Array | None = None  # measured entries left out of the loss (holdout_fraction > 0)

    @property
    def problem(self) -> engine.Problem:
        return engine.Problem(self.y, self.operator, self.holdout)


def check_workdir(job: RecoverJob, workdir: str) -> None:
    """``workdir`` can be written and is none of the job's inputs (the tuned ``generator/`` included)."""
    io.check_output_dir(workdir, "--workdir")
    inputs = {"--video": job.video, "--mask_file": job.mask_file}
    inputs.update({"--generator": job.generator, "--encoder": job.encoder})
    io.check_not_inputs("--workdir", workdir, inputs)
    for name in outputs.WORKDIR_FILES + (f"reconstruction.{job.video_format}",):
        io.check_not_inputs("--workdir", workdir, inputs, written=os.path.join(workdir, name))
    if job.recover.trains_generator:  # generator/ is replaced as a whole
        io.check_not_inputs("--workdir", workdir, inputs, written=os.path.join(workdir, "generator"), inside=True)


def check_job(job: RecoverJob, frame_shape: tuple[int, ...], spec: generators.GeneratorSpec) -> None:
    """Every value check that needs the data; raises ValueError naming the flag."""
    T, H, W, C = frame_shape
    config.check_seed("--seed", job.seed)
    config.check_seed("--z_seed", job.z_seed)
    job.measurement.validate((H, W, C), T)
    job.recover.validate(T, spec.z_dim)
    if job.z_init not in JOB_Z_INITS:
        raise ValueError(f"--z_init={job.z_init}: allowed values are {', '.join(JOB_Z_INITS)}")
    check_encoder(job, (H, W, C), spec)
    if job.video_format not in ("mp4", "gif"):
        raise ValueError(f"--video_format={job.video_format}: allowed values are mp4, gif")


@functools.lru_cache(maxsize=4)
def _load_encoder(path: str):
    return checkpoint.load_encoder(path)


def check_encoder(job: RecoverJob, frame_shape: tuple[int, int, int], spec: generators.GeneratorSpec) -> None:
    """``--z_init=encoder`` needs an ``--encoder`` made for this generator's k and frame size."""
    if job.encoder_input not in ENCODER_INPUTS:
        raise ValueError(f"--encoder_input={job.encoder_input}: allowed values are {', '.join(ENCODER_INPUTS)}")
    if job.z_init != "encoder":
        if job.encoder:
            raise ValueError(f"--encoder={job.encoder} is only used with --z_init=encoder (got --z_init={job.z_init})")
        if job.encoder_input != "frames":
            raise ValueError(f"--encoder_input={job.encoder_input} is only used with --z_init=encoder")
        return
    if job.encoder_input == "measurements" and job.measurement.kind not in operators.IMAGE_KINDS:
        raise ValueError(
            f"--encoder_input=measurements: needs a measurement whose adjoint is an image "
            f"({', '.join(operators.IMAGE_KINDS)}); got --measurement={job.measurement.kind}"
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


def init_params(job: RecoverJob, spec: generators.GeneratorSpec, params: Any | None) -> Any:
    """The loaded weights, or random ones drawn from the job's seed."""
    if params is not None:
        return params
    return generators.init_generator(spec, jax.random.split(jax.random.key(job.seed), 4)[3])


def prepare_sequence(job: RecoverJob, frames: np.ndarray, spec: generators.GeneratorSpec) -> Sequence:
    """Operator, measurements and initial codes of one video, all drawn from ``job.seed``.

    The randomness depends on the seed alone, never on where the video sits in a batch, so a
    video gives the same result alone or inside any batch job.
    """
    if not np.all(np.isfinite(frames)):
        raise ValueError(f"--video={job.video}: frames contain NaN or infinite values")
    T, H, W, C = frames.shape
    op_key, noise_key, z_key, _ = jax.random.split(jax.random.key(job.seed), 4)
    operator = operators.make(job.measurement, op_key, T, (H, W, C))
    y = operator.measure(jnp.asarray(pixels.to_model(frames)), noise_key)  # A x + noise at the spec's SNR
    if not bool(jnp.all(jnp.isfinite(y))):
        raise ValueError(
            f"--video={job.video}: measurements contain NaN or infinite values (check the frames and --mask_file)"
        )
    code_key = jax.random.key(job.z_seed) if job.z_init != "random" else z_key
    if job.z_init == "encoder":
        seen = frames
        if job.encoder_input == "measurements":  # Aᵀy: 0 (mid-grey) where nothing is measured
            seen = np.clip(pixels.to_unit(np.asarray(operator.A_adjoint(y))), 0.0, 1.0)
        z0 = encoder.encode(*_load_encoder(job.encoder), seen)
    else:
        z0 = engine.init_codes(code_key, T, spec.z_dim, job.z_init)
    holdout = None
    if job.recover.holdout_fraction > 0:  # its own key: the draws above stay those of the original
        holdout = engine.holdout_mask(holdout_key(job.seed), operator, y, job.recover.holdout_fraction)
    return Sequence(frames, operator, y, z0, holdout)


def holdout_key(seed: int) -> jax.Array:
    """The held-out set's own key: the other draws of ``seed`` stay those of the original."""
    return jax.random.fold_in(jax.random.key(seed), 0x40)


def candidate_batch(
    job: RecoverJob, seq: Sequence, spec: generators.GeneratorSpec, params: Any
) -> tuple[jax.Array, engine.Problem, list, Any]:
    """The candidates of one video as one batch: (z0 (B, T, k), batched problem, their settings,
    per-candidate starting weights or None).

    Candidate (r, s, j) has rank r (each of ``candidate_ranks``), generator learning rate s·η
    (each of ``candidate_lr_scales``) and start j: j = 0 is the job's own start; j ≥ 1 draws
    random unit codes per frame from the seed and j and, when the generator is randomly
    initialised and trained, new random weights too (the same start for every r and s). All
    share y, the operator and the held-out set, so their held-out errors compare like for like.
    """
    cfg = job.recover
    T, k = seq.z0.shape
    fresh_weights = not job.generator and cfg.trains_generator and cfg.restarts > 1
    starts = []
    for j in range(cfg.restarts):
        z_key, w_key = jax.random.split(jax.random.fold_in(jax.random.key(job.seed), 0x51 + j))
        z0 = seq.z0 if j == 0 else engine.init_codes(z_key, T, k, "random")
        starts.append((z0, params if j == 0 or not fresh_weights else generators.init_generator(spec, w_key)))
    z0s, ranks, scales, table, weights = [], [], [], [], []
    for r in cfg.ranks:
        for s in cfg.lr_scales:
            for j, (z0, w) in enumerate(starts):
                z0s.append(z0)
                weights.append(w)
                ranks.append(r)
                scales.append(s)
                table.append({"rank": r, "start": j, **({"lr_scale": s} if cfg.candidate_lr_scales else {})})
    B = len(z0s)
    rep = lambda a: jnp.broadcast_to(a, (B, *a.shape))  # noqa: E731
    problem = jax.tree.map(rep, seq.problem).replace(rank=jnp.asarray(ranks, jnp.int32))
    if cfg.candidate_lr_scales:
        problem = problem.replace(lr_scale=jnp.asarray(scales, seq.z0.dtype))
    own = jax.tree.map(lambda *w: jnp.stack(w), *weights) if fresh_weights else None
    return jnp.stack(z0s), problem, table, own
