r"""Compress a video into a few quantised latent numbers (generative compression).

    python -m experiments.compress --video=../shared/data/gmlr/rot_mnist/seq1 \
        --generator=../shared/data/gmlr/mnist_dcgan_gmlr.npz --keyframe_every=4 --rank=2 --bits=8 \
        --output=runs/seq1.lrgv
    python -m experiments.decompress --input=runs/seq1.lrgv --output=runs/seq1.mp4

Key-frame codes come from latent optimisation (``--iterations``, the recover flags of a latent
fit) or from ``--encoder``; they are stored as their rank-r factorisation quantised to
``--bits`` bits (format: :mod:`lrgen.compress`). Writes ``--output`` and, next to it,
``<output>.json`` with ``bpp``, ``psnr``, ``ssim``, the sizes and the generator's (separate)
size. A wrong flag ends the run with one line and exit status 1; nothing is written.
"""

from __future__ import annotations

from absl import app, flags

from experiments import cli, fit_flags
from lrgen import compress

FLAGS = flags.FLAGS

flags.DEFINE_string("output", None, "Compressed file to write (its report goes to <output>.json).")
flags.DEFINE_string("encoder", "", "A trained encoder giving the key-frame codes (refined by --iterations; 0 = as is).")
flags.DEFINE_integer("keyframe_every", 4, "s: key frames 0, s, 2s, … and the last; the others are interpolated.")
flags.DEFINE_integer("bits", 8, "Bits per stored number, 1 … 16.")


def job_from_flags() -> compress.CompressJob:
    fit_flags.check_common()
    return compress.CompressJob(
        video=FLAGS.video,
        generator=FLAGS.generator,
        encoder=FLAGS.encoder,
        # Unset: the generator's size and channels.
        image_size=FLAGS.image_size if FLAGS["image_size"].present else None,
        num_frames=FLAGS.num_frames,
        grayscale=FLAGS.grayscale if FLAGS["grayscale"].present else None,
        config=compress.CompressConfig(
            keyframe_every=FLAGS.keyframe_every,
            rank=FLAGS.rank,
            rank_type=FLAGS.rank_type,
            bits=FLAGS.bits,
            method=FLAGS.method,
            iterations=FLAGS.iterations,
            z_step=FLAGS.z_step,
            z_init=FLAGS.z_init,
            z_seed=FLAGS.z_seed,
            similarity_weight=FLAGS.similarity_weight,
            log_every=FLAGS.log_every,
            loop=FLAGS.loop,
        ),
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with cli.user_errors():
        resolved = cli.resolved_flags(__name__, fit_flags.__name__)
        compress.compress_video(job_from_flags(), FLAGS.output, log=cli.log, flags=resolved)


if __name__ == "__main__":
    flags.mark_flag_as_required("output")
    app.run(main)
