"""The DCGAN-style generator of Hyder & Asif (2019), exact to PyTorch ``ConvTranspose2d``.

Architecture (64×64, grayscale original, k = 32)::

    z (k) ─► ConvT 4×4 s1 p0 ─► 4×4×256 ─► ReLU
          ─► ConvT 4×4 s2 p1 ─► 8×8×128 ─► ReLU
          ─► ConvT 4×4 s2 p1 ─► 16×16×64 ─► ReLU
          ─► ConvT 4×4 s2 p1 ─► 32×32×32 ─► ReLU
          ─► ConvT 4×4 s2 p1 ─► 64×64×C  ─► tanh

No bias and no batch norm. ``features`` sets the widths; one width fewer gives 32×32 output,
one more gives 128×128.

How it is computed. A PyTorch transposed convolution with kernel 4, stride 2, padding 1 maps
input pixel i to output pixels o = 2i − 1 + κ, κ = 0..3. Its forward pass is XLA's
lhs-dilated convolution, which is fast; the gradients JAX derives from it are not (on XLA:CPU
the input-dilated convolution's transpose takes ~8× longer than the forward pass). We therefore
give the layer an explicit VJP written as two ordinary convolutions:

* input gradient:  dx[i] = Σ_κ W[κ] · dy[2i − 1 + κ], a stride-2 4×4 convolution of dy;
* weight gradient: dW[κ] = Σ_i x[i] ⊗ dy[2i − 1 + κ], a convolution of dy with x dilated by 2,
  contracting over the batch.

Both are exact (same sums, different order), verified against autodiff of the reference form
in ``tests/test_models.py``. Parameters are stored in PyTorch's own layout
``[in, out, kH, kW]`` under ``ConvTranspose_{0..L}/kernel``, so the original weights load
without any rearrangement and Adam sees the same parameter tensor as in the original code.
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

Params = Any
ARCHS = ("gmlr", "dcgan_bn")  # GeneratorSpec.arch: the original work's generator, the BN DCGAN one

_DN = ("NHWC", "HWIO", "NHWC")


def _conv_transpose_fwd(x: jax.Array, w: jax.Array) -> jax.Array:
    # PyTorch ConvTranspose2d(k=4, s=2, p=1) == correlation of the 2×-dilated input with the
    # flipped kernel, padded by k − 1 − p = 2.
    kernel = jnp.flip(w, (2, 3)).transpose(2, 3, 0, 1)  # [in,out,kh,kw] -> HWIO
    return lax.conv_general_dilated(
        x, kernel, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2), dimension_numbers=_DN
    )


def _conv_transpose_grad_x(dy: jax.Array, w: jax.Array) -> jax.Array:
    # dx[n,i,j,c] = Σ_{κ,λ,o} dy[n, 2i−1+κ, 2j−1+λ, o] · W[c, o, κ, λ]
    kernel = w.transpose(2, 3, 1, 0)  # (kh, kw, out, in)
    return lax.conv_general_dilated(dy, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)


def _conv_transpose_grad_w(x: jax.Array, dy: jax.Array) -> jax.Array:
    # dW[c,o,κ,λ] = Σ_{n,i,j} x[n,i,j,c] · dy[n, 2i−1+κ, 2j−1+λ, o]: the batch axis n is the
    # contracted feature axis, o plays the batch, x (dilated by 2) is the kernel.
    out = lax.conv_general_dilated(
        dy,
        x,
        window_strides=(1, 1),
        padding=((1, 1), (1, 1)),
        rhs_dilation=(2, 2),
        dimension_numbers=("CHWN", "IHWO", "CHWN"),
    )  # (in, kh, kw, out)
    return out.transpose(0, 3, 1, 2)


@jax.custom_vjp
def conv_transpose_s2(x: jax.Array, w: jax.Array) -> jax.Array:
    """PyTorch ``ConvTranspose2d(kernel_size=4, stride=2, padding=1, bias=False)``.

    Args:
      x: (N, H, W, C_in) input.
      w: (C_in, C_out, 4, 4) kernel in PyTorch layout.

    Returns:
      (N, 2H, 2W, C_out), y[n, o_h, o_w, o] = Σ x[n, i, j, c] · w[c, o, κ, λ] over the
      (i, κ), (j, λ) with o_h = 2i − 1 + κ and o_w = 2j − 1 + λ.
    """
    return _conv_transpose_fwd(x, w)


def _cts2_fwd(x, w):
    return _conv_transpose_fwd(x, w), (x, w)


def _cts2_bwd(res, dy):
    x, w = res
    return _conv_transpose_grad_x(dy, w), _conv_transpose_grad_w(x, dy)


conv_transpose_s2.defvjp(_cts2_fwd, _cts2_bwd)


def conv_transpose_s2_reference(x: jax.Array, w: jax.Array) -> jax.Array:
    """Same function as :func:`conv_transpose_s2` with JAX's own derivative (tests only)."""
    return _conv_transpose_fwd(x, w)


def legacy_torch_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """PyTorch 0.4 default for ``ConvTranspose2d``: U(−1/√n, 1/√n), n = in·kH·kW.

    The original notebooks ran on PyTorch 0.4.1, so a randomly initialised generator there was
    drawn from this distribution (PyTorch ≥ 1.0 changed the rule).
    """
    bound = 1.0 / math.sqrt(shape[0] * shape[2] * shape[3])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class ConvTranspose(nn.Module):
    """A bias-free PyTorch-layout transposed convolution, 4×4 kernel.

    ``stride=1`` (padding 0) maps a (N, k) code to (N, 4, 4, features); ``stride=2`` (padding 1)
    doubles the spatial size of an (N, H, W, C) input.
    """

    features: int
    stride: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (x.shape[-1], self.features, 4, 4)
        kernel = self.param("kernel", legacy_torch_init, shape, self.param_dtype)
        kernel = kernel.astype(x.dtype)
        if self.stride == 1:  # 1×1 input, no padding: a plain matrix product.
            return jnp.einsum("nk,kohw->nhwo", x, kernel)
        return conv_transpose_s2(x, kernel)


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
    """Architecture of a :class:`Generator`: everything needed to rebuild it from a checkpoint.

    Attributes:
      z_dim: latent size k.
      features: widths of the hidden layers, from the 4×4 layer up; the output is
        4·2^len(features) pixels square.
      channels: 1 (grayscale) or 3 (RGB).
      arch: ``"gmlr"`` (:class:`Generator`, the original work's) or ``"dcgan_bn"``
        (:class:`lrgen.dcgan.DCGANGenerator` in its folded inference form: dense to 4×4, then 5×5
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


def build_generator(spec: GeneratorSpec, param_dtype=jnp.float32) -> nn.Module:
    """The module ``spec.arch`` names; ``model.apply({"params": params}, z)`` gives images in [−1, 1]."""
    if spec.arch == "dcgan_bn":
        from lrgen import dcgan  # here, not at the top: dcgan is optional for the original model

        return dcgan.DCGANGenerator(tuple(spec.features), spec.channels, folded=True, param_dtype=param_dtype)
    if spec.arch != "gmlr":
        raise ValueError(f"arch={spec.arch!r}: allowed values are {', '.join(ARCHS)}")
    return Generator(features=tuple(spec.features), channels=spec.channels, param_dtype=param_dtype)


def init_generator(spec: GeneratorSpec, key: jax.Array, param_dtype=jnp.float32) -> Params:
    """Random parameters: the PyTorch 0.4 rule the original used (gmlr), N(0, 0.02²) (dcgan_bn)."""
    model = build_generator(spec, param_dtype)
    return model.init(key, jnp.zeros((1, spec.z_dim), param_dtype))["params"]


def params_from_torch_state_dict(state: dict[str, np.ndarray], source: str = "state dict") -> tuple[GeneratorSpec, Params]:
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
        raise ValueError(f"{source}: shapes give channels={spec.channels}, {len(weights)} layers; not a supported generator")
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
