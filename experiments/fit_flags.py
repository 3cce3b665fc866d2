"""Flags shared by the binaries that fit latent codes to a video (interpolate, compress).

Defined through the groups of :mod:`experiments.flags` (names, meanings and checks those of
``experiments.recover``, so a flagfile written for one binary reads the same in another), as
this module's flags. Importing this module defines them once.
"""

from __future__ import annotations

from absl import flags

from experiments import flags as groups
from lrgen import config, latent_paths, selection

FLAGS = flags.FLAGS

groups.define_video(__name__, video="")
# Encoder starts are compress's --encoder; recover's own --z_init=encoder is not offered here.
groups.define_model(__name__, z_inits=config.Z_INITS, seed_help="Seed of random codes and random generator weights.")
flags.DEFINE_enum(
    "method",
    selection.AUTO,
    [*latent_paths.METHODS, selection.AUTO],
    "Interpolation of latent coordinates between frames; auto: the one that best predicts held-out observed frames.",
)
groups.define_fit(__name__)

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

check_common = groups.check_video  # checks that need no data; the rest happen in the library
