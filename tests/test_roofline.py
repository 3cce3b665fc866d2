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


_PICKS_CHECK = """
from benchmarks import picks_ab
from lrgen.nets import layers

name, overrides = picks_ab.parse("before=4:dx:strided,4:dW:dilated")
assert (name, overrides) == ("before", {(4, "dx"): "strided", (4, "dW"): "dilated"}), (name, overrides)
picks = picks_ab.patched(overrides)
first, middle = (32, 4, 4, 256), (32, 16, 16, 64)
assert picks["_grad_x_formulation"](first, 128) == "strided"
assert picks["_grad_w_formulation"](first, 128) == "dilated"
assert picks["_forward_formulation"](first, 128) == layers._forward_formulation(first, 128)
assert picks["_grad_w_formulation"](middle, 32) == layers._grad_w_formulation(middle, 32)
for bad in ("x=4:dq:gemm", "x=4:dW:subpixel", "x=four:dW:gemm"):
    try:
        picks_ab.parse(bad)
    except ValueError as e:
        assert str(e).startswith("--variant="), e
    else:
        raise AssertionError(bad)
"""


def test_picks_ab_overrides_only_the_named_layer_and_part():
    # In a process of its own: the benchmark's flags (shared with benchmarks.roofline) would clash
    # with those the binaries' tests have defined in this one.
    proc = subprocess.run([sys.executable, "-c", _PICKS_CHECK], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks.picks_ab", "--variant=x=4:dq:gemm"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --variant=x=4:dq:gemm"), bad.stderr[-2000:]
