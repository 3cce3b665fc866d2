r"""Train a generator with GLO or DCGAN; the workdir then serves ``experiments.recover``.

    python -m experiments.train_generator --flagfile=experiments/configs/glo_mnist64.flags --workdir=runs/train/glo
    python -m experiments.recover --flagfile=experiments/configs/rot_mnist_missing80_joint.flags \
        --generator=runs/train/glo --workdir=runs/rot_mnist_glo

Rerunning the same command resumes from the newest checkpoint in --workdir. A wrong flag or input
ends the run with one line naming it and exit status 1, before anything is written. See
``lrgen.train`` for the methods, the loss equations and the workdir's contents.
"""

from __future__ import annotations

from absl import app, flags

from experiments import _train_flags
from lrgen import models, train

flags.DEFINE_enum("method", "glo", list(train.METHODS), "glo: Generative Latent Optimisation; dcgan: adversarial.")
flags.DEFINE_enum(
    "arch",
    "gmlr",
    list(models.ARCHS),
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

FLAGS = flags.FLAGS


def config_from_flags() -> train.GeneratorTrainConfig:
    return train.GeneratorTrainConfig(
        method=FLAGS.method,
        arch=FLAGS.arch,
        z_dim=FLAGS.z_dim,
        width=FLAGS.width,
        learning_rate=FLAGS.learning_rate,
        beta1=FLAGS.beta1,
        code_learning_rate=FLAGS.code_learning_rate,
        glo_loss=FLAGS.glo_loss,
        label_smoothing=FLAGS.label_smoothing,
        g_steps=FLAGS.g_steps,
        instance_noise=FLAGS.instance_noise,
        data=_train_flags.data_config(),
        loop=_train_flags.loop_config(),
    )


main = _train_flags.make_main(train.train_generator, config_from_flags, __name__)

if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
