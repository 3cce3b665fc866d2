r"""Generate frames between observed ones by interpolating low-rank latent coordinates.

    # hold out every other frame of rotating MNIST, fit the rest, score the generated frames
    python -m experiments.interpolate --video=../shared/data/gmlr/rot_mnist/seq1 \
        --generator=../shared/data/gmlr/mnist_dcgan_gmlr.npz --observe_every=2 --factor=4 \
        --workdir=runs/interp_s2
    # 20× more frames from a finished recover run
    python -m experiments.interpolate --recover_workdir=runs/rot_mnist --factor=20 --workdir=runs/interp20

Either ``--video`` (the observed frames 0, s, 2s, … are fitted here with the recover flags:
``--generator --update --rank --iterations`` …) or ``--recover_workdir`` (codes and generator of
a finished ``experiments.recover`` run; a run with ``--measurement=frames`` is scored on its
missing frames). Writes metrics.json (``psnr_missing``, ``ssim_missing``, ``psnr_nearest``,
``psnr_blend`` …), interpolation.npz, the video, grid.png and latent.png; see
:mod:`lrgen.interpolate`. A wrong flag ends the run with one line and exit status 1.
"""

from __future__ import annotations

import dataclasses
import os

from absl import app, flags

from experiments import cli, fit_flags
from lrgen import interpolate, io, pipeline, recover

FLAGS = flags.FLAGS

flags.DEFINE_string("recover_workdir", "", "A finished experiments.recover workdir to take codes and generator from.")
flags.DEFINE_string("workdir", None, "Output directory (created).")
flags.DEFINE_integer(
    "observe_every", None, "s: frames 0, s, 2s, … are observed, the others generated and scored (default 1)."
)
flags.DEFINE_integer("factor", 4, "f: generate frames at times i/f (f − 1 new frames between consecutive frames).")
flags.DEFINE_enum("video_format", "mp4", ["mp4", "gif"], "Format of the interpolated video.")
# Recover flags used only when fitting here (--video).
flags.DEFINE_integer("z_dim", None, "Latent size k of a randomly initialised generator (default 32 gray, 256 RGB).")
flags.DEFINE_enum(
    "update",
    interpolate.AUTO,
    [*recover.UPDATES, interpolate.AUTO],
    "What the fit optimises (joint also tunes the generator); auto: latent or joint, whichever best predicts "
    "held-out observed frames.",
)
flags.DEFINE_list("select_ranks", [], "Ranks to choose from by held-out observed frames (empty: --rank only).")
flags.DEFINE_integer(
    "select_iterations",
    interpolate.SELECT_ITERATIONS,
    "Iterations of each fit that compares candidates (at most --iterations).",
)
flags.DEFINE_float("generator_lr", None, "Adam learning rate of the generator (default 0.001·n/256).")
flags.DEFINE_float("generator_lr_decay", 1.0, "Multiply the generator learning rate by this ...")
flags.DEFINE_integer("generator_lr_decay_every", 0, "... every this many iterations (0 = never).")

FIT_ONLY = (
    *fit_flags.FIT_FLAGS,
    "z_dim",
    "update",
    "select_ranks",
    "select_iterations",
    "generator_lr",
    "generator_lr_decay",
    "generator_lr_decay_every",
)
AUTO_UPDATES = interpolate.AUTO_UPDATES


def config_from_flags() -> interpolate.InterpolateConfig:
    return interpolate.InterpolateConfig(
        observe_every=FLAGS.observe_every or 1,
        factor=FLAGS.factor,
        method=FLAGS.method,
        video_format=FLAGS.video_format,
    )


def candidates_from_flags() -> tuple[interpolate.Candidate, ...]:
    """The settings to choose from: every auto flag contributes its choices (one: no selection)."""
    updates = AUTO_UPDATES if FLAGS.update == interpolate.AUTO else (FLAGS.update,)
    try:
        ranks = tuple(int(r) for r in FLAGS.select_ranks) or (FLAGS.rank,)
    except ValueError:
        raise ValueError(f"--select_ranks={','.join(FLAGS.select_ranks)}: must be integers ≥ 0") from None
    if min(ranks) < 0:
        raise ValueError(f"--select_ranks={','.join(FLAGS.select_ranks)}: must be integers ≥ 0")
    if FLAGS.select_iterations < 1:
        raise ValueError(f"--select_iterations={FLAGS.select_iterations}: must be ≥ 1")
    methods = interpolate.METHODS if FLAGS.method == interpolate.AUTO else (FLAGS.method,)
    return interpolate.candidate_grid(updates, ranks, methods)


def job_from_flags() -> pipeline.RecoverJob:
    """The recovery job that fits the observed frames (``--video`` mode)."""
    fit_flags.check_common()
    if FLAGS.iterations < 1:
        raise ValueError(f"--iterations={FLAGS.iterations}: must be ≥ 1")
    if FLAGS.z_dim is not None and FLAGS.z_dim < 1:
        raise ValueError(f"--z_dim={FLAGS.z_dim}: must be ≥ 1")
    job = pipeline.RecoverJob(
        video=FLAGS.video,
        image_size=FLAGS.image_size,
        num_frames=FLAGS.num_frames,
        grayscale=FLAGS.grayscale,
        generator=FLAGS.generator,
        z_dim=FLAGS.z_dim,
        z_init=FLAGS.z_init,
        z_seed=FLAGS.z_seed,
        seed=FLAGS.seed,
        # update=auto: the first candidate's until the selection has chosen.
        recover=dataclasses.replace(
            cli.recover_config_from_flags(),
            update=AUTO_UPDATES[0] if FLAGS.update == interpolate.AUTO else FLAGS.update,
        ),
        video_format=FLAGS.video_format,
    )
    return interpolate.make_job(job, FLAGS.observe_every or 1)


def check_workdir() -> None:
    """--workdir can be written and overwrites none of the inputs (the fit's generator/ included)."""
    io.check_output_dir(FLAGS.workdir, "--workdir")
    inputs = {"--recover_workdir": FLAGS.recover_workdir, "--video": FLAGS.video, "--generator": FLAGS.generator}
    io.check_not_inputs("--workdir", FLAGS.workdir, inputs)
    if FLAGS.video and FLAGS.update != "latent":  # the fit's tuned generator/ is written there
        written = os.path.join(FLAGS.workdir, "generator")
        io.check_not_inputs("--workdir", FLAGS.workdir, inputs, written=written, inside=True)


def run(log) -> None:
    if bool(FLAGS.video) == bool(FLAGS.recover_workdir):
        raise ValueError("give exactly one of --video (fit the observed frames here) and --recover_workdir")
    check_workdir()
    config = config_from_flags()
    if FLAGS.observe_every is not None and FLAGS.observe_every < 1:
        raise ValueError(f"--observe_every={FLAGS.observe_every}: must be ≥ 1")
    if FLAGS.recover_workdir:
        extra = [f"--{n}" for n in FIT_ONLY if FLAGS[n].present]
        if extra:
            raise ValueError(
                f"{', '.join(extra)}: fit flags do not apply with --recover_workdir "
                "(its codes and generator are used as they are)"
            )
        dataclasses.replace(config, observe_every=1).validate(2)  # factor and method; observe_every below
        fit = interpolate.load_recover_workdir(FLAGS.recover_workdir, FLAGS.observe_every)
        run_every = fit.job.measurement.observe_every if fit.job.measurement.kind == "frames" else 1
        config = dataclasses.replace(config, observe_every=run_every)
        config.validate(fit.frames.shape[0])
    else:
        job = job_from_flags()
        candidates = candidates_from_flags()
        fit = interpolate.fit_observed(
            job,
            config.observe_every,
            log=log,
            check=config.validate,
            candidates=candidates if len(candidates) > 1 else None,
            select_iterations=FLAGS.select_iterations,
        )
    resolved = cli.resolved_flags(__name__, fit_flags.__name__)
    interpolate.run_interpolate(fit, config, FLAGS.workdir, log=log, flags=resolved)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with cli.user_errors():
        run(cli.log)


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
