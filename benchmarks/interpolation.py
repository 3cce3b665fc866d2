r"""lrgen's generated in-between frames against nearest, blend and optical flow (issue 12).

    python -m benchmarks.interpolation --workdir=runs/bench_interp            # 3 cases × s ∈ {2, 4, 8} × 3 seeds
    python -m benchmarks.interpolation --workdir=runs/bench_interp --seeds=0  # one seed first

Every cell (case, s, seed) observes frames 0, s, 2s, … and runs exactly what
``python -m experiments.interpolate --video=… --observe_every=s --seed=… --z_seed=100+seed``
runs with its defaults (settings chosen on held-out observed frames, then one fit on all
observed frames), writing that binary's workdir under ``--workdir/<case>/s<s>_seed<seed>``. A
cell whose metrics.json exists is skipped, so an interrupted run resumes where it stopped.
Afterwards every finished cell is read back into ``table.md`` and ``table.json``: PSNR (whole
missing set, the original's definition) and mean SSIM of the missing frames for lrgen, nearest,
blend and flow, mean ± standard deviation over the seeds that finished, and lrgen's wall time
(selection + final fit + rendering). For the record, the table also scores flow that carries
the end frames on at constant velocity instead of holding them
(:func:`lrgen.baselines.extrapolated_flow_frames`, what lrgen mixes in beyond the observed
frames; not one of the issue's baselines), and lrgen's two flow shares.

Cases:

* ``rot_mnist``: ../shared/data/gmlr/rot_mnist/seq1 (32 frames), the original MNIST generator.
* ``two_digits``: builtin:two_digits (20 frames), the original MNIST generator.
* ``walking``: ../shared/data/gmlr/walking/seq2 (first 32 frames, RGB 64×64), an untrained
  generator: the grey architecture's widths with three output channels
  (``benchmarks.rate_distortion.COLOUR_SPEC``, k = 32, random weights, seed 0) — no colour
  generator is trained for this data, and this one costs a quarter of the default RGB
  architecture on a CPU; the joint update has to learn everything from the observed frames.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import jax
import numpy as np
from absl import app, flags

from lrgen import baselines, checkpoint, config, engine, interpolation, jobs, latent_paths, observed, outputs, selection
from lrgen.nets import generators

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/bench_interp", "Output folder (cells are resumed from here).")
flags.DEFINE_list("cases", ["rot_mnist", "two_digits", "walking"], "Cases to run.")
flags.DEFINE_list("strides", ["8", "4", "2"], "observe_every values.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (job seed; fixed codes from z_seed = 100 + seed).")
flags.DEFINE_integer("iterations", engine.RecoverConfig.iterations, "Fit iterations (the binary's default).")
flags.DEFINE_bool("table_only", False, "Only read the finished cells back into the table.")

MNIST = "../shared/data/gmlr/mnist_dcgan_gmlr.npz"
COLOUR_SPEC = generators.GeneratorSpec(z_dim=32, features=(256, 128, 64, 32), channels=3)
CASES = {
    "rot_mnist": {"video": "../shared/data/gmlr/rot_mnist/seq1", "generator": MNIST},
    "two_digits": {"video": "builtin:two_digits", "generator": MNIST, "num_frames": 0},
    "walking": {"video": "../shared/data/gmlr/walking/seq2", "grayscale": False, "generator": "colour"},
}
METHODS = ("lrgen", *baselines.BASELINES)


def colour_generator(workdir: str) -> str:
    """The untrained colour generator of the walking case (written once)."""
    path = os.path.abspath(os.path.join(workdir, "colour_generator_seed0"))
    if not os.path.isdir(path):
        params = jax.jit(lambda key: generators.init_generator(COLOUR_SPEC, key))(jax.random.key(0))
        checkpoint.save_generator(path, COLOUR_SPEC, params, source="random init, seed 0")
    return path


def run_cell(case: str, stride: int, seed: int, out: str, log) -> None:
    spec = dict(CASES[case])
    if spec["generator"] == "colour":
        spec["generator"] = colour_generator(FLAGS.workdir)
    job = jobs.RecoverJob(
        **spec,
        seed=seed,
        z_seed=100 + seed,
        recover=config.RecoverConfig(update=selection.AUTO_UPDATES[0], iterations=FLAGS.iterations),
    )
    job = observed.make_job(job, stride)
    candidates = selection.candidate_grid(selection.AUTO_UPDATES, (job.recover.rank,), latent_paths.METHODS)
    icfg = interpolation.InterpolateConfig(observe_every=stride, factor=1, video_format="gif")
    t0 = time.perf_counter()
    fit = observed.fit_observed(job, stride, log=log, check=icfg.validate, candidates=candidates)
    tmp = out + ".tmp"  # renamed when complete: a cell is either finished or absent
    shutil.rmtree(tmp, ignore_errors=True)
    m = interpolation.run_interpolate(fit, icfg, tmp, log=log, flags={"benchmark": sys.argv})
    m["wall_seconds"] = time.perf_counter() - t0
    outputs.write_json(os.path.join(tmp, "metrics.json"), m)
    os.replace(tmp, out)


def _extrapolating_flow(case: str, stride: int) -> tuple[float, float]:
    """PSNR and mean SSIM of extrapolated_flow_frames on the missing frames of a cell (no fit)."""
    spec = {k: v for k, v in CASES[case].items() if k != "generator"}
    frames = jobs.load_frames(jobs.RecoverJob(**spec))
    seen = observed.observed_frames(frames.shape[0], stride)
    t_all = np.arange(frames.shape[0], dtype=np.float64)
    x = baselines.extrapolated_flow_frames(frames[seen], t_all[seen], t_all[~seen])
    s = selection.score(x, frames[~seen])
    return s["psnr"], s["ssim"]


def _mean_sd(v: list[float]) -> str:
    v = [x for x in v if x is not None]
    if not v:
        return "–"
    return f"{np.mean(v):.2f}" if len(v) == 1 else f"{np.mean(v):.2f} ± {np.std(v):.2f}"


def _mean_sd3(v: list[float]) -> str:
    v = [x for x in v if x is not None]
    if not v:
        return "–"
    return f"{np.mean(v):.3f}" if len(v) == 1 else f"{np.mean(v):.3f} ± {np.std(v):.3f}"


def table(workdir: str) -> tuple[str, list[dict]]:
    rows = []
    for case in CASES:
        for stride in sorted({int(s) for s in FLAGS.strides}):
            cells = []
            for seed in FLAGS.seeds:
                path = os.path.join(workdir, case, f"s{stride}_seed{seed}", "metrics.json")
                if os.path.isfile(path):
                    with open(path) as f:
                        cells.append(json.load(f))
            if not cells:
                continue
            row = {"case": case, "observe_every": stride, "seeds": len(cells)}
            for meth in METHODS:
                key = "missing" if meth == "lrgen" else meth
                row[f"psnr_{meth}"] = [c[f"psnr_{key}"] for c in cells]
                row[f"ssim_{meth}"] = [c[f"ssim_{key}"] for c in cells]
                row[f"interior_psnr_{meth}"] = [c["interior"][meth]["psnr"] for c in cells]
                row[f"interior_ssim_{meth}"] = [c["interior"][meth]["ssim"] for c in cells]
            row["chosen"] = [f"{c['update']}/{c['method']}" for c in cells]
            # lrgen = (1 − β(t)) G(z) + β(t) flow (β chosen on held-out observed frames at the folds'
            # distance, the column; carried to each frame's own distance); G(z) alone beside.
            row["flow_share"] = [c.get("flow_share", 0.0) for c in cells]
            row["flow_share_ends"] = [c.get("flow_share_ends", 0.0) for c in cells]
            row["psnr_extrapolating_flow"], row["ssim_extrapolating_flow"] = _extrapolating_flow(case, stride)
            row["psnr_generator"] = [c.get("psnr_generator", c["psnr_missing"]) for c in cells]
            row["ssim_generator"] = [c.get("ssim_generator", c["ssim_missing"]) for c in cells]
            row["wall_seconds"] = [c["wall_seconds"] for c in cells]
            rows.append(row)
    lines = [
        "| case | observed | seeds | lrgen PSNR | nearest | blend | flow | lrgen SSIM | nearest | blend | flow "
        "| lrgen chose | flow share β (ends) | G(z) alone PSNR / SSIM | flow extrapolating the ends "
        "| lrgen wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        psnr = [_mean_sd(r[f"psnr_{m}"]) for m in METHODS]
        ssim = [_mean_sd3(r[f"ssim_{m}"]) for m in METHODS]
        # Bold: lrgen's mean beats every baseline's mean on that measure.
        if all(np.mean(r["psnr_lrgen"]) > np.mean(r[f"psnr_{m}"]) for m in METHODS[1:]):
            psnr[0] = f"**{psnr[0]}**"
        if all(np.mean(r["ssim_lrgen"]) > np.mean(r[f"ssim_{m}"]) for m in METHODS[1:]):
            ssim[0] = f"**{ssim[0]}**"
        lines.append(
            f"| {r['case']} | every {r['observe_every']} | {r['seeds']} | "
            + " | ".join(psnr + ssim)
            + f" | {', '.join(r['chosen'])} | {_mean_sd(r['flow_share'])} ({_mean_sd(r['flow_share_ends'])}) "
            + f"| {_mean_sd(r['psnr_generator'])} / {_mean_sd3(r['ssim_generator'])} "
            + f"| {r['psnr_extrapolating_flow']:.2f} / {r['ssim_extrapolating_flow']:.3f} "
            + f"| {np.mean(r['wall_seconds']):.0f} |"
        )
    lines += ["", "| case | observed | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    for r in rows:
        cells = [f"{_mean_sd(r[f'interior_psnr_{m}'])} / {_mean_sd3(r[f'interior_ssim_{m}'])}" for m in METHODS]
        lines.append(f"| {r['case']} | every {r['observe_every']} | " + " | ".join(cells) + " |")
    return "\n".join(lines), rows


def main(argv):
    del argv
    log = lambda s: print(s, flush=True)  # noqa: E731
    unknown = set(FLAGS.cases) - set(CASES)
    if unknown:
        print(f"error: --cases={','.join(FLAGS.cases)}: allowed are {', '.join(CASES)}", file=sys.stderr)
        sys.exit(1)
    if not FLAGS.table_only:
        # Seed by seed, and within a seed the sparse (cheap, decisive) strides of every case first.
        for seed in FLAGS.seeds:
            for stride in FLAGS.strides:
                for case in FLAGS.cases:
                    out = os.path.join(FLAGS.workdir, case, f"s{stride}_seed{seed}")
                    if os.path.isfile(os.path.join(out, "metrics.json")):
                        continue
                    log(f"== {case}, every {stride}, seed {seed}")
                    run_cell(case, int(stride), int(seed), out, log)
    md, rows = table(FLAGS.workdir)
    outputs.write_json(os.path.join(FLAGS.workdir, "table.json"), rows)
    with open(os.path.join(FLAGS.workdir, "table.md"), "w") as f:
        f.write(md + "\n")
    log(md)


if __name__ == "__main__":
    app.run(main)
