r"""Recover a video from its measurements with a generator and low-rank latent codes.

    python -m experiments.recover --flagfile=experiments/configs/demo.flags --workdir=/tmp/demo

Flags (defined in ``experiments.flags``) are validated before anything is compiled; a wrong one
ends the run with one line naming the flag, its value and what is allowed, and exit status 1.
See README.md for what --workdir receives and :mod:`lrgen.recovery` for the library call.
"""

from __future__ import annotations

from absl import app, flags

from experiments import cli
from experiments import flags as groups
from lrgen import recovery

FLAGS = flags.FLAGS

groups.define_video(__name__)
flags.DEFINE_string("workdir", None, "Output directory (created).")
groups.define_measurement(__name__)
groups.define_model(__name__)
groups.define_z_dim(__name__)
groups.define_encoder(__name__)
groups.define_fit(__name__)
groups.define_generator_update(__name__)
groups.define_method(__name__)
flags.DEFINE_enum("video_format", "mp4", ["mp4", "gif"], "Format of the reconstruction video.")
groups.define_batch(__name__)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with cli.user_errors():
        job = groups.recover_job()
        if not FLAGS.manifest:
            recovery.run_recover(job, FLAGS.workdir, log=cli.log, flags=cli.resolved_flags(__name__))
        else:
            recovery.check_manifest_workdir(FLAGS.workdir, FLAGS.manifest, job)
            recovery.run_manifest(job, FLAGS.manifest, FLAGS.workdir, groups.batch_options(), log=cli.log)


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
