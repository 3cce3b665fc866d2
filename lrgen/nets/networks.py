"""Networks other than generators: the DCGAN discriminator, the encoder, VGG-19 features.

For S×S images, n = log2(S/4) layers (n = 4 at 64×64, g = base width), as in the DCGAN of
Radford et al., "Unsupervised Representation Learning with Deep Convolutional GANs", ICLR 2016::

    discriminator  x ─► Conv 5×5 s2 (+bias) ─► LReLU(0.2) ─► [Conv 5×5 s2 ─► BN ─► LReLU] × (n − 1)
                     ─► Dense ─► logit
    encoder        x ─► [Conv 5×5 s2 ─► BN ─► LReLU(0.2)] × n ─► Dense ─► z / ‖z‖

The 5×5 stride-2 convolutions and batch norm are those of :mod:`lrgen.nets.layers`. VGG-19
features (read from a local .npz, never downloaded) give a perceptual loss for encoder training.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lrgen import io, sphere
from lrgen.nets.layers import _DN, INIT_DCGAN, Conv5, Norm

LEAK = 0.2


class Discriminator(nn.Module):
    """DCGAN discriminator D: [−1, 1]^{S×S×C} → logit (Radford et al. 2016).

    Attributes:
      features: widths (g, 2g, 4g, 8g) at 64×64, one per 5×5 stride-2 convolution.

    Call: ``x`` (N, S, S, C) → (logits (N,), [block outputs after each leaky ReLU]); the block
    outputs are the perceptual features of :mod:`lrgen.train`'s encoder loss.
    """

    features: Sequence[int] = (64, 128, 256, 512)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, list[jax.Array]]:
        feats = []
        h = x
        for i, width in enumerate(self.features):
            h = Conv5(width, use_bias=i == 0, name=f"Conv_{i}")(h)
            if i > 0:
                h = Norm(name=f"Norm_{i}")(h, train)
            h = nn.leaky_relu(h, LEAK)
            feats.append(h)
        logit = nn.Dense(1, kernel_init=INIT_DCGAN, name="Dense_out")(h.reshape(h.shape[0], -1))
        return logit[:, 0], feats


class Encoder(nn.Module):
    """Encoder E: [−1, 1]^{S×S×C} → unit sphere in R^k.

    Attributes:
      features: widths (g, 2g, 4g, 8g) at 64×64, one per 5×5 stride-2 convolution.
      z_dim: k.

    Call: ``x`` (N, S, S, C) → z (N, k) with ‖z_n‖ = 1, the domain the generators here are
    trained on (GLO codes are projected onto it; DCGAN draws z uniformly on it).
    """

    features: Sequence[int] = (64, 128, 256, 512)
    z_dim: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h = x
        for i, width in enumerate(self.features):
            h = Conv5(width, name=f"Conv_{i}")(h)
            h = nn.leaky_relu(Norm(name=f"Norm_{i}")(h, train), LEAK)
        e = nn.Dense(self.z_dim, kernel_init=INIT_DCGAN, name="Dense_out")(h.reshape(h.shape[0], -1))
        return sphere.normalize(e)


# --------------------------------------------------------------------------- VGG-19 features
VGG19_LAYERS = (
    ("conv1_1", 64), ("conv1_2", 64), "pool",
    ("conv2_1", 128), ("conv2_2", 128), "pool",
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), "pool",
    ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), ("conv4_4", 512), "pool",
    ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), ("conv5_4", 512),
)  # fmt: skip
VGG_LAYER_NAMES = tuple("relu" + layer[0][4:] for layer in VGG19_LAYERS if layer != "pool")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def load_vgg19(path: str | os.PathLike, layer: str) -> dict:
    """Read VGG-19 convolution weights up to ``layer`` from an .npz (no download, ever).

    Layout: one entry per convolution, ``conv{b}_{i}/kernel`` of shape (3, 3, C_in, C_out) (HWIO)
    and ``conv{b}_{i}/bias`` of shape (C_out,), for the 16 convolutions conv1_1 … conv5_4; the
    network expects RGB input in [0, 1] normalised with the ImageNet mean and standard deviation
    (torchvision's convention). From torchvision's ``vgg19`` state dict (``features.{j}.weight``
    in OIHW) the file is written with::

        convs = [j for j, m in enumerate(vgg.features) if isinstance(m, torch.nn.Conv2d)]
        names = [n for n, _ in lrgen.nets.networks.VGG19_LAYERS if n != "pool"]  # in order
        np.savez(path, **{f"{n}/kernel": sd[f"features.{j}.weight"].permute(2, 3, 1, 0).numpy()
                          for n, j in zip(names, convs)},
                       **{f"{n}/bias": sd[f"features.{j}.bias"].numpy() for n, j in zip(names, convs)})

    Widths are read from the file, so smaller test networks of the same layout load too.

    Args:
      path: the .npz.
      layer: ``relu{b}_{i}`` whose activations are the features (e.g. ``relu2_2``).

    Returns:
      ``{name: {"kernel", "bias"}}`` for the convolutions up to ``layer``.

    Raises:
      ValueError: naming ``--vgg_weights`` when the file is unreadable or an entry is missing or
        has the wrong shape, and ``--vgg_layer`` when the layer is unknown.
    """
    if layer not in VGG_LAYER_NAMES:
        raise ValueError(f"--vgg_layer={layer}: allowed values are {', '.join(VGG_LAYER_NAMES)}")
    data = io.read_array_file(os.fspath(path), f"--vgg_weights={path}")
    if not isinstance(data, dict):
        raise ValueError(f"--vgg_weights={path}: holds a single array; expected an .npz of named weights")
    try:
        data = {k: np.asarray(v, np.float32) for k, v in data.items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"--vgg_weights={path}: holds non-numeric arrays ({' '.join(str(e).split())})") from None
    weights, c_in = {}, 3
    for item in VGG19_LAYERS:
        if item == "pool":
            continue
        name = item[0]
        kernel, bias = data.get(f"{name}/kernel"), data.get(f"{name}/bias")
        if kernel is None or bias is None:
            raise ValueError(
                f"--vgg_weights={path}: missing {name}/kernel or {name}/bias "
                "(layout: see lrgen.nets.networks.load_vgg19)"
            )
        if kernel.ndim != 4 or kernel.shape[:3] != (3, 3, c_in) or bias.shape != (kernel.shape[3],):
            raise ValueError(
                f"--vgg_weights={path}: {name}/kernel has shape {kernel.shape} and bias {bias.shape}; "
                f"expected (3, 3, {c_in}, C) HWIO and (C,)"
            )
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            raise ValueError(f"--vgg_weights={path}: {name} holds NaN or infinite values; allowed are finite weights")
        weights[name] = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
        c_in = kernel.shape[3]
        if "relu" + name[4:] == layer:
            return weights
    raise AssertionError("unreachable")


def vgg_features(weights: dict, x: jax.Array) -> jax.Array:
    """VGG-19 activations at the last layer in ``weights``; ``x`` (N, S, S, C) in [0, 1]."""
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    h = (x - IMAGENET_MEAN) / IMAGENET_STD
    names = list(weights)
    for item in VGG19_LAYERS:
        if item == "pool":
            n, hh, ww, c = h.shape
            h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
            continue
        w = weights[item[0]]
        h = lax.conv_general_dilated(h, w["kernel"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
        h = nn.relu(h + w["bias"])
        if item[0] == names[-1]:
            return h
    return h


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """Architecture of an :class:`Encoder` and the generator it was trained for.

    Attributes:
      z_dim: k, the generator's latent size.
      features: conv widths.
      channels, image_size: the frames it takes.
    """

    z_dim: int
    features: tuple[int, ...]
    channels: int
    image_size: int

    def to_dict(self) -> dict:
        return {
            "z_dim": self.z_dim,
            "features": list(self.features),
            "channels": self.channels,
            "image_size": self.image_size,
        }

    @classmethod
    def from_dict(cls, d: dict) -> EncoderSpec:
        return cls(int(d["z_dim"]), tuple(int(f) for f in d["features"]), int(d["channels"]), int(d["image_size"]))

    def build(self) -> Encoder:
        return Encoder(features=self.features, z_dim=self.z_dim)

    def init(self, key: jax.Array) -> dict:
        x = jnp.zeros((1, self.image_size, self.image_size, self.channels))
        return dict(jax.jit(self.build().init)(key, x))
