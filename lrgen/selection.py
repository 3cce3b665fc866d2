r"""Scoring generated frames, and choosing settings by predicting held-out observed frames.

Only observed frames can choose how to fill the unobserved ones. The observed frames are split
into folds (:func:`validation_folds`); each fold fits some of them and predicts the others from
the fitted codes along a latent path (:mod:`lrgen.latent_paths`). A setting c — what the fit
updates, its rank, the path — is scored by the mean squared error of its predictions,

    E(c) = mean_{folds, held-out t, pixels} (G_c(z_c(t)) − x_t)²,

reported as PSNR (and mean SSIM, for the record); the lowest E wins, ties going to the earlier
setting. :func:`select_candidates` refits every fold for every configuration;
:func:`select_path` keeps given codes and chooses the path alone.

The same held-out frames then weigh the winner's frames g against optical flow's f
(:func:`flow_share`): x̂ = (1 − β) g + β f with the β ∈ [0, 1] of least held-out squared error,

    β = clip( Σ (g − f)(g − x) / Σ (g − f)², 0, 1 )

(stacking two predictors whose errors differ; β = 0 keeps the generated frames, β = 1 is flow).
Frames beyond the observed span get their own share β_ends, fitted the same way on the observed
end frames that a fold does not span (frame τ_0 when the fold starts at τ_1, τ_{n−1} when it
ends at τ_{n−2}), with f there the end frame carried on along its flow
(:func:`lrgen.baselines.extrapolated_flow_frames`) and g the codes' path extended: how far each
predictor can be trusted outside the span is measured, not assumed.

The folds measure at one distance only: their held-out frames lie a whole gap Δ from the fitted
ones, while the frames to be made lie closer to an observed frame (d ≤ g/2 between observed
frames). The share is carried to each frame's own distance (:func:`flow_share_at`) by the
first-order model of both errors: a displacement or a code error grows in proportion to d, so the
squared errors grow as (d/Δ)²; flow's vanishes at an observed frame (it returns that frame),
G(z)'s tends to its error on the fitted frames, e_0:

    e_G(d) = e_0 + u (e_G − e_0),   e_F(d) = u e_F,   c(d) = u c,   u = (d / Δ)²,
    β(d) = (e_G(d) − c(d)) / (e_G(d) + e_F(d) − 2 c(d)),

with e_G, e_F, c = mean (g − x)², (f − x)², (g − x)(f − x) on the folds' held-out frames. At
d = Δ this is the least-squares β above; when G(z) reproduces the observed frames exactly
(e_0 = 0) it is β at every distance; otherwise flow's share rises towards 1 near the observed
frames, where G(z) keeps its fitting error and flow has none.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import config, engine, jobs, metrics, operators, solver
from lrgen.baselines import BASELINES, extrapolated_flow_frames
from lrgen.latent_paths import METHODS, interpolate_codes, render
from lrgen.nets import generators

AUTO = "auto"  # --method/--update: chosen by held-out observed frames (select_candidates)
# What --update=auto chooses from: codes alone (the generator's prior kept) or codes and weights.
AUTO_UPDATES = ("latent", "joint")
# Iterations of each selection fit: a quarter of the default 2000 — candidates are ranked, not
# finished, and the final fit of the chosen one runs the full count.
SELECT_ITERATIONS = 500

_psnr = jax.jit(metrics.psnr)
_psnr_per_frame = jax.jit(metrics.psnr_per_frame)


def score(x: np.ndarray, truth: np.ndarray) -> dict:
    """``psnr`` of the frames as one sequence (the original's definition; None if infinite),
    mean ``ssim`` (None for frames under 11 pixels), ``psnr_per_frame`` and ``ssim_per_frame``."""
    if x.shape[0] == 0:
        return {"psnr": None, "ssim": None, "psnr_per_frame": [], "ssim_per_frame": []}
    psnr = float(_psnr(x, truth))
    # SSIM frame by frame (one compiled shape for any number of frames); every frame has as many
    # pixels, so the mean over frames is metrics.ssim of the whole sequence.
    ssims = [float(metrics.ssim(a, b)) for a, b in zip(x, truth)] if min(x.shape[1:3]) >= 11 else []
    return {
        "psnr": psnr if math.isfinite(psnr) else None,
        "ssim": float(np.mean(ssims)) if ssims else None,
        "psnr_per_frame": [float(p) for p in np.asarray(_psnr_per_frame(x, truth))],
        "ssim_per_frame": ssims,
    }


def fmt(v: float | None, digits: int = 2) -> str:
    """A score for a log line ("n/a" for None)."""
    return "n/a" if v is None else f"{v:.{digits}f}"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One setting the selection can choose: changes to the fit's configuration and the path.

    Attributes:
      recover: (field, value) pairs replacing fields of the job's
        :class:`lrgen.config.RecoverConfig` (e.g. ``(("update", "joint"), ("rank", 2))``); any
        field can be a candidate dimension, so a new recovery setting is one more entry.
      method: ``linear`` or ``slerp`` path between the fitted codes.
    """

    recover: tuple[tuple[str, Any], ...] = ()
    method: str = "linear"

    @property
    def name(self) -> str:
        return " ".join([*(f"{k}={v}" for k, v in self.recover), f"method={self.method}"])

    def config(self, base: config.RecoverConfig) -> config.RecoverConfig:
        return dataclasses.replace(base, **dict(self.recover))


def candidate_grid(updates: Sequence[str], ranks: Sequence[int], methods: Sequence[str]) -> tuple[Candidate, ...]:
    """Every combination of update, rank and path, in that order (the first is the fallback)."""
    return tuple(
        Candidate((("update", u), ("rank", int(r))), m) for u, r, m in itertools.product(updates, ranks, methods)
    )


def validation_folds(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds (fitted positions, held-out positions) over n observed frames, all of one size.

    Fold A fits the even positions 0, 2, 4, … and predicts the odd ones; fold B fits the odd
    positions 1, 3, 5, … (plus the last, n − 1, when n is odd, so both folds fit ⌈n/2⌉ frames
    and run as one batch) and predicts the even ones. A fold predicts its held-out frames
    between its fitted ones twice as far from their observed neighbours as the final fit will,
    which is the same question (how well does a setting fill a gap) asked at the one scale the
    observed frames can answer; the held-out frames outside its fitted span (position 0 in fold
    B, n − 1 in fold A when n is even) ask how well it continues beyond the span
    (:func:`inside`). n < 3 gives no fold.
    """
    if n < 3:
        return []
    pos = np.arange(n)
    a = pos[::2]
    b = pos[1::2] if n % 2 == 0 else np.append(pos[1::2], n - 1)
    return [(fitted, pos[~np.isin(pos, fitted)]) for fitted in (a, b)]


def _spanned(fitted: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Which of one fold's held-out positions lie strictly inside its fitted span."""
    return (held > fitted[0]) & (held < fitted[-1])


def inside(folds) -> np.ndarray:
    """Boolean mask over the folds' held-out frames (in fold order): strictly inside the fold's
    fitted span (interpolated) rather than beyond it (extrapolated)."""
    return np.concatenate([_spanned(f, h) for f, h in folds])


def _folds_record(folds, t_obs: np.ndarray, criterion: str) -> dict:
    spans = [_spanned(f, h) for f, h in folds]
    return {
        "folds": [
            {"fitted": t_obs[f].tolist(), "held_out": t_obs[h[m]].tolist(), "beyond": t_obs[h[~m]].tolist()}
            for (f, h), m in zip(folds, spans)
        ],
        "criterion": criterion,
    }


def _score_row(pred: np.ndarray, truth: np.ndarray) -> dict:
    s = score(pred, truth)
    return {"psnr": s["psnr"], "ssim": s["ssim"]}


def _predict(z_folds, t_obs: np.ndarray, folds, spec, params, *, per_fold: bool, rank: int, method: str):
    """Each fold's held-out frames, rendered from its fitted codes along ``method``'s path
    (with the fold's own weights when ``per_fold``: ``params`` then has a leading fold axis)."""
    preds = []
    for b, (f, h) in enumerate(folds):
        z_h, _, _ = interpolate_codes(z_folds[b], t_obs[f], t_obs[h], rank=rank, method=method)
        preds.append(render(spec, jax.tree.map(lambda p: p[b], params) if per_fold else params, z_h))
    return np.concatenate(preds)


def _fold_predictions(fn, frames: np.ndarray, t_obs: np.ndarray, folds) -> np.ndarray:
    """A baseline's predictions of every fold's held-out frames from its fitted ones, in fold order."""
    return np.concatenate([fn(frames[fitted], t_obs[fitted], t_obs[held]) for fitted, held in folds])


def _baseline_rows(frames: np.ndarray, t_obs: np.ndarray, folds, within: np.ndarray) -> list[dict]:
    """The classical baselines on the same held-out frames (``within`` the folds' spans), for
    reference (not selectable)."""
    truth = np.concatenate([frames[held] for _, held in folds])[within]
    rows = []
    for name, fn in BASELINES.items():
        pred = _fold_predictions(fn, frames, t_obs, folds)[within]
        rows.append({"candidate": name, "baseline": True, **_score_row(pred, truth)})
    return rows


def flow_share(generated: np.ndarray, flow: np.ndarray, truth: np.ndarray) -> float:
    """β ∈ [0, 1] minimising Σ ((1 − β) g + β f − x)² over held-out frames (module docstring)."""
    g, f, x = (np.asarray(a, np.float64) for a in (generated, flow, truth))
    d = g - f
    den = float(np.sum(d * d))
    return 0.0 if den == 0.0 else float(np.clip(np.sum(d * (g - x)) / den, 0.0, 1.0))


def fold_errors(generated: np.ndarray, flow: np.ndarray, truth: np.ndarray) -> dict:
    """The folds' mean squared errors of G(z) and flow and the mean product of their errors
    (``generator``, ``flow``, ``cross``: e_G, e_F, c of the module docstring)."""
    g, f, x = (np.asarray(a, np.float64) for a in (generated, flow, truth))
    return {
        "generator": float(np.mean((g - x) ** 2)),
        "flow": float(np.mean((f - x) ** 2)),
        "cross": float(np.mean((g - x) * (f - x))),
    }


def share_at_distance(u: np.ndarray, fitted_error: float, errors: dict | None, share: float) -> np.ndarray:
    """β at squared relative distances u = (d/Δ)² ∈ [0, 1] (module docstring); ``share`` (the
    folds' β) where the folds recorded no errors."""
    u = np.asarray(u, np.float64)
    if errors is None:
        return np.full(u.shape, share)
    e0, eg, ef, c = fitted_error, errors["generator"], errors["flow"], errors["cross"]
    num = e0 + u * (eg - e0 - c)
    den = e0 + u * (eg - e0 + ef - 2.0 * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(den > 0, num / den, share)
    return np.clip(beta, 0.0, 1.0)


def flow_share_at(times: np.ndarray, t_obs: np.ndarray, fitted_error: float, selection: dict) -> np.ndarray:
    """Flow's share β(t) for every time (module docstring): between observed frames d is the
    distance to the nearer one and Δ their gap; beyond the span d is the distance to the end frame
    and Δ the end segment's gap (u capped at 1, the folds' own distance).

    Args:
      times: (m,) times of the frames made.
      t_obs: (n ≥ 2,) increasing observed times.
      fitted_error: e_0, G(z)'s mean squared error on the observed frames.
      selection: the record of :func:`select_candidates` (``flow_share``, ``flow_share_ends``,
        ``fold_errors``, ``fold_errors_ends``; a missing share counts as 0).
    """
    times, t_obs = np.asarray(times, np.float64), np.asarray(t_obs, np.float64)
    j = np.clip(np.searchsorted(t_obs, times, side="right") - 1, 0, len(t_obs) - 2)
    gap = t_obs[j + 1] - t_obs[j]
    u_in = (np.minimum(times - t_obs[j], t_obs[j + 1] - times) / gap) ** 2
    before = times < t_obs[0]
    end, prev = np.where(before, 0, len(t_obs) - 1), np.where(before, 1, len(t_obs) - 2)
    u_end = np.minimum(np.abs(times - t_obs[end]) / np.abs(t_obs[end] - t_obs[prev]), 1.0) ** 2
    inside = (times >= t_obs[0]) & (times <= t_obs[-1])
    b_in = share_at_distance(u_in, fitted_error, selection.get("fold_errors"), selection.get("flow_share") or 0.0)
    b_end = share_at_distance(
        u_end, fitted_error, selection.get("fold_errors_ends"), selection.get("flow_share_ends") or 0.0
    )
    return np.where(inside, b_in, b_end)


def _mix(record: dict, generated: np.ndarray, truth: np.ndarray, within: np.ndarray, frames, t_obs, folds) -> None:
    """Record the flow shares of the chosen predictions (``generated``: every held-out frame of
    every fold, ``truth`` those frames, ``within`` :func:`inside`) between the fitted frames
    (``flow_share``) and beyond them (``flow_share_ends``, None when no fold has such a frame),
    and the mixes' held-out scores."""
    motion = _fold_predictions(extrapolated_flow_frames, frames, t_obs, folds)
    for key, part in (("", within), ("_ends", ~within)):
        if not part.any():
            record.update({f"flow_share{key}": None, f"mix{key}": None, f"fold_errors{key}": None})
            continue
        g, f, x = generated[part], motion[part], truth[part]
        beta = flow_share(g, f, x)
        record.update(
            {
                f"flow_share{key}": beta,
                f"mix{key}": _score_row((1 - beta) * g + beta * f, x),
                f"fold_errors{key}": fold_errors(g, f, x),
            }
        )


def _pick(rows: list[dict]) -> int:
    """Index of the selectable row with the highest held-out PSNR (lowest MSE); ties: the first."""
    best, best_v = 0, -math.inf
    for i, r in enumerate(rows):
        v = r.get("psnr")
        v = math.inf if v is None else v  # None: exact prediction
        if not r.get("baseline") and r.get("error") is None and v > best_v:
            best, best_v = i, v
    return best


def select_candidates(
    job: jobs.RecoverJob,
    spec: generators.GeneratorSpec,
    params: Any,
    frames: np.ndarray,
    y: jax.Array,
    z0: jax.Array,
    t_obs: np.ndarray,
    candidates: Sequence[Candidate],
    *,
    iterations: int | None = SELECT_ITERATIONS,
    log: Callable[[str], None] = print,
) -> tuple[Candidate, dict]:
    r"""Choose the fit's settings and path by predicting held-out observed frames.

    For every fold of :func:`validation_folds` and every candidate c, fit the fold's frames with
    c's configuration, interpolate the codes along c's path to the held-out times and render
    them; c's error is E(c) of the module docstring. Candidates that share a configuration (they
    differ in the path only) share one fit; each configuration fits all folds as one batch
    (leading axis B = folds) of :class:`lrgen.solver.Recoverer`. Only observed frames are used:
    the frames being generated are never seen.

    Args:
      job: the recovery job (its ``recover`` configuration is what candidates change).
      spec, params: the generator (a fit that trains it starts every fold from ``params``).
      frames: the observed frames (n, H, W, C) in [0, 1], in time order.
      y: their measurements (n, ...) (identity: 2x − 1).
      z0: their initial codes (n, k).
      t_obs: (n,) their times.
      candidates: the settings to compare; the first is used when no fold exists (n < 3).
      iterations: iterations of each selection fit (None: the candidate's own); at most the
        candidate's own count.
      log: progress lines.

    Returns:
      (the chosen candidate, the record: ``folds`` (fitted, held-out and beyond times),
      ``candidates`` (one row per candidate with held-out ``psnr``, ``ssim``, fit ``seconds``,
      and the nearest/blend/flow baselines on the same frames for reference), ``chosen``, and
      the chosen frames' flow shares ``flow_share`` and ``flow_share_ends`` with the mixes'
      held-out scores ``mix`` and ``mix_ends``).
    """
    folds = validation_folds(frames.shape[0])
    record = _folds_record(folds, t_obs, "held-out PSNR (MSE) over the folds' held-out observed frames")
    record["iterations"] = iterations
    if not folds or len(candidates) == 1:
        record.update(candidates=[], chosen=candidates[0].name, note="nothing to choose from" if folds else "n < 3")
        return candidates[0], record
    truth_held = np.concatenate([frames[h] for _, h in folds])
    within = inside(folds)  # candidates are ranked on the frames between fitted ones
    rows: list[dict] = [{"candidate": c.name} for c in candidates]
    preds: dict[int, np.ndarray] = {}
    groups: dict = {}  # one fit per configuration, shared by the candidates that differ in the path
    for i, c in enumerate(candidates):
        cfg = c.config(job.recover)
        if iterations is not None:
            cfg = dataclasses.replace(cfg, iterations=min(iterations, cfg.iterations))
        groups.setdefault(cfg, []).append(i)
    for cfg, members in groups.items():
        try:
            cfg.validate(len(folds[0][0]), spec.z_dim)
        except ValueError as e:  # e.g. a rank above the frames of a fold
            for i in members:
                rows[i]["error"] = str(e)
            continue
        result = _fit_folds(cfg, spec, params, frames, y, z0, folds)
        own = cfg.trains_generator  # each fold tuned its own copy of the weights
        fold_params = result.params if own else params
        label = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items() if getattr(job.recover, k) != v)
        for i in members:
            c = candidates[i]
            pred = preds[i] = _predict(
                result.z, t_obs, folds, spec, fold_params, per_fold=own, rank=cfg.rank, method=c.method
            )
            seconds = result.seconds + result.compile_seconds
            score_row = _score_row(pred[within], truth_held[within])
            rows[i].update(**dict(c.recover), method=c.method, **score_row, seconds=seconds)
            log(
                f"  candidate {c.name}: held-out {fmt(rows[i]['psnr'])} dB / SSIM {fmt(rows[i]['ssim'], 4)}"
                + (f" ({label})" if label else "")
            )
    best = _pick(rows)
    rows += _baseline_rows(frames, t_obs, folds, within)
    if best in preds:
        _mix(record, preds[best], truth_held, within, frames, t_obs, folds)
    record.update(candidates=rows, chosen=candidates[best].name)
    return candidates[best], record


def _fit_folds(cfg: config.RecoverConfig, spec, params, frames, y, z0, folds) -> solver.RecoverResult:
    """Fit every fold's frames with ``cfg``, the folds as one batch (leading axis B = folds)."""
    fitted = np.stack([f for f, _ in folds])
    recoverer = solver.Recoverer(generators.build_generator(spec), cfg, fitted.shape[1])
    problem = engine.Problem(y[fitted], operators.Identity())
    return recoverer.run(z0[fitted], problem, params, truth=jnp.asarray(frames[fitted]))


def select_path(
    z: np.ndarray, t_obs: np.ndarray, frames: np.ndarray, spec, params, *, rank: int, methods=METHODS
) -> tuple[str, dict]:
    """Choose the path (linear or slerp) between fixed codes by predicting held-out observed frames.

    As :func:`select_candidates` but without refitting: each fold interpolates the fitted codes
    of its own frames (the others' codes are left out) and the held-out frames are rendered and
    scored. Used where the codes are given (``--recover_workdir``, compression's key frames).

    Returns:
      (the chosen method, the record as in :func:`select_candidates`).
    """
    folds = validation_folds(len(t_obs))
    record = _folds_record(folds, t_obs, "held-out PSNR (MSE), codes fixed (not refitted per fold)")
    if not folds:
        record.update(candidates=[], chosen=methods[0], note="n < 3")
        return methods[0], record
    truth_held = np.concatenate([frames[h] for _, h in folds])
    within = inside(folds)
    z_folds = [z[f] for f, _ in folds]
    rows, preds = [], []
    for method in methods:
        preds.append(_predict(z_folds, t_obs, folds, spec, params, per_fold=False, rank=rank, method=method))
        score_row = _score_row(preds[-1][within], truth_held[within])
        rows.append({"candidate": f"method={method}", "method": method, **score_row})
    best = _pick(rows)
    _mix(record, preds[best], truth_held, within, frames, t_obs, folds)
    record.update(candidates=rows, chosen=methods[best])
    return methods[best], record
