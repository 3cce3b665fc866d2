"""benchmarks/roofline.py runs end to end on CPU with tiny shapes, batched rows included."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_roofline_tiny_runs_the_batching_recoverer_picks():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.roofline",
            "--configs=gray",
            "--updates=joint",
            "--num_frames=4",
            "--batch=2",
            "--rounds=1",
            "--steps=1",
            "--matmul_size=128",
            "--matmul_repeats=1",
            "--nolayers",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| gray 64×64")]
    assert len(rows) == 2, proc.stdout
    # B = 2 runs as Recoverer runs a joint batch on one CPU device: dispatched.
    assert [row.split("|")[10].strip() for row in rows] == ["single", "dispatched"]
    for row in rows:
        fraction = float(row.split("|")[9].strip().strip("*"))
        assert 0.0 < fraction < 10.0
