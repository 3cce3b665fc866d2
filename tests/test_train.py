"""Tests for lrgen.train and the training binaries, on tiny data (32×32, a few steps).

* the Laplacian pyramid is exact (its bands add back up to the image);
* a run stopped and resumed equals an uninterrupted one, bitwise: in-process (GLO, codes and
  data order included) and by SIGKILL of the binary right after a checkpoint (DCGAN);
* one end-to-end run per binary, whose workdirs ``experiments.recover`` then loads
  (``--generator=<train workdir>``, ``--z_init=encoder --encoder=<encoder workdir>``);
* bad input is one line, exit status 1, and nothing written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from lrgen import checkpoint, encoder, jobs, operators, train

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """40 smooth 32×32 'digits' (blobs at random places) as a uint8 .npy."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    imgs = []
    for _ in range(40):
        cy, cx, r = rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(3, 7)
        imgs.append(255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2)))
    path = tmp_path_factory.mktemp("data") / "digits.npy"
    np.save(path, np.round(np.stack(imgs)).astype(np.uint8))
    return path


def tiny(digits: Path, **over) -> list[str]:
    flags = {
        "dataset": "array",
        "data_dir": str(digits),
        "image_size": 32,
        "num_holdout": 8,
        "batch_size": 8,
        "num_steps": 4,
        "checkpoint_every": 4,
        "log_every": 2,
        "sample_every": 4,
        **over,
    }
    return [f"--{k}={v}" for k, v in flags.items()]


def run(module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_all([(module, *args)], check=check)[0]


def run_all(commands: list[tuple[str, ...]], check: bool = True) -> list[subprocess.CompletedProcess]:
    """``python -m module args`` for each (module, *args), all at once (they are independent)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", *cmd], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )
        for cmd in commands
    ]
    done = []
    try:
        for cmd, p in zip(commands, procs):
            out, err = p.communicate(timeout=300)
            done.append(subprocess.CompletedProcess([sys.executable, "-m", *cmd], p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for proc in done:
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return done


def final_state(workdir: Path) -> dict:
    ckpts = workdir / "checkpoints"
    step = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    return step, ocp.PyTreeCheckpointer().restore(ckpts / str(step) / "default")


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b) and len(la) > 5
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------- library
def test_laplacian_pyramid_bands_add_up_to_the_image():
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    bands = train.laplacian_pyramid(x, 4)
    assert [b.shape[1] for b in bands] == [32, 16, 8, 4]
    rec = bands[-1]
    for b in reversed(bands[:-1]):
        rec = b + jnp.repeat(jnp.repeat(rec, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(rec, x, atol=1e-5)
    assert float(train.per_image_loss(x, x, "lap_l1").max()) == 0.0


def _glo_config(digits, num_steps, **over):
    settings = {
        "method": "glo",
        "arch": "dcgan_bn",  # batch statistics and codes both in the state
        "z_dim": 4,
        "width": 4,
        "data": train.DataConfig(dataset="array", data_dir=str(digits), image_size=16, num_holdout=8),
        # One checkpoint per run (at its end) keeps the test fast; rows are logged every 3 steps.
        "loop": train.LoopConfig(
            num_steps=num_steps, batch_size=8, checkpoint_every=100, log_every=3, sample_every=100
        ),
    }
    return train.GeneratorTrainConfig(**{**settings, **over})


def test_glo_resumed_equals_uninterrupted(digits, tmp_path):
    quiet = lambda s: None  # noqa: E731
    train.train_generator(_glo_config(digits, 7), str(tmp_path / "straight"), log=quiet)
    train.train_generator(_glo_config(digits, 3), str(tmp_path / "split"), log=quiet)
    out = train.train_generator(_glo_config(digits, 7), str(tmp_path / "split"), log=quiet)
    assert out["start_step"] == 3 and out["steps_run"] == 4
    (sa, a), (sb, b) = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    assert sa == sb == 7 and int(a["data"]["epoch"]) == 1  # 32 images / 8 = 4 steps per epoch
    assert_trees_equal(a, b)
    codes = np.asarray(a["codes"])
    np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1.0, rtol=1e-5)  # on the sphere
    rows = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6, 7]  # no duplicate rows after the resume
    # Another architecture in the same workdir is refused before anything is touched.
    with pytest.raises(ValueError, match="holds a checkpoint of another run .*z_dim"):
        train.train_generator(_glo_config(digits, 9, z_dim=None), str(tmp_path / "split"), log=quiet)


def test_non_finite_loss_stops_without_checkpoint(digits, tmp_path):
    cfg = _glo_config(digits, 6, learning_rate=1e30, code_learning_rate=1e30)
    with pytest.raises(FloatingPointError, match="not checkpointing|without checkpointing"):
        train.train_generator(cfg, str(tmp_path / "nan"), log=lambda s: None)
    assert not (tmp_path / "nan" / "checkpoints" / "6").exists()


# --------------------------------------------------------------------------- binaries
def dcgan_args(digits: Path) -> list[str]:
    return [
        *tiny(digits, num_steps=8, checkpoint_every=4, log_every=4, sample_every=8, batch_size=4),
        "--method=dcgan",
        "--arch=dcgan_bn",
        "--width=4",
        "--keep_checkpoints=5",
    ]


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory) -> dict[str, Path]:
    """One run of each binary: GLO (gmlr), DCGAN (dcgan_bn) and an encoder for the DCGAN."""
    base = tmp_path_factory.mktemp("trained")
    glo, dc, enc = base / "glo", base / "dcgan", base / "enc"
    glo_run, _ = run_all(  # independent runs: both at once
        [
            ("experiments.train_generator", *tiny(digits), "--z_dim=6", f"--workdir={glo}"),
            ("experiments.train_generator", *dcgan_args(digits), f"--workdir={dc}"),
        ]
    )
    assert "ETA" in glo_run.stdout and "steps/s" in glo_run.stdout
    # Inputs with half their pixels dropped: trains the path of an encoder for measurements.
    enc_args = [f"--generator={dc}", "--width=4", "--input_missing_ratio=0.5", f"--workdir={enc}"]
    run("experiments.train_encoder", *tiny(digits), *enc_args)
    return {"glo": glo, "dcgan": dc, "encoder": enc}


def test_kill_and_resume_equals_uninterrupted(digits, trained, tmp_path):
    """SIGKILL right after the first checkpoint, restart: the final state is bitwise the same."""
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.train_generator", *dcgan_args(digits), f"--workdir={killed}"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Orbax writes a step's files into checkpoints/4/ and commit_success.txt last: kill only
        # once step 4 is committed (killing earlier is a different test: a torn step is ignored).
        committed = killed / "checkpoints" / "4" / "commit_success.txt"
        deadline = time.time() + 280  # a slow (loaded) machine waits; it does not kill too early
        while not committed.is_file() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.002)
        assert proc.poll() is None, "the run finished before it could be killed"
        assert committed.is_file(), "step 4 was not committed in time"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "checkpoints" / "8").exists()
    out = run("experiments.train_generator", *dcgan_args(digits), f"--workdir={killed}")
    assert "resuming from the checkpoint at step" in out.stdout
    (sa, a), (sb, b) = final_state(trained["dcgan"]), final_state(killed)
    assert sa == sb == 8
    assert_trees_equal(a, b)


def test_generator_workdirs_hold_everything(trained):
    for name, steps in (("glo", 4), ("dcgan", 8)):
        w = trained[name]
        names = {p.name for p in w.iterdir()}
        assert {
            "config.json",
            "checkpoints",
            "metrics.jsonl",
            "samples",
            "curves.png",
            "generator",
            "result.json",
        } <= names
        assert not [n for n in names if n.startswith(".")]
        config = json.loads((w / "config.json").read_text())
        assert config["flags"]["num_steps"] == steps and "jax" in config["environment"]
        result = json.loads((w / "result.json").read_text())
        assert result["steps_per_second"] > 0 and result["steps_run"] == steps
        assert f"step_{steps:07d}.png" in {p.name for p in (w / "samples").iterdir()}
    assert (trained["dcgan"] / "discriminator" / "discriminator.json").is_file()
    grid = np.asarray(Image.open(trained["glo"] / "samples" / "step_0000004.png"))
    assert grid.shape[0] == 3 * 32 + 2 * 2  # real / reconstructed / random rows
    spec = json.loads((trained["dcgan"] / "generator" / "generator.json").read_text())["spec"]
    assert spec == {"z_dim": 100, "features": [16, 8, 4], "channels": 1, "arch": "dcgan_bn"}
    enc = json.loads((trained["encoder"] / "result.json").read_text())
    assert np.isfinite(enc["psnr_holdout"])


def recover_in_process(*argv: str) -> None:
    """``experiments.recover``'s main with these flags, in this process (no second JAX start-up).

    The binary end to end, in a process of its own: tests/test_recover_binary.py.
    """
    from absl import flags

    from experiments import recover as binary

    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["recover", *argv])
        binary.main(["recover"])  # a user error would raise SystemExit(1): the test fails
    finally:
        flags.FLAGS.unparse_flags()


def test_recover_loads_trained_generators_and_encoder(trained, tmp_path):
    common = ["--video=builtin:rotating_digit", "--image_size=32", "--num_frames=6", "--iterations=4", "--log_every=2"]
    common.append("--preset=faithful")
    recover_in_process(*common, f"--generator={trained['glo']}", f"--workdir={tmp_path / 'glo'}")
    assert json.loads((tmp_path / "glo" / "metrics.json").read_text())["generator_spec"]["arch"] == "gmlr"
    enc = ["--z_init=encoder", f"--encoder={trained['encoder']}"]
    recover_in_process(*common, f"--generator={trained['dcgan']}", *enc, f"--workdir={tmp_path / 'dc'}")
    m = json.loads((tmp_path / "dc" / "metrics.json").read_text())
    assert m["generator_spec"]["arch"] == "dcgan_bn" and m["job"]["z_init"] == "encoder"
    # An encoder made for another generator (k = 100 vs 6) is refused with one line.
    job = jobs.RecoverJob(
        generator=str(trained["glo"]), z_init="encoder", encoder=str(trained["encoder"]), image_size=32
    )
    spec, _ = jobs.load_model(job, 1)
    with pytest.raises(ValueError, match="--encoder=.*k=100 codes, but the generator has k=6"):
        jobs.check_encoder(job, (32, 32, 1), spec)
    with pytest.raises(ValueError, match="--z_init=encoder needs --encoder"):
        jobs.check_encoder(jobs.RecoverJob(z_init="encoder"), (32, 32, 1), spec)
    with pytest.raises(ValueError, match="--encoder_input=measurements is only used with --z_init=encoder"):
        jobs.check_encoder(jobs.RecoverJob(encoder_input="measurements"), (32, 32, 1), spec)


def test_encoder_start_from_measurements(trained):
    """--encoder_input=measurements: z0 = E(Aᵀy), the zero-filled observation; refused where Aᵀy is no image."""
    meta = json.loads((trained["encoder"] / "encoder" / "encoder.json").read_text())
    assert meta["input_missing_ratio"] == 0.5
    spec, _ = checkpoint.load_generator(trained["dcgan"])
    frames = jobs.load_frames(jobs.RecoverJob(video="builtin:rotating_digit", image_size=32, num_frames=4))
    job = jobs.RecoverJob(
        generator=str(trained["dcgan"]), z_init="encoder", encoder=str(trained["encoder"]), image_size=32
    )
    oracle = jobs.prepare_sequence(job, frames, spec)
    measured = jobs.prepare_sequence(dataclasses.replace(job, encoder_input="measurements"), frames, spec)
    seen = np.clip((np.asarray(measured.operator.A_adjoint(measured.y)) + 1) / 2, 0, 1)
    assert (seen == 0.5).mean() > 0.75  # 80 % missing (default): mid-grey where nothing is measured
    e_spec, e_vars = checkpoint.load_encoder(trained["encoder"])
    np.testing.assert_allclose(measured.z0, encoder.encode(e_spec, e_vars, seen), atol=1e-6)
    np.testing.assert_allclose(oracle.z0, encoder.encode(e_spec, e_vars, frames), atol=1e-6)
    assert not np.allclose(measured.z0, oracle.z0, atol=1e-3)
    gaussian = dataclasses.replace(
        job, encoder_input="measurements", measurement=operators.MeasurementSpec("gaussian", num_measurements=64)
    )
    with pytest.raises(ValueError, match="--encoder_input=measurements: needs a measurement whose adjoint is an image"):
        jobs.check_encoder(gaussian, (32, 32, 1), spec)


def test_drop_pixels_drops_the_ratio_in_all_channels_at_once():
    x = jnp.ones((4, 32, 32, 3))
    y = np.asarray(train.drop_pixels(jax.random.key(0), x, 0.8))
    assert set(np.unique(y)) == {0.0, 1.0}
    assert np.all(y == y[..., :1])  # one mask per pixel, shared by the channels
    assert abs((y[..., 0] == 0).mean() - 0.8) < 0.02
    np.testing.assert_array_equal(train.drop_pixels(jax.random.key(0), x, 0.0), x)
    with pytest.raises(ValueError, match="--input_missing_ratio=1.0: must lie in"):
        train.EncoderTrainConfig(generator="g", input_missing_ratio=1.0).validate()


def _gen_config(digits, tmp_path, over):
    over = dict(over)
    data = {"dataset": "array", "data_dir": str(digits), "image_size": 32, "num_holdout": 8}
    for k in ("dataset", "data_dir", "image_size", "augment"):
        if k in over:
            data[k] = over.pop(k)
    if isinstance(data["data_dir"], str):
        data["data_dir"] = data["data_dir"].replace("TMP", str(tmp_path))
    loop = train.LoopConfig(num_steps=2, batch_size=over.pop("batch_size", 8))
    return train.GeneratorTrainConfig(data=train.DataConfig(**data), loop=loop, **over)


@pytest.mark.parametrize(
    "over, message",
    [
        ({"method": "vae"}, "--method=vae: allowed values are glo, dcgan"),
        ({"arch": "resnet"}, "--arch=resnet"),
        ({"image_size": 48}, "--image_size=48"),
        ({"dataset": "mnist", "data_dir": "/nonexistent/mnist"}, "--data_dir=/nonexistent/mnist: no such file"),
        ({"dataset": "folder", "data_dir": "TMP/EMPTY"}, "holds no images"),
        ({"dataset": "folder", "data_dir": "TMP/CORRUPT"}, "cannot decode image .*a.png"),
        ({"batch_size": 100}, "--batch_size=100"),
        ({"method": "glo", "augment": "shift"}, "--augment=shift: GLO learns one code per image"),
    ],
)
def test_bad_generator_input_is_one_line_and_writes_nothing(digits, tmp_path, over, message):
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "CORRUPT").mkdir()
    (tmp_path / "CORRUPT" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match=message) as e:
        train.train_generator(_gen_config(digits, tmp_path, over), str(tmp_path / "work"), log=lambda s: None)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "work").exists()


BAD_BINARY_CASES = [
    ("experiments.train_generator", ["--method=vae"], "method"),  # absl's own enum check
    ("experiments.train_generator", ["--image_size=48"], "--image_size=48"),
    ("experiments.train_encoder", ["--image_size=64"], "makes 32×32×1 images"),
    ("experiments.train_encoder", ["--z_dim=7"], "--z_dim=7"),
    ("experiments.train_encoder", [], "needs perceptual features"),
]


@pytest.fixture(scope="module")
def bad_binary_runs(digits, trained, tmp_path_factory) -> list[tuple[subprocess.CompletedProcess, Path]]:
    """Each case of BAD_BINARY_CASES in a process of its own, all at once: (process, its --workdir)."""
    base = tmp_path_factory.mktemp("bad_binary")
    commands, works = [], []
    for i, (module, extra, _) in enumerate(BAD_BINARY_CASES):
        if module == "experiments.train_encoder":
            extra = [*extra, f"--generator={trained['glo']}"]
        works.append(base / f"work{i}")
        commands.append((module, *tiny(digits), *extra, f"--workdir={works[-1]}"))
    return list(zip(run_all(commands, check=False), works))


@pytest.mark.parametrize("module, extra, message", BAD_BINARY_CASES)
def test_bad_binary_input_is_one_line_and_writes_nothing(bad_binary_runs, module, extra, message):
    proc, work = bad_binary_runs[BAD_BINARY_CASES.index((module, extra, message))]
    assert proc.args[2] == module
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    if message != "method":
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not work.exists()


# --------------------------------------------------------------------------- lazy Adam, sphere, checkpointer
def test_lazy_adam_is_adam_on_the_rows_it_touches():
    """With every row in every batch, lazy Adam is optax.adam; rows left out keep state and value."""
    from lrgen.train.lazy_adam import lazy_adam

    table = jax.random.normal(jax.random.key(0), (6, 3))
    grads = [jax.random.normal(jax.random.key(i + 1), (6, 3)) for i in range(4)]
    lazy, dense = lazy_adam(0.1), optax.adam(0.1)
    ls, ds = lazy.init(table), dense.init(table)
    rows = jnp.arange(6)
    for g in grads:
        u_lazy, ls = lazy.update(g, ls, rows=rows)
        u_dense, ds = dense.update(g, ds)
        np.testing.assert_allclose(u_lazy, u_dense, rtol=1e-6, atol=1e-7)
    # Only rows 1 and 4 in a batch: the others' moments and counts stay as they were.
    idx = jnp.array([1, 4])
    _, ls2 = lazy_adam(0.1).update(grads[0][idx], ls, rows=idx)
    assert np.asarray(ls2.count).tolist() == [4, 5, 4, 4, 5, 4]
    keep = np.array([0, 2, 3, 5])
    np.testing.assert_array_equal(np.asarray(ls2.mu)[keep], np.asarray(ls.mu)[keep])
    np.testing.assert_array_equal(np.asarray(ls2.nu)[keep], np.asarray(ls.nu)[keep])


def test_sphere_normalize_and_sample_are_unit_norm():
    from lrgen import sphere

    z = sphere.sample(jax.random.key(0), (50, 7))
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-6)
    v = jax.random.normal(jax.random.key(1), (4, 7)) * 3.0
    np.testing.assert_allclose(sphere.normalize(v), v / np.linalg.norm(v, axis=1, keepdims=True), rtol=1e-6)
    assert np.all(np.isfinite(sphere.normalize(jnp.zeros((2, 7)))))  # a zero row stays finite


def test_checkpointer_round_trip_and_refuses_other_shapes(tmp_path):
    state = {"step": jnp.int32(3), "w": jnp.arange(6.0).reshape(2, 3)}
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt", keep=2)
    assert ckpt.latest_step() is None and ckpt.restore(jax.eval_shape(lambda: state), "--workdir=x") is None
    for s in (1, 2, 3):
        ckpt.save(s, jax.tree.map(lambda a: a + s, state))
    ckpt.wait()
    assert ckpt.latest_step() == 3 and sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["2", "3"]
    step, restored = ckpt.restore(jax.eval_shape(lambda: state), "--workdir=x")
    assert step == 3
    np.testing.assert_array_equal(restored["w"], state["w"] + 3)
    other = {"step": jnp.int32(0), "w": jnp.zeros((3, 3))}
    with pytest.raises(ValueError, match="--workdir=x: its checkpoint 3 does not match"):
        ckpt.restore(jax.eval_shape(lambda: other), "--workdir=x")
    ckpt.close()
