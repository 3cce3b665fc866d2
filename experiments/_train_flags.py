"""Flags of the training binaries (``train_generator``, ``train_encoder``), each defined once.

Importing this module defines the flags every training binary has (workdir, data, loop, z_dim);
:func:`define_generator_flags` and :func:`define_encoder_flags` add each binary's own. Every flag
is named like the field of :mod:`lrgen.train`'s config it sets, so :func:`config` builds a config
from whichever flags are defined.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from absl import app, flags

from experiments import cli
from lrgen import data, train
from lrgen.nets import generators, networks

FLAGS = flags.FLAGS

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


def define_generator_flags() -> None:
    """The flags of ``experiments.train_generator`` (:class:`lrgen.train.GeneratorTrainConfig`)."""
    flags.DEFINE_enum("method", "glo", list(train.METHODS), "glo: Generative Latent Optimisation; dcgan: adversarial.")
    flags.DEFINE_enum(
        "arch",
        "gmlr",
        list(generators.ARCHS),
        "gmlr: the original reconstruction work's generator; dcgan_bn: batch-norm DCGAN.",
    )
    flags.DEFINE_integer("width", 64, "dcgan_bn: base width g (layers 8g…g); also the discriminator's (g…8g).")
    flags.DEFINE_float("learning_rate", None, "Adam learning rate of the weights (default 3e-4 glo, 2e-4 dcgan).")
    flags.DEFINE_float("beta1", None, "Adam β1 of the weights (default 0.9 glo, 0.5 dcgan).")
    flags.DEFINE_float("code_learning_rate", 0.01, "glo: Adam learning rate of the per-image codes.")
    flags.DEFINE_float("label_smoothing", 0.0, "dcgan: one-sided label smoothing s (real images labelled 1 − s).")
    flags.DEFINE_integer("g_steps", 2, "dcgan: generator updates per discriminator update.")
    flags.DEFINE_float(
        "instance_noise", 0.0, "dcgan: σ₀ of Gaussian noise on the discriminator's inputs, annealed linearly to 0."
    )
    flags.DEFINE_enum(
        "glo_loss", "l2", list(train.GLO_LOSSES), "glo: l2 (mean squared error) or lap_l1 (Laplacian-pyramid L1)."
    )


def define_encoder_flags() -> None:
    """The flags of ``experiments.train_encoder`` (:class:`lrgen.train.EncoderTrainConfig`)."""
    flags.DEFINE_string("generator", "", "The decoder: generator directory, training workdir or original .npz.")
    flags.DEFINE_bool("finetune_generator", False, "Train the generator too (exported to <workdir>/generator).")
    flags.DEFINE_float("pixel_weight", 0.75, "w: loss = w·pixel MSE + (1 − w)·perceptual distance.")
    flags.DEFINE_string(
        "discriminator",
        "",
        "DCGAN training workdir whose discriminator gives the perceptual features (default: --generator's).",
    )
    flags.DEFINE_string(
        "vgg_weights",
        "",
        "VGG-19 weights .npz for perceptual features instead (layout: lrgen.nets.networks.load_vgg19).",
    )
    flags.DEFINE_enum("vgg_layer", "relu2_2", list(networks.VGG_LAYER_NAMES), "VGG-19 feature layer.")
    flags.DEFINE_integer("width", 64, "Encoder base width g (layers g…8g).")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of the encoder.")
    flags.DEFINE_float("generator_learning_rate", 1e-4, "Adam learning rate of the generator (--finetune_generator).")
    flags.DEFINE_float(
        "input_missing_ratio", 0.0, "Drop this fraction of each input's pixels (set to 0) in training, in [0, 1)."
    )


def config(cls: type) -> object:
    """``cls`` (a training config) from the flags named like its fields; data and loop from theirs."""
    nested = {"data": train.DataConfig, "loop": train.LoopConfig}
    values = {
        f.name: config(nested[f.name]) if f.name in nested else FLAGS[f.name].value
        for f in dataclasses.fields(cls)
        if f.name in nested or f.name in FLAGS
    }
    return cls(**values)


def make_main(train_fn: Callable, config_cls: type, module_name: str) -> Callable[[list[str]], None]:
    """The ``main`` of a training binary: ``train_fn(config(config_cls), --workdir)``, one-line errors."""

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        with cli.user_errors():
            resolved = cli.resolved_flags(module_name, __name__)
            train_fn(config(config_cls), FLAGS.workdir, log=cli.log, flags=resolved)

    return main
