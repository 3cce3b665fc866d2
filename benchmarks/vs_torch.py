r"""lrgen against the PyTorch reference of the original algorithm, side by side in one run.

Same machine, same setting (rotating MNIST seq1, the original weights and masks, 80 % missing,
joint update, rank 2 pca), run one after the other:

* lrgen: ``python -m experiments.recover`` (steady-state seconds per iteration and compile
  time from its metrics.json);
* the reference ``../shared/bench/gmlr_torch.py`` in ``faithful`` and ``native`` modes.

    python -m benchmarks.vs_torch --iterations=2000 --torch_python=/path/to/venv-with-torch/bin/python

prints a Markdown table and writes it with the raw JSON to ``--out``: PSNR after
``--iterations`` (one full run each; lrgen once per ``--presets`` entry) and the wall time until
the PSNR first reaches ``--target_psnr`` (checked every ``--psnr_every`` iterations in every
contender; lrgen's time includes its compilation, the reference's excludes its PSNR checks; where
lrgen's chosen path stays below the target but its returned frames — an ensemble, fused — reach
it, the time is the run's total),
then speed from ``--rounds`` rounds of
``--speed_iterations`` iterations in which the contenders take turns, so that load from anything
else on the machine falls on all of them alike; s/iteration is the median over rounds of each
round's steady-state median, with the ratio to lrgen's (the faithful preset;
``--baseline_root`` adds the same binary from another checkout, e.g. the code before a change,
to the rounds). torch is not an lrgen dependency: install it where you like
(``pip install torch==2.13.0``) and point ``--torch_python`` at that interpreter.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from benchmarks import torch_reference

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

flags.DEFINE_integer("iterations", 2000, "Iterations of the quality run of every contender (0 = skip it).")
flags.DEFINE_string("torch_python", sys.executable, "Python interpreter that has torch installed.")
flags.DEFINE_integer("threads", 2, "CPU threads for torch (lrgen's XLA uses every core it sees).")
flags.DEFINE_string("device", "cpu", "cpu or cuda (torch); lrgen uses JAX's default backend.")
flags.DEFINE_string("out", "runs/bench_vs_torch", "Output directory.")
flags.DEFINE_list("loops", ["auto"], "lrgen --loop values to measure (auto, python, scan).")
flags.DEFINE_integer("speed_iterations", 300, "Iterations of each speed round.")
flags.DEFINE_integer("rounds", 3, "Speed rounds (contenders alternate).")
flags.DEFINE_list("modes", ["faithful", "native"], "Modes of the PyTorch reference to run.")
flags.DEFINE_list("presets", ["faithful", "best"], "lrgen presets of the quality runs (speed rounds: faithful).")
flags.DEFINE_float("target_psnr", 33.9, "Report the wall time until the PSNR first reaches this (original: 33.9).")
flags.DEFINE_integer("psnr_every", 20, "Iterations between PSNR checks of the quality runs.")
flags.DEFINE_string("baseline_root", "", "Another lrgen checkout whose faithful binary joins the speed rounds.")
FLAGS = flags.FLAGS


def time_to(curve: dict, seconds: dict, target: float, offset: float = 0.0) -> float | None:
    """Seconds (plus ``offset``) at the first checked iteration whose PSNR reaches ``target``."""
    for it in sorted(curve, key=int):
        if curve[it] >= target:
            return offset + seconds[it]
    return None


def run_lrgen(loop: str, out: Path, iterations: int, tag: str, preset: str = "faithful", root: Path = ROOT) -> dict:
    work = out / f"lrgen_{loop}_{preset}_{tag}" if root == ROOT else out / f"baseline_{loop}_{tag}"
    cmd = [
        sys.executable,
        "-m",
        "experiments.recover",
        f"--flagfile={root / 'experiments/configs/rot_mnist_missing80_joint.flags'}",
        f"--iterations={iterations}",
        f"--loop={loop}",
        f"--log_every={FLAGS.psnr_every}",
        f"--workdir={work}",
    ]
    if root == ROOT:
        cmd.append(f"--preset={preset}")
    subprocess.run(cmd, cwd=root, check=True, stdout=subprocess.DEVNULL)
    m = json.loads((work / "metrics.json").read_text())
    seconds = m.get("seconds_curve", {})
    on_path = time_to(m["psnr_curve"], seconds, FLAGS.target_psnr, m["compile_seconds"]) if seconds else None
    # The returned frames (best: an ensemble, then fused) exist only once everything has run.
    returned = m.get("total_seconds") if m["psnr"] >= FLAGS.target_psnr else None
    return {
        "name": f"lrgen {preset} (loop={m['loop']})" if root == ROOT else f"lrgen before (loop={m['loop']})",
        "psnr": m["psnr"],
        "iterations": m["iterations"],
        "s_per_iter": m["seconds_per_iteration"],
        "compile_s": m["compile_seconds"],
        "loop_s": m["seconds"],
        "total_s": m.get("total_seconds"),
        "time_to_target_s": on_path if on_path is not None else returned,
        "candidates": len(m.get("candidates", [])) or 1,
        "device": m["environment"]["devices"][0],
    }


def run_torch(mode: str, out: Path, iterations: int, tag: str) -> dict:
    js = out / f"torch_{mode}_{tag}.json"
    first_check = FLAGS.psnr_every if tag == "quality" else iterations  # speed rounds: the final PSNR only
    cmd = torch_reference.command(
        FLAGS.torch_python,
        SHARED,
        iterations=iterations,
        mode=mode,
        device=FLAGS.device,
        extra=[
            f"--threads={FLAGS.threads}",
            f"--out-json={js}",
            f"--out-loss={out / f'torch_{mode}_{tag}_loss.npy'}",
            "--psnr-at",
            *[str(i) for i in range(first_check, iterations + 1, FLAGS.psnr_every)],
        ],
    )
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    r = json.loads(js.read_text())
    # Per-iteration times (PSNR checks excluded): cumulative seconds at each checked iteration.
    cum = np.cumsum(np.load(out / f"torch_{mode}_{tag}_loss_times.npy"))
    seconds = {int(i): float(cum[int(i) - 1]) for i in r["psnr_curve"]}
    return {
        "name": f"PyTorch reference ({mode})",
        "psnr": r["final_psnr"],
        "iterations": r["iters"],
        "s_per_iter": r["s_per_iter_median"],
        "compile_s": 0.0,
        "loop_s": r["loop_s"],
        "total_s": r["loop_s"],
        "time_to_target_s": time_to({int(k): v for k, v in r["psnr_curve"].items()}, seconds, FLAGS.target_psnr),
        "candidates": 1,
        "device": r["device"],
    }


def main(argv):
    del argv
    if not (SHARED / "bench/gmlr_torch.py").exists():
        sys.exit(f"error: {SHARED / 'bench/gmlr_torch.py'} not found; the benchmark needs ../shared")
    out = (ROOT / FLAGS.out).resolve()
    os.makedirs(out, exist_ok=True)
    contenders = [(f"lrgen_{loop}", lambda it, tag, loop=loop: run_lrgen(loop, out, it, tag)) for loop in FLAGS.loops]
    if FLAGS.baseline_root:
        base_root = Path(FLAGS.baseline_root).resolve()
        contenders += [("lrgen_before", lambda it, tag: run_lrgen(FLAGS.loops[0], out, it, tag, root=base_root))]
    contenders += [(f"torch_{mode}", lambda it, tag, mode=mode: run_torch(mode, out, it, tag)) for mode in FLAGS.modes]
    # Quality and time to the target PSNR: one full run of every preset and reference mode,
    # taking turns (lrgen presets first, then the reference).
    quality_runs = [
        (f"lrgen_{p}", lambda it, tag, p=p: run_lrgen(FLAGS.loops[0], out, it, tag, preset=p)) for p in FLAGS.presets
    ] + [(n, fn) for n, fn in contenders if n.startswith("torch_")]
    quality = {name: fn(FLAGS.iterations, "quality") if FLAGS.iterations else None for name, fn in quality_runs}
    speed: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for r in range(FLAGS.rounds):
        order = contenders if r % 2 == 0 else contenders[::-1]
        for name, fn in order:
            speed[name].append(fn(FLAGS.speed_iterations, f"speed{r}")["s_per_iter"])
    base = statistics.median(speed[contenders[0][0]])
    lines = [
        f"Quality and time to {FLAGS.target_psnr} dB (PSNR checked every {FLAGS.psnr_every} iterations; lrgen's "
        "time includes compilation):",
        "",
        "| run | PSNR (dB) | iterations | candidates | total s | time to target (s) |",
        "|---|---|---|---|---|---|",
    ]
    for q in quality.values():
        if q:
            tt = f"{q['time_to_target_s']:.1f}" if q["time_to_target_s"] is not None else "not reached"
            lines.append(
                f"| {q['name']} | {q['psnr']:.2f} | {q['iterations']} | {q['candidates']} | {q['total_s']:.1f} | {tt} |"
            )
    lines += ["", "Speed:", ""]
    lines += [
        f"Quality: {FLAGS.iterations} iterations, rotating MNIST seq1, original weights and masks, 80 % missing, "
        f"joint, rank 2 pca. Speed: {FLAGS.rounds} alternating rounds of {FLAGS.speed_iterations} iterations.",
        "",
        "| contender | PSNR (dB) | s/iteration per round | median s/iteration | × lrgen's time | compile (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, _ in contenders:
        q = quality.get(name) if name.startswith("torch_") else None
        if name.startswith("lrgen_") and name != "lrgen_before":
            q = quality.get("lrgen_faithful")
        ts = speed[name]
        med = statistics.median(ts)
        per_round = ", ".join(f"{t * 1e3:.1f}" for t in ts)
        psnr = f"{q['psnr']:.2f}" if q else "–"
        compile_s = f"{q['compile_s']:.2f}" if q else "–"
        lines.append(f"| {name} | {psnr} | {per_round} ms | {med * 1e3:.1f} ms | {med / base:.2f} | {compile_s} |")
    rows = {"quality": quality, "speed": speed}
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    app.run(main)
