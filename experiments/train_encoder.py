r"""Train an encoder for a trained generator (its decoder), frozen or fine-tuned.

    python -m experiments.train_encoder --flagfile=experiments/configs/encoder_mnist64.flags \
        --generator=runs/train/glo --discriminator=runs/train/dcgan --workdir=runs/train/encoder
    python -m experiments.recover --flagfile=experiments/configs/rot_mnist_missing80_joint.flags \
        --generator=runs/train/glo --encoder=runs/train/encoder --z_init=encoder --workdir=runs/rot_mnist_enc

Loss w·pixel MSE + (1 − w)·perceptual distance, with the DCGAN discriminator's features (default:
the --generator workdir's, or --discriminator) or VGG-19 features (--vgg_weights, layout in
``lrgen.dcgan.load_vgg19``). Rerunning resumes from the newest checkpoint. See ``lrgen.train``.
"""

from __future__ import annotations

from absl import app, flags

from experiments import _train_flags
from lrgen import dcgan, train

flags.DEFINE_string("generator", "", "The decoder: generator directory, training workdir or original .npz.")
flags.DEFINE_bool("finetune_generator", False, "Train the generator too (exported to <workdir>/generator).")
flags.DEFINE_float("pixel_weight", 0.75, "w: loss = w·pixel MSE + (1 − w)·perceptual distance.")
flags.DEFINE_string(
    "discriminator",
    "",
    "DCGAN training workdir whose discriminator gives the perceptual features (default: --generator's).",
)
flags.DEFINE_string(
    "vgg_weights", "", "VGG-19 weights .npz for perceptual features instead (layout: lrgen.dcgan.load_vgg19)."
)
flags.DEFINE_enum("vgg_layer", "relu2_2", list(dcgan.VGG_LAYER_NAMES), "VGG-19 feature layer.")
flags.DEFINE_integer("width", 64, "Encoder base width g (layers g…8g).")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of the encoder.")
flags.DEFINE_float("generator_learning_rate", 1e-4, "Adam learning rate of the generator (--finetune_generator).")
flags.DEFINE_float(
    "input_missing_ratio", 0.0, "Drop this fraction of each input's pixels (set to 0) in training, in [0, 1)."
)

FLAGS = flags.FLAGS


def config_from_flags() -> train.EncoderTrainConfig:
    return train.EncoderTrainConfig(
        generator=FLAGS.generator,
        finetune_generator=FLAGS.finetune_generator,
        pixel_weight=FLAGS.pixel_weight,
        discriminator=FLAGS.discriminator,
        vgg_weights=FLAGS.vgg_weights,
        vgg_layer=FLAGS.vgg_layer,
        z_dim=FLAGS.z_dim,
        width=FLAGS.width,
        learning_rate=FLAGS.learning_rate,
        generator_learning_rate=FLAGS.generator_learning_rate,
        input_missing_ratio=FLAGS.input_missing_ratio,
        data=_train_flags.data_config(),
        loop=_train_flags.loop_config(),
    )


main = _train_flags.make_main(train.train_encoder, config_from_flags, __name__)

if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
