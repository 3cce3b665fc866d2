r"""lrgen against the PyTorch reference of the original algorithm, side by side in one run.

Same machine, same setting (rotating MNIST seq1, the original weights and masks, 80 % missing,
joint update, rank 2 pca), run one after the other:

* lrgen: ``python -m experiments.recover`` (steady-state seconds per iteration and compile
  time from its metrics.json);
* the reference ``../shared/bench/gmlr_torch.py`` in ``faithful`` and ``native`` modes.

    python -m benchmarks.vs_torch --iterations=2000 --torch_python=/path/to/venv-with-torch/bin/python

prints a Markdown table and writes it with the raw JSON to ``--out``: PSNR after
``--iterations`` (one full run each), then speed from ``--rounds`` rounds of
``--speed_iterations`` iterations in which the contenders take turns, so that load from anything
else on the machine falls on all of them alike; s/iteration is the median over rounds of each
round's steady-state median, with the ratio to lrgen's. torch is not an lrgen dependency: install it where you like
(``pip install torch==2.13.0``) and point ``--torch_python`` at that interpreter.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from absl import app, flags

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
FLAGS = flags.FLAGS


def run_lrgen(loop: str, out: Path, iterations: int, tag: str) -> dict:
    work = out / f"lrgen_{loop}_{tag}"
    cmd = [
        sys.executable,
        "-m",
        "experiments.recover",
        f"--flagfile={ROOT / 'experiments/configs/rot_mnist_missing80_joint.flags'}",
        f"--iterations={iterations}",
        f"--loop={loop}",
        "--log_every=20",
        f"--workdir={work}",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    m = json.loads((work / "metrics.json").read_text())
    return {
        "name": f"lrgen (loop={m['loop']})",
        "psnr": m["psnr"],
        "s_per_iter": m["seconds_per_iteration"],
        "compile_s": m["compile_seconds"],
        "loop_s": m["seconds"],
        "device": m["environment"]["devices"][0],
    }


def run_torch(mode: str, out: Path, iterations: int, tag: str) -> dict:
    js = out / f"torch_{mode}_{tag}.json"
    cmd = [
        FLAGS.torch_python,
        str(SHARED / "bench/gmlr_torch.py"),
        str(SHARED / "data/gmlr/rot_mnist/seq1"),
        "--measurement=missing",
        "--missing-ratio=0.8",
        "--update=joint",
        "--rank=2",
        "--rank-type=pca",
        f"--iters={iterations}",
        f"--threads={FLAGS.threads}",
        f"--device={FLAGS.device}",
        f"--mode={mode}",
        f"--out-json={js}",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    r = json.loads(js.read_text())
    return {
        "name": f"PyTorch reference ({mode})",
        "psnr": r["final_psnr"],
        "s_per_iter": r["s_per_iter_median"],
        "compile_s": 0.0,
        "loop_s": r["loop_s"],
        "device": r["device"],
    }


def main(argv):
    del argv
    if not (SHARED / "bench/gmlr_torch.py").exists():
        sys.exit(f"error: {SHARED / 'bench/gmlr_torch.py'} not found; the benchmark needs ../shared")
    out = (ROOT / FLAGS.out).resolve()
    os.makedirs(out, exist_ok=True)
    contenders = [(f"lrgen_{loop}", lambda it, tag, loop=loop: run_lrgen(loop, out, it, tag)) for loop in FLAGS.loops]
    contenders += [
        (f"torch_{mode}", lambda it, tag, mode=mode: run_torch(mode, out, it, tag)) for mode in ("faithful", "native")
    ]
    quality = {name: fn(FLAGS.iterations, "quality") if FLAGS.iterations else None for name, fn in contenders}
    speed: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for r in range(FLAGS.rounds):
        order = contenders if r % 2 == 0 else contenders[::-1]
        for name, fn in order:
            speed[name].append(fn(FLAGS.speed_iterations, f"speed{r}")["s_per_iter"])
    base = statistics.median(speed[contenders[0][0]])
    lines = [
        f"Quality: {FLAGS.iterations} iterations, rotating MNIST seq1, original weights and masks, 80 % missing, "
        f"joint, rank 2 pca. Speed: {FLAGS.rounds} alternating rounds of {FLAGS.speed_iterations} iterations.",
        "",
        "| contender | PSNR (dB) | s/iteration per round | median s/iteration | × lrgen's time | compile (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, _ in contenders:
        q, ts = quality[name], speed[name]
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
