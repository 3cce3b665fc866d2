r"""Compress a video into a few quantised latent numbers (generative compression, :mod:`lrgen.compression`).

    python -m experiments.compress --video=../shared/data/gmlr/rot_mnist/seq1 \
        --generator=../shared/data/gmlr/mnist_dcgan_gmlr.npz --keyframe_every=4 --bits=8 --output=runs/seq1.lrgv

Key-frame codes come from latent optimisation (the recover flags of a latent fit) or from ``--encoder``,
stored as their rank-r factorisation quantised to ``--bits`` bits (:mod:`lrgen.codec`). Writes ``--output``
and ``<output>.json`` (``bpp``, ``psnr``, ``ssim``, sizes). A wrong flag: one line, exit status 1, nothing written.
"""

import dataclasses

from absl import app, flags

from experiments import cli, fit_flags
from lrgen import compression

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Compressed file to write (its report goes to <output>.json).")
flags.DEFINE_string("encoder", "", "A trained encoder giving the key-frame codes (refined by --iterations; 0 = as is).")
flags.DEFINE_integer("keyframe_every", 4, "s: key frames 0, s, 2s, … and the last; the others are interpolated.")
flags.DEFINE_integer("bits", 8, "Bits per stored number, 1 … 16.")


def job_from_flags() -> compression.CompressJob:
    fit_flags.check_common()
    config = {f.name: FLAGS[f.name].value for f in dataclasses.fields(compression.CompressConfig)}
    return compression.CompressJob(
        video=FLAGS.video,
        generator=FLAGS.generator,
        encoder=FLAGS.encoder,
        # Unset: the generator's size and channels.
        image_size=FLAGS.image_size if FLAGS["image_size"].present else None,
        num_frames=FLAGS.num_frames,
        grayscale=FLAGS.grayscale if FLAGS["grayscale"].present else None,
        config=compression.CompressConfig(**config),
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with cli.user_errors():
        resolved = cli.resolved_flags(__name__, fit_flags.__name__)
        compression.compress_video(job_from_flags(), FLAGS.output, log=cli.log, flags=resolved)


if __name__ == "__main__":
    flags.mark_flag_as_required("output")
    app.run(main)
