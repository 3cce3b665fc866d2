r"""Train an encoder for a trained generator (its decoder), frozen or fine-tuned.

    python -m experiments.train_encoder --flagfile=experiments/configs/encoder_mnist64.flags \
        --generator=runs/train/glo --discriminator=runs/train/dcgan --workdir=runs/train/encoder
    python -m experiments.recover --flagfile=experiments/configs/rot_mnist_missing80_joint.flags \
        --generator=runs/train/glo --encoder=runs/train/encoder --z_init=encoder --workdir=runs/rot_mnist_enc

Loss w·pixel MSE + (1 − w)·perceptual distance, with the DCGAN discriminator's features (default:
the --generator workdir's, or --discriminator) or VGG-19 features (--vgg_weights, layout in
``lrgen.nets.networks.load_vgg19``). Rerunning resumes from the newest checkpoint. See ``lrgen.train``.
"""

from __future__ import annotations

from absl import app, flags

from experiments import _train_flags
from lrgen import train

_train_flags.define_encoder_flags()
flags.adopt_module_key_flags(_train_flags)

main = _train_flags.make_main(train.train_encoder, train.EncoderTrainConfig, __name__)

if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
