"""Issue 11: presets, held-out selection, early stopping, candidates of several ranks, Adam on Z."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrgen import engine, fusion, lowrank, operators, solver
from lrgen.nets import generators

SPEC = generators.GeneratorSpec(z_dim=8, features=(16, 8, 4), channels=1)  # 32×32, tiny
T = 6


def _problem(seed: int, kind: str = "missing", holdout: float = 0.0):
    key = jax.random.key(seed)
    params = jax.tree.map(lambda w: 3.0 * w, generators.init_generator(SPEC, jax.random.key(42)))
    model = generators.build_generator(SPEC)
    a, b = jax.random.normal(key, (2, SPEC.z_dim))
    x = model.apply({"params": params}, a + jnp.linspace(0, 1, T)[:, None] * b)
    op = operators.make(
        operators.MeasurementSpec(kind=kind, missing_ratio=0.5, num_measurements=64), key, T, x.shape[1:]
    )
    y = op.measure(x, key)
    h = engine.holdout_mask(jax.random.key(seed + 1), op, y, holdout) if holdout else None
    return model, params, engine.Problem(y, op, h), x * 0.5 + 0.5


def _batch(*trees):
    return jax.tree.map(lambda *v: jnp.stack(v), *trees)


def _z0(n=1, seed=100):
    return jnp.stack([engine.init_codes(jax.random.key(seed + i), T, SPEC.z_dim, "random") for i in range(n)])


@pytest.mark.parametrize("rank_type", lowrank.RANK_TYPES)
def test_traced_rank_projection_equals_the_static_one(rank_type):
    z = jax.random.normal(jax.random.key(0), (T, SPEC.z_dim))
    f = jax.jit(lambda z, r: lowrank.project_traced(z, r, rank_type))
    for r in range(0, T + 1):
        np.testing.assert_allclose(f(z, jnp.int32(r)), lowrank.project(z, r, rank_type), atol=1e-5)


def test_presets_resolve_in_one_place_and_flags_override():
    assert engine.PRESETS["faithful"] == engine.RecoverConfig()
    j = engine.resolve("journal")
    assert (j.generator_lr, j.generator_lr_decay, j.generator_lr_decay_every, j.best_margin) == (
        2.5e-4,
        0.75,
        500,
        0.01,
    )
    assert j.step_sizes(32)[0] == 320.0  # code step 10·T
    assert engine.resolve("journal", rank=3).rank == 3 and engine.resolve("journal", rank=3).preset == "journal"
    b = engine.resolve("best", holdout_fraction=0.0)
    assert b.preset == "best" and b.holdout_fraction == 0.0
    for name in engine.PRESETS:
        engine.resolve(name).validate(num_frames=32, z_dim=32)
        assert name in engine.PRESET_Z_INIT
    with pytest.raises(ValueError, match="--preset"):
        engine.resolve("fastest")
    from absl import flags

    from experiments import recover  # noqa: F401  (defines the recovery flags)

    assert flags.FLAGS["preset"].default == "best"  # lrgen's own method is the binary's default


@pytest.mark.parametrize("kind", ["missing", "gaussian", "separable"])
def test_holdout_takes_only_measured_entries_and_leaves_the_loss(kind):
    """Held-out entries are measured ones; the fitted loss ignores them (its gradient does not
    change when they change) and estimates the full loss; the held-out error is their MSE."""
    model, params, prob, _ = _problem(0, kind, holdout=0.3)
    h, measured = prob.holdout, jnp.broadcast_to(prob.operator.measured(prob.y), prob.y.shape)
    assert bool(jnp.all(h <= measured)) and 0.2 < float(h.sum() / measured.sum()) < 0.4
    rec = solver.Recoverer(model, engine.RecoverConfig(update="latent"), T)
    z = _z0()[0]
    changed = prob.replace(y=prob.y + 5.0 * h)
    grad = lambda p: jax.grad(lambda z: rec.losses(z, params, p)[0])(z)  # noqa: E731
    np.testing.assert_allclose(grad(prob), grad(changed), rtol=1e-5, atol=1e-7)
    _, (data, held) = rec.loss(z, params, prob)
    r2 = (prob.operator.A(model.apply({"params": params}, z)) - prob.y) ** 2
    np.testing.assert_allclose(held, jnp.sum(h * r2) / jnp.sum(h), rtol=1e-5)
    np.testing.assert_allclose(data, jnp.mean((1 - h) * r2) * measured.sum() / (measured - h).sum(), rtol=1e-5)


@pytest.mark.parametrize("kind", ["missing", "separable", "identity"])
def test_holdout_keeps_the_channels_of_an_entry_together(kind):
    """A colour channel held out beside its measured siblings would be predicted from them: the
    held-out set takes whole entries (all C channels) of channel-last measurements."""
    key = jax.random.key(3)
    x = jax.random.uniform(key, (T, 16, 16, 3))
    spec = operators.MeasurementSpec(kind=kind, missing_ratio=0.5, num_measurements=8)
    op = operators.make(spec, key, T, x.shape[1:])
    y = op.measure(x, key)
    h = engine.holdout_mask(jax.random.key(4), op, y, 0.3)
    assert h.shape == y.shape and y.shape[-1] == 3
    np.testing.assert_array_equal(h, jnp.broadcast_to(h[..., :1], h.shape))
    measured = jnp.broadcast_to(op.measured(y), y.shape)
    assert 0.2 < float(h.sum() / measured.sum()) < 0.4


def test_the_iterate_with_the_lowest_holdout_error_is_kept_and_patience_stops():
    model, params, prob, truth = _problem(1, holdout=0.2)
    cfg = engine.RecoverConfig(
        update="joint", iterations=400, log_every=10, z_step=20.0, generator_lr=1e-2, patience=30
    )
    rec = solver.Recoverer(model, cfg, T)
    res = rec.run(_z0(), _batch(prob), params, truth=truth[None])
    held = res.history["holdout_error"][0]
    assert res.holdout_error[0] <= held.min() + 1e-7
    # The returned codes and weights are that iterate.
    p = jax.tree.map(lambda a: a[0], res.params)
    _, (_, h) = rec.loss(jnp.asarray(res.z[0]), p, prob)
    np.testing.assert_allclose(h, res.holdout_error[0], rtol=1e-5)
    if res.iterations < cfg.iterations:  # stopped early: patience iterations without improvement
        assert res.iterations - res.best_step[0] >= cfg.patience
        assert res.history["measurement_loss"].shape[1] == res.iterations


def test_journal_margin_replaces_the_best_only_on_a_1_percent_drop():
    model, params, prob, _ = _problem(2)
    cfg = engine.resolve("journal", update="latent", z_step=2.0)
    rec = solver.Recoverer(model, cfg, T)
    state = rec.init_state(_z0()[0], params)
    step = jax.jit(rec.step)
    best = np.inf
    for _ in range(15):
        state, m = step(state, prob, params)
        if m["measurement_loss"] < 0.99 * best:
            best = float(m["measurement_loss"])
        np.testing.assert_allclose(state.best_loss, best, rtol=1e-6)


def test_candidate_ranks_in_one_batch_equal_separate_runs():
    """Candidates of ranks 1, 2, 0 (traced) in one batch = a run of each with its static rank."""
    model, params, prob, _ = _problem(3, holdout=0.2)
    base = engine.RecoverConfig(update="joint", iterations=9, log_every=3, z_step=5.0, generator_lr=1e-3)
    ranks = [1, 2, 0]
    z0 = _z0(len(ranks))
    batch = _batch(*[prob] * len(ranks)).replace(rank=jnp.asarray(ranks, jnp.int32))
    together = solver.Recoverer(model, base, T).run(z0, batch, params)
    for b, r in enumerate(ranks):
        alone = solver.Recoverer(model, dataclasses.replace(base, rank=r), T).run(z0[b : b + 1], _batch(prob), params)
        np.testing.assert_allclose(together.z[b], alone.z[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(together.holdout_error[b], alone.holdout_error[0], rtol=1e-4)


def test_candidate_learning_rates_in_one_batch_equal_separate_runs():
    """Candidates of generator learning rates s·η (traced) in one batch = a run of each with η·s."""
    model, params, prob, _ = _problem(3, holdout=0.2)
    base = engine.RecoverConfig(update="joint", iterations=6, log_every=3, z_step=5.0, generator_lr=1e-3)
    scales = [1.0, 4.0]
    z0 = _z0(1)
    batch = _batch(*[prob] * len(scales)).replace(lr_scale=jnp.asarray(scales))
    together = solver.Recoverer(model, base, T).run(jnp.concatenate([z0] * len(scales)), batch, params)
    for b, s in enumerate(scales):
        cfg = dataclasses.replace(base, generator_lr=1e-3 * s)
        alone = solver.Recoverer(model, cfg, T).run(z0, _batch(prob), params)
        np.testing.assert_allclose(together.z[b], alone.z[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(together.holdout_error[b], alone.holdout_error[0], rtol=1e-4)
    assert not np.allclose(together.z[0], together.z[1], atol=1e-4)  # the scales do act


@pytest.mark.parametrize("schedule", ["staircase", "cosine"])
def test_generator_step_follows_its_schedule(schedule):
    """Adam's step on a constant gradient is η_i itself: η·decay^⌊i/every⌋ or η·½(1 + cos(πi/N))."""
    lr, n = 0.1, 6
    cfg = engine.RecoverConfig(generator_lr=lr, generator_lr_decay=0.5, generator_lr_decay_every=2, schedule=schedule)
    cfg = dataclasses.replace(cfg, iterations=n)
    opt, _ = engine.optimizers(cfg, 1.0, lr)
    theta, g = jnp.zeros(3), jnp.ones(3)
    state, steps = opt.init(theta), []
    for _ in range(n):
        upd, state = opt.update(g, state, theta)
        steps.append(-float(upd[0]))
    i = np.arange(n)
    want = lr * 0.5 ** (i // 2) if schedule == "staircase" else lr * 0.5 * (1 + np.cos(np.pi * i / n))
    np.testing.assert_allclose(steps, want, rtol=1e-4, atol=1e-7)


def test_adam_on_codes_is_an_adam_step_then_the_projection():
    model, params, prob, _ = _problem(4)
    cfg = engine.RecoverConfig(update="latent", z_optimizer="adam", z_step=0.05, rank=2)
    rec = solver.Recoverer(model, cfg, T)
    z0 = _z0()[0]
    new, _ = jax.jit(rec.step)(rec.init_state(z0, params), prob, params)
    g = jax.grad(lambda z: rec.losses(z, params, prob)[0])(z0)
    upd, _ = optax.adam(0.05).update(g, optax.adam(0.05).init(z0), z0)
    np.testing.assert_allclose(new.z, lowrank.project(z0 + upd, 2, "pca"), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "change, flag",
    [
        (dict(holdout_fraction=1.0), "--holdout_fraction"),
        (dict(patience=-1), "--patience"),
        (dict(candidate_ranks=(1, 99)), "--candidate_ranks"),
        (dict(restarts=0), "--restarts"),
        (dict(z_optimizer="sgd"), "--z_optimizer"),
        (dict(schedule="linear"), "--schedule"),
        (dict(best_margin=1.0), "--best_margin"),
        (dict(preset="fast"), "--preset"),
        (dict(candidate_ranks=(1, 2), update="generator"), "--candidate_ranks"),
        (dict(candidate_lr_scales=(1.0, 0.0)), "--candidate_lr_scales"),
        (dict(candidate_lr_scales=(1.0, 4.0), update="latent"), "--candidate_lr_scales"),
    ],
)
def test_new_settings_are_validated(change, flag):
    with pytest.raises(ValueError, match=flag):
        dataclasses.replace(engine.RecoverConfig(), **change).validate(num_frames=T, z_dim=SPEC.z_dim)


def _binaries(*commands):
    """``python -m experiments.recover`` on the tiny video, once per argument list, all at once."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    tiny = ["--video=builtin:rotating_digit", "--image_size=32", "--num_frames=8", "--log_every=3", "--z_dim=8"]
    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.recover", *tiny, *args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in commands
    ]
    outputs = [p.communicate() for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs)]


def _binary(*args):
    return _binaries(args)[0]


def test_binary_records_the_preset_its_resolved_values_and_the_candidates(tmp_path):
    import json

    # best is asked for: ranks 2 and 0 × three starts (one shared code, two random), all to the end,
    # their best averaged.
    best = ["--preset=best", "--iterations=6", "--update=latent", f"--workdir={tmp_path / 'b'}"]
    journal = ["--preset=journal", "--iterations=4", "--rank=3", f"--workdir={tmp_path / 'j'}"]
    proc, journal_proc = _binaries(best, journal)  # independent runs: both at once
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert m["preset"] == "best" and m["recover_config"]["candidate_ranks"] == [2, 0]
    assert m["recover_config"]["holdout_fraction"] == engine.PRESETS["best"].holdout_fraction
    assert m["job"]["z_init"] == "fixed_z" and m["recover_config"]["ensemble"]
    rows = m["candidates"]
    assert [(c["rank"], c["start"]) for c in rows] == [(2, 0), (2, 1), (2, 2), (0, 0), (0, 1), (0, 2)]
    best = min(rows, key=lambda c: c["holdout_error"])
    assert best["chosen"] and m["chosen"] == best and sum(c["chosen"] for c in rows) == 1
    curve, members = m["ensemble"]["holdout_error_by_size"], m["ensemble"]["members"]
    assert curve[0] == pytest.approx(best["holdout_error"], rel=1e-5) and len(curve) == len(rows)
    assert m["holdout_error"] == pytest.approx(min(curve), rel=1e-6) and len(members) == 1 + int(np.argmin(curve))
    assert [c["in_ensemble"] for c in rows] == [i in members for i in range(len(rows))]
    # Missing pixels (the default measurement): the fusion was tried, every setting on the held-out pixels.
    assert m["recover_config"]["fusion"] and len(m["fusion"]["settings"]) == len(fusion.SETTINGS)
    chosen = m["fusion"]["chosen"]
    errors = [r["holdout_error"] for r in m["fusion"]["settings"]]
    assert (chosen is None) == (min(errors) >= m["fusion"]["holdout_error_recovery"])
    # journal: its values, an explicit flag on top, its own initial codes.
    proc = journal_proc
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "j" / "metrics.json").read_text())
    rc = m["recover_config"]
    assert m["preset"] == "journal" and rc["rank"] == 3 and rc["generator_lr"] == 2.5e-4 and rc["best_margin"] == 0.01
    assert m["z_step"] == 80.0 and m["job"]["z_init"] == "random"


def test_binary_rejects_bad_candidate_lists_in_one_line(tmp_path):
    bad = ("--candidate_ranks=2,x", "--candidate_lr_scales=1,x", "--candidate_lr_scales=1,-2")
    procs = _binaries(*[(arg, f"--workdir={tmp_path / str(i)}") for i, arg in enumerate(bad)])
    for i, (arg, proc) in enumerate(zip(bad, procs)):
        assert proc.returncode == 1 and proc.stderr.strip().startswith(f"error: {arg}"), proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / str(i)).exists()


def test_screening_continues_the_chosen_candidate_as_if_it_had_run_alone():
    """Candidates for `screen` iterations, then the survivor alone = that candidate run alone."""
    from lrgen import candidates

    model, params, prob, truth = _problem(5, holdout=0.2)
    cfg = engine.RecoverConfig(update="joint", iterations=9, log_every=3, z_step=5.0, generator_lr=1e-3, screen=3)
    ranks = [1, 2, 0]
    z0 = _z0(len(ranks))
    batch = _batch(*[prob] * len(ranks)).replace(rank=jnp.asarray(ranks, jnp.int32))
    rec = solver.Recoverer(model, cfg, T)
    truth_b = jnp.broadcast_to(truth, (len(ranks), *truth.shape))
    res = candidates.screen_then_continue(rec, z0, batch, params, truth_b, None, None, lambda m: None, ranks)
    b = int(np.argmin(res.screened.holdout_error))
    alone = solver.Recoverer(model, dataclasses.replace(cfg, rank=ranks[b]), T).run(z0[b : b + 1], _batch(prob), params)
    assert res.iterations == alone.iterations == 9 and res.history["measurement_loss"].shape == (1, 9)
    np.testing.assert_allclose(res.z[0], alone.z[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.holdout_error[0], alone.holdout_error[0], rtol=1e-4)


def test_ensemble_averages_independent_errors_and_keeps_a_lone_best():
    """Greedy selection by held-out error: E_1 is the best candidate's own held-out error; the
    mean of candidates with independent errors is chosen whole; a lone exact one stays alone."""
    from lrgen import candidates as ensemble

    _, _, prob, truth = _problem(7, holdout=0.3)
    noise = 0.05 * jax.random.normal(jax.random.key(1), (4, *truth.shape))
    frames = np.array(truth[None] + noise)
    scores = np.array([ensemble.holdout_error(f, prob) for f in frames])
    members, mean, curve = ensemble.select(frames, scores, prob)
    assert sorted(members) == [0, 1, 2, 3] and curve[0] == pytest.approx(scores.min(), rel=1e-6)
    assert curve[-1] < 0.5 * curve[0]  # noise variance σ²/4 against σ²
    np.testing.assert_allclose(mean, frames.mean(0), atol=1e-6)
    frames[2] = np.asarray(truth)
    scores = np.array([ensemble.holdout_error(f, prob) for f in frames])
    members, mean, _ = ensemble.select(frames, scores, prob)
    assert members == [2] and np.array_equal(mean, frames[2])
    with pytest.raises(ValueError, match="held-out"):
        ensemble.select(frames, scores, prob.replace(holdout=None))


def test_ensemble_needs_candidates_a_holdout_set_and_no_screening():
    ok = engine.RecoverConfig(restarts=3, holdout_fraction=0.1, ensemble=True)
    ok.validate(num_frames=8, z_dim=8)
    for bad in (dict(restarts=1), dict(holdout_fraction=0.0), dict(screen=10)):
        with pytest.raises(ValueError, match="^--ensemble"):
            dataclasses.replace(ok, **bad).validate(num_frames=8, z_dim=8)
    with pytest.raises(ValueError, match="^--update=generator: the 6 candidates .*--preset=best"):
        engine.resolve("best", update="generator").validate(num_frames=8, z_dim=8)
