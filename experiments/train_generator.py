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
from lrgen import train

_train_flags.define_generator_flags()
flags.adopt_module_key_flags(_train_flags)

main = _train_flags.make_main(train.train_generator, train.GeneratorTrainConfig, __name__)

if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
