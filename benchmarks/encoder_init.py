r"""How many iterations an encoder start saves: ``experiments.recover`` from random codes and
from ``--z_init=encoder``, same problem, same generator.

    python -m benchmarks.encoder_init --generator=runs/train/glo --encoder=runs/train/encoder \
        --workdir=runs/encoder_init -- --flagfile=experiments/configs/rot_mnist_missing80_joint.flags

Every argument after ``--`` goes to both ``experiments.recover`` runs (the problem); this
benchmark adds ``--generator``, ``--z_init``, ``--encoder``, ``--encoder_input``, ``--log_every``
and ``--workdir`` (``<workdir>/<update>_random``, ``<workdir>/<update>_encoder``), once per
``--updates`` mode. From the PSNR curves (one point every ``--log_every`` iterations, current
iterate) it reports, per mode: the PSNR the random start reaches (its best iterate after all
iterations, as in metrics.json), and the first logged iteration at which each start's curve
comes within ``--tolerance_db`` of it (both starts often end on the same plateau, equal to a few
thousandths of a dB). Prints a Markdown table and writes it with the raw numbers to
``<workdir>/encoder_init.{md,json}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags

flags.DEFINE_string("generator", None, "Generator (lrgen training workdir or checkpoint).", required=True)
flags.DEFINE_string("encoder", None, "Encoder training workdir.", required=True)
flags.DEFINE_string("workdir", "runs/encoder_init", "Where the two runs per mode and the table go.")
flags.DEFINE_list("updates", ["latent", "joint"], "Update modes to compare.")
flags.DEFINE_integer("log_every", 10, "Iterations between PSNR points (the resolution of the answer).")
flags.DEFINE_enum("encoder_input", "frames", ["frames", "measurements"], "What the encoder sees (recover's flag).")
flags.DEFINE_float("tolerance_db", 0.1, "A start has reached the target when within this many dB of it.")
flags.DEFINE_bool("reuse", False, "Reuse a run whose workdir already holds metrics.json (re-tabulate only).")
FLAGS = flags.FLAGS


def first_reaching(curve: dict[str, float], target: float) -> int | None:
    """First logged iteration whose PSNR is ≥ target (None if never)."""
    hits = [int(i) for i, p in curve.items() if p >= target]
    return min(hits) if hits else None


def run_recover(problem_args: list[str], workdir: str, z_init: str, update: str) -> dict:
    args = [sys.executable, "-m", "experiments.recover", "--preset=faithful", *problem_args]
    args += [f"--generator={FLAGS.generator}", f"--z_init={z_init}", f"--update={update}"]
    args += [f"--log_every={FLAGS.log_every}", f"--workdir={workdir}"]
    if z_init == "encoder":
        args += [f"--encoder={FLAGS.encoder}", f"--encoder_input={FLAGS.encoder_input}"]
    metrics = os.path.join(workdir, "metrics.json")
    if not (FLAGS.reuse and os.path.isfile(metrics)):
        print(" ".join(args[1:]), flush=True)
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    with open(metrics) as f:
        return json.load(f)


def main(argv):
    problem_args = argv[1:]
    rows, raw = [], {}
    for update in FLAGS.updates:
        runs = {
            z: run_recover(problem_args, os.path.join(FLAGS.workdir, f"{update}_{z}"), z, update)
            for z in ("random", "encoder")
        }
        target = runs["random"]["psnr"]
        reach = {z: first_reaching(m["psnr_curve"], target - FLAGS.tolerance_db) for z, m in runs.items()}
        first = {z: m["psnr_curve"][str(FLAGS.log_every)] for z, m in runs.items()}
        raw[update] = {"target_psnr": target, "tolerance_db": FLAGS.tolerance_db, "iterations_to_target": reach}
        raw[update]["psnr_at_first_log"] = first
        raw[update] |= {f"final_psnr_{z}": m["psnr"] for z, m in runs.items()}
        fmt = lambda n: "never" if n is None else str(n)  # noqa: E731
        saved = "" if None in reach.values() else f"{reach['random'] / max(reach['encoder'], 1):.1f}×"
        rows.append(
            f"| {update} | {target:.2f} | {fmt(reach['random'])} | {fmt(reach['encoder'])} | {saved} "
            f"| {first['random']:.2f} / {first['encoder']:.2f} | {runs['encoder']['psnr']:.2f} |"
        )
    table = "\n".join(
        [
            f"Generator {FLAGS.generator}, encoder {FLAGS.encoder} fed the {FLAGS.encoder_input}; "
            f"problem: {' '.join(problem_args)}",
            "",
            f"| update | PSNR of the random start (dB) | iterations to within {FLAGS.tolerance_db:g} dB of it: random "
            "| encoder | fewer by "
            f"| PSNR after {FLAGS.log_every} it.: random / encoder | final PSNR, encoder start |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    with open(os.path.join(FLAGS.workdir, "encoder_init.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(FLAGS.workdir, "encoder_init.json"), "w") as f:
        json.dump(raw, f, indent=1)


if __name__ == "__main__":
    app.run(main)
