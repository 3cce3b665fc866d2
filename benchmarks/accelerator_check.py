r"""Everything an accelerator session should measure, in one run, into one JSON file.

No GPU had run lrgen when this was written; the next session that has one runs this script
(at most ~8 minutes on one GPU) and copies its figures into BUILD_NOTES.md:

1. ``tests``: the device-relevant tests (generator formulations and PyTorch parity, the
   recovery loop, batching and sharding) under pytest, counts from its JUnit report.
2. ``vs_torch``: lrgen against the PyTorch reference ``<shared>/bench/gmlr_torch.py`` on the
   same device (``--device cuda`` when JAX runs on a GPU), on the original setting (rotating
   MNIST seq1, original weights and masks, 80 % missing, joint, rank 2 pca): contenders take
   turns (A B C A B C …) for ``--rounds`` rounds; medians of per-round steady-state seconds
   per iteration. Skipped, with the reason, when torch is not importable by ``--torch_python``
   or a shared file is missing.
3. ``batch_throughput``: sequences per second for B = 1, 4, 16, 64, latent and joint
   (:func:`benchmarks.batch_throughput.throughput`).
4. ``loop_choice``: the jitted step driven from Python against the jitted ``fori_loop`` chunk,
   timed alternately; which wins, and whether ``--loop=auto`` picks it on this backend.

The device machine receives only the repository, so the shared files travel in a git-ignored
folder (``.device/shared``, see BUILD_NOTES.md "Sharded jobs and the accelerator check")::

    python -m benchmarks.accelerator_check --shared=.device/shared --out=$OUT/accelerator_check.json

``--tiny`` shrinks every shape (T = 4 frames of 32×32, a few iterations) so that the whole
script runs on a CPU in seconds; the test suite runs it that way so that it cannot rot.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from benchmarks import batch_throughput, torch_reference
from lrgen import engine, solver

ROOT = Path(__file__).resolve().parents[1]
# Generator formulations and parity, the operators, the loop (compile once, scan vs python,
# best iterate), batching and sharding over devices.
DEVICE_TESTS = ["tests/test_generators.py", "tests/test_operators.py", "tests/test_lowrank.py", "tests/test_recover.py"]
SHARED_FILES = (
    "bench/gmlr_torch.py",
    "data/gmlr/rot_mnist/seq1",
    "data/gmlr/mnist_dcgan_gmlr.npz",
    "data/gmlr/batch_32_missing_819_1.npy",
)

flags.DEFINE_string("out", "runs/accelerator_check.json", "The JSON file written.")
flags.DEFINE_string("shared", str(ROOT.parent / "shared"), "Folder holding (a copy of) the needed shared files.")
flags.DEFINE_string("torch_python", sys.executable, "Python interpreter with torch, for the reference.")
flags.DEFINE_bool("tiny", False, "Tiny shapes and iteration counts: a CPU smoke run of the whole script.")
flags.DEFINE_list("tests", None, "pytest targets (default: the device-relevant set; empty: skip the tests).")
flags.DEFINE_list("sections", ["tests", "vs_torch", "batch_throughput", "loop_choice"], "Sections to run.")
flags.DEFINE_list("throughput_batch_sizes", ["1", "4", "16", "64"], "Batch sizes B of the throughput section.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds of the timed comparisons.")
flags.DEFINE_integer("budget_s", 480, "Sections that would start after this many seconds are skipped (0: none).")
FLAGS = flags.FLAGS


def _sizes() -> dict:
    """Shapes and iteration counts: the original setting, or tiny ones for a CPU smoke run."""
    if FLAGS.tiny:
        return {"T": 4, "S": 32, "throughput_iterations": 3, "loop_iterations": 4, "torch_iterations": 5}
    return {"T": 32, "S": 64, "throughput_iterations": 50, "loop_iterations": 100, "torch_iterations": 200}


def environment() -> dict:
    devices = jax.devices()
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "tiny": FLAGS.tiny,
    }


def run_tests(targets: list[str]) -> dict:
    """pytest on ``targets``; counts from the JUnit XML (independent of pytest's verbosity)."""
    if not targets:
        return {"skipped": "no test targets (--tests is empty)"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}", *targets],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t0
        if not report.exists():
            return {"error": f"pytest exited {proc.returncode} without a report", "output_tail": proc.stdout[-2000:]}
        suites = ET.parse(report).getroot()
        suites = [suites] if suites.tag == "testsuite" else list(suites)
        count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
        failed = [
            f"{c.get('classname')}::{c.get('name')}"
            for s in suites
            for c in s.iter("testcase")
            if c.find("failure") is not None or c.find("error") is not None
        ]
    passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
    return {
        "targets": targets,
        "passed": passed,
        "failed": count["failures"] + count["errors"],
        "skipped": count["skipped"],
        "failed_tests": failed,
        "exit_code": proc.returncode,
        "seconds": round(seconds, 1),
    }


def torch_status() -> tuple[str | None, str]:
    """(torch version or None, why not) as seen by ``--torch_python``."""
    try:
        proc = subprocess.run(
            [FLAGS.torch_python, "-c", "import torch; print(torch.__version__, torch.cuda.is_available())"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"--torch_python={FLAGS.torch_python} cannot be run: {e}"
    if proc.returncode != 0:
        return None, f"torch is not importable by --torch_python={FLAGS.torch_python}"
    return proc.stdout.strip(), ""


def _lrgen_once(shared: Path, out: Path, iterations: int, tag: str, S: int, T: int) -> dict:
    work = out / f"lrgen_{tag}"
    data = shared / "data/gmlr"
    cmd = [
        sys.executable,
        "-m",
        "experiments.recover",
        "--preset=faithful",
        f"--video={data / 'rot_mnist/seq1'}",
        f"--image_size={S}",
        f"--num_frames={T}",
        f"--generator={data / 'mnist_dcgan_gmlr.npz'}" if not FLAGS.tiny else "--z_dim=8",
        "--measurement=missing",
        "--missing_ratio=0.8",
        "--update=joint",
        "--rank=2",
        "--rank_type=pca",
        f"--iterations={iterations}",
        f"--log_every={max(1, iterations // 5)}",
        "--video_format=gif",
        f"--workdir={work}",
    ]
    if not FLAGS.tiny:
        cmd.append(f"--mask_file={data / 'batch_32_missing_819_1.npy'}")
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    m = json.loads((work / "metrics.json").read_text())
    return {"psnr": m["psnr"], "s_per_iter": m["seconds_per_iteration"], "compile_s": m["compile_seconds"]}


def _torch_once(shared: Path, out: Path, iterations: int, tag: str, mode: str, device: str, T: int) -> dict:
    js = out / f"torch_{mode}_{tag}.json"
    data = shared / "data/gmlr"
    cmd = torch_reference.command(
        FLAGS.torch_python,
        shared,
        iterations=iterations,
        mode=mode,
        device=device,
        extra=[
            f"--weights={data / 'mnist_dcgan_gmlr.npz'}",
            f"--matrix-dir={data}",
            f"--warmup={min(10, iterations // 2)}",
            f"--out-json={js}",
        ],
    )
    if FLAGS.tiny:
        cmd.append(f"--max-frames={T}")
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    r = json.loads(js.read_text())
    return {"psnr": r["final_psnr"], "s_per_iter": r["s_per_iter_median"], "device": r.get("device", device)}


def vs_torch(shared: Path, out: Path) -> dict:
    """lrgen and the PyTorch reference (faithful, native) in alternating rounds on one device."""
    missing = [f for f in SHARED_FILES if not (shared / f).exists()]
    if missing:
        return {"skipped": f"missing under --shared={shared}: {', '.join(missing)}"}
    version, why = torch_status()
    if version is None:
        return {"skipped": why}
    device = "cuda" if jax.default_backend() == "gpu" else "cpu"
    if device == "cuda" and not version.endswith("True"):
        return {"skipped": f"torch {version.split()[0]} sees no CUDA device"}
    sz = _sizes()
    contenders = {
        "lrgen": lambda tag: _lrgen_once(shared, out, sz["torch_iterations"], tag, sz["S"], sz["T"]),
        **{
            f"torch_{mode}": lambda tag, mode=mode: _torch_once(
                shared, out, sz["torch_iterations"], tag, mode, device, sz["T"]
            )
            for mode in ("faithful", "native")
        },
    }
    rounds: dict[str, list[dict]] = {k: [] for k in contenders}
    for r in range(FLAGS.rounds):
        names = list(contenders) if r % 2 == 0 else list(contenders)[::-1]
        for name in names:
            rounds[name].append(contenders[name](f"r{r}"))
    med = {k: statistics.median(x["s_per_iter"] for x in v) for k, v in rounds.items()}
    return {
        "torch": version,
        "device": device,
        "iterations": sz["torch_iterations"],
        "rounds": rounds,
        "median_s_per_iter": med,
        "torch_time_over_lrgen": {k: med[k] / med["lrgen"] for k in med if k != "lrgen"},
    }


def batch_section() -> dict:
    """Throughput for each B and update (one sharded program when several devices)."""
    sz = _sizes()
    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("seq",)) if len(devices) > 1 else None
    rows = []
    for update in ("latent", "joint"):
        for B in map(int, FLAGS.throughput_batch_sizes):
            rows.append(
                batch_throughput.throughput(update, B, sz["throughput_iterations"], T=sz["T"], S=sz["S"], mesh=mesh)
            )
    for update in ("latent", "joint"):
        base = next(r for r in rows if r["update"] == update)["sequences_per_s"]
        for r in rows:
            if r["update"] == update:
                r["speedup_vs_first"] = r["sequences_per_s"] / base
    return {"T": sz["T"], "image_size": sz["S"], "rows": rows}


def loop_section() -> dict:
    """Python-driven step against the fori_loop chunk (joint, B = 1), alternating; medians."""
    sz = _sizes()
    runs, compile_s = {}, {}
    for loop in ("python", "scan"):
        t = batch_throughput.timer("joint", 1, sz["loop_iterations"], T=sz["T"], S=sz["S"], loop=loop)
        runs[loop], compile_s[loop] = t.run, t.compile_s
    times: dict[str, list[float]] = {"python": [], "scan": []}
    for r in range(FLAGS.rounds):
        for loop in ("python", "scan") if r % 2 == 0 else ("scan", "python"):
            times[loop].append(runs[loop]() * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    winner = min(med, key=med.get)
    _, _, model = batch_throughput.setting(sz["T"], sz["S"])
    auto = solver.Recoverer(model, engine.RecoverConfig(loop="auto"), sz["T"]).loop  # nothing compiled
    return {
        "update": "joint",
        "B": 1,
        "iterations": sz["loop_iterations"],
        "ms_per_iteration": times,
        "median_ms_per_iteration": med,
        "compile_s": compile_s,
        "winner": winner,
        "auto_picks": auto,
        "auto_is_right": winner == auto,
    }


def main(argv):
    del argv
    t_start = time.perf_counter()
    out_file = Path(FLAGS.out)
    if not out_file.is_absolute():
        out_file = ROOT / out_file
    if out_file.is_dir() or not out_file.parent.is_dir():
        sys.exit(f"error: --out={FLAGS.out}: must be a file path in an existing folder")
    shared = Path(FLAGS.shared).resolve()
    report: dict = {"environment": environment(), "sections": {}}
    tests = DEVICE_TESTS if FLAGS.tests is None else [t for t in FLAGS.tests if t]
    with tempfile.TemporaryDirectory(dir=out_file.parent) as work:
        sections = {
            "tests": lambda: run_tests(tests),
            "vs_torch": lambda: vs_torch(shared, Path(work)),
            "batch_throughput": batch_section,
            "loop_choice": loop_section,
        }
        for name in FLAGS.sections:
            if name not in sections:
                sys.exit(f"error: --sections: {name} is not one of {', '.join(sections)}")
        for name in FLAGS.sections:
            elapsed = time.perf_counter() - t_start
            if FLAGS.budget_s and elapsed > FLAGS.budget_s:
                report["sections"][name] = {"skipped": f"time budget: {elapsed:.0f} s > --budget_s={FLAGS.budget_s}"}
                continue
            t0 = time.perf_counter()
            try:
                result = sections[name]()
            except subprocess.CalledProcessError as e:
                tail = (e.stderr or b"")[-2000:]
                result = {"error": f"{e.cmd[:3]} exited {e.returncode}", "stderr_tail": tail.decode(errors="replace")}
            result["section_seconds"] = round(time.perf_counter() - t0, 1)
            report["sections"][name] = result
            print(f"{name}: {json.dumps(result)[:300]}", flush=True)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    tmp = out_file.with_name(out_file.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out_file)
    print(f"wrote {out_file}")


if __name__ == "__main__":
    app.run(main)
