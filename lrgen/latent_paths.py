r"""Paths through latent space between known codes, and the frames G draws along them.

Low-rank codes trace a video's motion along a line (rank 2 ``pca``) or a plane in latent space
(Hyder & Asif 2019). Let codes z_j ∈ R^k be known at times τ_0 < τ_1 < … < τ_{n−1} and write
them in their rank-r basis (:func:`lrgen.lowrank.factorise` with ``svd``),

    z_j = c_j B,   B ∈ R^{r×k} with orthonormal rows,  c_j = z_j Bᵀ ∈ R^r.

A code at any time t, with τ_j ≤ t ≤ τ_{j+1} (j = 0 or n − 2 outside [τ_0, τ_{n−1}], which
extrapolates along the end segment) and w = (t − τ_j) / (τ_{j+1} − τ_j), is

    linear:  c(t) = (1 − w) c_j + w c_{j+1}
    slerp:   c(t) = ((1 − w)‖c_j‖ + w‖c_{j+1}‖) · u(t),
             u(t) = [sin((1 − w)θ) ĉ_j + sin(wθ) ĉ_{j+1}] / sin θ,  cos θ = ⟨ĉ_j, ĉ_{j+1}⟩,

(ĉ = c/‖c‖: the direction turns along the great circle at constant angular speed, the norm
changes linearly; for equal norms this is Shoemake's slerp, the usual path between Gaussian
latents, White 2016), and the frame is x(t) = G(c(t) B) mapped to [0, 1]. Because B has
orthonormal rows and the codes lie in its row space, both rules give the same codes as
interpolating z itself; working in the coordinates keeps every generated code exactly inside the
fitted subspace and is what the latent plot shows.

Everything here is computed in float64 on the host (a few hundred small vectors), so the
encoder and the decoder of :mod:`lrgen.compression` get bit-identical codes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import lowrank, pixels
from lrgen.nets import generators

METHODS = ("linear", "slerp")
# Frames generated per frame interval, at most (interpolation and decompression).
MAX_FACTOR = 256


def fine_times(num_frames: int, factor: int) -> np.ndarray:
    """Times i/f, i = 0 … (T − 1)·f, of the generated frames (float64, (N,))."""
    return np.arange((num_frames - 1) * factor + 1, dtype=np.float64) / factor


def segments(times: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(j, w): the segment [τ_j, τ_{j+1}] used for each query time and the weight w in it."""
    j = np.clip(np.searchsorted(times, query, side="right") - 1, 0, len(times) - 2)
    w = (query - times[j]) / (times[j + 1] - times[j])
    return j, w


def interpolate(values: np.ndarray, times: np.ndarray, query: np.ndarray, method: str = "linear") -> np.ndarray:
    """Piecewise interpolation of vectors known at ``times`` (see the module docstring).

    Args:
      values: (n, d) vectors c_j at times τ_j.
      times: (n,) strictly increasing times.
      query: (m,) times to evaluate; outside [τ_0, τ_{n−1}] the end segment is extended.
      method: ``linear`` or ``slerp``.

    Returns:
      (m, d) float64 interpolated vectors; exactly c_j at t = τ_j.

    Raises:
      ValueError: if the shapes disagree, the times are not strictly increasing, or ``method``
        is unknown.
    """
    values = np.asarray(values, np.float64)
    times = np.asarray(times, np.float64)
    query = np.asarray(query, np.float64)
    if values.ndim != 2 or times.shape != (values.shape[0],) or query.ndim != 1:
        raise ValueError(
            f"interpolate: values {values.shape}, times {times.shape}, query {query.shape}; need (n, d), (n,), (m,)"
        )
    if method not in METHODS:
        raise ValueError(f"--method={method}: allowed values are {', '.join(METHODS)}")
    if len(times) == 1:
        return np.repeat(values, len(query), axis=0)
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"interpolate: times must be strictly increasing, got {times.tolist()}")
    j, w = segments(times, query)
    a, b = values[j], values[j + 1]
    w = w[:, None]
    linear = (1.0 - w) * a + w * b
    # Exact at the knots (w ∈ {0, 1}), whatever the rounding of the formulas below.
    linear = np.where(w == 0, a, np.where(w == 1, b, linear))
    if method == "linear":
        return linear
    na, nb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
    ua, ub = a / np.maximum(na, 1e-300), b / np.maximum(nb, 1e-300)
    theta = np.arccos(np.clip(np.sum(ua * ub, axis=1, keepdims=True), -1.0, 1.0))
    s = np.sin(theta)
    # Nearly parallel (or zero) vectors: the great circle is undefined, the chord is the path.
    ok = (s > 1e-6) & (na > 0) & (nb > 0)
    safe = np.where(ok, s, 1.0)
    u = (np.sin((1.0 - w) * theta) * ua + np.sin(w * theta) * ub) / safe
    out = np.where(ok, ((1.0 - w) * na + w * nb) * u, linear)
    return np.where(w == 0, a, np.where(w == 1, b, out))


def interpolate_codes(
    z: np.ndarray, times: np.ndarray, query: np.ndarray, *, rank: int, method: str = "linear"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes at ``query`` times by interpolating the rank-r coordinates of ``z`` (n, k).

    The coordinates are those of Z = C B (:func:`lrgen.lowrank.factorise` with ``svd``; rank 0
    keeps every direction, which still reproduces Z exactly).

    Returns:
      (codes (m, k) float32, their coordinates (m, d), the basis B (d, k)).
    """
    _, coords, basis = lowrank.factorise(z, rank, "svd")
    c = interpolate(coords, times, query, method)
    return (c @ basis).astype(np.float32), c, basis


def render(spec: generators.GeneratorSpec, params: Any, z: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """G(z) in [0, 1] for codes (N, k), in chunks of ``chunk`` frames; float32 (N, H, W, C)."""
    fn = _renderer(spec)
    out = [np.asarray(fn(params, jnp.asarray(z[i : i + chunk], jnp.float32))) for i in range(0, len(z), chunk)]
    return np.concatenate(out)


_RENDERERS: dict = {}


def _renderer(spec: generators.GeneratorSpec):
    """One jitted G per architecture, shared by every caller (each shape compiles once)."""
    if spec not in _RENDERERS:
        model = generators.build_generator(spec)
        _RENDERERS[spec] = jax.jit(lambda p, z: pixels.to_unit(model.apply({"params": p}, z)))
    return _RENDERERS[spec]
