"""Layers computed exactly, in the formulation XLA runs fastest: the building blocks of the nets.

Two families of stride-2 convolutions, each the same sums as PyTorch computes, in another order.

**4×4 transposed convolution, stride 2, padding 1** (the original generator,
:class:`lrgen.nets.generators.Generator`). A PyTorch ``ConvTranspose2d(4, 2, 1)`` maps input
pixel i to output pixels o = 2i − 1 + κ, κ = 0..3. XLA's lhs-dilated convolution computes it, fast
for some shapes and 2× slower than need be for others; the gradients JAX derives from it are worse
still (on XLA:CPU the input-dilated convolution's transpose takes ~8× longer than the forward
pass). So :func:`conv_transpose_s2` has an explicit VJP and, per layer shape, the fastest of
several exact forward forms:

* forward, sub-pixel: output pixel 2p − 1 + a sees inputs p − 1 and p only, so one 2×2
  convolution with 4·C_out outputs computes the four output phases, which are then interleaved;
* forward, GEMM + col2im (PyTorch's method): every input pixel times the whole kernel, the 16
  taps then added into place;
* forward, phase GEMM: the sub-pixel form as one explicit matrix product (exact, not picked);
* input gradient: dx[i] = Σ_κ W[κ] · dy[2i − 1 + κ], a stride-2 4×4 convolution of dy, or
  im2col of dy times the tap matrix (the adjoint of the GEMM form);
* weight gradient: dW[κ] = Σ_i x[i] ⊗ dy[2i − 1 + κ], contracting over the batch: per output
  phase of dy an undilated convolution with x, a convolution of dy with x dilated by 2, or one
  GEMM xᵀ · im2col(dy).

The image layer (1 or 3 channels) runs all three as GEMMs, the 4×4 first layer its forward and
weight gradient, the layers between sub-pixel forward, strided input gradient and per-phase
weight gradient (:func:`_as_gemms`).

All are verified against a scatter and autodiff of the reference form in
``tests/test_generators.py``. Kernels are stored in PyTorch's own layout ``[in, out, kH, kW]``, so the
original weights load without any rearrangement and Adam sees the same parameter tensor as in
the original code.

**5×5 convolution and transposed convolution, stride 2** (the batch-norm DCGAN networks,
:mod:`lrgen.nets.networks`), per axis:

* :func:`conv5_s2`: y[m] = Σ_κ x[2m + κ − 2] · w[κ], κ = 0..4 (zero outside; output H/2);
* :func:`conv_transpose5_s2`: y[o] = Σ_{i,κ: o = 2i + κ − 2} x[i] · w[κ] (output 2H), i.e. PyTorch's
  ``ConvTranspose2d(5, stride=2, padding=2, output_padding=1)``.

Both are computed as *stride-1 3×3 convolutions* around a space-to-depth / depth-to-space
reshuffle, with the 3×3×4C kernel gathered from the 5×5 one (the sixth tap of each phase is
zero). That is the same sum in another order, and its gradients are stride-1 convolutions, which
XLA:CPU runs several times faster than the input-dilated ones autodiff would produce (measured:
~1.3 s against ~0.19 s for one forward and backward pass of a 64×64 grayscale generator on 32
frames). Kernels are stored HWIO, (5, 5, C_in, C_out).

**Batch norm and its folded form.** :class:`Norm` is batch norm (Ioffe & Szegedy, 2015) with its
own parameter names: in training y = γ (x − μ_B)/√(σ²_B + ε) + β and running averages
μ ← m μ + (1 − m) μ_B, σ² ← m σ² + (1 − m) σ²_B (m = 0.9, biased batch variance). In evaluation
(running statistics) this is the per-channel affine map y = a x + b with

    a = γ / √(σ² + ε),   b = β − a μ,

which :func:`lrgen.nets.generators.fold_generator` stores in ``scale`` and ``bias`` of a
``folded`` :class:`Norm`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")
INIT_DCGAN = nn.initializers.normal(0.02)  # Radford et al. 2016: weights ~ N(0, 0.02²)
BN_MOMENTUM = 0.9
BN_EPS = 1e-5


# --------------------------------------------------------------------------- 4×4, stride 2
# Which exact formulation computes a layer is chosen from its static shape, by measurement on
# XLA:CPU (N = 32, min ms, `python -m benchmarks.conv_backends --layers`; BUILD_NOTES, issue 14):
#
#   layer           forward: dilated sub-pixel GEMM | dx: strided sub-pixel GEMM | dW: dilated GEMM
#   4→8, 256→128             12.4     8.7     9.3  |      8.0      10.2    7.2  |      7.2    12.8
#   8→16, 128→64             10.1     8.1    11.1  |      6.5       8.4   12.1  |     10.0    14.9
#   16→32, 64→32              9.7     5.0     7.9  |      4.2       5.1    9.3  |      7.0    10.5
#   32→64, 32→1               3.7     3.2     0.8  |      2.4       1.0    0.9  |      1.3     1.3
#
# The picks were then confirmed on the whole step, interleaved (the first layer's forward: GEMM).
# dW per output phase ("phases"): 16→32 7.9 against 9.3 dilated, 8→16 7.3 / 7.3, 4→8 6.5 / 4.9.
# Session 13: the first layer's dW as a GEMM too. Alone it is no faster (3.6 ms against 2.8 for
# the dilated form), but the dilated form's dW comes out as (o, κ, λ, c) and every Adam fusion then
# reads the 2 MB gradient through a full transpose; the GEMM's (c, κ, λ, o) is a block-local
# shuffle from [c, o, κ, λ] (`python -m benchmarks.picks_ab`; BUILD_NOTES, issue 14).
_FORWARDS = ("dilated", "subpixel", "gemm", "phase_gemm")
_GRADS_X = ("strided", "subpixel", "phase_gemm", "gemm")
_GRADS_W = ("dilated", "gemm", "phases")
_THIN = 4  # output channels up to which a layer counts as the image layer (C = 1 or 3)


def _as_gemms(x_shape: Sequence[int], c_out: int) -> bool:
    """Whether a layer's forward and weight gradient are GEMMs (tap matrix, im2col, col2im): the
    image layer (C_out ≤ 4: its convolutions are memory-bound) and a layer on inputs under 8×8
    (the 4×4 first one: M = 16·N rows; the GEMM's weight gradient is a block-local shuffle from
    the kernel's layout, where the dilated convolution's reaches Adam through a full transpose)."""
    return c_out <= _THIN or min(x_shape[1], x_shape[2]) < 8


def _forward_formulation(x_shape: Sequence[int], c_out: int) -> str:
    return "gemm" if _as_gemms(x_shape, c_out) else "subpixel"


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


def _tap_matrix(w: jax.Array) -> jax.Array:
    """(C_in, C_out, 4, 4) → (C_in, 16·C_out), columns (κ, λ, o): every tap of the kernel side by side."""
    c_in, c_out = w.shape[:2]
    return w.transpose(0, 2, 3, 1).reshape(c_in, 16 * c_out)


def _col2im(t: jax.Array) -> jax.Array:
    """(N, h, w, 4, 4, C) tap products → (N, 2h, 2w, C): tap (κ, λ) of input (i, j) adds into output
    (2i − 1 + κ, 2j − 1 + λ). Output row 2p takes κ = 1 of row p and κ = 3 of row p − 1, row 2p + 1
    takes κ = 2 of row p and κ = 0 of row p + 1 (so for columns): shifted adds, then interleaving."""
    n, h, wd, _, _, c = t.shape

    def fold(u: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:  # the taps are axis 3
        tap = lambda k: lax.index_in_dim(u, k, 3, keepdims=False)
        zero = jnp.zeros_like(lax.slice_in_dim(tap(0), 0, 1, axis=axis))
        down = jnp.concatenate([zero, lax.slice_in_dim(tap(3), 0, u.shape[axis] - 1, axis=axis)], axis)  # [p − 1]
        up = jnp.concatenate([lax.slice_in_dim(tap(0), 1, u.shape[axis], axis=axis), zero], axis)  # [p + 1]
        return tap(1) + down, tap(2) + up

    rows = fold(t, 1)  # each (N, h, w, 4, C): output rows 2p and 2p + 1; then λ is axis 3
    y = jnp.stack([jnp.stack(fold(r, 2), axis=3) for r in rows], axis=2)  # (N, h, 2, w, 2, C)
    return y.reshape(n, 2 * h, 2 * wd, c)


def _im2col(dy: jax.Array) -> jax.Array:
    """(N, 2h, 2w, C) → (N, h, w, 4, 4, C) with P[n, i, j, κ, λ] = dy[n, 2i − 1 + κ, 2j − 1 + λ] (0
    outside): the adjoint of :func:`_col2im`, each input pixel's 4×4 window of the output."""
    n, h2, w2, c = dy.shape
    h, wd = h2 // 2, w2 // 2
    p = jnp.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(n, h + 1, 2, wd + 1, 2, c)
    rows = jnp.concatenate([p[:, :h], p[:, 1:]], axis=2)  # (N, h, 4, w + 1, 2, C): κ = 2s + a
    cols = jnp.concatenate([rows[:, :, :, :wd], rows[:, :, :, 1:]], axis=4)  # (N, h, 4, w, 4, C)
    return cols.transpose(0, 1, 3, 2, 4, 5)


def _conv_transpose_gemm(x: jax.Array, w: jax.Array) -> jax.Array:
    # PyTorch's own method: every input pixel times the whole kernel (one matrix product,
    # M = N·h·w rows, 16·C_out columns), then the 16 taps are added into place (col2im).
    n, h, wd, c_in = x.shape
    t = x.reshape(-1, c_in) @ _tap_matrix(w)
    return _col2im(t.reshape(n, h, wd, 4, 4, w.shape[1]))


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
    """(N, 2h, 2w, C) → (N, h+1, w+1, 2, 2, C) phases on the padded grid (the inverse of interleaving;
    0 at the border)."""
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


def _grad_x_formulation(x_shape: Sequence[int], c_out: int) -> str:
    # Not the 4×4 first layer: alone its strided convolution is faster than im2col · tap matrixᵀ,
    # and a latent step (no weight gradient to share the im2col with) was 3–5 % slower with it.
    return "gemm" if c_out <= _THIN else "strided"


def _grad_w_formulation(x_shape: Sequence[int], c_out: int) -> str:
    return "gemm" if _as_gemms(x_shape, c_out) else "phases"


def _conv_transpose_grad_x(dy: jax.Array, w: jax.Array, how: str | None = None) -> jax.Array:
    # dx[n,i,j,c] = Σ_{κ,λ,o} dy[n, 2i−1+κ, 2j−1+λ, o] · W[c, o, κ, λ]
    n, h2, w2, _ = dy.shape
    how = how or _grad_x_formulation((n, h2 // 2, w2 // 2, w.shape[0]), w.shape[1])
    if how == "gemm":  # the adjoint of the GEMM forward: im2col(dy) (M × 16·C_out) times the tap matrixᵀ
        q = _im2col(dy).reshape(-1, 16 * dy.shape[-1]) @ _tap_matrix(w).T
        return q.reshape(n, h2 // 2, w2 // 2, w.shape[0])
    if how == "phase_gemm":
        return _grad_x_phase_gemm(dy, w)
    if how == "subpixel":  # few channels: the adjoint of the sub-pixel form (a 2×2 correlation)
        x = jax.ShapeDtypeStruct((n, h2 // 2, w2 // 2, w.shape[0]), dy.dtype)
        return jax.linear_transpose(lambda a: _conv_transpose_subpixel(a, w), x)(dy)[0]
    kernel = w.transpose(2, 3, 1, 0)  # (kh, kw, out, in)
    return lax.conv_general_dilated(dy, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)


def _conv_transpose_grad_w(x: jax.Array, dy: jax.Array, how: str | None = None) -> jax.Array:
    # dW[c,o,κ,λ] = Σ_{n,i,j} x[n,i,j,c] · dy[n, 2i−1+κ, 2j−1+λ, o]
    how = how or _grad_w_formulation(x.shape, dy.shape[-1])
    if how == "gemm":  # one GEMM over the batch: xᵀ (C_in × M) times im2col(dy) (M × 16·C_out)
        c_in, c_out = x.shape[-1], dy.shape[-1]
        g = x.reshape(-1, c_in).T @ _im2col(dy).reshape(-1, 16 * c_out)
        return g.reshape(c_in, 4, 4, c_out).transpose(0, 3, 1, 2)
    if how == "phases":  # per output phase (a, b) of dy, an undilated convolution with x: taps 2s + 1 − a
        parts = {}
        for a, b in np.ndindex(2, 2):
            d = jnp.pad(dy[:, a::2, b::2], ((0, 0), (a, 1 - a), (b, 1 - b), (0, 0)))
            parts[a, b] = lax.conv_general_dilated(d, x, (1, 1), "VALID", dimension_numbers=("CHWN", "IHWO", "CHWN"))
        g = jnp.stack([jnp.stack([parts[1 - a, 1 - b] for b in (0, 1)], axis=-2) for a in (0, 1)], axis=2)
        return g.reshape(x.shape[-1], 4, 4, dy.shape[-1]).transpose(0, 3, 1, 2)  # (c, s, a, t, b, o) → [c, o, κ, λ]
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


# --------------------------------------------------------------------------- 5×5, stride 2
# Phase tables: which 5×5 tap feeds offset d ∈ {−1, 0, 1} of a 3×3 kernel for output (or
# input) phase 0 and 1; index 5 is the appended zero tap. Derivation in the module docstring.
_UP_TAPS = np.array([[4, 2, 0], [5, 3, 1]], np.int32)  # transposed conv: κ = 2 − 2d (even), 3 − 2d (odd)
_DOWN_TAPS = np.array([[0, 2, 4], [1, 3, 5]], np.int32)  # conv: κ = 2d + q + 2 for input phase q


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
        w = self.param("kernel", INIT_DCGAN, (5, 5, x.shape[-1], self.features), self.param_dtype)
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
