"""The unit sphere S^{k−1} = {z ∈ R^k : ‖z‖ = 1}, the latent domain of lrgen's codes.

GLO projects its per-image codes onto it after every step, DCGAN draws its z uniformly on it,
the encoder's output lies on it, and recovery starts from codes on it:

    normalize(z) = z / √(‖z‖² + ε)        (per row; ε = 1e-12 keeps a zero row finite),
    sample:  z = normalize(v),  v ~ N(0, I_k)   (uniform on S^{k−1}: the Gaussian is isotropic).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalize(z: jax.Array) -> jax.Array:
    """z / √(‖z‖² + 1e-12) along the last axis."""
    return z * jax.lax.rsqrt(jnp.sum(jnp.square(z), -1, keepdims=True) + 1e-12)


def sample(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Points uniform on the unit sphere, one per row of ``shape`` (…, k)."""
    return normalize(jax.random.normal(key, shape, dtype))
