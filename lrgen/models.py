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
input pixel i to output pixels o = 2i − 1 + κ, κ = 0..3. XLA's lhs-dilated convolution computes
it, fast for some shapes and 2× slower than need be for others; the gradients JAX derives from it are worse still (on
XLA:CPU the input-dilated convolution's transpose takes ~8× longer than the forward pass). So the
layer has an explicit VJP and, per layer shape, the fastest of three exact forward forms:

* forward, sub-pixel: output pixel 2p − 1 + a sees inputs p − 1 and p only, so one 2×2
  convolution with 4·C_out outputs computes the four output phases, which are then interleaved;
* forward, GEMM + col2im (PyTorch's method; best for the image layer with 1 or 3 channels):
  every input pixel times the whole kernel, the 16 taps then added into place;
* input gradient: dx[i] = Σ_κ W[κ] · dy[2i − 1 + κ], a stride-2 4×4 convolution of dy (for the
  image layer, the adjoint of the sub-pixel form);
* weight gradient: dW[κ] = Σ_i x[i] ⊗ dy[2i − 1 + κ], a convolution of dy with x dilated by 2,
  contracting over the batch.

All are exact (same sums, different order), verified against a scatter and autodiff of the reference form
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


# Which exact formulation computes a layer is chosen from its static shape, by measurement on
# XLA:CPU (2 cores, N = 32, min ms; `python -m benchmarks.conv_backends --layers`):
#
#   layer           forward: dilated  sub-pixel  GEMM+col2im | dx: strided  sub-pixel adjoint | dW
#   4→8, 256→128             3.4        4.5        5.8       |     3.1         3.7           | 3.0
#   8→16, 128→64             3.7        3.6        8.0       |     2.8         3.3           | 3.3
#   16→32, 64→32             7.0        3.7       27.8       |     3.2         3.7           | 4.6
#   32→64, 32→1              1.4        2.3        1.0       |     1.2         0.6           | 0.6
#
# All are the same sums in another order (tests/test_models.py checks each against a scatter).
_FORWARDS = ("dilated", "subpixel", "gemm", "phase_gemm")
_GRADS_X = ("strided", "subpixel", "phase_gemm")
_GRADS_W = ("dilated", "phase_gemm")
_THIN = 4  # output channels up to which a layer counts as the image layer (C = 1 or 3)


def _forward_formulation(x_shape: Sequence[int], c_out: int) -> str:
    if c_out <= _THIN:
        return "gemm"
    return "subpixel" if min(x_shape[1], x_shape[2]) >= 8 else "dilated"


def _conv_transpose_dilated(x: jax.Array, w: jax.Array) -> jax.Array:
    # PyTorch ConvTranspose2d(k=4, s=2, p=1) == correlation of the 2×-dilated input with the
    # flipped kernel, padded by k − 1 − p = 2.
    kernel = jnp.flip(w, (2, 3)).transpose(2, 3, 0, 1)  # [in,out,kh,kw] -> HWIO
    return lax.conv_general_dilated(x, kernel, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2), dimension_numbers=_DN)


def _interleave_phases(p: jax.Array, h: int, w: int) -> jax.Array:
    """(N, h+1, w+1, 2, 2, C) phases on the padded grid → the (N, 2h, 2w, C) output.

    Phase (a, b) at padded position (p, q) is output pixel (2p − 1 + a, 2q − 1 + b).
    """
    n, c = p.shape[0], p.shape[-1]
    y = p.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * (h + 1), 2 * (w + 1), c)
    return y[:, 1 : 2 * h + 1, 1 : 2 * w + 1]


def _conv_transpose_subpixel(x: jax.Array, w: jax.Array) -> jax.Array:
    # Output pixel 2p − 1 + a (a = 0, 1) sees inputs p − 1 and p (padded positions p and p + 1,
    # d = 0, 1) through taps κ = 2 + a − 2d: one 2×2 convolution of the padded input with 4·C_out
    # outputs, no multiplication by inserted zeros, then the four phases are interleaved.
    n, h, wd, c_in = x.shape
    c_out = w.shape[1]
    tap = np.array([[2, 0], [3, 1]])  # tap[a, d]
    k = w[:, :, tap[:, :, None, None], tap[None, None, :, :]]  # (in, out, a, dh, b, dw)
    k = k.transpose(3, 5, 0, 2, 4, 1).reshape(2, 2, c_in, 4 * c_out)
    y = lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
    return _interleave_phases(y.reshape(n, h + 1, wd + 1, 2, 2, c_out), h, wd)


def _conv_transpose_gemm(x: jax.Array, w: jax.Array) -> jax.Array:
    # PyTorch's own method: every input pixel times the whole kernel (one matrix product), then
    # the 16 taps are added into place (col2im). For few output channels this beats a convolution.
    # With κ = 2s + a, tap κ of input i lands on padded position p = i + s + 1, phase a.
    n, h, wd, _ = x.shape
    c_out = w.shape[1]
    t = jnp.einsum("nhwc,cokl->nhwklo", x, w).reshape(n, h, wd, 2, 2, 2, 2, c_out)  # (s, a, u, b)
    t = jnp.pad(t, ((0, 0), (1, 1), (1, 1)) + ((0, 0),) * 5)
    p = t[:, 1:, 1:, 0, :, 0] + t[:, :-1, 1:, 1, :, 0] + t[:, 1:, :-1, 0, :, 1] + t[:, :-1, :-1, 1, :, 1]
    return _interleave_phases(p, h, wd)


def _subpixel_kernel(w: jax.Array) -> jax.Array:
    """(C_in, C_out, 4, 4) → the sub-pixel GEMM matrix W_s (4·C_in, 4·C_out), rows (d, e, c), columns (a, b, o).

    W_s[(d, e, c), (a, b, o)] = w[c, o, 2 + a − 2d, 2 + b − 2e]: a permutation of the 16 taps.
    """
    c_in, c_out = w.shape[:2]
    tap = np.array([[2, 0], [3, 1]])  # tap[a, d]
    k = w[:, :, tap[:, :, None, None], tap[None, None, :, :]]  # (in, out, a, d, b, e)
    return k.transpose(3, 5, 0, 2, 4, 1).reshape(4 * c_in, 4 * c_out)


def _patches(x: jax.Array) -> jax.Array:
    """(N, h, w, C) → (N, h+1, w+1, 2, 2, C) with P[n, p, q, d, e] = x[n, p + d − 1, q + e − 1] (0 outside)."""
    n, h, wd, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = [jnp.stack([xp[:, d : d + h + 1, e : e + wd + 1] for e in (0, 1)], axis=3) for d in (0, 1)]
    return jnp.stack(rows, axis=3)


def _phases(y: jax.Array) -> jax.Array:
    """(N, 2h, 2w, C) → (N, h+1, w+1, 2, 2, C) phases on the padded grid (the inverse of interleaving; 0 at the border)."""
    n, h2, w2, c = y.shape
    p = jnp.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(n, h2 // 2 + 1, 2, w2 // 2 + 1, 2, c)
    return p.transpose(0, 1, 3, 2, 4, 5)


def _conv_transpose_phase_gemm(x: jax.Array, w: jax.Array) -> jax.Array:
    # The sub-pixel form as one explicit matrix product: 2×2 patches (M × 4·C_in, M = N(h+1)(w+1))
    # times W_s (4·C_in × 4·C_out) gives the four output phases, which are interleaved.
    n, h, wd, c_in = x.shape
    m = n * (h + 1) * (wd + 1)
    y = _patches(x).reshape(m, 4 * c_in) @ _subpixel_kernel(w)
    return _interleave_phases(y.reshape(n, h + 1, wd + 1, 2, 2, w.shape[1]), h, wd)


def _conv_transpose_fwd(x: jax.Array, w: jax.Array, how: str | None = None) -> jax.Array:
    how = how or _forward_formulation(x.shape, w.shape[1])
    fn = {
        "dilated": _conv_transpose_dilated,
        "subpixel": _conv_transpose_subpixel,
        "gemm": _conv_transpose_gemm,
        "phase_gemm": _conv_transpose_phase_gemm,
    }
    return fn[how](x, w)


def _grad_x_phase_gemm(dy: jax.Array, w: jax.Array) -> jax.Array:
    # Adjoint of the phase GEMM: Q = phases(dy) (M × 4·C_out) · W_sᵀ, then every patch entry
    # (p, q, d, e) goes back to input pixel (p + d − 1, q + e − 1): four shifted adds.
    n, h2, w2, c_out = dy.shape
    h, wd, c_in = h2 // 2, w2 // 2, w.shape[0]
    q = (_phases(dy).reshape(-1, 4 * c_out) @ _subpixel_kernel(w).T).reshape(n, h + 1, wd + 1, 2, 2, c_in)
    return q[:, 1:, 1:, 0, 0] + q[:, :-1, 1:, 1, 0] + q[:, 1:, :-1, 0, 1] + q[:, :-1, :-1, 1, 1]


def _grad_w_phase_gemm(x: jax.Array, dy: jax.Array) -> jax.Array:
    # dW_s = patches(x)ᵀ · phases(dy): one GEMM contracting over all M = N(h+1)(w+1) positions of
    # the batch; W_s holds each of the 16 taps once, so dW is dW_s permuted back:
    # W_s[(d, e, c), (a, b, o)] = w[c, o, 2(1 − d) + a, 2(1 − e) + b].
    c_in, c_out = x.shape[-1], dy.shape[-1]
    g = jnp.einsum("mk,mj->kj", _patches(x).reshape(-1, 4 * c_in), _phases(dy).reshape(-1, 4 * c_out))
    g = g.reshape(2, 2, c_in, 2, 2, c_out)[::-1, ::-1]  # (1 − d, 1 − e, c, a, b, o)
    return g.transpose(2, 5, 0, 3, 1, 4).reshape(c_in, c_out, 4, 4)


def _grad_x_formulation(c_out: int) -> str:
    return "subpixel" if c_out <= _THIN else "strided"


def _grad_w_formulation(c_out: int) -> str:
    return "dilated"


def _conv_transpose_grad_x(dy: jax.Array, w: jax.Array, how: str | None = None) -> jax.Array:
    # dx[n,i,j,c] = Σ_{κ,λ,o} dy[n, 2i−1+κ, 2j−1+λ, o] · W[c, o, κ, λ]
    how = how or _grad_x_formulation(w.shape[1])
    if how == "phase_gemm":
        return _grad_x_phase_gemm(dy, w)
    if how == "subpixel":  # few channels: the adjoint of the sub-pixel form (a 2×2 correlation)
        n, h2, w2, _ = dy.shape
        x = jax.ShapeDtypeStruct((n, h2 // 2, w2 // 2, w.shape[0]), dy.dtype)
        return jax.linear_transpose(lambda a: _conv_transpose_subpixel(a, w), x)(dy)[0]
    kernel = w.transpose(2, 3, 1, 0)  # (kh, kw, out, in)
    return lax.conv_general_dilated(dy, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)


def _conv_transpose_grad_w(x: jax.Array, dy: jax.Array, how: str | None = None) -> jax.Array:
    # dW[c,o,κ,λ] = Σ_{n,i,j} x[n,i,j,c] · dy[n, 2i−1+κ, 2j−1+λ, o]
    how = how or _grad_w_formulation(dy.shape[-1])
    if how == "phase_gemm":
        return _grad_w_phase_gemm(x, dy)
    # The batch axis n is the contracted feature axis, o plays the batch, x (dilated by 2) is the kernel.
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
    """Same function as :func:`conv_transpose_s2`: XLA's input-dilated convolution, JAX's derivative (tests)."""
    return _conv_transpose_dilated(x, w)


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
