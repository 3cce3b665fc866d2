"""Flags shared by the training binaries (``train_generator``, ``train_encoder``).

Every training binary has ``--workdir --dataset --data_dir --image_size --grayscale --z_dim
--num_steps --batch_size --checkpoint_every --seed``; this module defines them once and builds
the library's :class:`lrgen.train.DataConfig` and :class:`lrgen.train.LoopConfig` from them.
"""

from __future__ import annotations

from collections.abc import Callable

from absl import app, flags

from experiments import cli
from lrgen import data, train

flags.DEFINE_string(
    "workdir",
    None,
    "Training directory: checkpoints, samples, metrics, exported model. Resumed if it holds a checkpoint.",
)
flags.DEFINE_enum("dataset", "builtin_mnist", list(data.DATASETS), "Training images (builtin_mnist needs no download).")
flags.DEFINE_string(
    "data_dir", "", "Folder or file of the dataset (idx files, CIFAR-10 batches, image folder, .npy/.npz, video)."
)
flags.DEFINE_integer("image_size", 64, "Images are centre-cropped and resized (PIL bilinear) to this square size.")
flags.DEFINE_bool("grayscale", True, "One channel; --nograyscale trains on RGB.")
flags.DEFINE_integer("crop", 0, "Centre-crop side in pixels before resizing (0 = the shorter side).")
flags.DEFINE_integer("max_images", 0, "Use the first N images of the dataset (0 = all).")
flags.DEFINE_enum(
    "augment", "none", list(data.AUGMENTATIONS), "Training-batch augmentation: left-right flips, shifts by ≤ S/16 px."
)
flags.DEFINE_integer("num_holdout", 500, "Images put aside (fixed split) for evaluation, never trained on.")
flags.DEFINE_integer("z_dim", None, "Latent size k.")
flags.DEFINE_integer("num_steps", 2000, "Training steps.")
flags.DEFINE_integer("batch_size", 64, "Images per step.")
flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints and exports (and at the end).")
flags.DEFINE_integer("keep_checkpoints", 2, "How many of the latest checkpoints to keep.")
flags.DEFINE_integer("log_every", 50, "Steps between progress lines and metrics rows.")
flags.DEFINE_integer("sample_every", 500, "Steps between sample grids (and evaluations).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, data order and sampling.")

FLAGS = flags.FLAGS


def data_config() -> train.DataConfig:
    return train.DataConfig(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        image_size=FLAGS.image_size,
        grayscale=FLAGS.grayscale,
        crop=FLAGS.crop,
        max_images=FLAGS.max_images,
        num_holdout=FLAGS.num_holdout,
        augment=FLAGS.augment,
    )


def loop_config() -> train.LoopConfig:
    return train.LoopConfig(
        num_steps=FLAGS.num_steps,
        batch_size=FLAGS.batch_size,
        checkpoint_every=FLAGS.checkpoint_every,
        keep_checkpoints=FLAGS.keep_checkpoints,
        log_every=FLAGS.log_every,
        sample_every=FLAGS.sample_every,
        seed=FLAGS.seed,
    )


def make_main(train_fn: Callable, config_from_flags: Callable, module_name: str) -> Callable[[list[str]], None]:
    """The ``main`` of a training binary: ``train_fn(config_from_flags(), --workdir)``, one-line errors."""

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        with cli.user_errors():
            resolved = cli.resolved_flags(module_name, __name__)
            train_fn(config_from_flags(), FLAGS.workdir, log=cli.log, flags=resolved)

    return main
