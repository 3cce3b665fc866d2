r"""Recover a video from its measurements with a generator and low-rank latent codes.

    python -m experiments.recover --flagfile=experiments/configs/demo.flags --workdir=/tmp/demo

Flags are validated before anything is compiled; a wrong one ends the run with one line naming
the flag, its value and what is allowed, and a non-zero exit status. See README.md for the
outputs written to --workdir and ``lrgen.pipeline`` for the library call this binary makes.
"""

from __future__ import annotations

import os

import jax
from absl import app, flags

from experiments import cli
from lrgen import batch, io, measure, pipeline, recover

FLAGS = flags.FLAGS

# Data.
flags.DEFINE_string(
    "video", pipeline.BUILTIN, "Frame folder, video file (mp4/avi/gif), .npy/.npz array, or builtin:<name>."
)
flags.DEFINE_string("workdir", None, "Output directory (created).")
flags.DEFINE_integer("image_size", 64, "Frames are center-cropped and resized to this square size (32, 64 or 128).")
flags.DEFINE_integer(
    "num_frames", None, "Use the first T frames, which must exist (0 = all; default: all frames, at most 32)."
)
flags.DEFINE_bool("grayscale", True, "Convert frames to one channel (--nograyscale keeps RGB).")
# Measurements.
flags.DEFINE_enum("measurement", "missing", list(measure.KINDS), "Measurement operator.")
flags.DEFINE_float("missing_ratio", 0.8, "Fraction of missing pixels per frame, in [0, 1) (missing).")
flags.DEFINE_string("mask_file", "", "Observed-pixel masks (.npy/.npz, 1 = observed) instead of random ones (missing).")
flags.DEFINE_integer("num_measurements", 512, "m: rows of A_t (gaussian, m ≤ H·W·C) or of M_t (separable, m ≤ H).")
flags.DEFINE_integer("observe_every", 2, "frames: frames 0, s, 2s, … are observed, the others are missing.")
flags.DEFINE_float("noise_snr_db", None, "Additive Gaussian noise at this SNR in dB (required for denoise).")
# Model.
flags.DEFINE_string(
    "generator",
    "",
    "lrgen generator dir / training workdir, or an .npz of the original PyTorch weights; empty = random init.",
)
flags.DEFINE_integer("z_dim", None, "Latent size k of a randomly initialised generator (default 32 gray, 256 RGB).")
flags.DEFINE_enum("z_init", "fixed_z", list(recover.Z_INITS), "Initial codes.")
flags.DEFINE_string("encoder", "", "Encoder directory or encoder training workdir (--z_init=encoder: z0 = E(frames)).")
flags.DEFINE_enum(
    "encoder_input",
    "frames",
    list(pipeline.ENCODER_INPUTS),
    "What the encoder sees: the true frames (oracle) or the zero-filled back-projection of the measurements.",
)
flags.DEFINE_integer("z_seed", 100, "Seed of fixed_z / fixed_seed codes.")
flags.DEFINE_integer("seed", 0, "Seed of operators, noise, random codes and random generator weights.")
# Optimisation.
flags.DEFINE_integer("rank", 2, "Rank r of the code matrix Z (0 = unconstrained), at most min(T, k).")
flags.DEFINE_enum("rank_type", "pca", ["svd", "pca"], "svd: top-r SVD; pca: mean + top r−1 components.")
flags.DEFINE_float("similarity_weight", 0.0, "1 − λ: weight of the temporal smoothness term, in [0, 1].")
flags.DEFINE_enum("update", "joint", list(recover.UPDATES), "What is optimised.")
flags.DEFINE_integer("iterations", 2000, "Iterations (at most; --patience may stop earlier).")
flags.DEFINE_float("z_step", None, "α, code step size (default 200·T/256).")
flags.DEFINE_float("generator_lr", None, "Adam learning rate of the generator (default 0.001·T/256).")
flags.DEFINE_float("generator_lr_decay", 1.0, "Multiply the generator learning rate by this ...")
flags.DEFINE_integer("generator_lr_decay_every", 0, "... every this many iterations (0 = never).")
flags.DEFINE_integer("log_every", 100, "Iterations between progress lines and PSNR evaluations.")
flags.DEFINE_enum(
    "loop", "auto", list(recover.LOOPS), "python: jitted step from Python; scan: jitted loop; auto: python on CPU."
)
flags.DEFINE_enum(
    "preset",
    "faithful",
    list(recover.PRESETS),
    "faithful: the 2019 notebook; journal: the TSP 2020 code; best: lrgen's own (held-out selection; not yet "
    "shown better, so not the default). Flags given override it.",
)
flags.DEFINE_enum(
    "z_optimizer", "gd", list(recover.Z_OPTIMIZERS), "gd: Z ← P(Z − α∇); adam: Z ← P(Z + Adam step, lr α)."
)
flags.DEFINE_float("z_step_per_frame", 200.0 / 256.0, "Default α = this × T.")
flags.DEFINE_enum("schedule", "staircase", list(recover.SCHEDULES), "Learning-rate schedule (cosine: G and Adam on Z).")
flags.DEFINE_float("best_margin", 0.0, "Replace the best iterate only on a loss below (1 − margin) × best.")
flags.DEFINE_float("holdout_fraction", 0.0, "Fraction of measured entries held out to choose the iterate (0 = off).")
flags.DEFINE_integer("patience", 0, "Stop once the held-out error has not improved for this many iterations (0 = off).")
flags.DEFINE_list("candidate_ranks", [], "Ranks tried side by side in one batch, chosen by held-out error.")
flags.DEFINE_integer("restarts", 1, "Random starts (codes; weights of an untrained generator) per candidate rank.")
flags.DEFINE_integer("screen", 0, "Run all candidates this many iterations, then only the best (0 = all to the end).")
flags.DEFINE_enum("video_format", "mp4", ["mp4", "gif"], "Format of the reconstruction video.")
flags.DEFINE_bool("matrix_free", False, "gaussian: regenerate A_t in chunks instead of storing T×m×n numbers.")
flags.DEFINE_integer("matrix_free_chunk", 256, "Rows of A_t generated at a time with --matrix_free.")
# Batch jobs.
flags.DEFINE_string("manifest", "", "File listing videos (one path or glob per line): recover them all in batches.")
flags.DEFINE_integer("batch_size", 4, "Sequences per vmapped batch (--manifest); rounded up to a multiple of devices.")
flags.DEFINE_integer("checkpoint_every", 500, "Iterations between batch checkpoints (--manifest; 0 = never).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize (auto-detects TPU pods and Slurm).")
flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (implies --distributed).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def job_from_flags() -> pipeline.RecoverJob:
    """The validated-by-construction job; value checks that need the data happen in the library."""
    mask = None
    if FLAGS.mask_file:
        if FLAGS.measurement != "missing":
            raise ValueError(f"--mask_file needs --measurement=missing (got --measurement={FLAGS.measurement})")
        mask = measure.load_mask_file(FLAGS.mask_file)
    for name in ("image_size",):
        if FLAGS[name].value not in (32, 64, 128):
            raise ValueError(f"--{name}={FLAGS[name].value}: allowed values are 32, 64, 128")
    if FLAGS.num_frames is not None and FLAGS.num_frames < 0:
        raise ValueError(f"--num_frames={FLAGS.num_frames}: must be ≥ 0 (0 = all frames)")
    if not FLAGS.manifest:
        ignored = [f"--{n}" for n in ("batch_size", "checkpoint_every") if FLAGS[n].present]
        if ignored:
            raise ValueError(f"{', '.join(ignored)}: only used with --manifest (batch jobs); drop it or add --manifest")
    if FLAGS.z_dim is not None and FLAGS.z_dim < 1:
        raise ValueError(f"--z_dim={FLAGS.z_dim}: must be ≥ 1")
    return pipeline.RecoverJob(
        video=FLAGS.video,
        image_size=FLAGS.image_size,
        num_frames=FLAGS.num_frames,
        grayscale=FLAGS.grayscale,
        measurement=measure.MeasurementSpec(
            kind=FLAGS.measurement,
            missing_ratio=FLAGS.missing_ratio,
            num_measurements=FLAGS.num_measurements,
            noise_snr_db=FLAGS.noise_snr_db,
            mask=mask,
            matrix_free=FLAGS.matrix_free,
            matrix_free_chunk=FLAGS.matrix_free_chunk,
            observe_every=FLAGS.observe_every,
        ),
        mask_file=FLAGS.mask_file,
        generator=FLAGS.generator,
        z_dim=FLAGS.z_dim,
        z_init=cli.preset_z_init(),
        encoder=FLAGS.encoder,
        encoder_input=FLAGS.encoder_input,
        z_seed=FLAGS.z_seed,
        seed=FLAGS.seed,
        recover=cli.recover_config_from_flags(),
        video_format=FLAGS.video_format,
    )


def init_distributed() -> None:
    """Join a multi-process job (explicit coordinator, or auto-detected on TPU pods / Slurm)."""
    if FLAGS.coordinator_address:
        if FLAGS.num_processes is None or FLAGS.process_id is None:
            raise ValueError("--coordinator_address needs --num_processes and --process_id")
        if not 0 <= FLAGS.process_id < FLAGS.num_processes:
            raise ValueError(f"--process_id={FLAGS.process_id}: must lie in [0, --num_processes={FLAGS.num_processes})")
        # Before anything touches a backend: CPU processes talk through gloo (ignored on GPU/TPU).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif FLAGS.distributed:
        jax.distributed.initialize()


def run_manifest(job: pipeline.RecoverJob, log) -> None:
    """Each process recovers its share of the manifest; process 0 writes the summary."""
    from jax.experimental import multihost_utils

    io.check_output_dir(FLAGS.workdir, "--workdir")
    io.check_not_inputs("--workdir", FLAGS.workdir, {"--manifest": FLAGS.manifest, "--generator": FLAGS.generator})
    init_distributed()
    options = batch.BatchOptions(
        batch_size=FLAGS.batch_size,
        checkpoint_every=FLAGS.checkpoint_every,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    batch.run_manifest(job, FLAGS.manifest, FLAGS.workdir, options, log=log)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("lrgen manifest done")
        if jax.process_index() == 0:
            rows = batch.write_summary(batch.read_manifest(FLAGS.manifest), os.path.abspath(FLAGS.workdir))
            log(f"summary of {len(rows)} videos → {FLAGS.workdir}/summary.csv")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with cli.user_errors():
        job = job_from_flags()
        if FLAGS.manifest:
            run_manifest(job, cli.log)
        else:
            pipeline.run_recover(job, FLAGS.workdir, log=cli.log, flags=cli.resolved_flags(__name__))


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
