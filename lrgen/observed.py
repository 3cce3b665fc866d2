r"""Codes of the observed frames and the generator that renders them (a :class:`Fit`).

Interpolation starts from codes z_j of the observed frames τ_0 < … < τ_{n−1} and a generator G
that reproduces them. They come from one of two places:

* :func:`fit_observed`: with ``observe_every`` = s only frames 0, s, 2s, … are observed — the
  frame-level measurement ``operators.MeasurementSpec(kind="frames", observe_every=s)`` — and
  their codes (and, for joint updates, G's weights) are fitted here by :mod:`lrgen.solver`,
  optionally after choosing the settings on held-out observed frames
  (:func:`lrgen.selection.select_candidates`). The fit sees only the observed frames: the frame
  operator's data term is the same up to the factor n/T that the default step size
  α = 200·T/256 absorbs, and leaving the unobserved rows out of Z keeps codes that no
  measurement constrains from tilting the rank-r subspace.
* :func:`load_recover_workdir`: the codes and generator of a finished ``experiments.recover``
  run (a run with ``--measurement=frames`` observed every s-th frame only).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import checkpoint, config, engine, io, jobs, metrics, operators, recovery, solver
from lrgen.nets import generators
from lrgen.selection import SELECT_ITERATIONS, Candidate, select_candidates


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
      selection: the table of candidates (:func:`lrgen.selection.select_candidates`), or None.
    """

    job: jobs.RecoverJob
    frames: np.ndarray
    observed: np.ndarray
    z: np.ndarray
    spec: generators.GeneratorSpec
    params: Any
    rank: int
    source: str
    fit: dict
    method: str | None = None
    selection: dict | None = None


def observed_frames(num_frames: int, observe_every: int) -> np.ndarray:
    """Boolean (T,) mask of the frames t with t mod s = 0 (0, s, 2s, …): those the frame-level
    operator (``measure`` kind ``frames``) observes."""
    return np.arange(num_frames) % observe_every == 0


def fit_frames(
    recoverer: solver.Recoverer,
    z0: jax.Array,
    y: jax.Array,
    params: Any,
    truth: np.ndarray,
    callback: Callable[[int, dict], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, Any, dict]:
    """Fit codes (and weights, when the configuration trains G) to one sequence, y = I(x).

    Used by both applications: interpolation fits the observed frames, compression the key
    frames. :meth:`lrgen.solver.Recoverer.run` takes a batch of B sequences (leading axis on
    z0, y and truth); one sequence is a batch of one, and this is the one place where the
    applications add that axis and take it off again.

    Returns:
      (codes (n, k), frames G(z) (n, H, W, C) in [0, 1], the generator's weights (tuned, or
      ``params``), ``seconds``, ``compile_seconds``, ``seconds_per_iteration`` and the final
      ``measurement_loss``).
    """
    problem = engine.Problem(jnp.asarray(y)[None], operators.Identity())
    result = recoverer.run(jnp.asarray(z0)[None], problem, params, truth=jnp.asarray(truth)[None], callback=callback)
    if recoverer.config.trains_generator:
        params = jax.tree.map(lambda p: p[0], result.params)
    stats = {
        "seconds": result.seconds,
        "compile_seconds": result.compile_seconds,
        "seconds_per_iteration": result.seconds_per_iteration,
        "measurement_loss": float(result.measurement_loss[0]),
    }
    return np.asarray(result.z[0]), result.x[0], params, stats


def make_job(job: jobs.RecoverJob, observe_every: int) -> jobs.RecoverJob:
    """``job`` with the frame-level hold-out operator as its measurement."""
    return dataclasses.replace(job, measurement=operators.MeasurementSpec(kind="frames", observe_every=observe_every))


def fit_observed(
    job: jobs.RecoverJob,
    observe_every: int,
    *,
    log: Callable[[str], None] = print,
    check: Callable | None = None,
    candidates: Sequence[Candidate] | None = None,
    select_iterations: int | None = SELECT_ITERATIONS,
) -> Fit:
    """Fit codes (and, for joint/generator updates, weights) to the observed frames only.

    The job's measurement must be ``frames`` with ``observe_every`` (:func:`make_job` builds
    it); its measurements y = A(2x − 1) are restricted to the observed frames, which are fitted
    with the identity operator (:func:`fit_frames`). ``check(T)`` runs after the frames are
    loaded and before anything is compiled (the caller's own validation).

    With ``candidates`` (more than one), the settings are first chosen from the observed frames
    alone (:func:`lrgen.selection.select_candidates`) and the chosen configuration is then
    fitted on all of them; ``Fit.method`` is the chosen path and ``Fit.selection`` the table.
    """
    frames = jobs.load_frames(job, log)
    T = frames.shape[0]
    if check is not None:
        check(T)
    spec, params = jobs.load_model(job, frames.shape[-1])
    observed = observed_frames(T, observe_every)
    _check_fit(job, frames.shape, spec, int(observed.sum()), observe_every, candidates)
    params = jobs.init_params(job, spec, params)
    seq = jobs.prepare_sequence(job, frames, spec)
    idx = np.flatnonzero(observed)
    method, selection = None, None
    start = time.perf_counter()
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
        selection["seconds"] = time.perf_counter() - start
        log(f"chosen: {chosen.name} ({selection['seconds']:.0f}s)")
        job = dataclasses.replace(job, recover=chosen.config(job.recover))
        method = chosen.method
    n = len(idx)
    recoverer = solver.Recoverer(generators.build_generator(spec), job.recover, n)
    what = f"{n} observed frames (every {observe_every}) of {job.video}"
    log(recovery.describe(job, recoverer, (n, *frames.shape[1:]), what))
    progress = recovery.progress_printer(job.recover.iterations, log)
    z, x, params, stats = fit_frames(recoverer, seq.z0[idx], seq.y[idx], params, frames[idx], progress)
    fit = {
        "psnr_observed_fit": float(metrics.psnr(x, frames[idx])),
        "iterations": job.recover.iterations,
        "update": job.recover.update,
        **stats,
        "trained_generator": job.recover.trains_generator,
        "total_seconds": time.perf_counter() - start,
    }
    return Fit(job, frames, observed, z, spec, params, job.recover.rank, "fit", fit, method=method, selection=selection)


def _check_fit(job, frames_shape, spec, n: int, observe_every: int, candidates) -> None:
    """Every check of the fit (each candidate's rank and configuration on n observed frames)."""
    T = frames_shape[0]
    job.measurement.validate(frames_shape[1:], T)
    for cfg in [c.config(job.recover) for c in candidates] if candidates else [job.recover]:
        limit = min(n, spec.z_dim)
        if not 0 <= cfg.rank <= limit:
            raise ValueError(
                f"--rank={cfg.rank}: must lie in [0, min(n, k)] = [0, {limit}] "
                f"(n={n} observed frames of T={T} with --observe_every={observe_every}, k={spec.z_dim})"
            )
        cfg.validate(n, spec.z_dim)
    jobs.check_job(dataclasses.replace(job, recover=dataclasses.replace(job.recover, rank=0)), frames_shape, spec)


def job_from_dict(d: dict) -> jobs.RecoverJob:
    """Rebuild a :class:`lrgen.jobs.RecoverJob` from ``RecoverJob.to_dict()`` (metrics.json)."""
    d = dict(d)
    d["measurement"] = operators.MeasurementSpec(**d["measurement"])
    d["recover"] = config.RecoverConfig(**d["recover"])
    return jobs.RecoverJob(**d)


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
    m, job, spec, z = _read_recover_workdir(workdir, where)
    run_every = job.measurement.observe_every if job.measurement.kind == "frames" else 1
    if observe_every is not None and observe_every != run_every:
        raise ValueError(
            f"--observe_every={observe_every}: the recover run in {workdir} observed every {run_every} frame(s) "
            f"(--measurement={job.measurement.kind}); leave --observe_every unset or pass {run_every}"
        )
    spec, params, source = _generator_of(workdir, where, job, spec)
    frames = jobs.load_frames(job)
    if frames.shape[0] != z.shape[0] or z.shape[1] != spec.z_dim:
        raise ValueError(f"{where}: codes {z.shape} do not fit {frames.shape[0]} frames and k={spec.z_dim}")
    observed = observed_frames(frames.shape[0], run_every)
    fit = {"psnr_observed_fit": None, "recover_psnr": m.get("psnr"), "generator": source}
    return Fit(job, frames, observed, z[observed], spec, params, job.recover.rank, workdir, fit)


def _read_recover_workdir(workdir: str, where: str):
    """(metrics.json, its job, its generator spec, the codes z (T, k)) of a finished run."""
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
        spec = generators.GeneratorSpec.from_dict(m["generator_spec"])
        z = np.asarray(reconstruction["z"], np.float32)
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise ValueError(f"{where}: unreadable metrics.json or reconstruction.npz ({io._one_line(e)})") from None
    if z.ndim != 2 or not np.all(np.isfinite(z)):
        raise ValueError(f"{where}: reconstruction.npz holds codes z of shape {z.shape}; allowed: finite (T, k) codes")
    return m, job, spec, z


def _generator_of(workdir: str, where: str, job: jobs.RecoverJob, spec: generators.GeneratorSpec):
    """(spec, params, source) of the generator a recover run's codes belong to."""
    gdir = os.path.join(workdir, "generator")
    if job.recover.trains_generator and not os.path.isdir(gdir):
        raise ValueError(
            f"{where}: the run tuned its generator ({job.recover.update} update) but {gdir} is missing; "
            "its codes only fit that generator"
        )
    if os.path.isdir(gdir):
        return (*checkpoint.load_generator(gdir), gdir)
    if job.generator:
        if not os.path.exists(job.generator):
            raise ValueError(
                f"{where}: its generator {job.generator} (metrics.json job.generator) does not exist here; "
                "run from the directory the recover run ran in"
            )
        return (*checkpoint.load_generator(job.generator), job.generator)
    return spec, jobs.init_params(job, spec, None), f"random (seed {job.seed})"
