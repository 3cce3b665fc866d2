r"""New frames between observed ones, by interpolating low-rank latent coordinates.

Low-rank codes trace a video's motion along a line (rank 2 ``pca``) or a plane in latent space
(Hyder & Asif 2019). Let codes z_j ∈ R^k be known at frame times τ_0 < τ_1 < … < τ_{n−1} and
write them in their rank-r basis (:func:`lrgen.lowrank.coordinates`),

    z_j = c_j B,   B ∈ R^{r×k} with orthonormal rows,  c_j = z_j Bᵀ ∈ R^r.

A code at any time t, with τ_j ≤ t ≤ τ_{j+1} (j = 0 or n − 2 outside [τ_0, τ_{n−1}], which
extrapolates along the end segment) and w = (t − τ_j) / (τ_{j+1} − τ_j), is

    linear:  c(t) = (1 − w) c_j + w c_{j+1}
    slerp:   c(t) = ((1 − w)‖c_j‖ + w‖c_{j+1}‖) · u(t),
             u(t) = [sin((1 − w)θ) ĉ_j + sin(wθ) ĉ_{j+1}] / sin θ,  cos θ = ⟨ĉ_j, ĉ_{j+1}⟩,

(ĉ = c/‖c‖: the direction turns along the great circle at constant angular speed, the norm
changes linearly; for equal norms this is Shoemake's slerp, the usual path between Gaussian
latents, White 2016), and the new frame is x(t) = G(c(t) B) mapped to [0, 1]. Because B has
orthonormal rows and the codes lie in its row space, both rules give the same codes as
interpolating z itself; working in the coordinates keeps every generated code exactly inside the
fitted subspace and is what the latent plot shows.

Hold-out evaluation: with ``observe_every`` = s only frames 0, s, 2s, … are observed — the
frame-level measurement operator ``measure.MeasurementSpec(kind="frames", observe_every=s)`` —
the codes of those frames are fitted (:mod:`lrgen.recover`, latent or joint update), and the
others are generated and scored against the truth, beside two baselines that use the observed
frames' pixels: the nearest observed frame (ties go to the earlier one) and the linear blend
(1 − w) x_{τ_j} + w x_{τ_{j+1}} of the two neighbouring observed frames (frames after the last
observed one hold it). The fit sees only the observed frames: the frame operator's data term
is the same up to the factor n/T that the default step size α = 200·T/256 absorbs, and leaving
the unobserved rows out of Z keeps codes that no measurement constrains from tilting the
rank-r subspace.

Workdir contents (``run_interpolate``)::

    metrics.json        psnr_missing, ssim_missing, psnr_nearest, psnr_blend (+ SSIMs, per-frame
                        values, the interior/extrapolated split, fit PSNR), job, versions
    interpolation.npz   frames (N, H, W, C) in [0, 1], codes z (N, k), times (N,), observed (N,),
                        and the fitted codes z_observed (n, k) at frames t_observed (n,)
    interpolation.mp4   the N = (T − 1)·factor + 1 frames (or .gif)
    grid.png            truth / observed / nearest / blend / generated at whole frame times
    grid_fine.png       (factor > 1) the generated frames between the first observed frames
    latent.png          codes in their rank-r basis; observed (stars) and generated (circles)
    generator/          (a fit that tuned G) the tuned generator, reloadable with ``--generator``
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import checkpoint, io, measure, metrics, models, pipeline, recover, report

METHODS = ("linear", "slerp")
AUTO = "auto"  # --method/--update: chosen by held-out observed frames (select_candidates)
# What --update=auto chooses from: codes alone (the generator's prior kept) or codes and weights.
AUTO_UPDATES = ("latent", "joint")
# Iterations of each selection fit: a quarter of the default 2000 — candidates are ranked, not
# finished, and the final fit of the chosen one runs the full count.
SELECT_ITERATIONS = 500
MAX_FACTOR = 256
# Frames smaller than this (pixels, shorter side) are upsampled before optical flow.
FLOW_MIN_SIZE = 128
# Whole-frame columns in the comparison grid (a contiguous window from frame 0).
GRID_FRAMES = 16


@dataclasses.dataclass(frozen=True)
class InterpolateConfig:
    """What to generate; field names are the flag names of ``experiments.interpolate``.

    Attributes:
      observe_every: s; frames 0, s, 2s, … are observed, the others are generated and scored
        (1: every frame is observed, nothing is held out).
      factor: f; frames are generated at times i/f, i = 0 … (T − 1)·f (f − 1 new frames
        between consecutive frames).
      method: ``linear`` or ``slerp`` interpolation of the latent coordinates, or ``auto``: the
        path the fit's selection chose (:func:`select_candidates`; with fixed codes,
        :func:`select_path`).
      video_format: ``mp4`` or ``gif``.
    """

    observe_every: int = 1
    factor: int = 4
    method: str = AUTO
    video_format: str = "mp4"

    def validate(self, num_frames: int) -> None:
        """Raise ValueError naming the flag, the bad value and what is allowed."""
        if not 1 <= self.observe_every <= max(num_frames - 1, 1):
            raise ValueError(
                f"--observe_every={self.observe_every}: must lie in [1, T − 1] = [1, {max(num_frames - 1, 1)}] "
                f"(T={num_frames}; at least two frames must be observed)"
            )
        if not 1 <= self.factor <= MAX_FACTOR:
            raise ValueError(f"--factor={self.factor}: must lie in [1, {MAX_FACTOR}]")
        if self.method not in (*METHODS, AUTO):
            raise ValueError(f"--method={self.method}: allowed values are {', '.join((*METHODS, AUTO))}")
        if self.video_format not in ("mp4", "gif"):
            raise ValueError(f"--video_format={self.video_format}: allowed values are mp4, gif")


# --------------------------------------------------------------------------- pure maths
def observed_frames(num_frames: int, observe_every: int) -> np.ndarray:
    """Boolean (T,) mask of the frames the frame-level operator observes (0, s, 2s, …).

    Read off :func:`lrgen.measure.make_operator` for ``kind="frames"``, so the hold-out here and
    ``experiments.recover --measurement=frames`` always agree.
    """
    spec = measure.MeasurementSpec(kind="frames", observe_every=observe_every)
    op = measure.make_operator(spec, jax.random.key(0), num_frames, (1, 1, 1))
    return np.asarray(op.mask).reshape(num_frames) > 0


def fine_times(num_frames: int, factor: int) -> np.ndarray:
    """Times i/f, i = 0 … (T − 1)·f, of the generated frames (float64, (N,))."""
    return np.arange((num_frames - 1) * factor + 1, dtype=np.float64) / factor


def _segments(times: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(j, w): the segment [τ_j, τ_{j+1}] used for each query time and the weight w in it."""
    j = np.clip(np.searchsorted(times, query, side="right") - 1, 0, len(times) - 2)
    w = (query - times[j]) / (times[j + 1] - times[j])
    return j, w


def interpolate(values: np.ndarray, times: np.ndarray, query: np.ndarray, method: str = "linear") -> np.ndarray:
    """Piecewise interpolation of vectors known at ``times`` (see the module docstring).

    Computed in float64 on the host (a few hundred small vectors), so encoder and decoder of
    :mod:`lrgen.compress` get bit-identical codes.

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
    j, w = _segments(times, query)
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


def latent_basis(z: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(coordinates C (n, d), basis B (d, k)) of codes z (n, k) with z = C B.

    d = ``rank`` (clipped to min(n, k)); rank 0 (unconstrained codes) uses d = min(n, k), which
    still reproduces z exactly. See :func:`lrgen.lowrank.coordinates`.
    """
    z = np.asarray(z, np.float64)
    d = min(z.shape) if rank == 0 else min(rank, *z.shape)
    # lowrank.coordinates' maths, in float64 on the host: deterministic and exact enough that
    # encoder and decoder (lrgen.compress) agree bit for bit.
    _, _, vh = np.linalg.svd(z, full_matrices=False)
    basis = vh[:d]
    return z @ basis.T, basis


def interpolate_codes(
    z: np.ndarray, times: np.ndarray, query: np.ndarray, *, rank: int, method: str = "linear"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes at ``query`` times by interpolating the rank-r coordinates of ``z`` (n, k).

    Returns:
      (codes (m, k) float32, their coordinates (m, d), the basis B (d, k)).
    """
    coords, basis = latent_basis(z, rank)
    c = interpolate(coords, times, query, method)
    return (c @ basis).astype(np.float32), c, basis


def nearest_frames(frames: np.ndarray, times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The observed frame nearest in time to each query time (ties: the earlier frame)."""
    times = np.asarray(times, np.float64)
    d = np.abs(np.asarray(query, np.float64)[:, None] - times[None, :])
    return frames[np.argmin(d, axis=1)]  # argmin returns the first (earlier) of equal distances


def blend_frames(frames: np.ndarray, times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(1 − w) x_{τ_j} + w x_{τ_{j+1}} between the neighbouring observed frames; held at the ends."""
    times = np.asarray(times, np.float64)
    q = np.clip(np.asarray(query, np.float64), times[0], times[-1])
    if len(times) == 1:
        return np.repeat(frames[:1], len(q), axis=0)
    j, w = _segments(times, q)
    w = w.astype(np.float32).reshape(-1, *([1] * (frames.ndim - 1)))
    return (1.0 - w) * frames[j] + w * frames[j + 1]


def _gray_u8(frame: np.ndarray) -> np.ndarray:
    """A frame (H, W, C) in [0, 1] as 8-bit luma (ITU-R BT.601 weights for colour), for flow."""
    f = np.asarray(frame, np.float32)
    g = f[..., 0] if f.shape[-1] == 1 else f[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.round(np.clip(g, 0.0, 1.0) * 255.0).astype(np.uint8)


def optical_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow F (H, W, 2) from frame ``a`` to frame ``b`` (H, W, C) in [0, 1]: a pixel at p in
    ``a`` is at p + F(p) in ``b``; F[..., 0] is the horizontal component.

    OpenCV's DIS flow (Kroeger et al., 2016, "Fast optical flow using dense inverse search"),
    preset MEDIUM (coarse-to-fine patch search with variational refinement), on 8-bit luma.
    DIS matches 12-pixel patches over an image pyramid, which small frames cannot hold: frames
    under ``FLOW_MIN_SIZE`` pixels are upsampled by the smallest integer factor that reaches it
    (bilinear), and the flow is scaled back (area average, divided by the factor). On the 64×64
    sequences of BUILD_NOTES this is the stronger baseline (e.g. two digits, every 8th frame
    observed: 17.5 dB against 16.2 dB at the native size, and better than Farnebäck's flow).
    """
    import cv2  # opencv-python-headless; imported here so that the rest of lrgen does not need it

    ga, gb = _gray_u8(a), _gray_u8(b)
    H, W = ga.shape
    up = max(1, math.ceil(FLOW_MIN_SIZE / min(H, W)))
    if up > 1:
        ga = cv2.resize(ga, (W * up, H * up), interpolation=cv2.INTER_LINEAR)
        gb = cv2.resize(gb, (W * up, H * up), interpolation=cv2.INTER_LINEAR)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(ga, gb, None)
    if up > 1:
        flow = cv2.resize(flow, (W, H), interpolation=cv2.INTER_AREA) / np.float32(up)
    return flow


def _warp(frame: np.ndarray, flow: np.ndarray, scale: float) -> np.ndarray:
    """Backward warp: out(p) = frame(p + scale · flow(p)), bilinear, edges replicated."""
    import cv2

    H, W = frame.shape[:2]
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    mx = gx + np.float32(scale) * flow[..., 0]
    my = gy + np.float32(scale) * flow[..., 1]
    out = cv2.remap(np.ascontiguousarray(frame, np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(frame.shape)


def flow_frames(frames: np.ndarray, times: np.ndarray, query: np.ndarray) -> np.ndarray:
    r"""Motion-compensated interpolation between the neighbouring observed frames; held at the ends.

    For t in [τ_j, τ_{j+1}] with w = (t − τ_j)/(τ_{j+1} − τ_j), flows F_{j→j+1} and F_{j+1→j}
    between the two observed frames (:func:`optical_flow`) carry each of them to time t, and the
    two warped frames are blended by temporal distance:

        x̂(t)(p) = (1 − w) · x_{τ_j}(p − w F_{j→j+1}(p)) + w · x_{τ_{j+1}}(p − (1 − w) F_{j+1→j}(p))

    (backward warping with the flow read at p itself, the usual first-order approximation of
    the flow at time t). This is the classical flow-based frame interpolation a user would reach
    for (e.g. Baker et al., 2011, the Middlebury interpolation baseline, without occlusion
    reasoning). Frames outside [τ_0, τ_{n−1}] hold the end frames, as in :func:`blend_frames`.

    Args:
      frames: (n, H, W, C) observed frames in [0, 1] at ``times``.
      times: (n,) strictly increasing observed times.
      query: (m,) times to fill.

    Returns:
      (m, H, W, C) float32 frames; exactly the observed frame at t = τ_j.
    """
    frames = np.asarray(frames, np.float32)
    times = np.asarray(times, np.float64)
    q = np.clip(np.asarray(query, np.float64), times[0], times[-1])
    if len(times) == 1:
        return np.repeat(frames[:1], len(q), axis=0)
    j, w = _segments(times, q)
    flows: dict = {}
    out = np.empty((len(q), *frames.shape[1:]), np.float32)
    for i, (jj, ww) in enumerate(zip(j, w)):
        if ww <= 0.0 or ww >= 1.0:
            out[i] = frames[jj] if ww <= 0.0 else frames[jj + 1]
            continue
        if jj not in flows:
            flows[jj] = (optical_flow(frames[jj], frames[jj + 1]), optical_flow(frames[jj + 1], frames[jj]))
        fwd, bwd = flows[jj]
        a = _warp(frames[jj], fwd, -ww)
        b = _warp(frames[jj + 1], bwd, -(1.0 - ww))
        out[i] = np.clip((1.0 - ww) * a + ww * b, 0.0, 1.0)
    return out


# The classical in-between frames lrgen is compared with (observed frames, times, query) → frames.
BASELINES = {"nearest": nearest_frames, "blend": blend_frames, "flow": flow_frames}


# --------------------------------------------------------------------------- rendering
def render(spec: models.GeneratorSpec, params: Any, z: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """G(z) in [0, 1] for codes (N, k), in chunks of ``chunk`` frames; float32 (N, H, W, C)."""
    fn = _renderer(spec)
    out = [np.asarray(fn(params, jnp.asarray(z[i : i + chunk], jnp.float32))) for i in range(0, len(z), chunk)]
    return np.concatenate(out)


_RENDERERS: dict = {}


def _renderer(spec: models.GeneratorSpec):
    if spec not in _RENDERERS:
        model = models.build_generator(spec)
        _RENDERERS[spec] = jax.jit(lambda p, z: model.apply({"params": p}, z) * 0.5 + 0.5)
    return _RENDERERS[spec]


# --------------------------------------------------------------------------- inputs
@dataclasses.dataclass
class Fit:
    """Codes of the observed frames and the generator that renders them.

    Attributes:
      job: the recovery job (its video gives the truth).
      frames: all T true frames (T, H, W, C) in [0, 1].
      observed: boolean (T,) mask of observed frames.
      z: codes of the observed frames (n, k), in time order.
      spec, params: the generator (tuned weights when the fit trained it).
      rank: r of the codes (0 = unconstrained).
      source: where the codes came from, for the record.
      fit: fit statistics (PSNR on the observed frames, timings).
      method: the path chosen by selection (None: the config's).
      selection: the table of candidates (:func:`select_candidates`), or None.
    """

    job: pipeline.RecoverJob
    frames: np.ndarray
    observed: np.ndarray
    z: np.ndarray
    spec: models.GeneratorSpec
    params: Any
    rank: int
    source: str
    fit: dict
    method: str | None = None
    selection: dict | None = None


# --------------------------------------------------------------------------- settings from the observed frames
@dataclasses.dataclass(frozen=True)
class Candidate:
    """One setting the selection can choose: changes to the fit's configuration and the path.

    Attributes:
      recover: (field, value) pairs replacing fields of the job's
        :class:`lrgen.recover.RecoverConfig` (e.g. ``(("update", "joint"), ("rank", 2))``); any
        field can be a candidate dimension, so a new recovery setting is one more entry.
      method: ``linear`` or ``slerp`` path between the fitted codes.
    """

    recover: tuple[tuple[str, Any], ...] = ()
    method: str = "linear"

    @property
    def name(self) -> str:
        return " ".join([*(f"{k}={v}" for k, v in self.recover), f"method={self.method}"])

    def config(self, base: recover.RecoverConfig) -> recover.RecoverConfig:
        return dataclasses.replace(base, **dict(self.recover))


def candidate_grid(updates: Sequence[str], ranks: Sequence[int], methods: Sequence[str]) -> tuple[Candidate, ...]:
    """Every combination of update, rank and path, in that order (the first is the fallback)."""
    return tuple(
        Candidate((("update", u), ("rank", int(r))), m) for u, r, m in itertools.product(updates, ranks, methods)
    )


def validation_folds(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds (fitted positions, held-out positions) over n observed frames, all of one size.

    Fold A fits the even positions 0, 2, 4, … and predicts the odd ones between them; fold B
    fits the odd positions 1, 3, 5, … (plus the last, n − 1, when n is odd, so both folds fit
    ⌈n/2⌉ frames and run as one batch) and predicts the even ones between them. Each held-out
    frame lies strictly inside its fold's fitted times: a fold predicts frames twice as far
    from their observed neighbours as the final fit will, which is the same question (how well
    does a setting fill a gap) asked at the one scale the observed frames can answer. Folds that
    would predict nothing are dropped; n < 3 gives no fold.
    """
    if n < 3:
        return []
    pos = np.arange(n)
    a = pos[::2]
    b = pos[1::2] if n % 2 == 0 else np.append(pos[1::2], n - 1)
    folds = []
    for fitted in (a, b):
        held = pos[(pos > fitted[0]) & (pos < fitted[-1]) & ~np.isin(pos, fitted)]
        if len(held):
            folds.append((fitted, held))
    return folds


def _score_row(pred: np.ndarray, truth: np.ndarray) -> dict:
    s = score(pred, truth)
    return {"psnr": s["psnr"], "ssim": s["ssim"]}


def _baseline_rows(frames: np.ndarray, t_obs: np.ndarray, folds) -> list[dict]:
    """The classical baselines on the same held-out frames, for reference (not selectable)."""
    rows = []
    for name, fn in BASELINES.items():
        preds, truth = [], []
        for fitted, held in folds:
            preds.append(fn(frames[fitted], t_obs[fitted], t_obs[held]))
            truth.append(frames[held])
        rows.append({"candidate": name, "baseline": True, **_score_row(np.concatenate(preds), np.concatenate(truth))})
    return rows


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
    job: pipeline.RecoverJob,
    spec: models.GeneratorSpec,
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
    them; c's error is the MSE over all held-out frames of all folds,

        E(c) = mean_{folds, held-out t, pixels} (G_c(z_c(t)) − x_t)²,

    reported as PSNR (and mean SSIM, for the record). The candidate with the lowest E wins (ties:
    the earlier one). Candidates that share a configuration (they differ in the path only) share
    one fit; each configuration fits all folds as one batch (leading axis B = folds) of
    :class:`lrgen.recover.Recoverer`. Only observed frames are used: the frames being generated
    are never seen.

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
      (the chosen candidate, the record: ``folds`` (fitted and held-out times), ``candidates``
      (one row per candidate with held-out ``psnr``, ``ssim``, fit ``seconds``, and the
      nearest/blend/flow baselines on the same frames for reference), ``chosen``).
    """
    n = frames.shape[0]
    folds = validation_folds(n)
    record = {
        "folds": [{"fitted": t_obs[f].tolist(), "held_out": t_obs[h].tolist()} for f, h in folds],
        "criterion": "held-out PSNR (MSE) over the folds' held-out observed frames",
        "iterations": iterations,
    }
    if not folds or len(candidates) == 1:
        record.update(candidates=[], chosen=candidates[0].name, note="nothing to choose from" if folds else "n < 3")
        return candidates[0], record
    m = len(folds[0][0])
    model = models.build_generator(spec)
    truth_held = np.concatenate([frames[h] for _, h in folds])
    rows: list[dict] = [{"candidate": c.name} for c in candidates]
    groups: dict = {}
    for i, c in enumerate(candidates):
        cfg = c.config(job.recover)
        if iterations is not None:
            cfg = dataclasses.replace(cfg, iterations=min(iterations, cfg.iterations))
        groups.setdefault(cfg, []).append(i)
    for cfg, members in groups.items():
        try:
            cfg.validate(m, spec.z_dim)
        except ValueError as e:  # e.g. a rank above the frames of a fold
            for i in members:
                rows[i]["error"] = str(e)
            continue
        fitted = np.stack([f for f, _ in folds])
        recoverer = recover.Recoverer(model, cfg, m)
        result = recoverer.run(
            z0[fitted],
            recover.Problem(y[fitted], measure.Identity()),
            params,
            truth=jnp.asarray(frames[fitted]),
        )
        label = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items() if getattr(job.recover, k) != v)
        for i in members:
            c = candidates[i]
            preds = []
            for b, (f, h) in enumerate(folds):
                p_b = jax.tree.map(lambda p: p[b], result.params) if cfg.trains_generator else params
                z_h, _, _ = interpolate_codes(result.z[b], t_obs[f], t_obs[h], rank=cfg.rank, method=c.method)
                preds.append(render(spec, p_b, z_h))
            rows[i].update(
                **dict(c.recover),
                method=c.method,
                **_score_row(np.concatenate(preds), truth_held),
                seconds=result.seconds + result.compile_seconds,
            )
            log(
                f"  candidate {c.name}: held-out {_fmt(rows[i]['psnr'])} dB / SSIM {_fmt(rows[i]['ssim'], 4)}"
                + (f" ({label})" if label else "")
            )
    best = _pick(rows)
    rows += _baseline_rows(frames, t_obs, folds)
    record.update(candidates=rows, chosen=candidates[best].name)
    return candidates[best], record


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
    record = {
        "folds": [{"fitted": t_obs[f].tolist(), "held_out": t_obs[h].tolist()} for f, h in folds],
        "criterion": "held-out PSNR (MSE), codes fixed (not refitted per fold)",
    }
    if not folds:
        record.update(candidates=[], chosen=methods[0], note="n < 3")
        return methods[0], record
    truth_held = np.concatenate([frames[h] for _, h in folds])
    rows = []
    for method in methods:
        preds = []
        for f, h in folds:
            z_h, _, _ = interpolate_codes(z[f], t_obs[f], t_obs[h], rank=rank, method=method)
            preds.append(render(spec, params, z_h))
        rows.append({"candidate": f"method={method}", "method": method, **_score_row(np.concatenate(preds), truth_held)})
    best = _pick(rows)
    record.update(candidates=rows, chosen=methods[best])
    return methods[best], record


def fit_observed(
    job: pipeline.RecoverJob,
    observe_every: int,
    *,
    log: Callable[[str], None] = print,
    check: Callable | None = None,
    candidates: Sequence[Candidate] | None = None,
    select_iterations: int | None = SELECT_ITERATIONS,
) -> Fit:
    """Fit codes (and, for joint/generator updates, weights) to the observed frames only.

    The job's measurement must be ``frames`` with ``observe_every`` (``make_job`` below builds
    it); its measurements y = A(2x − 1) are restricted to the observed frames, which are fitted
    with the identity operator by :class:`lrgen.recover.Recoverer`. ``check(T)`` runs after the
    frames are loaded and before anything is compiled (the caller's own validation).

    With ``candidates`` (more than one), the settings are first chosen from the observed frames
    alone (:func:`select_candidates`) and the chosen configuration is then fitted on all of them;
    ``Fit.method`` is the chosen path and ``Fit.selection`` the table of candidates.
    """
    frames = pipeline.load_frames(job, log)
    T = frames.shape[0]
    if check is not None:
        check(T)
    spec, params = pipeline.load_model(job, frames.shape[-1])
    observed = observed_frames(T, observe_every)
    n = int(observed.sum())
    job.measurement.validate(frames.shape[1:], T)
    configs = [c.config(job.recover) for c in candidates] if candidates else [job.recover]
    for cfg in configs:
        limit = min(n, spec.z_dim)
        if not 0 <= cfg.rank <= limit:
            raise ValueError(
                f"--rank={cfg.rank}: must lie in [0, min(n, k)] = [0, {limit}] "
                f"(n={n} observed frames of T={T} with --observe_every={observe_every}, k={spec.z_dim})"
            )
        cfg.validate(n, spec.z_dim)
    pipeline.check_job(dataclasses.replace(job, recover=dataclasses.replace(job.recover, rank=0)), frames.shape, spec)
    params = pipeline.init_params(job, spec, params)
    seq = pipeline.prepare_sequence(job, frames, spec)
    idx = np.flatnonzero(observed)
    method, selection = None, None
    t_select = time.perf_counter()
    if candidates:
        log(f"choosing among {len(candidates)} candidates on held-out observed frames")
        chosen, selection = select_candidates(
            job,
            spec,
            params,
            frames[idx],
            seq.y[idx],
            seq.z0[idx],
            idx.astype(np.float64),
            candidates,
            iterations=select_iterations,
            log=log,
        )
        selection["seconds"] = time.perf_counter() - t_select
        log(f"chosen: {chosen.name} ({selection['seconds']:.0f}s)")
        job = dataclasses.replace(job, recover=chosen.config(job.recover))
        method = chosen.method
    problem = recover.Problem(seq.y[idx], measure.Identity())
    recoverer = recover.Recoverer(models.build_generator(spec), job.recover, n)
    log(
        pipeline.describe(
            job, recoverer, (n, *frames.shape[1:]), f"{n} observed frames (every {observe_every}) of {job.video}"
        )
    )
    batch = lambda a: jax.tree.map(lambda v: v[None], a)  # noqa: E731
    result = recoverer.run(
        seq.z0[idx][None],
        batch(problem),
        params,
        truth=jnp.asarray(frames[idx])[None],
        callback=pipeline.progress_printer(job.recover.iterations, log),
    )
    if job.recover.trains_generator:
        params = jax.tree.map(lambda p: p[0], result.params)
    fit = {
        "psnr_observed_fit": float(metrics.psnr(result.x[0], frames[idx])),
        "iterations": job.recover.iterations,
        "update": job.recover.update,
        "seconds": result.seconds,
        "compile_seconds": result.compile_seconds,
        "seconds_per_iteration": result.seconds_per_iteration,
        "measurement_loss": float(result.measurement_loss[0]),
        "trained_generator": job.recover.trains_generator,
        "total_seconds": time.perf_counter() - t_select,
    }
    return Fit(
        job,
        frames,
        observed,
        np.asarray(result.z[0]),
        spec,
        params,
        job.recover.rank,
        "fit",
        fit,
        method=method,
        selection=selection,
    )


def make_job(job: pipeline.RecoverJob, observe_every: int) -> pipeline.RecoverJob:
    """``job`` with the frame-level hold-out operator as its measurement."""
    return dataclasses.replace(job, measurement=measure.MeasurementSpec(kind="frames", observe_every=observe_every))


def job_from_dict(d: dict) -> pipeline.RecoverJob:
    """Rebuild a :class:`lrgen.pipeline.RecoverJob` from ``RecoverJob.to_dict()`` (metrics.json)."""
    d = dict(d)
    d["measurement"] = measure.MeasurementSpec(**d["measurement"])
    d["recover"] = recover.RecoverConfig(**d["recover"])
    return pipeline.RecoverJob(**d)


def load_recover_workdir(workdir: str, observe_every: int | None = None) -> Fit:
    """Codes, generator and truth of a finished ``experiments.recover`` run.

    The generator is the workdir's ``generator/`` when the run tuned it, else the one its
    metrics.json names (``job.generator``; a relative path is taken from the current
    directory), else the random generator its seed draws. A run with ``--measurement=frames``
    observed every s-th frame only; those frames' codes are interpolated and the others are
    scored. ``observe_every`` (if given) must agree with the run.

    Raises:
      ValueError: the workdir is missing or unfinished, its generator cannot be found, or
        ``observe_every`` contradicts it.
    """
    where = f"--recover_workdir={workdir}"
    mpath = os.path.join(workdir, "metrics.json")
    rpath = os.path.join(workdir, "reconstruction.npz")
    if not os.path.isdir(workdir):
        raise ValueError(f"{where}: {'is not a directory' if os.path.exists(workdir) else 'no such directory'}")
    if not os.path.isfile(mpath) or not os.path.isfile(rpath):
        raise ValueError(f"{where}: not a finished recover workdir (needs metrics.json and reconstruction.npz)")
    reconstruction = io.read_array_file(rpath, f"{where}: its reconstruction.npz")
    try:
        with open(mpath) as f:
            m = json.load(f)
        job = job_from_dict(m["job"])
        spec = models.GeneratorSpec.from_dict(m["generator_spec"])
        z = np.asarray(reconstruction["z"], np.float32)
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise ValueError(f"{where}: unreadable metrics.json or reconstruction.npz ({io._one_line(e)})") from None
    if z.ndim != 2 or not np.all(np.isfinite(z)):
        raise ValueError(f"{where}: reconstruction.npz holds codes z of shape {z.shape}; allowed: finite (T, k) codes")
    run_every = job.measurement.observe_every if job.measurement.kind == "frames" else 1
    if observe_every is not None and observe_every != run_every:
        raise ValueError(
            f"--observe_every={observe_every}: the recover run in {workdir} observed every {run_every} frame(s) "
            f"(--measurement={job.measurement.kind}); leave --observe_every unset or pass {run_every}"
        )
    gdir = os.path.join(workdir, "generator")
    if job.recover.trains_generator and not os.path.isdir(gdir):
        raise ValueError(
            f"{where}: the run tuned its generator ({job.recover.update} update) but {gdir} is missing; "
            "its codes only fit that generator"
        )
    if os.path.isdir(gdir):
        spec, params = checkpoint.load_generator(gdir)
        source = gdir
    elif job.generator:
        if not os.path.exists(job.generator):
            raise ValueError(
                f"{where}: its generator {job.generator} (metrics.json job.generator) does not exist here; "
                "run from the directory the recover run ran in"
            )
        spec, params = checkpoint.load_generator(job.generator)
        source = job.generator
    else:
        params = pipeline.init_params(job, spec, None)
        source = f"random (seed {job.seed})"
    frames = pipeline.load_frames(job)
    if frames.shape[0] != z.shape[0] or z.shape[1] != spec.z_dim:
        raise ValueError(f"{where}: codes {z.shape} do not fit {frames.shape[0]} frames and k={spec.z_dim}")
    observed = observed_frames(frames.shape[0], run_every)
    fit = {"psnr_observed_fit": None, "recover_psnr": m.get("psnr"), "generator": source}
    return Fit(job, frames, observed, z[observed], spec, params, job.recover.rank, workdir, fit)


# --------------------------------------------------------------------------- the job
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


def run_interpolate(
    fit: Fit,
    config: InterpolateConfig,
    workdir: str,
    *,
    log: Callable[[str], None] = print,
    flags: dict | None = None,
) -> dict:
    """Generate frames between the observed ones, score the held-out ones, write ``workdir``.

    Args:
      fit: observed codes and generator (:func:`fit_observed` or :func:`load_recover_workdir`).
      config: observe_every, factor, method and video format (validated by the caller).
      workdir: output folder; ``metrics.json`` is written last.
      log: progress lines.
      flags: recorded verbatim in metrics.json.

    Returns:
      The metrics dictionary (``psnr_missing``, ``ssim_missing``, ``psnr_nearest``,
      ``psnr_blend``, … — None when no frame is held out).
    """
    start = time.perf_counter()
    frames, observed = fit.frames, fit.observed
    T = frames.shape[0]
    f = config.factor
    t_obs = np.flatnonzero(observed).astype(np.float64)
    selection = fit.selection
    method = config.method
    if method == AUTO:
        if fit.method is not None:
            method = fit.method
        else:  # codes given (a recover workdir): choose the path alone, the codes stay as fitted
            method, selection = select_path(fit.z, t_obs, frames[observed], fit.spec, fit.params, rank=fit.rank)
            log(f"path chosen on held-out observed frames: {method}")
    times = fine_times(T, f)
    z, coords, _ = interpolate_codes(fit.z, t_obs, times, rank=fit.rank, method=method)
    x = render(fit.spec, fit.params, z)
    whole = np.arange(T) * f  # indices of whole frame times in the fine sequence
    x_whole = x[whole]
    missing = ~observed
    t_all = np.arange(T, dtype=np.float64)
    base = {name: fn(frames[observed], t_obs, t_all) for name, fn in BASELINES.items()} if missing.any() else {}
    interior = missing & (t_all <= t_obs[-1])
    made = {"lrgen": x_whole, **base}
    scores = {name: score(v[missing], frames[missing]) for name, v in made.items()}
    inner = {name: score(v[interior], frames[interior]) for name, v in made.items()}
    obs_scores = score(x_whole[observed], frames[observed])

    # Outputs; metrics.json last.
    with io.atomic_write(os.path.join(workdir, "interpolation.npz")) as tmp:
        np.savez_compressed(
            tmp,
            frames=x.astype(np.float32),
            z=z,
            times=times,
            observed=np.isin(times, t_obs),
            z_observed=fit.z,
            t_observed=t_obs,
        )
    if fit.fit.get("trained_generator"):
        checkpoint.save_generator(
            os.path.join(workdir, "generator"), fit.spec, fit.params, source=fit.job.generator or "random"
        )
    io.write_video(os.path.join(workdir, f"interpolation.{config.video_format}"), x, fps=min(8 * f, 60))
    w = min(T, GRID_FRAMES)
    seen = np.where(observed[:, None, None, None], frames, 0.0)
    rows = [frames[:w], seen[:w], *(v[:w] for v in base.values()), x_whole[:w]]
    labels = ["truth", "observed", *base, "lrgen"]
    report.save_grid(os.path.join(workdir, "grid.png"), rows, num_columns=w, labels=labels)
    if f > 1:
        span = min(len(times), int(t_obs[min(2, len(t_obs) - 1)]) * f + 1, 32)
        report.save_grid(os.path.join(workdir, "grid_fine.png"), [x[:span]], num_columns=span)
    # Points are numbered by their position in the plot: hold-out, the whole frames (number =
    # frame); otherwise every generated time (number = f·time), or for long paths the frames and
    # the midpoints between them (number = 2·time). Rank > 3: the two leading coordinates.
    if missing.any():
        pick, what = whole, f"1 in {config.observe_every} observed"
    elif len(times) <= 100:
        pick, what = np.arange(len(times)), f"×{f}, no. = {f}·t"
    else:
        pick = np.sort(np.concatenate([whole, whole[:-1] + f // 2])) if f % 2 == 0 else whole
        what = f"×{f}, frames + midpoints, no. = 2·t" if f % 2 == 0 else f"×{f}, frames only"
    d = coords.shape[1]
    plot = coords[pick, :2] if d > 3 else (np.pad(coords[pick], ((0, 0), (0, 1))) if d == 1 else coords[pick])
    report.plot_latent_path(
        os.path.join(workdir, "latent.png"),
        plot,
        title=f"rank-{fit.rank} codes, {method}, {what}",
        highlight=np.isin(times[pick], t_obs),
        labels=("observed", "generated"),
    )
    out = {
        "psnr_missing": scores["lrgen"]["psnr"],
        "ssim_missing": scores["lrgen"]["ssim"],
        # None for every baseline when nothing is held out.
        **{f"{m}_{k}": scores[k][m] if k in scores else None for k in BASELINES for m in ("psnr", "ssim")},
        "interior": {k: {"psnr": v["psnr"], "ssim": v["ssim"]} for k, v in inner.items()},
        "psnr_per_missing_frame": {k: v["psnr_per_frame"] for k, v in scores.items()},
        "ssim_per_missing_frame": {k: v["ssim_per_frame"] for k, v in scores.items()},
        "psnr_observed": obs_scores["psnr"],
        "ssim_observed": obs_scores["ssim"],
        "observed_frames": [int(t) for t in t_obs],
        "missing_frames": [int(t) for t in np.flatnonzero(missing)],
        "extrapolated_frames": [int(t) for t in np.flatnonzero(missing & ~interior)],
        "num_generated": int(len(times)),
        "num_frames": T,
        "frame_shape": list(frames.shape[1:]),
        "observe_every": config.observe_every,
        "factor": f,
        "method": method,
        "update": fit.job.recover.update,
        "rank": fit.rank,
        "selection": selection,
        "codes_from": fit.source,
        "fit": fit.fit,
        "generator_spec": fit.spec.to_dict(),
        "job": fit.job.to_dict(),
        "config": dataclasses.asdict(config),
        "seconds": time.perf_counter() - start,
        "flags": flags or {},
        "environment": pipeline.environment(),
    }
    pipeline._write_json(os.path.join(workdir, "metrics.json"), out)
    if missing.any():
        log(
            f"{int(missing.sum())} missing frames: lrgen PSNR {_fmt(out['psnr_missing'])} dB / "
            f"SSIM {_fmt(out['ssim_missing'], 4)}; "
            + "; ".join(f"{k} {_fmt(out['psnr_' + k])} dB / {_fmt(out['ssim_' + k], 4)}" for k in base)
            + f" → {workdir}"
        )
    else:
        log(
            f"{len(times)} frames generated from {T} observed (×{f}), "
            f"PSNR on observed {_fmt(out['psnr_observed'])} dB → {workdir}"
        )
    return out


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"
