"""Rank-r projections of the T×k latent code matrix Z.

``svd``  P_r(Z) = U_r Σ_r V_rᵀ, the best rank-r approximation of Z in Frobenius (and spectral)
         norm by the Eckart–Young theorem (Z = U Σ Vᵀ, keep the r largest singular values).
``pca``  P_r(Z) = 1 μᵀ + P^svd_{r−1}(Z − 1 μᵀ) with μ the mean code: the codes lie on an affine
         subspace of dimension r − 1 through their mean (rank 2: a line in latent space), the
         rank-r constraint of Hyder & Asif (2019) with the mean kept exactly.
``r = 0`` leaves Z unconstrained.

Both use ``jnp.linalg.svd`` with ``full_matrices=False``; they are pure and ``vmap``.

The codes' other constraint, the unit sphere ‖z‖ = 1 of the generators' training, is
:mod:`lrgen.sphere`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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


def factorise(z: np.ndarray, rank: int, rank_type: str = "svd") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The factorisation Z = 1 μᵀ + C B of codes Z (n, k), on the host in float64.

    B (d, k) holds the top d right singular vectors of Z − 1 μᵀ (orthonormal rows) and
    C = (Z − 1 μᵀ) Bᵀ (n, d):

    ``svd``  μ = 0 and d = r: Z ≈ C B, the subspace of :func:`project` with ``svd``.
    ``pca``  μ = the mean code and d = r − 1: the affine subspace of :func:`project` with ``pca``.

    After the matching projection the factorisation reproduces Z exactly (up to rounding).
    ``rank`` 0 (unconstrained codes) keeps every direction, d = min(n, k), which reproduces any Z.
    d is clipped to min(n, k). Float64 numpy, deterministic, so that an encoder and a decoder
    (:mod:`lrgen.codec`) and interpolation agree bit for bit. Used to draw codes in their
    low-rank coordinates, to interpolate them and to store them compactly.

    Returns:
        (μ (k,), C (n, d), B (d, k)), all float64.
    """
    if rank_type not in RANK_TYPES:
        raise ValueError(f"rank_type={rank_type!r}: allowed values are {RANK_TYPES}")
    z = np.asarray(z, np.float64)
    mu = z.mean(axis=0) if rank_type == "pca" else np.zeros(z.shape[1])
    if rank == 0:
        d = min(z.shape)
    else:
        d = min(rank - 1 if rank_type == "pca" else rank, *z.shape)
    centred = z - mu
    _, _, vh = np.linalg.svd(centred, full_matrices=False)
    basis = vh[:d]
    return mu, centred @ basis.T, basis
