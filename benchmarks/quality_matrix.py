r"""The quality matrix: presets × cases × operators × seeds, one ``experiments.recover`` run per cell.

    python -m benchmarks.quality_matrix --out=runs/matrix \
        --torch_python=/path/to/venv-with-torch/bin/python

Every cell is a workdir ``<out>/cells/<case>-<operator>-<preset>-s<seed>``; a cell whose
``metrics.json`` exists is not run again, so an interrupted matrix resumes where it stopped, and
``--cases/--operators/--presets/--seeds`` (or ``--max_cells``) run part of it. ``--table_only``
writes the table from the finished cells. The table (``table.md``, ``cells.json``) gives per
(case, operator, preset) the mean over the finished seeds of PSNR, SSIM, iterations, seconds
(loop + compile), the wall time until the run first reached the faithful preset's final PSNR on
the same case, operator and seed (compile included; from the PSNR checked every ``--log_every``
iterations), and the gap between the PSNR of the iterate each run returned and the highest PSNR
checked on its own path (ground truth is used for these columns only, never by a run).

The PyTorch reference (``../shared/bench/gmlr_torch.py``) runs the faithful rows it supports
beside lrgen: the frame-folder cases (rot_mnist, walking) with ``missing80`` and ``gaussian512``.
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
GMLR = SHARED / "data/gmlr"

CASES = {
    # name: (recover flags, PyTorch reference arguments or None)
    "rot_mnist": (
        [f"--video={GMLR / 'rot_mnist/seq1'}", f"--generator={GMLR / 'mnist_dcgan_gmlr.npz'}"],
        [str(GMLR / "rot_mnist/seq1"), "--pretrained=1", "--max-frames=32"],
    ),
    "two_digits": (
        ["--video=builtin:two_digits", "--num_frames=20", f"--generator={GMLR / 'mnist_dcgan_gmlr.npz'}"],
        None,
    ),
    "walking": (
        [f"--video={GMLR / 'walking/seq2'}", "--nograyscale"],
        [str(GMLR / "walking/seq2"), "--pretrained=0", "--max-frames=32"],
    ),
    "rotating_digit": (["--video=builtin:rotating_digit", f"--generator={GMLR / 'mnist_dcgan_gmlr.npz'}"], None),
    "translating_disc": (["--video=builtin:translating_disc"], None),
}
OPERATORS = {
    # name: (recover flags, PyTorch reference arguments or None)
    "missing80": (["--measurement=missing", "--missing_ratio=0.8"], ["--measurement=missing", "--missing-ratio=0.8"]),
    "gaussian512": (["--measurement=gaussian", "--num_measurements=512"], ["--measurement=linear", "--m=512"]),
    "separable29": (["--measurement=separable", "--num_measurements=29"], None),
    "denoise20": (["--measurement=denoise", "--noise_snr_db=20"], None),
    "identity": (["--measurement=identity"], None),
}
PRESETS = ("faithful", "journal", "best")

flags.DEFINE_list("cases", list(CASES), "Cases to run.")
flags.DEFINE_list("operators", list(OPERATORS), "Operators to run.")
flags.DEFINE_list("presets", list(PRESETS), "lrgen presets to run (faithful first: the others are timed against it).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (operators, noise, held-out sets, random starts and weights).")
flags.DEFINE_integer("iterations", 2000, "Iterations (at most) of every run.")
flags.DEFINE_integer("log_every", 50, "Iterations between PSNR checks.")
flags.DEFINE_string("out", "runs/matrix", "Output directory (cells are reused: the matrix resumes).")
flags.DEFINE_string("torch_python", "", "Python with torch: adds the PyTorch faithful rows (empty = skip them).")
flags.DEFINE_integer("max_cells", 0, "Stop after running this many new cells (0 = all).")
flags.DEFINE_bool("table_only", False, "Only write the table from the finished cells.")
flags.DEFINE_list("extra", [], "Extra recover flags for every lrgen cell (e.g. --loop=scan).")
FLAGS = flags.FLAGS


def cell_dir(out: Path, case: str, op: str, preset: str, seed: str) -> Path:
    return out / "cells" / f"{case}-{op}-{preset}-s{seed}"


def run_cell(out: Path, case: str, op: str, preset: str, seed: str) -> None:
    work = cell_dir(out, case, op, preset, seed)
    if preset == "torch":
        return run_torch_cell(work, case, op, seed)
    args = [*CASES[case][0], *OPERATORS[op][0], f"--preset={preset}", f"--seed={seed}"]
    if case == "rot_mnist" and op == "missing80" and seed == "0":
        args.append(f"--mask_file={GMLR / 'batch_32_missing_819_1.npy'}")  # the original masks
    cmd = [sys.executable, "-m", "experiments.recover", *args, f"--iterations={FLAGS.iterations}",
           f"--log_every={FLAGS.log_every}", f"--workdir={work}", *FLAGS.extra]  # fmt: skip
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def run_torch_cell(work: Path, case: str, op: str, seed: str) -> None:
    os.makedirs(work, exist_ok=True)
    js = work / "torch.json"
    every = range(FLAGS.log_every, FLAGS.iterations + 1, FLAGS.log_every)
    cmd = [FLAGS.torch_python, str(SHARED / "bench/gmlr_torch.py"), *CASES[case][1], *OPERATORS[op][1],
           "--update=joint", "--rank=2", "--rank-type=pca", f"--iters={FLAGS.iterations}", f"--seed={seed}",
           "--mode=faithful", f"--out-json={js}", f"--out-loss={work / 'loss.npy'}", "--psnr-at",
           *map(str, every)]  # fmt: skip
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    import numpy as np

    r = json.loads(js.read_text())
    cum = np.cumsum(np.load(work / "loss_times.npy"))
    m = {
        "psnr": r["final_psnr"],
        "ssim": None,
        "iterations": r["iters"],
        "total_seconds": r["loop_s"],
        "compile_seconds": 0.0,
        "psnr_curve": r["psnr_curve"],
        "seconds_curve": {str(i): float(cum[int(i) - 1]) for i in r["psnr_curve"]},
    }
    (work / "metrics.json").write_text(json.dumps(m, indent=1))


def summarise(m: dict, faithful: dict | None) -> dict:
    curve = {int(k): v for k, v in m.get("psnr_curve", {}).items()}
    seconds = {int(k): v for k, v in m.get("seconds_curve", {}).items()}
    peak = max([m["psnr"], *curve.values()])
    row = {
        "psnr": m["psnr"],
        "ssim": m.get("ssim"),
        "iterations": m["iterations"],
        "seconds": m.get("total_seconds", 0.0),
        "gap_to_peak": peak - m["psnr"],
        "time_to_faithful": None,
    }
    if faithful is not None and seconds:
        for it in sorted(curve):
            if curve[it] >= faithful["psnr"] - 1e-6:
                row["time_to_faithful"] = seconds[it] + m.get("compile_seconds", 0.0)
                break
    return row


def table(out: Path) -> str:
    presets = [p for p in FLAGS.presets if p in PRESETS] + (["torch"] if FLAGS.torch_python else [])
    lines = [
        "| case | operator | run | seeds | PSNR (dB) | SSIM | iterations | seconds | s to faithful's PSNR | "
        "peak − returned (dB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = {}
    for case in FLAGS.cases:
        for op in FLAGS.operators:
            for preset in presets:
                rows = []
                for seed in FLAGS.seeds:
                    f = cell_dir(out, case, op, preset, seed) / "metrics.json"
                    ff = cell_dir(out, case, op, "faithful", seed) / "metrics.json"
                    if f.exists():
                        faithful = json.loads(ff.read_text()) if ff.exists() else None
                        rows.append(summarise(json.loads(f.read_text()), faithful))
                if not rows:
                    continue
                cells[f"{case}/{op}/{preset}"] = rows
                mean = lambda k: statistics.mean(r[k] for r in rows if r[k] is not None)  # noqa: E731
                has = lambda k: any(r[k] is not None for r in rows)  # noqa: E731
                fmt = lambda k, f: format(mean(k), f) if has(k) else "–"  # noqa: E731
                reached = sum(r["time_to_faithful"] is not None for r in rows)
                ttf = f"{mean('time_to_faithful'):.1f} ({reached}/{len(rows)})" if reached else "not reached"
                lines.append(
                    f"| {case} | {op} | {'PyTorch faithful' if preset == 'torch' else preset} | {len(rows)} | "
                    f"{fmt('psnr', '.2f')} | {fmt('ssim', '.3f')} | {fmt('iterations', '.0f')} | "
                    f"{fmt('seconds', '.1f')} | {ttf} | {fmt('gap_to_peak', '.2f')} |"
                )
    (out / "cells.json").write_text(json.dumps(cells, indent=1))
    return "\n".join(lines)


def main(argv):
    del argv
    out = (ROOT / FLAGS.out).resolve()
    os.makedirs(out / "cells", exist_ok=True)
    for name, allowed in (("cases", CASES), ("operators", OPERATORS)):
        bad = [v for v in FLAGS[name].value if v not in allowed]
        if bad:
            sys.exit(f"error: --{name}={','.join(bad)}: allowed values are {', '.join(allowed)}")
    ran = 0
    if not FLAGS.table_only:
        runs = [(c, o, p, s) for c in FLAGS.cases for o in FLAGS.operators for s in FLAGS.seeds for p in FLAGS.presets]
        if FLAGS.torch_python:
            runs += [
                (c, o, "torch", s)
                for c in FLAGS.cases
                for o in FLAGS.operators
                for s in FLAGS.seeds
                if CASES[c][1] and OPERATORS[o][1]
            ]
        for cell in runs:
            if (cell_dir(out, *cell) / "metrics.json").exists():
                continue
            if FLAGS.max_cells and ran >= FLAGS.max_cells:
                break
            run_cell(out, *cell)
            ran += 1
    text = table(out)
    print(text)
    (out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    app.run(main)
