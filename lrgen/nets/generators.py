"""Generators G: R^k → [−1, 1]^{S×S×C}, their specs, initialisation and weight loading.

``gmlr``, the generator of Hyder & Asif (2019), exact to PyTorch ``ConvTranspose2d``
(64×64, grayscale original, k = 32)::

    z (k) ─► ConvT 4×4 s1 p0 ─► 4×4×256 ─► ReLU
          ─► ConvT 4×4 s2 p1 ─► 8×8×128 ─► ReLU
          ─► ConvT 4×4 s2 p1 ─► 16×16×64 ─► ReLU
          ─► ConvT 4×4 s2 p1 ─► 32×32×32 ─► ReLU
          ─► ConvT 4×4 s2 p1 ─► 64×64×C  ─► tanh

No bias and no batch norm. ``features`` sets the widths; one width fewer gives 32×32 output,
one more gives 128×128. Parameters live under ``ConvTranspose_{0..L}/kernel`` in PyTorch's
layout, so the original state dict loads as it is (:func:`params_from_torch_state_dict`).

``dcgan_bn``, the batch-norm DCGAN generator (Radford et al., ICLR 2016) of the
generative-compression line of work, for S×S images with n = log2(S/4) layers (g = base width)::

    z (k) ─► Dense ─► 4×4×8g ─► BN ─► ReLU
          ─► [ConvT 5×5 s2 ─► BN ─► ReLU] × (n − 1) ─► ConvT 5×5 s2 (+bias) ─► tanh

:func:`fold_generator` turns a trained one's ``{params, batch_stats}`` into plain parameters of
the same network built with ``folded=True`` (each batch norm replaced by its affine map
y = a x + b, see :mod:`lrgen.nets.layers`). That form is what recovery uses:
``model.apply({"params": p}, z)``, no mutable collections, and joint recovery fine-tunes a and b
like any other weight. The layers themselves (exact transposed convolutions and their fast
formulations) are in :mod:`lrgen.nets.layers`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import zipfile
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lrgen.nets.layers import BN_EPS, INIT_DCGAN, Conv5, ConvTranspose, Norm

Params = Any
ARCHS = ("gmlr", "dcgan_bn")  # GeneratorSpec.arch: the original work's generator, the BN DCGAN one


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
    """Architecture of a :class:`Generator`: everything needed to rebuild it from a checkpoint.

    Attributes:
      z_dim: latent size k.
      features: widths of the hidden layers, from the 4×4 layer up; the output is
        4·2^len(features) pixels square.
      channels: 1 (grayscale) or 3 (RGB).
      arch: ``"gmlr"`` (:class:`Generator`, the original work's) or ``"dcgan_bn"``
        (:class:`DCGANGenerator` in its folded inference form: dense to 4×4, then 5×5
        stride-2 transposed convolutions; batch norm folded into per-channel scale and bias).
    """

    z_dim: int = 32
    features: tuple[int, ...] = (256, 128, 64, 32)
    channels: int = 1
    arch: str = "gmlr"

    @property
    def image_size(self) -> int:
        return 4 * 2 ** len(self.features)

    def to_dict(self) -> dict:
        return {"z_dim": self.z_dim, "features": list(self.features), "channels": self.channels, "arch": self.arch}

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorSpec:
        """Inverse of :meth:`to_dict`; ``arch`` defaults to ``"gmlr"`` (checkpoints written before it existed)."""
        arch = str(d.get("arch", "gmlr"))
        if arch not in ARCHS:
            raise ValueError(f"arch={arch!r}: allowed values are {', '.join(ARCHS)}")
        return cls(int(d["z_dim"]), tuple(int(f) for f in d["features"]), int(d["channels"]), arch)

    @classmethod
    def default(cls, *, image_size: int, channels: int, z_dim: int | None = None) -> GeneratorSpec:
        """The original widths: gray k=32 256/128/64/32, RGB k=256 512/256/128/64.

        For 32×32 the last width is dropped, for 128×128 half the last width is appended.
        """
        if image_size not in (32, 64, 128):
            raise ValueError(f"image_size={image_size} is not supported; allowed: 32, 64, 128")
        if channels not in (1, 3):
            raise ValueError(f"channels={channels}; allowed: 1 or 3")
        base = (256, 128, 64, 32) if channels == 1 else (512, 256, 128, 64)
        if image_size == 32:
            base = base[:3]
        elif image_size == 128:
            base = base + (base[-1] // 2,)
        k = z_dim if z_dim is not None else (32 if channels == 1 else 256)
        return cls(k, base, channels)


class Generator(nn.Module):
    """The generator G: R^k → [−1, 1]^{S×S×C} of Hyder & Asif (2019).

    Attributes:
      features: hidden widths (see :class:`GeneratorSpec`).
      channels: output channels C.
      param_dtype: parameter dtype (float64 under ``jax.enable_x64`` for references).

    Call: ``z`` of shape (..., k) → images (..., S, S, C) in [−1, 1], S = 4·2^len(features).
    """

    features: Sequence[int] = (256, 128, 64, 32)
    channels: int = 1
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        lead = z.shape[:-1]
        h = z.reshape(-1, z.shape[-1])
        widths = (*self.features, self.channels)
        for i, width in enumerate(widths):
            h = ConvTranspose(width, 1 if i == 0 else 2, self.param_dtype, name=f"ConvTranspose_{i}")(h)
            h = nn.relu(h) if i < len(widths) - 1 else jnp.tanh(h)
        return h.reshape(*lead, *h.shape[1:])


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
        h = nn.Dense(16 * f0, use_bias=False, kernel_init=INIT_DCGAN, param_dtype=self.param_dtype, name="Dense_0")(h)
        h = h.reshape(-1, 4, 4, f0)
        h = nn.relu(Norm(self.folded, self.param_dtype, name="Norm_0")(h, train))
        outs = (*self.features[1:], self.channels)
        for i, width in enumerate(outs, start=1):
            last = i == len(outs)
            h = Conv5(width, transpose=True, use_bias=last, param_dtype=self.param_dtype, name=f"ConvT_{i}")(h)
            h = jnp.tanh(h) if last else nn.relu(Norm(self.folded, self.param_dtype, name=f"Norm_{i}")(h, train))
        return h.reshape(*lead, *h.shape[1:])


def build_generator(spec: GeneratorSpec, param_dtype=jnp.float32) -> nn.Module:
    """The module ``spec.arch`` names; ``model.apply({"params": params}, z)`` gives images in [−1, 1]."""
    if spec.arch == "dcgan_bn":
        return DCGANGenerator(tuple(spec.features), spec.channels, folded=True, param_dtype=param_dtype)
    if spec.arch != "gmlr":
        raise ValueError(f"arch={spec.arch!r}: allowed values are {', '.join(ARCHS)}")
    return Generator(features=tuple(spec.features), channels=spec.channels, param_dtype=param_dtype)


def init_generator(spec: GeneratorSpec, key: jax.Array, param_dtype=jnp.float32) -> Params:
    """Random parameters: the PyTorch 0.4 rule the original used (gmlr), N(0, 0.02²) (dcgan_bn)."""
    model = build_generator(spec, param_dtype)
    # Jitted: one compiled program instead of every op of the forward pass dispatched eagerly
    # (~9 s for the gray generator on 2 CPU cores); the same random draws either way.
    return jax.jit(model.init)(key, jnp.zeros((1, spec.z_dim), param_dtype))["params"]


def params_from_torch_state_dict(
    state: dict[str, np.ndarray], source: str = "state dict"
) -> tuple[GeneratorSpec, Params]:
    """Convert the original ``nn.Sequential`` state dict (``main.{0,2,4,...}.weight``).

    The architecture is read off the weight shapes; anything else (biases, batch-norm
    statistics, missing layers, inconsistent widths) raises ``ValueError`` naming ``source``.
    """
    # Check the key pattern before parsing layer indices, so e.g. DataParallel's "module.main.0.weight"
    # is refused with a message naming the source rather than a bare int() error.
    is_weight = lambda k: re.fullmatch(r"main\.\d+\.weight", k) is not None
    extra = [k for k in state if not is_weight(k)]
    keys = sorted((k for k in state if is_weight(k)), key=lambda k: int(k.split(".")[1]))
    if extra or not keys:
        raise ValueError(
            f"{source}: not a bias-free DCGAN generator state dict (expected only main.<i>.weight "
            f"entries, found {sorted(state)[:6]})"
        )
    weights = [np.asarray(state[k]) for k in keys]
    for k, w in zip(keys, weights):
        if w.ndim != 4 or w.shape[2:] != (4, 4):
            raise ValueError(f"{source}: {k} has shape {w.shape}; expected [in, out, 4, 4]")
    for (k0, a), (k1, b) in zip(zip(keys, weights), zip(keys[1:], weights[1:])):
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"{source}: {k0} outputs {a.shape[1]} channels but {k1} takes {b.shape[0]}")
    spec = GeneratorSpec(
        z_dim=weights[0].shape[0],
        features=tuple(w.shape[1] for w in weights[:-1]),
        channels=weights[-1].shape[1],
    )
    if spec.channels not in (1, 3) or len(spec.features) < 3:
        raise ValueError(
            f"{source}: shapes give channels={spec.channels}, {len(weights)} layers; not a supported generator"
        )
    params = {f"ConvTranspose_{i}": {"kernel": jnp.asarray(w)} for i, w in enumerate(weights)}
    return spec, params


def load_torch_npz(path: str | os.PathLike) -> tuple[GeneratorSpec, Params]:
    """Load an .npz holding the original PyTorch state dict (e.g. ``mnist_dcgan_gmlr.npz``)."""
    path = os.fspath(path)
    try:
        data = np.load(path)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a bare .npy array under an .npz name
            raise ValueError(f"holds a single {type(data).__name__}, not a state dict archive")
        with data:
            state = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot be read as an .npz state dict ({e})") from None
    return params_from_torch_state_dict(state, path)


def check_params(spec: GeneratorSpec, params: Params, source: str) -> None:
    """Raise ``ValueError`` unless ``params`` has exactly the shapes ``spec`` implies."""
    expected = jax.eval_shape(lambda: init_generator(spec, jax.random.key(0)))
    want = jax.tree.map(lambda a: a.shape, expected)
    got = jax.tree.map(lambda a: tuple(a.shape), params)
    if jax.tree.structure(want) != jax.tree.structure(got) or want != got:
        raise ValueError(f"{source}: parameters do not match the architecture {spec.to_dict()}")


# --------------------------------------------------------------------------- DCGAN widths and folding
def num_layers(image_size: int) -> int:
    """n with image_size = 4·2^n; raises ValueError unless image_size is 4·2^n with n ≥ 2."""
    n = round(math.log2(max(image_size, 1) / 4))
    if n < 2 or 4 * 2**n != image_size:
        raise ValueError(f"--image_size={image_size}: allowed are 4·2^n with n ≥ 2 (16, 32, 64, 128, 256)")
    return n


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
