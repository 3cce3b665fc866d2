"""Batch jobs: batch invariance, sharding, two processes, kill and restart, matrix-free operator."""

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrgen import engine, jobs, operators, recovery

ROOT = Path(__file__).resolve().parents[1]
COMMON = [
    "--preset=faithful",
    "--image_size=32",
    "--num_frames=6",
    "--z_dim=8",
    "--log_every=5",
    "--video_format=gif",
    "--z_init=random",
    "--missing_ratio=0.5",
]


def _videos(tmp_path, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"clip{i}.npy"
        np.save(p, rng.random((6, 32, 32)).astype(np.float32))
        paths.append(p)
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("# three clips\nclip*.npy\n")
    return paths, manifest


def _run(*args, env=None, check=True, **kw):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore", **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.recover", *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _frames(workdir, path):
    return np.load(Path(workdir) / "videos" / recovery.video_key(str(path)) / "reconstruction.npz")["frames"]


def test_manifest_results_equal_single_runs_and_summary(tmp_path):
    """Each video's result in a batch (any position, padded last batch) = its single run."""
    paths, manifest = _videos(tmp_path)
    job = jobs.RecoverJob(
        image_size=32,
        num_frames=6,
        z_dim=8,
        z_init="random",
        video_format="gif",
        measurement=operators.MeasurementSpec(missing_ratio=0.5),
        recover=engine.RecoverConfig(update="joint", iterations=10, log_every=5),
    )
    rows = recovery.run_manifest(
        job,
        str(manifest),
        str(tmp_path / "work"),
        recovery.BatchOptions(batch_size=2, checkpoint_every=5),
        log=lambda s: None,
    )
    assert [r["video"] for r in rows] == [str(p) for p in paths]
    for p in paths:
        alone = tmp_path / f"alone_{p.stem}"
        import dataclasses

        recovery.run_recover(dataclasses.replace(job, video=str(p)), str(alone), log=lambda s: None)
        np.testing.assert_allclose(
            _frames(tmp_path / "work", p), np.load(alone / "reconstruction.npz")["frames"], atol=2e-5
        )
    summary = (tmp_path / "work" / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("video,key,psnr,ssim") and len(summary) == 4
    assert not (tmp_path / "work" / "batches").exists() or not any((tmp_path / "work" / "batches").iterdir())


def test_sharded_over_simulated_devices_equals_one_device(tmp_path):
    paths, manifest = _videos(tmp_path, n=4)
    args = [*COMMON, f"--manifest={manifest}", "--iterations=5", "--batch_size=4", "--update=joint"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # independent runs: both at once
        one = pool.submit(_run, *args, f"--workdir={tmp_path / 'one'}")
        four = pool.submit(
            _run, *args, f"--workdir={tmp_path / 'four'}", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
        )
        one.result()
        proc = four.result()
    assert "4 slots" in proc.stdout
    summary = json.loads((tmp_path / "four" / "summary.json").read_text())
    assert len({r["device"] for r in summary}) == 1 and summary[0]["device"].count("cpu") == 4
    for p in paths:
        np.testing.assert_allclose(_frames(tmp_path / "four", p), _frames(tmp_path / "one", p), atol=2e-5)


# Recovers 4 sequences sharded over the simulated devices and on one device, then reports the
# largest difference and what the compiled programs contain. T = 32 codes of k = 32 (the
# original setting's code matrix): before issue 10's fix such a job hung (batched LAPACK SVDs
# of several devices blocking each other in XLA:CPU's shared thread pool) or aborted in the
# all-gathers the partitioner put into the joint step; 6×8 code matrices never did.
_SHARDED_SCRIPT = r"""
import json, re, sys
import jax, jax.numpy as jnp, numpy as np
from lrgen import engine, jobs, solver
from lrgen import operators
from lrgen.nets import generators
T, S, iterations = (int(a) for a in sys.argv[1:4])
report = {}
for update in ("latent", "joint"):
    job = jobs.RecoverJob(image_size=S, num_frames=T, z_init="random",
        measurement=operators.MeasurementSpec(missing_ratio=0.5),
        recover=engine.RecoverConfig(update=update, iterations=iterations, log_every=iterations // 2, loop="python"))
    spec, _ = jobs.load_model(job, 1)
    params = jobs.init_params(job, spec, None)
    rng = np.random.default_rng(0)
    seqs = [jobs.prepare_sequence(job, rng.random((T, S, S, 1), np.float32), spec) for _ in range(4)]
    z0 = jnp.stack([s.z0 for s in seqs])
    problem = jax.tree.map(lambda *v: jnp.stack(v), *[s.problem for s in seqs])
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("seq",))
    rec = solver.Recoverer(generators.build_generator(spec), job.recover, T)
    sharded = rec.run(z0, problem, params, mesh=mesh)
    one = solver.Recoverer(generators.build_generator(spec), job.recover, T).run(z0, problem, params)
    hlo = "\n".join(e.as_text() for ex in rec.cache.values() for e in ex)
    svd_ranks = [len(m.split(",")) for m in re.findall(r"= \(f32\[([0-9,]*)\][^\n]*?lapack_sgesdd", hlo)]
    report[update] = {
        "max_abs_diff": float(np.abs(sharded.x - one.x).max()),
        "collectives": len(re.findall(r"(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)", hlo)),
        "svd_ranks": svd_ranks,
    }
print(json.dumps(report))
"""


def test_sharded_recovery_has_no_collectives_and_equals_one_device():
    """2 simulated devices, T = 32, k = 32: finishes; no collective; on CPU every SVD is of one matrix."""
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore", XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDED_SCRIPT, "32", "32", "6"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # a deadlock must fail the test, not hang the suite
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for update, r in report.items():
        assert r["collectives"] == 0, (update, r)
        assert r["svd_ranks"] and all(k == 2 for k in r["svd_ranks"]), (update, r)  # unbatched SVDs only
        assert r["max_abs_diff"] < 1e-4, (update, r)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_share_a_manifest(tmp_path):
    paths, manifest = _videos(tmp_path, n=3)
    port = _free_port()
    work = tmp_path / "work"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.recover",
                *COMMON,
                f"--manifest={manifest}",
                "--iterations=5",
                "--batch_size=1",
                f"--workdir={work}",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]  # ~190 s at a load of 10 on 2 cores; a hang still fails
    assert all(p.returncode == 0 for p in procs), outs
    assert "3 videos in the manifest, 2 for process 0, 2 to do" in outs[0]
    assert "3 videos in the manifest, 1 for process 1, 1 to do" in outs[1]
    rows = json.loads((work / "summary.json").read_text())
    assert sorted(r["video"] for r in rows) == sorted(str(p) for p in paths)
    assert len(list((work / "videos").iterdir())) == 3


def test_killed_job_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    paths, manifest = _videos(tmp_path, n=2)
    args = [
        *COMMON,
        f"--manifest={manifest}",
        "--iterations=400",
        "--batch_size=1",
        "--checkpoint_every=20",
        "--update=joint",
    ]
    ref = tmp_path / "ref"
    _run(*args, f"--workdir={ref}")

    work = tmp_path / "work"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.recover", *args, f"--workdir={work}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = work / "videos" / recovery.video_key(str(paths[0])) / "metrics.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        # A finalised early step (orbax renames it into place when complete) can only be the second
        # batch's: by the time the first video's results exist, its batch keeps only step 380.
        if first.exists() and [c for c in (work / "batches").glob("*/*") if c.name.isdigit() and int(c.name) <= 100]:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = first.stat().st_mtime_ns
    second = work / "videos" / recovery.video_key(str(paths[1])) / "metrics.json"
    assert not second.exists()

    out = _run(*args, f"--workdir={work}").stdout
    assert "1 to do" in out and "resuming at iteration" in out
    assert first.stat().st_mtime_ns == done_before  # finished work is not redone
    for p in paths:  # bitwise equal to the uninterrupted run on CPU
        np.testing.assert_array_equal(_frames(work, p), _frames(ref, p))
    assert len(json.loads((work / "summary.json").read_text())) == 2


def test_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match="--manifest=.*no such file"):
        recovery.read_manifest(str(tmp_path / "nope.txt"))
    m = tmp_path / "m.txt"
    m.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="lists no videos"):
        recovery.read_manifest(str(m))
    m.write_text("missing_*.mp4\n")
    with pytest.raises(ValueError, match="line 1 .* matches no file"):
        recovery.read_manifest(str(m))
    with pytest.raises(ValueError, match="--checkpoint_every=7"):
        recovery.BatchOptions(checkpoint_every=7).validate(log_every=5)


def test_matrix_free_gaussian_equals_dense():
    key = jax.random.key(3)
    T, shape, m = 3, (8, 8, 3), 50
    dense = operators.make(operators.MeasurementSpec("gaussian", num_measurements=m), key, T, shape)
    free = operators.make(
        operators.MeasurementSpec("gaussian", num_measurements=m, matrix_free=True, matrix_free_chunk=16), key, T, shape
    )
    x = jax.random.normal(jax.random.key(1), (T, *shape))
    y = jax.random.normal(jax.random.key(2), (T, m))
    np.testing.assert_allclose(free.A(x), dense.A(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(free.A_adjoint(y), dense.A_adjoint(y), rtol=1e-5, atol=1e-5)
    g_dense = jax.grad(lambda x: jnp.sum((dense.A(x) - y) ** 2))(x)
    g_free = jax.jit(jax.grad(lambda x: jnp.sum((free.A(x) - y) ** 2)))(x)
    np.testing.assert_allclose(g_free, g_dense, rtol=1e-4, atol=1e-4)
    # adjointness of the matrix-free pair itself
    lhs, rhs = jnp.vdot(free.A(x), y), jnp.vdot(x, free.A_adjoint(y))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4)
