"""Every recovery flag, defined once, in groups; and the one way flags become a recovery job.

A binary calls the groups it offers with its own module name (``define_video(__name__)``), so
each flag is recorded as that binary's (:func:`experiments.cli.resolved_flags`) while its name,
type, help and check live here once. A binary whose default differs passes it
(``define_video(__name__, video="")``). Then :func:`recover_config` and :func:`recover_job`
build the library's validated-by-construction settings; the checks that need data run in the
library. Every flagfile reads the same in every binary.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

from lrgen import config, jobs, lowrank, operators

FLAGS = flags.FLAGS
IMAGE_SIZES = (32, 64, 128)


def _owner(module: str) -> str:
    """The name absl files a module's flags under (a binary run as __main__: its path)."""
    return sys.argv[0] if module == "__main__" else module


def define_video(module: str, *, video: str = jobs.BUILTIN) -> None:
    """--video --image_size --num_frames --grayscale."""
    module = _owner(module)
    flags.DEFINE_string(
        "video",
        video,
        "Frame folder, video file (mp4/avi/gif), .npy/.npz array, or builtin:<name>.",
        module_name=module,
    )
    flags.DEFINE_integer(
        "image_size",
        64,
        "Frames are center-cropped and resized to this square size (32, 64 or 128).",
        module_name=module,
    )
    flags.DEFINE_integer(
        "num_frames",
        None,
        "Use the first T frames, which must exist (0 = all; default: all frames, at most 32).",
        module_name=module,
    )
    flags.DEFINE_bool("grayscale", True, "Convert frames to one channel (--nograyscale keeps RGB).", module_name=module)


def define_measurement(module: str) -> None:
    """--measurement and its parameters."""
    module = _owner(module)
    m = module
    flags.DEFINE_enum("measurement", "missing", list(operators.KINDS), "Measurement operator.", module_name=m)
    flags.DEFINE_float(
        "missing_ratio",
        0.8,
        "Fraction of missing pixels per frame, in [0, 1) (missing).",
        module_name=m,
    )
    flags.DEFINE_string(
        "mask_file",
        "",
        "Observed-pixel masks (.npy/.npz, 1 = observed) instead of random ones (missing).",
        module_name=m,
    )
    flags.DEFINE_integer(
        "num_measurements", 512, "m: rows of A_t (gaussian, m ≤ H·W·C) or of M_t (separable, m ≤ H).", module_name=m
    )
    flags.DEFINE_integer(
        "observe_every", 2, "frames: frames 0, s, 2s, … are observed, the others are missing.", module_name=m
    )
    flags.DEFINE_float(
        "noise_snr_db", None, "Additive Gaussian noise at this SNR in dB (required for denoise).", module_name=m
    )
    flags.DEFINE_bool(
        "matrix_free", False, "gaussian: regenerate A_t in chunks instead of storing T×m×n numbers.", module_name=m
    )
    flags.DEFINE_integer("matrix_free_chunk", 256, "Rows of A_t generated at a time with --matrix_free.", module_name=m)


def define_model(module: str, *, z_inits: tuple[str, ...] = jobs.JOB_Z_INITS, seed_help: str = "") -> None:
    """--generator --z_init --z_seed --seed (and, for recover, --z_dim)."""
    module = _owner(module)
    flags.DEFINE_string(
        "generator",
        "",
        "lrgen generator dir / training workdir, or an .npz of the original PyTorch weights; empty = random init.",
        module_name=module,
    )
    flags.DEFINE_enum("z_init", "fixed_z", list(z_inits), "Initial codes.", module_name=module)
    flags.DEFINE_integer("z_seed", 100, "Seed of fixed_z / fixed_seed codes.", module_name=module)
    flags.DEFINE_integer(
        "seed",
        0,
        seed_help or "Seed of operators, noise, random codes and random generator weights.",
        module_name=module,
    )


def define_z_dim(module: str) -> None:
    module = _owner(module)
    flags.DEFINE_integer(
        "z_dim",
        None,
        "Latent size k of a randomly initialised generator (default 32 gray, 256 RGB).",
        module_name=module,
    )


def define_encoder(module: str) -> None:
    """--encoder --encoder_input (recover's --z_init=encoder)."""
    module = _owner(module)
    flags.DEFINE_string(
        "encoder",
        "",
        "Encoder directory or encoder training workdir (--z_init=encoder: z0 = E(frames)).",
        module_name=module,
    )
    flags.DEFINE_enum(
        "encoder_input",
        "frames",
        list(jobs.ENCODER_INPUTS),
        "What the encoder sees: the true frames (oracle) or the zero-filled back-projection of the measurements.",
        module_name=module,
    )


def define_fit(module: str) -> None:
    """The loop flags every latent fit has: rank, smoothness, iterations, α, logging, loop."""
    module = _owner(module)
    m = module
    flags.DEFINE_integer(
        "rank",
        2,
        "Rank r of the code matrix Z (0 = unconstrained), at most min(T, k).",
        module_name=m,
    )
    flags.DEFINE_enum(
        "rank_type", "pca", list(lowrank.RANK_TYPES), "svd: top-r SVD; pca: mean + top r−1 components.", module_name=m
    )
    flags.DEFINE_float(
        "similarity_weight", 0.0, "1 − λ: weight of the temporal smoothness term, in [0, 1].", module_name=m
    )
    flags.DEFINE_integer("iterations", 2000, "Iterations (at most; --patience may stop earlier).", module_name=m)
    flags.DEFINE_float("z_step", None, "α, code step size (default 200·T/256).", module_name=m)
    flags.DEFINE_integer("log_every", 100, "Iterations between progress lines and PSNR evaluations.", module_name=m)
    flags.DEFINE_enum(
        "loop",
        "auto",
        list(config.LOOPS),
        "python: jitted step from Python; scan: jitted loop; auto: python on CPU.",
        module_name=m,
    )


def define_generator_update(module: str, *, update: str = "joint", updates: tuple[str, ...] = config.UPDATES) -> None:
    """--update (its default and choices per binary) and the generator's learning rate."""
    module = _owner(module)
    m = module
    flags.DEFINE_enum("update", update, list(updates), "What is optimised.", module_name=m)
    flags.DEFINE_float(
        "generator_lr",
        None,
        "Adam learning rate of the generator (default 0.001·T/256).",
        module_name=m,
    )
    flags.DEFINE_float("generator_lr_decay", 1.0, "Multiply the generator learning rate by this ...", module_name=m)
    flags.DEFINE_integer("generator_lr_decay_every", 0, "... every this many iterations (0 = never).", module_name=m)


def define_method(module: str) -> None:
    """--preset and lrgen's own choices: Adam on Z, schedules, held-out selection, candidates."""
    module = _owner(module)
    m = module
    flags.DEFINE_enum(
        "preset",
        "best",
        list(config.PRESETS),
        "best: lrgen's own (random starts of ranks 2 and 0 side by side, iterate and average chosen by held-out "
        "error); faithful: the 2019 notebook, exactly; journal: the TSP 2020 code. Flags given override it.",
        module_name=m,
    )
    flags.DEFINE_enum(
        "z_optimizer",
        "gd",
        list(config.Z_OPTIMIZERS),
        "gd: Z ← P(Z − α∇); adam: Z ← P(Z + Adam step, lr α).",
        module_name=m,
    )
    flags.DEFINE_float("z_step_per_frame", 200.0 / 256.0, "Default α = this × T.", module_name=m)
    flags.DEFINE_enum(
        "schedule",
        "staircase",
        list(config.SCHEDULES),
        "Learning-rate schedule (cosine: G and Adam on Z).",
        module_name=m,
    )
    flags.DEFINE_float(
        "best_margin", 0.0, "Replace the best iterate only on a loss below (1 − margin) × best.", module_name=m
    )
    flags.DEFINE_float(
        "holdout_fraction", 0.0, "Fraction of measured entries held out to choose the iterate (0 = off).", module_name=m
    )
    flags.DEFINE_integer(
        "patience",
        0,
        "Stop once the held-out error has not improved for this many iterations (0 = off).",
        module_name=m,
    )
    flags.DEFINE_list(
        "candidate_ranks", [], "Ranks tried side by side in one batch, chosen by held-out error.", module_name=m
    )
    flags.DEFINE_list(
        "candidate_lr_scales",
        [],
        "Multipliers of the generator's learning rate tried side by side in one batch, chosen by held-out error.",
        module_name=m,
    )
    flags.DEFINE_integer(
        "restarts", 1, "Random starts (codes; weights of an untrained generator) per candidate rank.", module_name=m
    )
    flags.DEFINE_integer(
        "screen", 0, "Run all candidates this many iterations, then only the best (0 = all to the end).", module_name=m
    )
    flags.DEFINE_bool(
        "ensemble", False, "Return the mean of the best candidates, how many chosen by held-out error.", module_name=m
    )
    flags.DEFINE_bool(
        "fusion",
        False,
        "Missing pixels: carry neighbouring frames' measured pixels in along the flow, if held-out pixels choose it.",
        module_name=m,
    )


def define_batch(module: str) -> None:
    """Manifest (batch) jobs and multi-process runs."""
    module = _owner(module)
    m = module
    flags.DEFINE_string(
        "manifest", "", "File listing videos (one path or glob per line): recover them all in batches.", module_name=m
    )
    flags.DEFINE_integer(
        "batch_size", 4, "Sequences per vmapped batch (--manifest); rounded up to a multiple of devices.", module_name=m
    )
    flags.DEFINE_integer(
        "checkpoint_every", 500, "Iterations between batch checkpoints (--manifest; 0 = never).", module_name=m
    )
    flags.DEFINE_bool(
        "distributed", False, "Call jax.distributed.initialize (auto-detects TPU pods and Slurm).", module_name=m
    )
    flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (implies --distributed).", module_name=m)
    flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).", module_name=m)
    flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).", module_name=m)


def check_video() -> None:
    """Checks of the video flags that need no data; the rest happen in the library."""
    if FLAGS.image_size not in IMAGE_SIZES:
        raise ValueError(f"--image_size={FLAGS.image_size}: allowed values are 32, 64, 128")
    if FLAGS.num_frames is not None and FLAGS.num_frames < 0:
        raise ValueError(f"--num_frames={FLAGS.num_frames}: must be ≥ 0 (0 = all frames)")


def _field_value(name: str):
    value = FLAGS[name].value
    if name in ("candidate_ranks", "candidate_lr_scales"):  # list flags of strings
        kind, what = (int, "integers") if name == "candidate_ranks" else (float, "numbers")
        try:
            return tuple(kind(v) for v in value)
        except ValueError:
            raise ValueError(f"--{name}={','.join(value)}: must be comma-separated {what}") from None
    return value


def recover_config() -> config.RecoverConfig:
    """The :class:`lrgen.config.RecoverConfig` of the flags named like its fields: the one way.

    With a ``--preset`` flag, the preset's values (:data:`lrgen.config.PRESETS`) are the base and
    only flags given explicitly override them; without one, every field's flag value is taken
    (fields without a flag stay faithful).
    """
    fields = [f.name for f in dataclasses.fields(config.RecoverConfig) if f.name != "preset" and f.name in FLAGS]
    if "preset" not in FLAGS:
        return config.RecoverConfig(**{name: _field_value(name) for name in fields})
    return config.resolve(FLAGS.preset, **{name: _field_value(name) for name in fields if FLAGS[name].present})


def z_init() -> str:
    """``--z_init`` as given, else the preset's initial codes."""
    if FLAGS["z_init"].present or "preset" not in FLAGS:
        return FLAGS.z_init
    return config.PRESET_Z_INIT[FLAGS.preset]


def measurement_spec() -> operators.MeasurementSpec:
    """The measurement of the flags (masks read from --mask_file, which needs --measurement=missing)."""
    mask = None
    if FLAGS.mask_file:
        if FLAGS.measurement != "missing":
            raise ValueError(f"--mask_file needs --measurement=missing (got --measurement={FLAGS.measurement})")
        mask = operators.load_mask_file(FLAGS.mask_file)
    return operators.MeasurementSpec(
        kind=FLAGS.measurement,
        missing_ratio=FLAGS.missing_ratio,
        num_measurements=FLAGS.num_measurements,
        noise_snr_db=FLAGS.noise_snr_db,
        mask=mask,
        matrix_free=FLAGS.matrix_free,
        matrix_free_chunk=FLAGS.matrix_free_chunk,
        observe_every=FLAGS.observe_every,
    )


def recover_job() -> jobs.RecoverJob:
    """The :class:`lrgen.jobs.RecoverJob` of the flags; value checks that need data happen in the library."""
    measurement = measurement_spec()
    check_video()
    if "manifest" in FLAGS and not FLAGS.manifest:
        ignored = [f"--{n}" for n in ("batch_size", "checkpoint_every") if FLAGS[n].present]
        if ignored:
            raise ValueError(f"{', '.join(ignored)}: only used with --manifest (batch jobs); drop it or add --manifest")
    if FLAGS.z_dim is not None and FLAGS.z_dim < 1:
        raise ValueError(f"--z_dim={FLAGS.z_dim}: must be ≥ 1")
    return jobs.RecoverJob(
        video=FLAGS.video,
        image_size=FLAGS.image_size,
        num_frames=FLAGS.num_frames,
        grayscale=FLAGS.grayscale,
        measurement=measurement,
        mask_file=FLAGS.mask_file,
        generator=FLAGS.generator,
        z_dim=FLAGS.z_dim,
        z_init=z_init(),
        encoder=FLAGS.encoder,
        encoder_input=FLAGS.encoder_input,
        z_seed=FLAGS.z_seed,
        seed=FLAGS.seed,
        recover=recover_config(),
        video_format=FLAGS.video_format,
    )


def init_distributed() -> None:
    """Join a multi-process job (explicit coordinator, or auto-detected on TPU pods / Slurm)."""
    import jax

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


def batch_options():
    """This process's :class:`lrgen.recovery.BatchOptions` (joining a multi-process job first)."""
    import jax

    from lrgen import recovery

    init_distributed()
    return recovery.BatchOptions(
        batch_size=FLAGS.batch_size,
        checkpoint_every=FLAGS.checkpoint_every,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
