r"""One benchmark, two checkouts, side by side in one run: does a change cost speed?

    python -m benchmarks.ab --baseline_root=../lrgen-before --rounds=5 \
        --module=benchmarks.train_throughput --key=recipe --value=steps_per_second -- --num_steps=30

runs ``python -m <module> <args>`` alternately in ``--baseline_root`` (before) and in this
checkout (after), ``--rounds`` times each, in the order A B B A A B … (so that load from anything
else on the machine, and any drift in the machine's speed during the run — e.g. the second of two
back-to-back runs on a CPU that has been busy for minutes — falls on both alike). Every JSON
line the module prints is a row; rows are matched by ``--key`` and the medians of ``--value``
over the rounds are compared: the table gives before, after and after/before (for a rate such
as steps/s, > 1 is faster; for a time, < 1). Writes the table and the raw rows to ``--out``.
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

flags.DEFINE_string("baseline_root", None, "The other checkout (the code before the change).", required=True)
flags.DEFINE_string("module", "benchmarks.train_throughput", "Benchmark module printing one JSON object per line.")
flags.DEFINE_string("key", "recipe", "Field naming a row.")
flags.DEFINE_string("value", "steps_per_second", "Field compared.")
flags.DEFINE_integer("rounds", 5, "Rounds; each runs before then after.")
flags.DEFINE_string("out", "runs/ab", "Output directory.")
FLAGS = flags.FLAGS


def run_once(root: Path, args: list[str]) -> list[dict]:
    """Rows (JSON objects) printed by one run of the module in checkout ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-m", FLAGS.module, *args], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main(argv):
    args = argv[1:]
    roots = {"before": Path(FLAGS.baseline_root).resolve(), "after": ROOT}
    for name, root in roots.items():
        if not (root / FLAGS.module.replace(".", "/")).with_suffix(".py").is_file():
            raise app.UsageError(f"--baseline_root={root}: no {FLAGS.module} in the {name} checkout")
    values: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    raw = []
    for r in range(FLAGS.rounds):
        for name, root in list(roots.items())[:: 1 if r % 2 == 0 else -1]:
            for row in run_once(root, args):
                values[name].setdefault(str(row[FLAGS.key]), []).append(float(row[FLAGS.value]))
                raw.append({"round": r, "code": name, **row})
            print(f"round {r + 1}/{FLAGS.rounds} {name} done", file=sys.stderr, flush=True)
    lines = [
        f"| {FLAGS.key} | before (median {FLAGS.value}) | after | after / before |",
        "|---|---|---|---|",
    ]
    for key, before in values["before"].items():
        b, a = statistics.median(before), statistics.median(values["after"].get(key, [float("nan")]))
        lines.append(f"| {key} | {b:.4g} | {a:.4g} | {a / b:.3f} |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(FLAGS.out, exist_ok=True)
    Path(FLAGS.out, "table.md").write_text(table + "\n")
    Path(FLAGS.out, "raw.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    app.run(main)
