"""Training losses and image measures (equations in :mod:`lrgen.train`'s docstring).

* :func:`per_image_loss`: GLO's ℓ, mean squared error or Laplacian-pyramid L1;
* :func:`feature_distance` and :func:`perceptual`: the encoder's scale-free perceptual term and
  its features φ (a trained DCGAN discriminator's, or VGG-19's);
* :func:`drop_pixels`: the encoder's inputs with a fraction of pixels missing;
* :func:`psnr_per_image`: the evaluation measure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

from lrgen import checkpoint, metrics
from lrgen.nets import networks
from lrgen.pixels import to_unit


def laplacian_pyramid(x: jax.Array, levels: int) -> list[jax.Array]:
    """Bands L^0 … L^{J−1} of (N, H, W, C): L^j = g_j − up(g_{j+1}), last band g_{J−1}."""
    bands, g = [], x
    for _ in range(levels - 1):
        n, h, w, c = g.shape
        down = g.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        up = jnp.repeat(jnp.repeat(down, 2, axis=1), 2, axis=2)
        bands.append(g - up)
        g = down
    bands.append(g)
    return bands


def per_image_loss(x_hat: jax.Array, x: jax.Array, kind: str) -> jax.Array:
    """(N,) reconstruction loss: ``l2`` mean squared error, or ``lap_l1`` (see module docstring)."""
    if kind == "l2":
        return jnp.mean(jnp.square(x_hat - x), axis=(1, 2, 3))
    levels = min(4, int(math.log2(x.shape[1])) - 1)
    diffs = laplacian_pyramid(x_hat - x, levels)  # the pyramid is linear
    return sum(jnp.mean(jnp.abs(b), axis=(1, 2, 3)) for b in diffs)


def psnr_per_image(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """PSNR (dB) of each image, both in [−1, 1], measured in [0, 1] with peak 1: the evaluation
    measure, :func:`lrgen.metrics.psnr` per frame with ``peak=1``."""
    return metrics.psnr(to_unit(x_hat), to_unit(x), per_frame=True, peak=1.0)


def drop_pixels(key: jax.Array, x: jax.Array, ratio: float) -> jax.Array:
    """Set a random fraction ``ratio`` of each image's pixels (all channels) to 0; (N, H, W, C)."""
    if ratio <= 0:
        return x
    keep = jax.random.uniform(key, x.shape[:-1] + (1,)) >= ratio
    return jnp.where(keep, x, 0.0)


def feature_distance(fa: list[jax.Array], fb: list[jax.Array]) -> jax.Array:
    """(1/L) Σ_l ‖a_l − b_l‖² / ‖b_l‖²: the relative distance of two lists of feature maps.

    The norms run over the whole batch; ‖b_l‖² (the target's) is a constant of the gradient.
    """
    ratios = [
        jnp.sum(jnp.square(a - b)) / (jnp.sum(jnp.square(jax.lax.stop_gradient(b))) + 1e-12) for a, b in zip(fa, fb)
    ]
    return sum(ratios) / len(fa)


def perceptual(cfg, channels: int) -> tuple[Callable | None, str]:
    """φ of an :class:`~lrgen.train.config.EncoderTrainConfig`: images in [−1, 1] → feature maps.

    VGG-19 at ``cfg.vgg_layer`` when ``cfg.vgg_weights`` is given, else the discriminator of
    ``cfg.discriminator`` (default: the ``cfg.generator`` workdir's, when it has one), else None
    (allowed only for a pixel-only loss).

    Returns:
      (φ or None, a description for the log).

    Raises:
      ValueError: features are needed but there are none, or they take other images.
    """
    if cfg.vgg_weights:
        weights = networks.load_vgg19(cfg.vgg_weights, cfg.vgg_layer)
        return (lambda x: [networks.vgg_features(weights, to_unit(x))]), f"VGG-19 {cfg.vgg_layer}"
    source = cfg.discriminator
    if not source and os.path.isdir(os.path.join(cfg.generator, "discriminator")):
        source = cfg.generator
    if not source:
        if cfg.pixel_weight < 1:
            raise ValueError(
                f"--pixel_weight={cfg.pixel_weight} needs perceptual features: --generator={cfg.generator} has no "
                "discriminator/; pass --discriminator=<dcgan workdir>, --vgg_weights=<npz>, or --pixel_weight=1"
            )
        return None, "none"
    disc, dv, meta = checkpoint.load_discriminator(source)
    if meta["image_size"] != cfg.data.image_size or meta["channels"] != channels:
        raise ValueError(
            f"--discriminator={source}: takes {meta['image_size']}×{meta['image_size']}×{meta['channels']} images, "
            f"this run has {cfg.data.image_size}×{cfg.data.image_size}×{channels}"
        )
    return (lambda x: disc.apply(dv, x, train=False)[1]), f"discriminator of {source}"
