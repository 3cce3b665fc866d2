"""Averaging the candidates of one video, with the size of the average chosen by held-out error.

Several recoveries of one video from different random starts (``restarts``) fit the measured
entries equally well but invent different content where nothing was measured; their mean keeps
what they agree on and averages out the rest. Whether, and over how many, is decided without
ground truth, by the same held-out entries that choose the iterate (greedy ensemble selection):

    order the candidates by held-out error E_(1) ≤ E_(2) ≤ …,
    x̄_m = (1/m) Σ_{i ≤ m} x_(i),          E(x) = Σ_j h_j (A(x) − y)_j² / Σ_j h_j,
    m* = argmin_m E(x̄_m)                   (m* = 1: the best single candidate).

The mean of m* > 1 members is not G(z) for any one code: the result's codes and generator are
those of the best member, its frames the average.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from lrgen import engine, pixels


def holdout_error(frames: np.ndarray, problem: engine.Problem) -> float:
    """E(x): the mean squared residual of frames x (T, H, W, C) in [0, 1] on the held-out entries
    of ``problem`` (one sequence, :func:`lrgen.engine.data_term`)."""
    r2 = jnp.square(problem.operator.A(jnp.asarray(pixels.to_model(frames))) - problem.y)
    return float(engine.data_term(r2, problem)[1])


def select(
    frames: np.ndarray, scores: np.ndarray, problem: engine.Problem
) -> tuple[list[int], np.ndarray, list[float]]:
    """(members, their mean frames, E(x̄_m) for m = 1 … B) of the greedy selection above.

    Args:
      frames: (B, T, H, W, C) in [0, 1], the candidates' reconstructions.
      scores: (B,) their held-out errors (the order of the greedy pass).
      problem: the (shared) problem of one sequence, with a held-out set.
    """
    if problem.holdout is None:
        raise ValueError("ensemble: needs a held-out set (holdout_fraction > 0) to choose its members")
    order = [int(i) for i in np.argsort(np.asarray(scores), kind="stable")]
    total = np.zeros(frames.shape[1:], np.float64)
    curve, means = [], []
    for m, i in enumerate(order, start=1):
        total += frames[i]
        means.append((total / m).astype(frames.dtype))
        curve.append(holdout_error(means[-1], problem))
    best = int(np.argmin(curve))
    return order[: best + 1], means[best], curve
