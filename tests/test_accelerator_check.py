"""benchmarks/accelerator_check.py runs end to end on CPU with tiny shapes and writes one JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_accelerator_check_tiny_on_cpu(tmp_path):
    out = tmp_path / "check.json"
    shared = tmp_path / "no_shared"  # nothing there: the PyTorch comparison must say what is missing
    shared.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.accelerator_check",
            "--tiny",
            "--tests=tests/test_lowrank.py::test_svd_projection_equals_numpy_truncated_svd",
            "--throughput_batch_sizes=1",
            "--rounds=1",
            "--budget_s=0",  # a loaded CI machine must not skip sections
            f"--shared={shared}",
            f"--out={out}",
        ],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["environment"]["backend"] == "cpu" and report["environment"]["tiny"]
    sec = report["sections"]
    assert set(sec) == {"tests", "vs_torch", "batch_throughput", "loop_choice"}
    assert sec["tests"]["passed"] >= 1 and sec["tests"]["failed"] == 0 and sec["tests"]["exit_code"] == 0
    assert "gmlr_torch.py" in sec["vs_torch"]["skipped"] and str(shared) in sec["vs_torch"]["skipped"]
    rows = sec["batch_throughput"]["rows"]
    assert [(r["update"], r["B"]) for r in rows] == [("latent", 1), ("joint", 1)]
    assert all(r["ms_per_iteration"] > 0 and r["sequences_per_s"] > 0 for r in rows)
    loops = sec["loop_choice"]
    assert loops["winner"] in ("python", "scan") and loops["auto_picks"] == "python"  # auto on CPU
    assert loops["winner"] == min(loops["median_ms_per_iteration"], key=loops["median_ms_per_iteration"].get)
    assert loops["auto_is_right"] == (loops["winner"] == loops["auto_picks"])
    assert not list(tmp_path.glob("tmp*"))  # the working folder beside the JSON is gone


def test_accelerator_check_refuses_a_bad_output_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.accelerator_check", "--tiny", f"--out={blocker}/x.json"],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "error: --out=" in proc.stderr and "Traceback" not in proc.stderr
