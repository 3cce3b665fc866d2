"""Latent interpolation: the interpolation rules, the baselines, hold-out scoring, the binary."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from lrgen import baselines, checkpoint, interpolation, jobs, latent_paths, lowrank, observed, operators, selection
from lrgen.nets import generators

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SPEC = generators.GeneratorSpec(z_dim=8, features=(16, 8, 4), channels=1)  # 32×32, tiny
_init = jax.jit(lambda key: generators.init_generator(SPEC, key))  # one compile, not one per op


# --------------------------------------------------------------------------- the rules
def test_linear_is_exact_at_knots_and_affine_in_between():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(4, 3))
    t = np.array([0.0, 2.0, 3.0, 7.0])
    out = latent_paths.interpolate(c, t, t)
    np.testing.assert_array_equal(out, c)
    q = np.array([1.0, 2.5, 5.0])
    want = np.stack([(c[0] + c[1]) / 2, (c[1] + c[2]) / 2, (c[2] + c[3]) / 2])
    np.testing.assert_allclose(latent_paths.interpolate(c, t, q), want, rtol=1e-12)
    # Outside the knots the end segments are extended (the codes' line continues).
    np.testing.assert_allclose(latent_paths.interpolate(c, t, np.array([9.0]))[0], c[3] + 0.5 * (c[3] - c[2]))


def test_slerp_keeps_the_norm_and_turns_at_constant_angular_speed():
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])
    q = np.linspace(0, 1, 5)
    out = latent_paths.interpolate(np.stack([a, b]), np.array([0.0, 1.0]), q, "slerp")
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1 + q, rtol=1e-12)  # norm changes linearly
    angles = np.arctan2(out[:, 1], out[:, 0])
    np.testing.assert_allclose(angles, q * np.pi / 2, atol=1e-12)
    np.testing.assert_array_equal(out[[0, -1]], np.stack([a, b]))
    # Equal-norm endpoints: Shoemake's slerp; parallel ones: the chord.
    par = latent_paths.interpolate(np.stack([a, 3 * a]), np.array([0.0, 1.0]), q, "slerp")
    np.testing.assert_allclose(par, np.outer(1 + 2 * q, a), rtol=1e-12)


@pytest.mark.parametrize("method", latent_paths.METHODS)
def test_codes_interpolated_in_the_fitted_basis_stay_on_the_rank_r_set(method):
    """Rank-2 pca codes lie on a line; generated codes stay in the subspace (linear: on the line)."""
    rng = np.random.default_rng(1)
    z = np.asarray(lowrank.project(rng.normal(size=(6, 8)).astype(np.float32), 2, "pca"), np.float64)
    t = np.arange(0, 12, 2, dtype=np.float64)
    q = latent_paths.fine_times(11, 4)
    codes, coords, basis = latent_paths.interpolate_codes(z, t, q, rank=2, method=method)
    assert codes.shape == (41, 8) and coords.shape == (41, 2) and basis.shape == (2, 8)
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(codes, coords @ basis, atol=1e-6)  # inside span(B)
    np.testing.assert_allclose(codes[::8], z, atol=1e-6)  # the fitted codes at their own times
    if method == "linear":
        np.testing.assert_allclose(codes, latent_paths.interpolate(z, t, q), atol=1e-5)  # = interpolating z itself
        again = np.asarray(lowrank.project(codes, 2, "pca"))
        np.testing.assert_allclose(again, codes, atol=1e-4)  # still rank-2 pca: on the line


def test_observed_frames_are_those_of_the_frame_operator():
    obs = observed.observed_frames(10, 4)
    np.testing.assert_array_equal(np.flatnonzero(obs), [0, 4, 8])
    op = operators.make(operators.MeasurementSpec(kind="frames", observe_every=4), jax.random.key(0), 10, (5, 5, 1))
    np.testing.assert_array_equal(np.asarray(op.mask)[:, 0, 0, 0] > 0, obs)


def test_baselines():
    frames = np.stack([np.full((2, 2, 1), v, np.float32) for v in (0.0, 1.0, 0.5)])
    t = np.array([0.0, 2.0, 4.0])
    q = np.array([0.0, 1.0, 1.5, 3.0, 5.0])
    near = baselines.nearest_frames(frames, t, q)[:, 0, 0, 0]
    np.testing.assert_array_equal(near, [0.0, 0.0, 1.0, 1.0, 0.5])  # a tie goes to the earlier frame
    blend = baselines.blend_frames(frames, t, q)[:, 0, 0, 0]
    np.testing.assert_allclose(blend, [0.0, 0.5, 0.75, 0.75, 0.5])  # held after the last one


def test_flow_baseline_follows_motion_that_the_blend_ghosts():
    """A smooth texture moving 2 px per frame: flow interpolation puts it where it is, the blend
    shows two half-bright copies; both are exact at the observed times."""
    T, S = 5, 64
    texture = np.random.default_rng(0).uniform(size=(S + 20, S + 20, 1)).astype(np.float32)
    for _ in range(3):
        texture = _smooth(texture)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    frames = np.stack([texture[6 : 6 + S, 2 * t : 2 * t + S] for t in range(T)])
    t_obs, q = np.array([0.0, 4.0]), np.arange(T, dtype=np.float64)
    flow = baselines.flow_frames(frames[[0, 4]], t_obs, q)
    blend = baselines.blend_frames(frames[[0, 4]], t_obs, q)
    np.testing.assert_array_equal(flow[[0, 4]], frames[[0, 4]])
    err_flow = np.mean((flow[1:4] - frames[1:4]) ** 2)
    err_blend = np.mean((blend[1:4] - frames[1:4]) ** 2)
    assert err_flow < 0.5 * err_blend, (err_flow, err_blend)
    assert baselines.flow_frames(frames[[0, 4]], t_obs, np.array([9.0])).tolist() == frames[[4]].tolist()  # held


def _smooth(f):
    """A 3×3 box blur: real frames have soft edges, which flow needs to measure motion."""
    p = np.pad(f, ((1, 1), (1, 1), (0, 0)), mode="edge")
    return sum(p[i : i + f.shape[0], j : j + f.shape[1]] for i in range(3) for j in range(3)) / 9.0


@pytest.mark.parametrize("n", range(0, 12))
def test_validation_folds_predict_every_observed_frame_once_in_folds_of_one_size(n):
    folds = selection.validation_folds(n)
    if n < 3:
        assert folds == []
        return
    assert len(folds) == 2 and len({len(f) for f, _ in folds}) == 1
    held_all = []
    for fitted, held in folds:
        assert len(held) >= 1 and not set(fitted) & set(held) and np.all(np.diff(fitted) > 0)
        held_all += held.tolist()
    assert sorted(held_all) == list(range(n - n % 2))  # each once; n − 1 is fitted by both when n is odd
    within = selection.inside(folds)
    beyond = np.concatenate([h for _, h in folds])[~within]
    # Between the fitted frames: every interior frame; beyond them: the first, and the last when n is even.
    assert sorted(beyond.tolist()) == ([0, n - 1] if n % 2 == 0 else [0])
    assert sorted(np.concatenate([h for _, h in folds])[within].tolist()) == list(range(1, n - 1))


def test_extrapolated_flow_carries_the_end_frames_on_at_their_velocity():
    """A square moving 2 pixels per frame: beyond the observed frames it keeps moving, in both
    directions; between them the frames are flow_frames'."""

    def square(x0):
        f = np.zeros((32, 32, 1), np.float32)
        f[10:20, x0 : x0 + 10] = 1.0
        return _smooth(f)

    t_obs = np.array([2.0, 4.0])
    frames = np.stack([square(8), square(12)])
    query = np.array([0.0, 3.0, 5.0, 6.0])
    out = baselines.extrapolated_flow_frames(frames, t_obs, query)
    assert np.array_equal(out[1], baselines.flow_frames(frames, t_obs, query[1:2])[0])
    for got, x0 in zip(out[[0, 2, 3]], (4, 14, 16)):
        assert np.mean(np.abs(got - square(x0))) < 0.25 * np.mean(np.abs(frames[1] - square(x0)))


@pytest.mark.parametrize("truth_method", latent_paths.METHODS)
def test_path_selection_recovers_the_path_the_codes_move_along(truth_method):
    """Codes moving along a line (linear) or a great circle at constant angular speed (slerp):
    predicting held-out observed frames picks that path."""
    params = jax.tree.map(lambda w: 3.0 * w, _init(jax.random.key(42)))
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, SPEC.z_dim))
    t = np.arange(7, dtype=np.float64)
    if truth_method == "linear":
        z = a + (t / 6)[:, None] * b
    else:
        u, v = a / np.linalg.norm(a), b - (b @ a) / (a @ a) * a
        v /= np.linalg.norm(v)
        ang = 1.4 * t / 6  # 80° in all
        z = 2.0 * (np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * v)
    frames = latent_paths.render(SPEC, params, z.astype(np.float32))
    method, record = selection.select_path(z, t, frames, SPEC, params, rank=0)
    assert method == truth_method, record
    assert record["chosen"] == truth_method and {r["method"] for r in record["candidates"]} == set(latent_paths.METHODS)


def test_flow_share_is_the_least_squares_mix_of_the_two_predictions():
    """β = argmin ‖(1 − β) g + β f − x‖² on [0, 1]: ½ for independent errors of one size (the mix
    then beats both), 0 when g is exact, 1 when f is, and clipped in between."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 16, 16, 1))
    e1, e2 = rng.normal(scale=0.1, size=(2, *x.shape))
    beta = selection.flow_share(x + e1, x + e2, x)
    assert beta == pytest.approx(0.5, abs=0.03)
    mix = (1 - beta) * (x + e1) + beta * (x + e2)
    assert np.mean((mix - x) ** 2) < 0.6 * min(np.mean(e1**2), np.mean(e2**2))
    assert selection.flow_share(x, x + e2, x) == 0.0 and selection.flow_share(x + e1, x, x) == 1.0
    assert selection.flow_share(x + e1, x + 2 * e1, x) == 0.0  # f only worse along g's error: clipped
    assert selection.flow_share(x, x, x) == 0.0


def test_flow_share_at_a_frame_follows_the_first_order_model_of_both_errors():
    """β(t) is the folds' least-squares β at their distance (a whole gap), 1 at an observed frame
    where G(z) keeps a fitting error and flow has none, constant when G(z) fits exactly, and for
    frames beyond the span uses the ends' errors with the distance to the end frame."""
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 16, 16, 1))
    g, f = x + rng.normal(scale=0.2, size=x.shape), x + rng.normal(scale=0.1, size=x.shape)
    errors = selection.fold_errors(g, f, x)
    share = selection.flow_share(g, f, x)
    assert errors["generator"] == pytest.approx(np.mean((g - x) ** 2))
    # u = (d/g)² = 1: the folds' own distance gives their least-squares share.
    assert selection.share_at_distance(np.array([1.0]), 0.01, errors, share)[0] == pytest.approx(share, abs=1e-9)
    # G(z) exact on the observed frames: the share does not depend on the distance.
    np.testing.assert_allclose(selection.share_at_distance(np.linspace(0, 1, 5), 0.0, errors, share), share, atol=1e-9)
    # A fitting error: flow's share rises to 1 at the observed frames, monotonically.
    b = selection.share_at_distance(np.linspace(0, 1, 5), 0.01, errors, share)
    assert b[0] == 1.0 and np.all(np.diff(b) <= 1e-12) and b[-1] == pytest.approx(share, abs=1e-9)
    # No errors recorded (no fold spans such a frame): the share as measured.
    assert selection.share_at_distance(np.array([0.3]), 0.01, None, 0.4)[0] == 0.4

    t_obs = np.array([0.0, 4.0, 8.0])
    ends = selection.fold_errors(g, x + 0.5 * (g - x), x)  # flow halfway between G(z) and the truth
    record = {"flow_share": share, "fold_errors": errors, "flow_share_ends": 1.0, "fold_errors_ends": ends}
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 9.0, 12.0, 14.0])
    beta = selection.flow_share_at(times, t_obs, 0.01, record)
    at = lambda u, e, s: selection.share_at_distance(np.array([u]), 0.01, e, s)[0]  # noqa: E731
    assert beta[0] == beta[4] == 1.0 and beta[1] == beta[3] == pytest.approx(at(1 / 16, errors, share))
    assert beta[2] == pytest.approx(at(1 / 4, errors, share))  # midway: d = g/2
    assert beta[5] == pytest.approx(at(1 / 16, ends, 1.0)) and beta[6] == beta[7] == pytest.approx(at(1.0, ends, 1.0))


def test_config_validation_names_the_flag():
    for cfg, message in [
        (interpolation.InterpolateConfig(observe_every=8), r"--observe_every=8: must lie in \[1, T − 1\] = \[1, 7\]"),
        (interpolation.InterpolateConfig(observe_every=0), "--observe_every=0"),
        (interpolation.InterpolateConfig(factor=0), r"--factor=0: must lie in \[1, 256\]"),
        (interpolation.InterpolateConfig(factor=1000), "--factor=1000"),
        (interpolation.InterpolateConfig(method="cubic"), "--method=cubic: allowed values are linear, slerp"),
    ]:
        with pytest.raises(ValueError, match=message):
            cfg.validate(8)


# --------------------------------------------------------------------------- hold-out scoring
def test_hold_out_scores_exactly_the_missing_frames(tmp_path):
    """With codes known on a line, generated missing frames are G of the midpoints, scored alone."""
    params = jax.tree.map(lambda w: 3.0 * w, _init(jax.random.key(42)))
    a, b = np.random.default_rng(0).normal(size=(2, SPEC.z_dim))
    T = 7
    z_true = (a + np.linspace(0, 1, T)[:, None] * b).astype(np.float32)
    truth = latent_paths.render(SPEC, params, z_true)
    seen = observed.observed_frames(T, 2)
    fit = observed.Fit(
        job=jobs.RecoverJob(),
        frames=truth,
        observed=seen,
        z=z_true[seen],
        spec=SPEC,
        params=params,
        rank=2,
        source="test",
        fit={},
    )
    cfg = interpolation.InterpolateConfig(observe_every=2, factor=3, video_format="gif")
    m = interpolation.run_interpolate(fit, cfg, str(tmp_path), log=lambda s: None)
    assert m["missing_frames"] == [1, 3, 5] and m["observed_frames"] == [0, 2, 4, 6] and m["extrapolated_frames"] == []
    # The true codes move linearly in time, so linear interpolation recovers the missing frames.
    assert m["psnr_missing"] > 60 and m["ssim_missing"] > 0.999
    assert m["flow_share"] < 1e-3  # exact generated frames: flow gets (almost) no share
    assert m["psnr_missing"] > m["psnr_blend"] and m["psnr_missing"] > m["psnr_nearest"]
    out = np.load(tmp_path / "interpolation.npz")
    assert out["frames"].shape == (19, 32, 32, 1) and out["observed"].sum() == 4
    assert {"metrics.json", "interpolation.gif", "grid.png", "grid_fine.png", "latent.png"} <= set(os.listdir(tmp_path))


# --------------------------------------------------------------------------- the binary
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
TINY = ["--image_size=32", "--num_frames=8", "--iterations=4", "--log_every=2", "--video_format=gif"]
# Runs experiments.interpolate's flag handling and job for many argument lists in one process
# (one JAX start-up instead of one per case); prints "ok" or the error line for each.
DRIVER = """
import json, sys
from absl import flags
from experiments import interpolate as binary
results = []
for args in json.loads(sys.argv[1]):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["interpolate", *args])
    try:
        binary.run(lambda s: None)
        results.append("ok")
    except ValueError as e:
        results.append("error: " + str(e))
print(json.dumps(results))
"""


def _python(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300)


def test_binary_fits_observed_frames_reads_a_recover_workdir_and_rejects_bad_flags(tmp_path):
    # A saved tiny generator (a random one would be initialised op by op in every process).
    gen = tmp_path / "gen"
    checkpoint.save_generator(gen, SPEC, jax.tree.map(lambda w: 3.0 * w, _init(jax.random.key(42))))
    tiny = [*TINY, f"--generator={gen}"]
    # A recover run with the frame operator: its missing frames are generated and scored below.
    rec = tmp_path / "rec"
    r = _python(
        "-m",
        "experiments.recover",
        "--preset=faithful",
        "--video=builtin:rotating_digit",
        *tiny,
        "--measurement=frames",
        "--observe_every=2",
        "--update=latent",
        f"--workdir={rec}",
    )
    assert r.returncode == 0, r.stderr
    fit, from_rec, bad = tmp_path / "interp", tmp_path / "from_rec", tmp_path / "bad"
    video = "--video=builtin:rotating_digit"
    cases = [
        ([video, *tiny, "--observe_every=3", "--factor=2", "--update=joint", f"--workdir={fit}"], "ok"),
        ([f"--recover_workdir={rec}", "--factor=3", "--video_format=gif", f"--workdir={from_rec}"], "ok"),
        ([f"--recover_workdir={rec}", "--rank=3"], "--rank: fit flags do not apply with --recover_workdir"),
        ([f"--recover_workdir={rec}", "--observe_every=4"], "--observe_every=4: the recover run"),
        ([f"--recover_workdir={tmp_path}"], "not a finished recover workdir"),
        ([video, f"--recover_workdir={rec}"], "give exactly one of --video"),
        ([video, *tiny, "--observe_every=8"], "--observe_every=8: must lie in [1, T − 1] = [1, 7]"),
        ([video, *tiny, "--factor=0"], "--factor=0: must lie in [1, 256]"),
        ([video, *tiny, "--observe_every=4", "--rank=3"], "--rank=3: must lie in [0, min(n, k)] = [0, 2]"),
        (["--video=/no/such.mp4", *tiny], "/no/such.mp4): the path does not exist"),
        ([video, *TINY, "--generator=/no/gen"], "/no/gen"),
    ]
    argv = [args if "ok" == want else [*args, f"--workdir={bad}"] for args, want in cases]
    p = _python("-c", DRIVER, json.dumps(argv))
    assert p.returncode == 0, p.stderr
    results = json.loads(p.stdout.strip().splitlines()[-1])
    for (args, want), got in zip(cases, results):
        assert (got == "ok") if want == "ok" else (got.startswith("error: ") and want in got), (args, got)
        assert "\n" not in got
    assert not bad.exists()

    m = json.loads((fit / "metrics.json").read_text())
    for key in ("psnr_missing", "ssim_missing", "psnr_nearest", "psnr_blend", "psnr_flow", "ssim_flow"):
        assert isinstance(m[key], float), key
    assert len(m["ssim_per_missing_frame"]["flow"]) == len(m["missing_frames"])
    # --update=joint, --method=auto: the path was chosen on held-out observed frames by a fold fit.
    sel = m["selection"]
    assert sel["folds"] == [
        {"fitted": [0.0, 6.0], "held_out": [3.0], "beyond": []},
        {"fitted": [3.0, 6.0], "held_out": [], "beyond": [0.0]},  # frame 0 tells how far to trust the ends
    ]
    assert 0.0 <= m["flow_share_ends"] == sel["flow_share_ends"] <= 1.0
    names = [r["candidate"] for r in sel["candidates"]]
    assert names == ["update=joint rank=2 method=linear", "update=joint rank=2 method=slerp", *baselines.BASELINES]
    assert sel["chosen"] in names[:2] and m["method"] == sel["chosen"].split("method=")[1]
    assert m["observed_frames"] == [0, 3, 6] and m["extrapolated_frames"] == [7] and m["num_generated"] == 15
    assert m["flags"]["observe_every"] == 3 and m["fit"]["iterations"] == 4
    assert (fit / "generator" / "generator.json").is_file()  # the joint fit's generator, reloadable
    assert np.load(fit / "interpolation.npz")["t_observed"].tolist() == [0, 3, 6]
    m = json.loads((from_rec / "metrics.json").read_text())
    assert m["missing_frames"] == [1, 3, 5, 7] and m["observe_every"] == 2 and m["num_generated"] == 22

    # The binary itself: one line on stderr and exit status 1.
    p = _python("-m", "experiments.interpolate", video, *tiny, "--factor=0", f"--workdir={bad}")
    assert p.returncode == 1 and p.stderr.strip() == "error: --factor=0: must lie in [1, 256]", p.stderr
    assert not bad.exists()


@pytest.mark.skipif(not (SHARED / "data/gmlr/rot_mnist/seq1").is_dir(), reason="../shared/data/gmlr is not available")
def test_real_sequence_loads_with_the_original_generator():
    job = observed.make_job(
        jobs.RecoverJob(
            video=str(SHARED / "data/gmlr/rot_mnist/seq1"), generator=str(SHARED / "data/gmlr/mnist_dcgan_gmlr.npz")
        ),
        4,
    )
    frames = jobs.load_frames(job)
    spec, _ = jobs.load_model(job, frames.shape[-1])
    assert frames.shape == (32, 64, 64, 1) and spec.z_dim == 32
    assert list(np.flatnonzero(observed.observed_frames(32, 4))) == [0, 4, 8, 12, 16, 20, 24, 28]
