"""Flags shared by the binaries that fit latent codes to a video (interpolate, compress).

Names, defaults and meanings are those of ``experiments.recover``, so a flagfile written for
one binary reads the same in another. Importing this module defines the flags once.
"""

from __future__ import annotations

from absl import flags

from lrgen import interpolate, lowrank, recover

FLAGS = flags.FLAGS

# Data.
flags.DEFINE_string("video", "", "Frame folder, video file (mp4/avi/gif), .npy/.npz array, or builtin:<name>.")
flags.DEFINE_integer("image_size", 64, "Frames are center-cropped and resized to this square size (32, 64 or 128).")
flags.DEFINE_integer(
    "num_frames", None, "Use the first T frames, which must exist (0 = all; default: all frames, at most 32)."
)
flags.DEFINE_bool("grayscale", True, "Convert frames to one channel (--nograyscale keeps RGB).")
# Model and codes.
flags.DEFINE_string(
    "generator", "", "lrgen generator dir / training workdir, or an .npz of the original PyTorch weights."
)
# Encoder starts are compress's --encoder; recover's own --z_init=encoder is not offered here.
flags.DEFINE_enum("z_init", "fixed_z", [z for z in recover.Z_INITS if z != "encoder"], "Initial codes.")
flags.DEFINE_integer("z_seed", 100, "Seed of fixed_z / fixed_seed codes.")
flags.DEFINE_integer("seed", 0, "Seed of random codes and random generator weights.")
flags.DEFINE_integer("rank", 2, "Rank r of the code matrix Z (0 = unconstrained).")
flags.DEFINE_enum("rank_type", "pca", list(lowrank.RANK_TYPES), "svd: top-r SVD; pca: mean + top r−1 components.")
flags.DEFINE_enum(
    "method",
    interpolate.AUTO,
    [*interpolate.METHODS, interpolate.AUTO],
    "Interpolation of latent coordinates between frames; auto: the one that best predicts held-out observed frames.",
)
# Optimisation.
flags.DEFINE_float("similarity_weight", 0.0, "1 − λ: weight of the temporal smoothness term, in [0, 1].")
flags.DEFINE_integer("iterations", 2000, "Iterations of the latent fit.")
flags.DEFINE_float("z_step", None, "α, code step size (default 200·T/256, T = number of fitted frames).")
flags.DEFINE_integer("log_every", 100, "Iterations between progress lines and PSNR evaluations.")
flags.DEFINE_enum(
    "loop", "auto", list(recover.LOOPS), "python: jitted step from Python; scan: jitted loop; auto: python on CPU."
)

FIT_FLAGS = (
    "image_size",
    "num_frames",
    "grayscale",
    "generator",
    "z_init",
    "z_seed",
    "seed",
    "rank",
    "rank_type",
    "similarity_weight",
    "iterations",
    "z_step",
    "log_every",
    "loop",
)


def check_common() -> None:
    """Checks that need no data; the rest happen in the library."""
    if FLAGS.image_size not in (32, 64, 128):
        raise ValueError(f"--image_size={FLAGS.image_size}: allowed values are 32, 64, 128")
    if FLAGS.num_frames is not None and FLAGS.num_frames < 0:
        raise ValueError(f"--num_frames={FLAGS.num_frames}: must be ≥ 0 (0 = all frames)")
