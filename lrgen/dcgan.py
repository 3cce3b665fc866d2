"""Batch-norm DCGAN networks: generator, discriminator, encoder, and VGG-19 features.

These are the networks of the generative-compression line of work (a DCGAN trained first, its
generator then used as the decoder of an encoder; Radford et al., "Unsupervised Representation
Learning with Deep Convolutional GANs", ICLR 2016). For S×S images, n = log2(S/4) layers
(n = 4 at 64×64, g = base width)::

    generator      z (k) ─► Dense ─► 4×4×8g ─► BN ─► ReLU
                         ─► [ConvT 5×5 s2 ─► BN ─► ReLU] × (n − 1) ─► ConvT 5×5 s2 (+bias) ─► tanh
    discriminator  x ─► Conv 5×5 s2 (+bias) ─► LReLU(0.2) ─► [Conv 5×5 s2 ─► BN ─► LReLU] × (n − 1)
                     ─► Dense ─► logit
    encoder        x ─► [Conv 5×5 s2 ─► BN ─► LReLU(0.2)] × n ─► Dense ─► z / ‖z‖

Convolution conventions (written once, tested against XLA's dilated convolutions):

* ``conv5_s2``: y[m] = Σ_κ x[2m + κ − 2] · w[κ], κ = 0..4 (zero outside; output H/2), per axis;
* ``conv_transpose5_s2``: y[o] = Σ_{i,κ: o = 2i + κ − 2} x[i] · w[κ] (output 2H), i.e. PyTorch's
  ``ConvTranspose2d(5, stride=2, padding=2, output_padding=1)``.

Both are computed as *stride-1 3×3 convolutions* around a space-to-depth / depth-to-space
reshuffle, with the 3×3×4C kernel gathered from the 5×5 one (the sixth tap of each phase is
zero). That is the same sum in another order, and its gradients are stride-1 convolutions, which
XLA:CPU runs several times faster than the input-dilated ones autodiff would produce
(``DESIGN.md``). Kernels are stored HWIO, (5, 5, C_in, C_out).

Batch norm and its folded form. :class:`Norm` is batch norm (Ioffe & Szegedy, 2015) with its own
parameter names: in training y = γ (x − μ_B)/√(σ²_B + ε) + β and running averages
μ ← m μ + (1 − m) μ_B, σ² ← m σ² + (1 − m) σ²_B (m = 0.9, biased batch variance). In evaluation
(running statistics) this is the per-channel affine map y = a x + b with

    a = γ / √(σ² + ε),   b = β − a μ,

so :func:`fold_generator` turns a trained generator's ``{params, batch_stats}`` into plain
parameters of the same network built with ``folded=True``, whose ``Norm_i`` hold ``scale = a``
and ``bias = b``. That form is what recovery uses: ``model.apply({"params": p}, z)``, no mutable
collections, and joint recovery fine-tunes a and b like any other weight.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lrgen import io

_DN = ("NHWC", "HWIO", "NHWC")
_INIT = nn.initializers.normal(0.02)  # Radford et al. 2016: weights ~ N(0, 0.02²)
BN_MOMENTUM = 0.9
BN_EPS = 1e-5
LEAK = 0.2

# Phase tables: which 5×5 tap feeds offset d ∈ {−1, 0, 1} of a 3×3 kernel for output (or
# input) phase 0 and 1; index 5 is the appended zero tap. Derivation in the module docstring.
_UP_TAPS = np.array([[4, 2, 0], [5, 3, 1]], np.int32)  # transposed conv: κ = 2 − 2d (even), 3 − 2d (odd)
_DOWN_TAPS = np.array([[0, 2, 4], [1, 3, 5]], np.int32)  # conv: κ = 2d + q + 2 for input phase q


def num_layers(image_size: int) -> int:
    """n with image_size = 4·2^n; raises ValueError unless image_size is 4·2^n with n ≥ 2."""
    n = round(math.log2(max(image_size, 1) / 4))
    if n < 2 or 4 * 2**n != image_size:
        raise ValueError(f"--image_size={image_size}: allowed are 4·2^n with n ≥ 2 (16, 32, 64, 128, 256)")
    return n


def _pad_taps(w: jax.Array) -> jax.Array:
    return jnp.pad(w, ((0, 1), (0, 1), (0, 0), (0, 0)))  # 5×5 → 6×6, tap 5 = 0


def conv5_s2(x: jax.Array, w: jax.Array) -> jax.Array:
    """5×5 stride-2 convolution, y[m] = Σ_κ x[2m + κ − 2] w[κ] per axis.

    Args:
      x: (N, H, W, C_in), H and W even.
      w: (5, 5, C_in, C_out).

    Returns:
      (N, H/2, W/2, C_out).
    """
    n, h, wd, c = x.shape
    # space-to-depth: xs[n, j, l, (qh, qw, c)] = x[n, 2j + qh, 2l + qw, c]
    xs = x.reshape(n, h // 2, 2, wd // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2, wd // 2, 4 * c)
    taps = jnp.asarray(_DOWN_TAPS)
    k = _pad_taps(w)[taps[:, :, None, None], taps[None, None, :, :]]  # (qh, a, qw, b, C_in, C_out)
    k = k.transpose(1, 3, 0, 2, 4, 5).reshape(3, 3, 4 * c, w.shape[-1])
    return lax.conv_general_dilated(xs, k.astype(x.dtype), (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)


def conv_transpose5_s2(x: jax.Array, w: jax.Array) -> jax.Array:
    """5×5 stride-2 transposed convolution, y[o] = Σ_{o = 2i + κ − 2} x[i] w[κ] per axis.

    Args:
      x: (N, H, W, C_in).
      w: (5, 5, C_in, C_out).

    Returns:
      (N, 2H, 2W, C_out); PyTorch ``ConvTranspose2d(5, 2, padding=2, output_padding=1)``.
    """
    n, h, wd, _ = x.shape
    c_out = w.shape[-1]
    taps = jnp.asarray(_UP_TAPS)
    k = _pad_taps(w)[taps[:, :, None, None], taps[None, None, :, :]]  # (ph, a, pw, b, C_in, C_out)
    k = k.transpose(1, 3, 4, 0, 2, 5).reshape(3, 3, w.shape[2], 4 * c_out)
    y = lax.conv_general_dilated(x, k.astype(x.dtype), (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
    # depth-to-space: channel (ph, pw, c) of pixel (m, l) is output pixel (2m + ph, 2l + pw)
    return y.reshape(n, h, wd, 2, 2, c_out).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * wd, c_out)


def conv5_s2_reference(x: jax.Array, w: jax.Array) -> jax.Array:
    """Same as :func:`conv5_s2` with XLA's strided convolution (tests only)."""
    return lax.conv_general_dilated(x, w, (2, 2), ((2, 2), (2, 2)), dimension_numbers=_DN)


def conv_transpose5_s2_reference(x: jax.Array, w: jax.Array) -> jax.Array:
    """Same as :func:`conv_transpose5_s2` with XLA's input-dilated convolution (tests only)."""
    return lax.conv_general_dilated(
        x, jnp.flip(w, (0, 1)), (1, 1), ((2, 3), (2, 3)), lhs_dilation=(2, 2), dimension_numbers=_DN
    )


class Conv5(nn.Module):
    """5×5 stride-2 convolution (``transpose=False``, halves H, W) or transposed (doubles them)."""

    features: int
    transpose: bool = False
    use_bias: bool = False
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("kernel", _INIT, (5, 5, x.shape[-1], self.features), self.param_dtype)
        y = (conv_transpose5_s2 if self.transpose else conv5_s2)(x, w)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        return y


class Norm(nn.Module):
    """Batch norm over (N, H, W) per channel, or its folded per-channel affine map.

    Parameters ``scale`` (γ, or a when folded) and ``bias`` (β, or b); statistics ``mean`` and
    ``var`` in the ``batch_stats`` collection (absent when folded). See the module docstring.
    """

    folded: bool = False
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
        if self.folded:
            return x * scale + bias
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
        axes = tuple(range(x.ndim - 1))
        if train:
            mean = jnp.mean(x, axes)
            var = jnp.mean(jnp.square(x - mean), axes)
            if not self.is_initializing():
                ra_mean.value = BN_MOMENTUM * ra_mean.value + (1 - BN_MOMENTUM) * mean
                ra_var.value = BN_MOMENTUM * ra_var.value + (1 - BN_MOMENTUM) * var
        else:
            mean, var = ra_mean.value, ra_var.value
        return (x - mean) * (lax.rsqrt(var + BN_EPS) * scale) + bias


class DCGANGenerator(nn.Module):
    """Batch-norm DCGAN generator G: R^k → [−1, 1]^{S×S×C}, S = 4·2^len(features).

    Attributes:
      features: widths (8g, 4g, 2g, g) at 64×64: the 4×4 layer's first, one per layer.
      channels: output channels C.
      folded: batch norm replaced by its folded affine form (see :func:`fold_generator`).

    Call: ``z`` (..., k) → (..., S, S, C); ``train=True`` normalises with batch statistics and
    needs ``mutable=["batch_stats"]``.
    """

    features: Sequence[int] = (512, 256, 128, 64)
    channels: int = 1
    folded: bool = False
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        lead = z.shape[:-1]
        h = z.reshape(-1, z.shape[-1])
        f0 = self.features[0]
        h = nn.Dense(16 * f0, use_bias=False, kernel_init=_INIT, param_dtype=self.param_dtype, name="Dense_0")(h)
        h = h.reshape(-1, 4, 4, f0)
        h = nn.relu(Norm(self.folded, self.param_dtype, name="Norm_0")(h, train))
        outs = (*self.features[1:], self.channels)
        for i, width in enumerate(outs, start=1):
            last = i == len(outs)
            h = Conv5(width, transpose=True, use_bias=last, param_dtype=self.param_dtype, name=f"ConvT_{i}")(h)
            h = jnp.tanh(h) if last else nn.relu(Norm(self.folded, self.param_dtype, name=f"Norm_{i}")(h, train))
        return h.reshape(*lead, *h.shape[1:])


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
        logit = nn.Dense(1, kernel_init=_INIT, name="Dense_out")(h.reshape(h.shape[0], -1))
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
        e = nn.Dense(self.z_dim, kernel_init=_INIT, name="Dense_out")(h.reshape(h.shape[0], -1))
        return e * lax.rsqrt(jnp.sum(jnp.square(e), -1, keepdims=True) + 1e-12)


def widths(image_size: int, base: int, *, up: bool) -> tuple[int, ...]:
    """Per-layer widths for ``image_size``: (base·2^{n−1}, …, base) if ``up`` else reversed."""
    n = num_layers(image_size)
    w = tuple(base * 2 ** (n - 1 - i) for i in range(n))
    return w if up else w[::-1]


def fold_generator(variables: dict) -> dict:
    """Trained ``{params, batch_stats}`` of a :class:`DCGANGenerator` → params of its folded form.

    Each ``Norm_i`` becomes a = γ/√(σ² + ε), b = β − a μ (running statistics); every other
    parameter is copied. The folded network equals the original in evaluation mode.
    """
    params = dict(variables["params"])
    stats = variables["batch_stats"]
    for name, norm in stats.items():
        gamma, beta = params[name]["scale"], params[name]["bias"]
        a = gamma * lax.rsqrt(norm["var"] + BN_EPS)
        params[name] = {"scale": a, "bias": beta - a * norm["mean"]}
    return params


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
        names = [n for n, _ in lrgen.dcgan.VGG19_LAYERS if n != "pool"]  # in order
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
                f"--vgg_weights={path}: missing {name}/kernel or {name}/bias (layout: see lrgen.dcgan.load_vgg19)"
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
