r"""New frames between observed ones, by interpolating low-rank latent coordinates.

The method (Hyder & Asif 2019): codes z_j of the observed frames τ_0 < … < τ_{n−1}, in their
rank-r basis z_j = c_j B, are interpolated along a linear or a great-circle (slerp) path
c(t) between neighbouring observed frames, and the new frame is x(t) = G(c(t) B) in [0, 1]
(:mod:`lrgen.latent_paths`, where the equations are written out). The codes and G come from a
fit of the observed frames or from a finished recover run (:mod:`lrgen.observed`); the path,
and when fitting here the update and the rank, can be chosen by predicting held-out observed
frames (:mod:`lrgen.selection`).

Hold-out evaluation: with ``observe_every`` = s only frames 0, s, 2s, … are observed; the
others are generated and scored against the truth, beside the classical baselines that use the
observed frames' pixels (:mod:`lrgen.baselines`: nearest, blend, optical flow).

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
import os
import time
from collections.abc import Callable

import numpy as np

from lrgen import checkpoint, io, jobs, outputs, report
from lrgen.baselines import BASELINES, extrapolated_flow_frames
from lrgen.latent_paths import MAX_FACTOR, METHODS, fine_times, interpolate_codes, render
from lrgen.observed import Fit, fit_observed, load_recover_workdir, make_job
from lrgen.selection import (
    AUTO,
    AUTO_UPDATES,
    SELECT_ITERATIONS,
    Candidate,
    candidate_grid,
    flow_share_at,
    fmt,
    score,
    select_path,
)

# Whole-frame columns in the comparison grid (a contiguous window from frame 0).
GRID_FRAMES = 16


@dataclasses.dataclass(frozen=True)
class InterpolateConfig:
    """What to generate; field names are the flag names of ``experiments.interpolate``.

    Attributes:
      observe_every: s; frames 0, s, 2s, … are observed, the others are generated and scored
        (1: every frame is observed, nothing is held out). In an :class:`InterpolateJob`, None
        means not given: 1 when fitting here, the recover run's own s otherwise.
      factor: f; frames are generated at times i/f, i = 0 … (T − 1)·f (f − 1 new frames
        between consecutive frames).
      method: ``linear`` or ``slerp`` interpolation of the latent coordinates, or ``auto``: the
        path the fit's selection chose (:func:`lrgen.selection.select_candidates`; with fixed
        codes, :func:`lrgen.selection.select_path`).
      video_format: ``mp4`` or ``gif``.
      flow_mix: when settings are chosen on held-out observed frames, mix the generated frames
        with optical flow's, x̂ = (1 − β) G(z) + β · flow, with the share β of least held-out
        error (:func:`lrgen.selection.flow_share`; β = 0: the generated frames alone) carried
        from the folds' distance to each frame's own (:func:`lrgen.selection.flow_share_at`);
        frames beyond the observed span have their own share, and flow there carries the end
        frame on (:func:`lrgen.baselines.extrapolated_flow_frames`).
    """

    observe_every: int | None = 1
    factor: int = 4
    method: str = AUTO
    video_format: str = "mp4"
    flow_mix: bool = True

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


@dataclasses.dataclass(frozen=True)
class InterpolateJob:
    """One run of ``experiments.interpolate``: where the codes come from and what to generate.

    Exactly one of ``fit`` and ``recover_workdir`` is given.

    Attributes:
      config: what to generate (``observe_every`` None: not given).
      fit: the recovery job that fits the observed frames here (video, generator, codes and
        loop settings; its measurement and update are set here).
      recover_workdir: a finished ``experiments.recover`` run whose codes and generator are used
        as they are.
      update: what the fit optimises, or ``auto``: latent or joint, whichever best predicts
        held-out observed frames.
      select_ranks: ranks to choose from the same way (integers ≥ 0, as given; empty: the fit's
        rank only).
      select_iterations: iterations of each fit that compares candidates.
      given_fit_flags: names of the fit's flags given on the command line (none may be given
        with ``recover_workdir``: they would be ignored).
    """

    config: InterpolateConfig
    fit: jobs.RecoverJob | None = None
    recover_workdir: str = ""
    update: str = AUTO
    select_ranks: tuple[int | str, ...] = ()
    select_iterations: int = SELECT_ITERATIONS
    given_fit_flags: tuple[str, ...] = ()

    def check_workdir(self, workdir: str) -> None:
        """``workdir`` can be written and overwrites none of the inputs (the fit's generator/ included)."""
        io.check_output_dir(workdir, "--workdir")
        video, generator = (self.fit.video, self.fit.generator) if self.fit else ("", "")
        inputs = {"--recover_workdir": self.recover_workdir, "--video": video, "--generator": generator}
        io.check_not_inputs("--workdir", workdir, inputs)
        if self.fit and self.update != "latent":  # the fit's tuned generator/ is written there
            written = os.path.join(workdir, "generator")
            io.check_not_inputs("--workdir", workdir, inputs, written=written, inside=True)

    def candidates(self) -> tuple[Candidate, ...]:
        """The settings to choose from: every ``auto`` contributes its choices (one: no selection)."""
        updates = AUTO_UPDATES if self.update == AUTO else (self.update,)
        bad = ValueError(f"--select_ranks={','.join(map(str, self.select_ranks))}: must be integers ≥ 0")
        try:
            ranks = tuple(int(r) for r in self.select_ranks) or (self.fit.recover.rank,)
        except ValueError:
            raise bad from None
        if min(ranks) < 0:
            raise bad
        if self.select_iterations < 1:
            raise ValueError(f"--select_iterations={self.select_iterations}: must be ≥ 1")
        methods = METHODS if self.config.method == AUTO else (self.config.method,)
        return candidate_grid(updates, ranks, methods)

    def fit_job(self, observe_every: int) -> jobs.RecoverJob:
        """The recovery job of the observed frames (``update=auto``: the first candidate's until chosen)."""
        cfg = self.fit.recover
        if cfg.iterations < 1:
            raise ValueError(f"--iterations={cfg.iterations}: must be ≥ 1")
        if self.fit.z_dim is not None and self.fit.z_dim < 1:
            raise ValueError(f"--z_dim={self.fit.z_dim}: must be ≥ 1")
        update = AUTO_UPDATES[0] if self.update == AUTO else self.update
        job = dataclasses.replace(self.fit, recover=dataclasses.replace(cfg, update=update))
        return make_job(job, observe_every)


def interpolate_video(
    job: InterpolateJob, workdir: str, *, log: Callable[[str], None] = print, flags: dict | None = None
) -> dict:
    """Codes of the observed frames (fitted here or read), then :func:`run_interpolate`.

    Every check runs before anything is compiled; nothing is written on a user's mistake.

    Raises:
      ValueError: a wrong input, naming the flag, the bad value and what is allowed.
    """
    if (job.fit is None) == (not job.recover_workdir):
        raise ValueError("give exactly one of --video (fit the observed frames here) and --recover_workdir")
    job.check_workdir(workdir)
    config = job.config
    if config.observe_every is not None and config.observe_every < 1:
        raise ValueError(f"--observe_every={config.observe_every}: must be ≥ 1")
    if job.recover_workdir:
        if job.given_fit_flags:
            raise ValueError(
                f"{', '.join('--' + n for n in job.given_fit_flags)}: fit flags do not apply with --recover_workdir "
                "(its codes and generator are used as they are)"
            )
        dataclasses.replace(config, observe_every=1).validate(2)  # factor and method; observe_every below
        fit = load_recover_workdir(job.recover_workdir, config.observe_every)
        run_every = fit.job.measurement.observe_every if fit.job.measurement.kind == "frames" else 1
        config = dataclasses.replace(config, observe_every=run_every)
        config.validate(fit.frames.shape[0])
    else:
        config = dataclasses.replace(config, observe_every=config.observe_every or 1)
        fit_job = job.fit_job(config.observe_every)
        candidates = job.candidates()
        fit = fit_observed(
            fit_job,
            config.observe_every,
            log=log,
            check=config.validate,
            candidates=candidates if len(candidates) > 1 else None,
            select_iterations=job.select_iterations,
        )
    return run_interpolate(fit, config, workdir, log=log, flags=flags)


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
      fit: observed codes and generator (:func:`lrgen.observed.fit_observed` or
        :func:`lrgen.observed.load_recover_workdir`).
      config: observe_every, factor, method and video format (validated by the caller).
      workdir: output folder; ``metrics.json`` is written last.
      log: progress lines.
      flags: recorded verbatim in metrics.json.

    Returns:
      The metrics dictionary (``psnr_missing``, ``ssim_missing``, ``psnr_nearest``,
      ``psnr_blend``, … — None when no frame is held out).
    """
    start = time.perf_counter()
    t_obs = np.flatnonzero(fit.observed).astype(np.float64)
    method, selection = _choose_path(fit, config, t_obs, log)
    times = fine_times(fit.frames.shape[0], config.factor)
    z, coords, _ = interpolate_codes(fit.z, t_obs, times, rank=fit.rank, method=method)
    x = generated = render(fit.spec, fit.params, z)
    whole = np.arange(fit.frames.shape[0]) * config.factor
    shares = _flow_shares(selection if config.flow_mix else None)
    mixed = config.flow_mix and _mixable(selection)
    beta_t = None
    if mixed:  # x̂ = (1 − β(t)) G(z) + β(t) · flow, β from the held-out observed frames, carried to
        # each frame's distance from the observed ones (lrgen.selection.flow_share_at); beyond the
        # observed span flow carries the end frame on.
        motion = extrapolated_flow_frames(fit.frames[fit.observed], t_obs, times)
        seen = fit.frames[fit.observed].astype(np.float64)
        fitted_error = float(np.mean((generated[whole][fit.observed].astype(np.float64) - seen) ** 2))
        beta_t = flow_share_at(times, t_obs, fitted_error, selection)
        beta = beta_t.reshape(-1, *([1] * (generated.ndim - 1))).astype(np.float32)
        x = (1.0 - beta) * generated + beta * motion
    x_whole = x[whole]  # the frames at whole times
    g_whole = generated[whole] if mixed else None  # G(z) alone, reported beside the mix
    base, scores = _score_against_truth(fit, x_whole, t_obs, g_whole)
    _write_outputs(workdir, fit, config, t_obs, times, z, x, x_whole, base, g_whole)
    _plot_latent_path(workdir, fit, config, t_obs, times, coords, method)
    out = {
        **_metrics(fit, config, t_obs, times, method, selection, scores),
        "flow_share": shares[0],
        "flow_share_ends": shares[1],
        # β(t) of every missing frame (None: G(z) alone).
        "flow_share_per_missing_frame": None if beta_t is None else [float(b) for b in beta_t[whole][~fit.observed]],
        "seconds": time.perf_counter() - start,
        "flags": flags or {},
        "environment": outputs.environment(),
    }
    outputs.write_json(os.path.join(workdir, "metrics.json"), out)
    _log_summary(out, fit, config, base, workdir, log)
    return out


def _mixable(selection: dict | None) -> bool:
    """Whether the selection measured flow against G(z) on held-out frames (a share to carry;
    ``lrgen.selection`` records the errors wherever it records a share)."""
    return any((selection or {}).get(k) is not None for k in ("fold_errors", "fold_errors_ends"))


def _flow_shares(selection: dict | None) -> tuple[float, float]:
    """(β between the observed frames, β beyond them) of the selection; 0 where none was chosen."""
    selection = selection or {}
    return selection.get("flow_share") or 0.0, selection.get("flow_share_ends") or 0.0


def _choose_path(fit: Fit, config: InterpolateConfig, t_obs: np.ndarray, log) -> tuple[str, dict | None]:
    """The path: the config's, the fit's selection, or (codes given) chosen here from held-out frames."""
    if config.method != AUTO:
        return config.method, fit.selection
    if fit.method is not None:
        return fit.method, fit.selection
    # Codes given (a recover workdir): choose the path alone, the codes stay as fitted.
    method, selection = select_path(fit.z, t_obs, fit.frames[fit.observed], fit.spec, fit.params, rank=fit.rank)
    log(f"path chosen on held-out observed frames: {method}")
    return method, selection


def _score_against_truth(fit: Fit, x_whole: np.ndarray, t_obs: np.ndarray, generated=None) -> tuple[dict, dict]:
    """(the baselines' frames, the scores of lrgen and the baselines on the missing frames, on the
    interior missing frames (not extrapolated) and G(z)'s on the observed ones). ``generated``:
    G(z) alone when lrgen's frames are a mix with flow, scored as ``generator`` for the record."""
    frames, observed = fit.frames, fit.observed
    missing = ~observed
    t_all = np.arange(frames.shape[0], dtype=np.float64)
    base = {name: fn(frames[observed], t_obs, t_all) for name, fn in BASELINES.items()} if missing.any() else {}
    interior = missing & (t_all <= t_obs[-1])
    made = {"lrgen": x_whole, **base, **({"generator": generated} if generated is not None else {})}
    scores = {
        "missing": {name: score(v[missing], frames[missing]) for name, v in made.items()},
        "interior": {name: score(v[interior], frames[interior]) for name, v in made.items()},
        # How well the fit reproduces the observed frames: G(z)'s (lrgen's frames there are the
        # observed ones wherever flow's share reaches 1).
        "observed": score((x_whole if generated is None else generated)[observed], frames[observed]),
        "extrapolated": missing & ~interior,
    }
    return base, scores


def _write_outputs(workdir, fit: Fit, config, t_obs, times, z, x, x_whole, base, generated=None) -> None:
    """interpolation.npz, the tuned generator/, the video and the comparison grids."""
    frames, observed, f = fit.frames, fit.observed, config.factor
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
    w = min(frames.shape[0], GRID_FRAMES)
    seen = np.where(observed[:, None, None, None], frames, 0.0)
    mixed = [] if generated is None else [generated[:w]]  # G(z) alone, above lrgen's mix with flow
    rows = [frames[:w], seen[:w], *(v[:w] for v in base.values()), *mixed, x_whole[:w]]
    labels = ["truth", "observed", *base, *(["G(z)"] if mixed else []), "lrgen"]
    report.save_grid(os.path.join(workdir, "grid.png"), rows, num_columns=w, labels=labels)
    if f > 1:
        span = min(len(times), int(t_obs[min(2, len(t_obs) - 1)]) * f + 1, 32)
        report.save_grid(os.path.join(workdir, "grid_fine.png"), [x[:span]], num_columns=span)


def _plot_latent_path(workdir, fit: Fit, config, t_obs, times, coords, method) -> None:
    """latent.png: the codes in their rank-r basis, observed and generated.

    Points are numbered by their position in the plot: hold-out, the whole frames (number =
    frame); otherwise every generated time (number = f·time), or for long paths the frames and
    the midpoints between them (number = 2·time). Rank > 3: the two leading coordinates.
    """
    f = config.factor
    whole = np.arange(fit.frames.shape[0]) * f
    if (~fit.observed).any():
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


def _metrics(fit: Fit, config, t_obs, times, method, selection, scores) -> dict:
    """metrics.json's scores and record (timings and environment are added by the caller)."""
    missing, inner = scores["missing"], scores["interior"]
    return {
        "psnr_missing": missing["lrgen"]["psnr"],
        "ssim_missing": missing["lrgen"]["ssim"],
        # None for every baseline when nothing is held out.
        **{f"{m}_{k}": missing[k][m] if k in missing else None for k in BASELINES for m in ("psnr", "ssim")},
        # G(z) alone, when lrgen's frames mix it with flow (flow_share > 0).
        **{f"{m}_generator": missing["generator"][m] for m in ("psnr", "ssim") if "generator" in missing},
        "interior": {k: {"psnr": v["psnr"], "ssim": v["ssim"]} for k, v in inner.items()},
        "psnr_per_missing_frame": {k: v["psnr_per_frame"] for k, v in missing.items()},
        "ssim_per_missing_frame": {k: v["ssim_per_frame"] for k, v in missing.items()},
        "psnr_observed": scores["observed"]["psnr"],
        "ssim_observed": scores["observed"]["ssim"],
        "observed_frames": [int(t) for t in t_obs],
        "missing_frames": [int(t) for t in np.flatnonzero(~fit.observed)],
        "extrapolated_frames": [int(t) for t in np.flatnonzero(scores["extrapolated"])],
        "num_generated": int(len(times)),
        "num_frames": fit.frames.shape[0],
        "frame_shape": list(fit.frames.shape[1:]),
        "observe_every": config.observe_every,
        "factor": config.factor,
        "method": method,
        "update": fit.job.recover.update,
        "rank": fit.rank,
        "selection": selection,
        "codes_from": fit.source,
        "fit": fit.fit,
        "generator_spec": fit.spec.to_dict(),
        "job": fit.job.to_dict(),
        "config": dataclasses.asdict(config),
    }


def _log_summary(out: dict, fit: Fit, config, base: dict, workdir: str, log) -> None:
    missing = len(out["missing_frames"])
    if missing:
        log(
            f"{missing} missing frames: lrgen PSNR {fmt(out['psnr_missing'])} dB / "
            f"SSIM {fmt(out['ssim_missing'], 4)}; "
            + "; ".join(f"{k} {fmt(out['psnr_' + k])} dB / {fmt(out['ssim_' + k], 4)}" for k in base)
            + (
                f"; lrgen = (1 − β)·G(z) + β·flow, β = {out['flow_share']:.2f} at the folds' distance "
                f"({out['flow_share_ends']:.2f} beyond the observed frames), "
                f"{min(out['flow_share_per_missing_frame']):.2f}–{max(out['flow_share_per_missing_frame']):.2f} "
                "on the missing frames, "
                f"G(z) alone {fmt(out['psnr_generator'])} dB / {fmt(out['ssim_generator'], 4)}"
                if "psnr_generator" in out
                else ""
            )
            + f" → {workdir}"
        )
    else:
        log(
            f"{out['num_generated']} frames generated from {fit.frames.shape[0]} observed (×{config.factor}), "
            f"PSNR on observed {fmt(out['psnr_observed'])} dB → {workdir}"
        )
