"""Rank-r projections of the T×k latent code matrix Z.

``svd``  P_r(Z) = U_r Σ_r V_rᵀ, the best rank-r approximation of Z in Frobenius (and spectral)
         norm by the Eckart–Young theorem (Z = U Σ Vᵀ, keep the r largest singular values).
``pca``  P_r(Z) = 1 μᵀ + P^svd_{r−1}(Z − 1 μᵀ) with μ the mean code: the codes lie on an affine
         subspace of dimension r − 1 through their mean (rank 2: a line in latent space), the
         rank-r constraint of Hyder & Asif (2019) with the mean kept exactly.
``r = 0`` leaves Z unconstrained.

Both use ``jnp.linalg.svd`` with ``full_matrices=False``; they are pure and ``vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RANK_TYPES = ("svd", "pca")


def _truncate(z: jax.Array, r: int) -> jax.Array:
    if r <= 0:
        return jnp.zeros_like(z)
    u, s, vh = jnp.linalg.svd(z, full_matrices=False)
    return (u[:, :r] * s[:r]) @ vh[:r]


def project(z: jax.Array, rank: int, rank_type: str = "pca") -> jax.Array:
    """Project Z (T, k) onto rank ``rank`` with ``rank_type`` in {'svd', 'pca'}; 0 = identity."""
    if rank == 0:
        return z
    if rank_type == "svd":
        return _truncate(z, rank)
    if rank_type == "pca":
        mu = jnp.mean(z, axis=0, keepdims=True)
        return _truncate(z - mu, rank - 1) + mu
    raise ValueError(f"rank_type={rank_type!r}: allowed values are {RANK_TYPES}")


def coordinates(z: jax.Array, rank: int) -> tuple[jax.Array, jax.Array]:
    """Coordinates of the codes in their rank-``rank`` basis: Z ≈ C B.

    B (r, k) holds the top r right singular vectors of Z (orthonormal rows) and C = Z Bᵀ (T, r).
    After either projection Z lies in an r-dimensional subspace (``pca`` rank r: the mean plus
    r − 1 directions), so C B = Z exactly there. Used to draw codes in their low-rank basis
    and to store them compactly.
    """
    _, _, vh = jnp.linalg.svd(z, full_matrices=False)
    basis = vh[:rank]
    return z @ basis.T, basis


def project_traced(z: jax.Array, rank: jax.Array, rank_type: str = "pca") -> jax.Array:
    """:func:`project` with the rank a traced integer, so one program serves candidates of any rank.

    The same SVD, with the singular values σ_i, i ≥ r (``svd``) or i ≥ r − 1 (``pca``, of the
    centred codes) set to zero; ``rank`` 0 returns Z unchanged. Used when a batch holds
    candidates of different ranks (``vmap`` over ``rank``).
    """
    if rank_type not in RANK_TYPES:
        raise ValueError(f"rank_type={rank_type!r}: allowed values are {RANK_TYPES}")
    mu = jnp.mean(z, axis=0, keepdims=True) if rank_type == "pca" else jnp.zeros_like(z[:1])
    keep = rank - 1 if rank_type == "pca" else rank
    u, s, vh = jnp.linalg.svd(z - mu, full_matrices=False)
    s = jnp.where(jnp.arange(s.shape[0]) < keep, s, 0.0)
    return jnp.where(rank == 0, z, (u * s) @ vh + mu)
