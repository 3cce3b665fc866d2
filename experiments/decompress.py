r"""Decode a video compressed by ``experiments.compress``.

    python -m experiments.decompress --input=runs/seq1.lrgv --output=runs/seq1.npy

``--output`` ends in .npy (float32 frames (N, H, W, C) in [0, 1], exactly the decoder's output),
.npz (the same under ``frames``), .mp4 or .gif. The generator is the one the file names
(``--generator`` overrides the stored path; its id must match). ``--factor`` f > 1 decodes
(T − 1)·f + 1 frames, interpolating codes between frames too. The file is validated in full
first: a truncated, altered or foreign file, or the wrong generator, ends the run with one line
and exit status 1, and nothing is written.
"""

from __future__ import annotations

from absl import app, flags

from experiments import cli
from lrgen import compression

FLAGS = flags.FLAGS

flags.DEFINE_string("input", None, "Compressed video (from experiments.compress).")
flags.DEFINE_string("output", None, "Decoded frames: .npy, .npz, .mp4 or .gif.")
flags.DEFINE_string("generator", "", "Generator to decode with (default: the path stored in the file).")
flags.DEFINE_integer("factor", 1, "Decode (T − 1)·factor + 1 frames (1 = the original frame times).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with cli.user_errors():
        compression.decompress_file(
            FLAGS.input, FLAGS.output, generator=FLAGS.generator, factor=FLAGS.factor, log=cli.log
        )


if __name__ == "__main__":
    flags.mark_flag_as_required("input")
    flags.mark_flag_as_required("output")
    app.run(main)
