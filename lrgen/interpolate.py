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
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import checkpoint, io, measure, metrics, models, pipeline, recover, report

METHODS = ("linear", "slerp")
MAX_FACTOR = 256
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
      method: ``linear`` or ``slerp`` interpolation of the latent coordinates.
      video_format: ``mp4`` or ``gif``.
    """

    observe_every: int = 1
    factor: int = 4
    method: str = "linear"
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
        if self.method not in METHODS:
            raise ValueError(f"--method={self.method}: allowed values are {', '.join(METHODS)}")
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


def fit_observed(
    job: pipeline.RecoverJob, observe_every: int, *, log: Callable[[str], None] = print, check: Callable | None = None
) -> Fit:
    """Fit codes (and, for joint/generator updates, weights) to the observed frames only.

    The job's measurement must be ``frames`` with ``observe_every`` (``make_job`` below builds
    it); its measurements y = A(2x − 1) are restricted to the observed frames, which are fitted
    with the identity operator by :class:`lrgen.recover.Recoverer`. ``check(T)`` runs after the
    frames are loaded and before anything is compiled (the caller's own validation).
    """
    frames = pipeline.load_frames(job, log)
    T = frames.shape[0]
    if check is not None:
        check(T)
    spec, params = pipeline.load_model(job, frames.shape[-1])
    observed = observed_frames(T, observe_every)
    n = int(observed.sum())
    job.measurement.validate(frames.shape[1:], T)
    limit = min(n, spec.z_dim)
    if not 0 <= job.recover.rank <= limit:
        raise ValueError(
            f"--rank={job.recover.rank}: must lie in [0, min(n, k)] = [0, {limit}] "
            f"(n={n} observed frames of T={T} with --observe_every={observe_every}, k={spec.z_dim})"
        )
    pipeline.check_job(dataclasses.replace(job, recover=dataclasses.replace(job.recover, rank=0)), frames.shape, spec)
    params = pipeline.init_params(job, spec, params)
    seq = pipeline.prepare_sequence(job, frames, spec)
    idx = np.flatnonzero(observed)
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
        "seconds": result.seconds,
        "compile_seconds": result.compile_seconds,
        "seconds_per_iteration": result.seconds_per_iteration,
        "measurement_loss": float(result.measurement_loss[0]),
        "trained_generator": job.recover.trains_generator,
    }
    return Fit(job, frames, observed, np.asarray(result.z[0]), spec, params, job.recover.rank, "fit", fit)


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
    mean ``ssim`` (None for frames under 11 pixels) and ``psnr_per_frame``."""
    if x.shape[0] == 0:
        return {"psnr": None, "ssim": None, "psnr_per_frame": []}
    psnr = float(_psnr(x, truth))
    # SSIM frame by frame (one compiled shape for any number of frames); every frame has as many
    # pixels, so the mean over frames is metrics.ssim of the whole sequence.
    ssim = float(np.mean([metrics.ssim(a, b) for a, b in zip(x, truth)])) if min(x.shape[1:3]) >= 11 else None
    return {
        "psnr": psnr if math.isfinite(psnr) else None,
        "ssim": ssim,
        "psnr_per_frame": [float(p) for p in np.asarray(_psnr_per_frame(x, truth))],
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
    times = fine_times(T, f)
    z, coords, _ = interpolate_codes(fit.z, t_obs, times, rank=fit.rank, method=config.method)
    x = render(fit.spec, fit.params, z)
    whole = np.arange(T) * f  # indices of whole frame times in the fine sequence
    x_whole = x[whole]
    missing = ~observed
    t_all = np.arange(T, dtype=np.float64)
    nearest = nearest_frames(frames[observed], t_obs, t_all)
    blend = blend_frames(frames[observed], t_obs, t_all)
    interior = missing & (t_all <= t_obs[-1])
    scores = {
        name: score(v[missing], frames[missing])
        for name, v in (("lrgen", x_whole), ("nearest", nearest), ("blend", blend))
    }
    inner = {
        name: score(v[interior], frames[interior])
        for name, v in (("lrgen", x_whole), ("nearest", nearest), ("blend", blend))
    }
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
    rows = [frames[:w], seen[:w]] + ([nearest[:w], blend[:w]] if missing.any() else []) + [x_whole[:w]]
    report.save_grid(os.path.join(workdir, "grid.png"), rows, num_columns=w)
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
        title=f"rank-{fit.rank} codes, {config.method}, {what}",
        highlight=np.isin(times[pick], t_obs),
        labels=("observed", "generated"),
    )
    out = {
        "psnr_missing": scores["lrgen"]["psnr"],
        "ssim_missing": scores["lrgen"]["ssim"],
        "psnr_nearest": scores["nearest"]["psnr"],
        "ssim_nearest": scores["nearest"]["ssim"],
        "psnr_blend": scores["blend"]["psnr"],
        "ssim_blend": scores["blend"]["ssim"],
        "interior": {k: {"psnr": v["psnr"], "ssim": v["ssim"]} for k, v in inner.items()},
        "psnr_per_missing_frame": {k: v["psnr_per_frame"] for k, v in scores.items()},
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
        "method": config.method,
        "rank": fit.rank,
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
            f"nearest {_fmt(out['psnr_nearest'])} dB / {_fmt(out['ssim_nearest'], 4)}; "
            f"blend {_fmt(out['psnr_blend'])} dB / {_fmt(out['ssim_blend'], 4)} → {workdir}"
        )
    else:
        log(
            f"{len(times)} frames generated from {T} observed (×{f}), "
            f"PSNR on observed {_fmt(out['psnr_observed'])} dB → {workdir}"
        )
    return out


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"
