"""End to end: ``python -m experiments.recover`` on tiny inputs, and every kind of bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TINY = [
    "--video=builtin:rotating_digit",
    "--image_size=32",
    "--num_frames=8",
    "--iterations=6",
    "--log_every=3",
    "--z_dim=8",
    "--preset=faithful",  # the original's loop; the other presets: tests/test_method.py
]


def run(*args, check=True):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.recover", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_smoke_writes_every_output_and_reloads_its_generator(tmp_path):
    work = tmp_path / "run"
    proc = run(*TINY, "--update=joint", "--video_format=gif", f"--workdir={work}")
    assert "PSNR" in proc.stdout and "ETA" in proc.stdout
    names = {p.name for p in work.iterdir()}
    assert {
        "metrics.json",
        "reconstruction.npz",
        "grid.png",
        "reconstruction.gif",
        "curves.png",
        "latent.png",
        "generator",
    } <= names
    assert not [n for n in names if n.startswith(".tmp")]
    m = json.loads((work / "metrics.json").read_text())
    for key in (
        "psnr",
        "ssim",
        "measurement_loss",
        "iterations",
        "seconds",
        "compile_seconds",
        "seconds_per_iteration",
    ):
        assert key in m, key
    assert m["iterations"] == 6 and m["flags"]["rank"] == 2 and m["flags"]["image_size"] == 32
    rec = np.load(work / "reconstruction.npz")
    assert rec["frames"].shape == (8, 32, 32, 1) and rec["z"].shape == (8, 8)
    assert 0 <= rec["frames"].min() and rec["frames"].max() <= 1
    # The tuned generator is a checkpoint the binary loads back, architecture included.
    again = tmp_path / "again"
    run(*TINY[:-1], "--update=latent", f"--generator={work / 'generator'}", f"--workdir={again}")
    m2 = json.loads((again / "metrics.json").read_text())
    assert m2["generator_spec"] == m["generator_spec"]


def _frames_folder(tmp_path, name, n=4, corrupt=False):
    d = tmp_path / name
    d.mkdir()
    for i in range(n):
        Image.fromarray(np.full((40, 40), 30 * i, np.uint8)).save(d / f"f{i:02d}.png")
    if corrupt:
        (d / "e99.png").write_bytes(b"not a png at all")
    return d


def _bad_cases(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    nan_video = tmp_path / "nan.npy"
    v = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    v[0, 0, 0] = np.nan
    np.save(nan_video, v)
    bad_mask = tmp_path / "mask.npy"
    np.save(bad_mask, np.ones((8, 1, 16, 16)))
    nan_mask = tmp_path / "nanmask.npy"
    m = np.ones((8, 1, 32, 32))
    m[0, 0, 0, 0] = np.nan
    np.save(nan_mask, m)
    cases = [
        (["--video=/no/such/video.mp4"], "/no/such/video.mp4"),
        ([f"--video={empty}"], str(empty)),
        ([f"--video={_frames_folder(tmp_path, 'corrupt', corrupt=True)}", "--num_frames=4"], "e99.png"),
        ([f"--video={nan_video}"], "nan.npy"),
        ([f"--video={_frames_folder(tmp_path, 'four')}", "--num_frames=6"], "four"),
        (["--rank=9"], "--rank=9"),
        (["--missing_ratio=1.5"], "--missing_ratio=1.5"),
        (["--missing_ratio=-0.1"], "--missing_ratio=-0.1"),
        (["--measurement=gaussian", "--num_measurements=5000"], "--num_measurements=5000"),
        (["--measurement=separable", "--num_measurements=0"], "--num_measurements=0"),
        (["--measurement=denoise"], "--noise_snr_db"),
        (["--noise_snr_db=nan"], "--noise_snr_db"),
        (["--mask_file=/no/such/mask.npy"], "--mask_file=/no/such/mask.npy"),
        ([f"--mask_file={bad_mask}"], "--mask_file"),
        ([f"--mask_file={nan_mask}"], "--mask_file"),
        (["--image_size=48"], "--image_size=48"),
        (["--generator=/no/such/generator"], "--generator=/no/such/generator"),
        (["--similarity_weight=2"], "--similarity_weight=2"),
        (["--z_step=-1"], "--z_step=-1"),
        (["--iterations=0"], "--iterations=0"),
        (["--z_dim=0"], "--z_dim=0"),
    ]
    if (SHARED / "data/gmlr/mnist_dcgan_gmlr.npz").exists():  # a 64×64 generator for 32×32 frames
        cases.append(([f"--generator={SHARED / 'data/gmlr/mnist_dcgan_gmlr.npz'}"], "--generator"))
    return cases


def _main_in_process(argv, capsys):
    """Run the binary's main() in this process (flag checks need no compilation): (exit code, stderr)."""
    from absl import flags

    from experiments import recover as binary

    flags.FLAGS.unparse_flags()
    flags.FLAGS(["recover", *argv])
    try:
        binary.main(["recover"])
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        flags.FLAGS.unparse_flags()
    return code, capsys.readouterr().err


def test_bad_input_gives_one_clear_line_and_writes_nothing(tmp_path, capsys):
    for i, (args, needle) in enumerate(_bad_cases(tmp_path)):
        work = tmp_path / f"w{i}"
        code, err = _main_in_process([*TINY, *args, f"--workdir={work}"], capsys)
        lines = err.strip().splitlines()
        assert code not in (0, None), args
        assert lines and lines[-1].startswith("error: ") and needle in lines[-1], (args, err)
        assert not work.exists(), args


def test_bad_input_exits_non_zero_without_traceback(tmp_path):
    """The same as a user sees it: a separate process, its exit status and its stderr."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    cases = [(args, needle, tmp_path / f"p{i}") for i, (args, needle) in enumerate(_bad_cases(tmp_path)[:3:2])]
    procs = [  # independent: all at once
        subprocess.Popen(
            [sys.executable, "-m", "experiments.recover", *TINY, *args, f"--workdir={work}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args, _, work in cases
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    done = [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs)]
    for (args, needle, work), proc in zip(cases, done):
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 1, args
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        assert err and err[-1].startswith("error: ") and needle in err[-1], (args, proc.stderr)
        assert not work.exists(), args


def test_flag_parsing_errors_exit_non_zero(tmp_path):
    """A value absl cannot parse: exit status non-zero, the flag named, no traceback.

    End to end (a process of its own) for one flag; for the others, in this process, that parsing
    raises ``flags.Error`` naming the flag: what ``app.run`` turns into that message and exit 1.
    """
    from absl import flags

    from experiments import recover  # noqa: F401 - defines the binary's flags

    proc = run(*TINY, "--measurement=blur", f"--workdir={tmp_path / 'w'}", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "measurement" in proc.stderr and "Flags parsing error" in proc.stderr, proc.stderr
    for args in (["--measurement=blur"], ["--rank=two"], ["--update=all"]):
        flags.FLAGS.unparse_flags()
        try:
            with pytest.raises(flags.Error, match=args[0].split("=")[0].lstrip("-")):
                flags.FLAGS(["recover", *TINY, *args, f"--workdir={tmp_path / 'w'}"])
        finally:
            flags.FLAGS.unparse_flags()
    assert not (tmp_path / "w").exists()


@pytest.mark.skipif(not (SHARED / "data/gmlr/rot_mnist/seq1").exists(), reason="../shared/data/gmlr not present")
def test_original_setting_runs_a_few_iterations(tmp_path):
    """The rotating-MNIST flagfile with the original weights and masks, cut to a few iterations."""
    work = tmp_path / "rot"
    run(
        f"--flagfile={ROOT / 'experiments/configs/rot_mnist_missing80_joint.flags'}",
        "--iterations=4",
        "--log_every=2",
        f"--workdir={work}",
    )
    m = json.loads((work / "metrics.json").read_text())
    assert m["frame_shape"] == [64, 64, 1] and m["generator_spec"]["z_dim"] == 32
