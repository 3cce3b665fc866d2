r"""Frames between observed ones from interpolated low-rank latent codes (:mod:`lrgen.interpolation`).

python -m experiments.interpolate --video=<frames> --observe_every=2 --generator=<npz> --workdir=<out>
"""

from absl import app, flags

from experiments import cli, fit_flags
from experiments import flags as groups
from lrgen import config, interpolation, jobs, selection

FLAGS = flags.FLAGS
flags.DEFINE_string("recover_workdir", "", "A finished experiments.recover workdir to take codes and generator from.")
flags.DEFINE_string("workdir", None, "Output directory (created).")
flags.DEFINE_integer("observe_every", None, "s: frames 0, s, 2s, … are observed, the others generated (default 1).")
flags.DEFINE_integer("factor", 4, "f: generate frames at times i/f (f − 1 new frames between consecutive frames).")
flags.DEFINE_enum("video_format", "mp4", ["mp4", "gif"], "Format of the interpolated video.")
flags.DEFINE_integer("z_dim", None, "Latent size k of a randomly initialised generator (default 32 gray, 256 RGB).")
flags.DEFINE_list("select_ranks", [], "Ranks to choose from by held-out observed frames (empty: --rank only).")
flags.DEFINE_integer("select_iterations", selection.SELECT_ITERATIONS, "Iterations of each fit comparing candidates.")
groups.define_generator_update(__name__, update=selection.AUTO, updates=(*config.UPDATES, selection.AUTO))
flags.DEFINE_bool("flow_mix", True, "Mix G(z) with optical flow, the share chosen on held-out observed frames.")
# The fit's own flags besides fit_flags' (not with --recover_workdir), and its RecoverJob's fields.
FIT_ONLY = ("z_dim", "update", "select_ranks", "select_iterations", "generator_lr", "generator_lr_decay")
JOB = ("video", "image_size", "num_frames", "grayscale", "generator", "z_dim", "z_init", "z_seed", "seed")


def run(log) -> None:
    fit_flags.check_common()
    fit = jobs.RecoverJob(
        **{n: FLAGS[n].value for n in (*JOB, "video_format")}, recover=cli.recover_config_from_flags()
    )
    values = [FLAGS[n].value for n in ("observe_every", "factor", "method", "video_format", "flow_mix")]
    config = interpolation.InterpolateConfig(*values)
    given = tuple(n for n in (*fit_flags.FIT_FLAGS, *FIT_ONLY, "generator_lr_decay_every") if FLAGS[n].present)
    ranks, iters, fit = tuple(FLAGS.select_ranks), FLAGS.select_iterations, fit if FLAGS.video else None
    job = interpolation.InterpolateJob(config, fit, FLAGS.recover_workdir, FLAGS.update, ranks, iters, given)
    interpolation.interpolate_video(job, FLAGS.workdir, log=log, flags=cli.resolved_flags(__name__, fit_flags.__name__))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with cli.user_errors():
        run(cli.log)


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
