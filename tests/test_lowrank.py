"""Tests for lrgen.lowrank: projections checked against numpy's SVD and against Eckart–Young
(no rank-r matrix is closer), plus the properties the recovery loop relies on (idempotence,
kept mean, vmap/jit, exact coordinates)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrgen import lowrank, sphere

SHAPES = [(10, 6), (6, 10)]  # (T, k): tall and wide (square adds nothing but compile time)


def _ranks(shape) -> tuple[int, ...]:
    """Ranks to try: 1, 3 and full (each rank compiles its own slices, so not all of them)."""
    return (1, 3, min(shape))


@pytest.fixture(autouse=True)
def x64():
    """Every test here is a float64 reference check; 64-bit types restored afterwards."""
    with jax.enable_x64(True):
        yield


def _z(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def _np_truncated_svd(z: np.ndarray, r: int) -> np.ndarray:
    u, s, vh = np.linalg.svd(z, full_matrices=False)
    return (u[:, :r] * s[:r]) @ vh[:r]


def _numerical_rank(a: np.ndarray, scale: float | None = None, rtol=1e-10) -> int:
    """Singular values above rtol·scale (scale: the largest singular value unless given)."""
    s = np.linalg.svd(a, compute_uv=False)
    return int(np.sum(s > rtol * (s[0] if scale is None else scale)))


def _project(z, r, rank_type):
    return np.asarray(lowrank.project(jnp.asarray(z), r, rank_type))


# --------------------------------------------------------------------------- svd
@pytest.mark.parametrize("shape", SHAPES)
def test_svd_projection_equals_numpy_truncated_svd(shape):
    z = _z(shape)
    for r in _ranks(shape):
        p = _project(z, r, "svd")
        assert p.dtype == np.float64 and p.shape == shape
        np.testing.assert_allclose(p, _np_truncated_svd(z, r), rtol=0, atol=1e-12 * np.linalg.norm(z))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("r", [1, 3])
def test_svd_projection_is_optimal_eckart_young(shape, r):
    rng = np.random.default_rng(r)
    z = _z(shape, seed=1)
    p = _project(z, r, "svd")
    best = np.sum((z - p) ** 2)
    s = np.linalg.svd(z, compute_uv=False)
    np.testing.assert_allclose(best, np.sum(s[r:] ** 2), rtol=1e-12)  # the optimal error
    tol = 1e-12 * np.sum(z**2)

    # Random rank-r matrices, at random scales and fitted by least squares to Z: none is closer.
    T, k = shape
    for _ in range(300):
        left = rng.normal(size=(T, r))
        cand = left @ np.linalg.lstsq(left, z, rcond=None)[0]  # best with this column space
        assert _numerical_rank(cand) <= r
        assert np.sum((z - cand) ** 2) >= best - tol
        cand = rng.normal(size=(T, r)) @ rng.normal(size=(r, k)) * rng.uniform(0.1, 2)
        assert np.sum((z - cand) ** 2) >= best - tol

    # Small moves along the rank-r manifold: P = L Rᵀ with L = U_r Σ_r, R = V_r; perturb both
    # factors. The first-order change vanishes at the optimum; the second order is ≥ 0.
    u, s_, vh = np.linalg.svd(z, full_matrices=False)
    L, R = u[:, :r] * s_[:r], vh[:r].T
    for eps in (1e-2, 1e-3):
        for _ in range(100):
            cand = (L + eps * rng.normal(size=L.shape)) @ (R + eps * rng.normal(size=R.shape)).T
            assert np.sum((z - cand) ** 2) >= best - tol


@pytest.mark.parametrize("rank_type", ["svd", "pca"])
@pytest.mark.parametrize("shape", SHAPES)
def test_projection_is_idempotent_with_bounded_rank(shape, rank_type):
    z = _z(shape, seed=2)
    for r in _ranks(shape):
        p = _project(z, r, rank_type)
        assert _numerical_rank(p, scale=np.linalg.norm(z)) <= r
        np.testing.assert_allclose(_project(p, r, rank_type), p, rtol=0, atol=1e-10 * np.linalg.norm(z))


def test_svd_projection_leaves_low_rank_matrices_unchanged():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(9, 2)) @ rng.normal(size=(2, 7))
    for r in (2, 3, 7):
        np.testing.assert_allclose(_project(z, r, "svd"), z, rtol=0, atol=1e-12 * np.linalg.norm(z))


# --------------------------------------------------------------------------- pca
@pytest.mark.parametrize("shape", SHAPES)
def test_pca_projection_keeps_mean_and_equals_centred_svd(shape):
    z = _z(shape, seed=4) + 3.0  # a clearly non-zero mean code
    mu = z.mean(axis=0, keepdims=True)
    for r in _ranks(shape):
        p = _project(z, r, "pca")
        np.testing.assert_allclose(p.mean(axis=0, keepdims=True), mu, rtol=0, atol=1e-12 * np.abs(mu).max())
        assert _numerical_rank(p - mu, scale=np.linalg.norm(z)) <= r - 1
        np.testing.assert_allclose(p, mu + _np_truncated_svd(z - mu, r - 1), rtol=0, atol=1e-12 * np.linalg.norm(z))
    # rank 1: every code is the mean code.
    np.testing.assert_allclose(_project(z, 1, "pca"), np.broadcast_to(mu, shape), rtol=0, atol=1e-12)


def test_pca_projection_is_optimal_among_affine_subspaces():
    # P^pca_r(Z) is the closest matrix whose rows lie on an (r−1)-dimensional affine subspace.
    rng = np.random.default_rng(5)
    z, r = _z((12, 6), seed=5), 3
    best = np.sum((z - _project(z, r, "pca")) ** 2)
    for _ in range(300):
        offset = z.mean(axis=0) + 0.1 * rng.normal(size=6)
        basis = rng.normal(size=(r - 1, 6))
        coeffs = np.linalg.lstsq(basis.T, (z - offset).T, rcond=None)[0].T
        assert np.sum((z - (offset + coeffs @ basis)) ** 2) >= best - 1e-12 * np.sum(z**2)


# --------------------------------------------------------------------------- r = 0, errors, transforms
@pytest.mark.parametrize("rank_type", ["svd", "pca"])
def test_rank_zero_returns_z_unchanged(rank_type):
    z = jnp.asarray(_z((5, 4)))
    np.testing.assert_array_equal(lowrank.project(z, 0, rank_type), z)


def test_unknown_rank_type_raises():
    with pytest.raises(ValueError, match="rank_type"):
        lowrank.project(jnp.asarray(_z((5, 4))), 2, "nuclear")


@pytest.mark.parametrize("rank_type", ["svd", "pca"])
def test_projection_under_vmap_and_jit(rank_type):
    zs = np.random.default_rng(6).normal(size=(3, 7, 5))
    r = 2
    want = np.stack([_np_truncated_svd(z, r) if rank_type == "svd" else _project(z, r, "pca") for z in zs])
    batched = jax.vmap(lambda z: lowrank.project(z, r, rank_type))(jnp.asarray(zs))
    np.testing.assert_allclose(batched, want, rtol=0, atol=1e-11)
    jitted = jax.jit(lowrank.project, static_argnums=(1, 2))
    np.testing.assert_allclose(jitted(jnp.asarray(zs[1]), r, rank_type), want[1], rtol=0, atol=1e-11)
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda z: lowrank.project(z, r, rank_type)))(zs), want, atol=1e-11)


# --------------------------------------------------------------------------- coordinates
@pytest.mark.parametrize("r", [1, 2, 3])
def test_coordinates_reproduce_rank_r_codes(r):
    rng = np.random.default_rng(r)
    z = rng.normal(size=(9, r)) @ rng.normal(size=(r, 6))
    c, b = (np.asarray(a) for a in lowrank.coordinates(jnp.asarray(z), r))
    assert c.shape == (9, r) and b.shape == (r, 6)
    np.testing.assert_allclose(b @ b.T, np.eye(r), rtol=0, atol=1e-12)
    np.testing.assert_allclose(c @ b, z, rtol=0, atol=1e-12 * np.linalg.norm(z))


@pytest.mark.parametrize("rank_type", ["svd", "pca"])
def test_coordinates_after_projection(rank_type):
    # After either projection of rank r the codes span r dimensions, so C B is exact.
    z = _z((10, 6), seed=7) + 1.0
    r = 3
    p = _project(z, r, rank_type)
    c, b = (np.asarray(a) for a in lowrank.coordinates(jnp.asarray(p), r))
    np.testing.assert_allclose(b @ b.T, np.eye(r), rtol=0, atol=1e-12)
    np.testing.assert_allclose(c @ b, p, rtol=0, atol=1e-11 * np.linalg.norm(p))


@pytest.mark.parametrize("rank_type, rank, d", [("svd", 2, 2), ("pca", 3, 2), ("svd", 0, 12), ("pca", 1, 0)])
def test_factorise_reproduces_projected_codes(rank_type, rank, d):
    """Z = 1 μᵀ + C B exactly after the matching projection, with orthonormal rows of B."""
    z = np.random.default_rng(0).standard_normal((12, 32)).astype(np.float32)
    zp = np.asarray(lowrank.project(z, rank, rank_type), np.float64)
    mu, c, b = lowrank.factorise(zp, rank, rank_type)
    assert c.shape == (12, d) and b.shape == (d, 32)
    np.testing.assert_allclose(mu + c @ b, zp, atol=1e-5)
    np.testing.assert_allclose(b @ b.T, np.eye(d), atol=1e-10)
    if rank_type == "svd":
        assert not mu.any()
    else:
        np.testing.assert_allclose(mu, zp.mean(axis=0), atol=1e-12)


def test_sphere_normalize_gives_unit_codes_and_keeps_directions():
    # ‖normalize(z)‖ = 1 for every code, same direction, the zero code stays 0; the encoder's
    # output layer is exactly this function.
    with jax.enable_x64(True):
        z = jnp.asarray(np.random.default_rng(3).standard_normal((5, 7)) * [[0.1], [1], [10], [1e3], [0]])
        s = np.asarray(sphere.normalize(z))
    np.testing.assert_allclose(np.linalg.norm(s[:4], axis=1), 1.0, rtol=1e-9)  # ε = 1e-12 against ‖z‖² ≥ ~0.01
    np.testing.assert_allclose(s[:4] * np.linalg.norm(z[:4], axis=1, keepdims=True), z[:4], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(s[4], 0.0)
