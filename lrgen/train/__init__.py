"""Training generators (GLO, DCGAN) and encoders: one loop, pure jitted steps, orbax checkpoints.

Methods (equations in each module's docstring)
----------------------------------------------
* :mod:`lrgen.train.glo` — GLO (Bojanowski et al., ICML 2018): one code per image on the unit
  sphere, learned with the generator; ℓ the mean squared error (``l2``) or the Laplacian-pyramid
  L1 distance (``lap_l1``, :mod:`lrgen.train.losses`); the codes take lazy Adam steps
  (:mod:`lrgen.train.lazy_adam`).
* :mod:`lrgen.train.dcgan` — DCGAN (Radford et al., ICLR 2016), non-saturating loss, z uniform
  on the unit sphere.
* :mod:`lrgen.train.encoder` — an encoder E for a trained generator, pixel and perceptual loss.

Each method holds a typed state (a ``flax.struct.PyTreeNode``: step, parameters, batch
statistics, optimiser states, GLO codes, data-order position) and a pure
``step(state, indices, images) -> (state, metrics)``.

The loop (big_vision's shape; :mod:`lrgen.train.loop` on :func:`lrgen.driver.run`)
---------------------------------------------------------------------------------
The step is jitted once, its state donated, and run by the host loop recovery also runs on;
randomness is ``jax.random.fold_in(key(seed), step)``; the batch of step s is a function of
(seed, s) (:class:`lrgen.data.Batches`). So a run killed at any moment and restarted from its
latest checkpoint recomputes exactly the same steps and ends with bitwise the same parameters
on CPU. A non-finite loss stops the run before it is checkpointed.

Workdir (:mod:`lrgen.train.workdir`)::

    config.json        every setting, the flags, package versions, devices
    checkpoints/       orbax checkpoints (the last ``keep_checkpoints``)
    metrics.jsonl      one JSON object per log step (losses, steps/s)
    samples/           sample grids (GLO and encoder: reconstructions too) every ``sample_every``
    curves.png         loss curves
    generator/         the generator for ``experiments.recover --generator=<workdir>`` (BN folded)
    discriminator/     DCGAN: the discriminator (perceptual features for the encoder)
    encoder/           encoder runs: the encoder (``--encoder=<workdir>``)
    result.json        final metrics and throughput (written last)

Example (one step of each on tiny data, as ``tests/test_train.py`` does)::

    cfg = GeneratorTrainConfig(method="glo", data=DataConfig(image_size=32), loop=LoopConfig(num_steps=100))
    train_generator(cfg, "runs/train/glo")      # then: experiments.recover --generator=runs/train/glo
"""

from lrgen.checkpoint import load_discriminator
from lrgen.train.config import (
    GLO_LOSSES,
    METHODS,
    DataConfig,
    EncoderTrainConfig,
    GeneratorTrainConfig,
    LoopConfig,
)
from lrgen.train.encoder import train_encoder
from lrgen.train.generator import train_generator
from lrgen.train.lazy_adam import lazy_adam
from lrgen.train.losses import drop_pixels, laplacian_pyramid, per_image_loss, psnr_per_image
from lrgen.train.trainable import he_scaled

__all__ = [
    "GLO_LOSSES",
    "METHODS",
    "DataConfig",
    "EncoderTrainConfig",
    "GeneratorTrainConfig",
    "LoopConfig",
    "drop_pixels",
    "he_scaled",
    "laplacian_pyramid",
    "lazy_adam",
    "load_discriminator",
    "per_image_loss",
    "psnr_per_image",
    "train_encoder",
    "train_generator",
]
