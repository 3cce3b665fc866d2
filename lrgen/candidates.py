"""The candidates of one video (ranks × starts, one batch): screened, chosen and averaged by held-out error.

:func:`screen_then_continue` runs them all ``screen`` iterations and continues the leader alone;
:func:`choose` picks the one with the lowest held-out error; :func:`average` replaces it by the
mean of the best of them (:func:`select`), as follows.

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

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import engine, metrics, pixels


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


def criterion(result) -> np.ndarray:
    """(B,) what chooses among candidates: the held-out error, else the measurement loss."""
    return result.holdout_error if "holdout_error" in result.history else result.measurement_loss


def screen_then_continue(recoverer, z0, problem, params, truth, own, progress, log, table):
    """All candidates for ``screen`` iterations, then the one with the lowest held-out error alone.

    The survivor continues from its own state (codes, weights, optimiser states, best iterate)
    up to ``iterations``; the returned result (B = 1) carries the screening result as
    ``screened`` and the time of both phases, compilations included.
    """
    cfg = recoverer.config
    first = recoverer.run(z0, problem, params, truth=truth, callback=progress, own_params=own, until=cfg.screen)
    b = int(np.argmin(criterion(first)))
    log(f"screened {len(table)} candidates for {first.iterations} iterations: continuing {table[b]}")
    one = lambda t: jax.tree.map(lambda a: a[b : b + 1], t)  # noqa: E731
    hist = {k: (v[b : b + 1] if v.ndim == 2 else v) for k, v in first.history.items()}
    rest = recoverer.run(
        z0[b : b + 1], one(problem), params, truth=truth[b : b + 1], callback=progress, resume=(one(first.state), hist)
    )
    rest.screened = first
    rest.compile_seconds += first.compile_seconds
    rest.seconds += first.seconds
    return rest


def choose(result, table: list[dict], frames: np.ndarray) -> tuple[int, list[dict]]:
    """(index of the chosen candidate, its table with measured columns), without ground truth.

    The lowest held-out error wins (the lowest measurement loss without a held-out set). The
    PSNR against ``frames`` is added to the table for the record only.
    """
    held = "holdout_error" in result.history
    b = int(np.argmin(criterion(result)))
    rows = []
    for i, row in enumerate(table):
        rows.append(
            {
                **row,
                "holdout_error": float(result.holdout_error[i]) if held else None,
                "measurement_loss": float(result.measurement_loss[i]),
                "best_iteration": int(result.best_step[i]),
                "psnr": float(metrics.psnr(jnp.asarray(result.x[i]), jnp.asarray(frames))),
                "chosen": i == b,
            }
        )
    return b, rows


def average(result, b: int, table: list[dict], seq, log) -> dict:
    """Replace candidate ``b``'s frames and held-out error in ``result`` by the mean of the best
    candidates (:func:`select`); mark the members in ``table``; return the record."""
    members, mean, curve = select(result.x, result.holdout_error, seq.problem)
    result.x, result.holdout_error = np.array(result.x), np.array(result.holdout_error)
    result.x[b], result.holdout_error[b] = mean, curve[len(members) - 1]
    for i, row in enumerate(table):
        row["in_ensemble"] = i in members
    log(f"ensemble of {len(members)} (held-out error by size: {', '.join(f'{e:.4g}' for e in curve)})")
    return {"ensemble": {"members": members, "holdout_error_by_size": curve}}
