"""The recovery loop: exact update equations, best iterate, batching, determinism, compiles."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrgen import engine, lowrank, operators, solver
from lrgen.nets import generators

SPEC = generators.GeneratorSpec(z_dim=8, features=(16, 8, 4), channels=1)  # 32×32, tiny
T = 6


def _problem(seed: int, kind: str = "missing"):
    """A sequence in G's range (codes on a line) and its measurements."""
    key = jax.random.key(seed)
    # The PyTorch 0.4 init makes a tiny network's output almost constant; scale it up so the
    # frames have contrast and the problem is well posed.
    params = jax.tree.map(lambda w: 3.0 * w, generators.init_generator(SPEC, jax.random.key(42)))
    model = generators.build_generator(SPEC)
    a, b = jax.random.normal(key, (2, SPEC.z_dim))
    z_true = a + jnp.linspace(0, 1, T)[:, None] * b
    x = model.apply({"params": params}, z_true)
    op = operators.make(
        operators.MeasurementSpec(kind=kind, missing_ratio=0.5, num_measurements=64), key, T, x.shape[1:]
    )
    y = op.measure(x, key)
    return model, params, engine.Problem(y, op), x * 0.5 + 0.5


def _batch(*trees):
    return jax.tree.map(lambda *v: jnp.stack(v), *trees)


def _run(cfg, problems, params, model, truth=None, z0=None):
    rec = solver.Recoverer(model, cfg, T)
    if z0 is None:
        z0 = jnp.stack([engine.init_codes(jax.random.key(100), T, SPEC.z_dim, "fixed_seed")] * len(problems))
    return rec, rec.run(z0, _batch(*problems), params, truth=truth)


@pytest.mark.parametrize("update", engine.UPDATES)
def test_one_step_matches_the_update_equations(update):
    """Z ← P_r(Z − α∇_Z L), θ ← Adam(θ, ∇_θ L), from one pass, with L written out here."""
    model, params, prob, _ = _problem(0)
    cfg = engine.RecoverConfig(
        update=update, rank=2, rank_type="pca", similarity_weight=0.3, z_step=3.0, generator_lr=1e-3
    )
    rec = solver.Recoverer(model, cfg, T)
    z0 = engine.init_codes(jax.random.key(1), T, SPEC.z_dim, "random")
    state = rec.init_state(z0, params)
    new, m = jax.jit(rec.step)(state, prob, params)

    def loss(z, p):
        r = prob.operator.A(model.apply({"params": p}, z)) - prob.y
        return 0.7 * jnp.mean(r**2) + 0.3 * jnp.mean((z[1:] - z[:-1]) ** 2)

    gz, gp = jax.grad(loss, (0, 1))(z0, params)
    np.testing.assert_allclose(m["loss"], loss(z0, params), rtol=1e-5)
    want_z = lowrank.project(z0 - 3.0 * gz, 2, "pca") if update != "generator" else z0
    np.testing.assert_allclose(new.z, want_z, rtol=1e-4, atol=1e-6)
    if update != "latent":
        upd, _ = optax.adam(1e-3).update(gp, optax.adam(1e-3).init(params), params)
        want_p = optax.apply_updates(params, upd)
        for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(want_p)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    else:
        assert new.params is None


def test_best_iterate_is_kept_codes_and_weights_together():
    model, params, prob, truth = _problem(1)
    cfg = engine.RecoverConfig(update="joint", iterations=30, log_every=10, z_step=20.0, generator_lr=3e-3)
    rec, res = _run(cfg, [prob], params, model, truth=truth[None])
    hist = res.history["measurement_loss"][0]
    assert res.measurement_loss[0] <= hist.min() + 1e-12
    # The returned codes and weights reproduce the returned loss: they belong to one iterate.
    p = jax.tree.map(lambda a: a[0], res.params)
    _, data = rec.losses(jnp.asarray(res.z[0]), p, prob)
    np.testing.assert_allclose(data, res.measurement_loss[0], rtol=1e-5)
    np.testing.assert_allclose(res.x[0], model.apply({"params": p}, res.z[0]) * 0.5 + 0.5, atol=1e-6)
    assert res.history["psnr"].shape == (1, 3)


@pytest.mark.parametrize("update", ["latent", "joint"])
def test_batch_equals_separate_runs(update):
    """B sequences in one run, with every batching strategy, give each sequence's single-run result."""
    model, params, _, _ = _problem(0)
    problems = [_problem(s)[2] for s in (0, 1, 2)]
    cfg = engine.RecoverConfig(update=update, iterations=12, log_every=4, z_step=5.0, generator_lr=1e-3)
    z0 = jnp.stack([engine.init_codes(jax.random.key(s), T, SPEC.z_dim, "random") for s in (0, 1, 2)])
    alone = [_run(cfg, [prob], params, model, z0=z0[b : b + 1])[1] for b, prob in enumerate(problems)]
    assert {a.batching for a in alone} == {"single"}
    for batching in ("auto", "unrolled", "vmapped", "mapped", "dispatched"):
        strategy = dataclasses.replace(cfg, batching=batching)
        _, together = _run(strategy, problems, params, model, z0=z0)
        assert together.batching == engine.choose_batching(strategy, 3) and together.batching != "auto"
        for b in range(len(problems)):
            np.testing.assert_allclose(together.z[b], alone[b].z[0], rtol=1e-4, atol=1e-5, err_msg=batching)
            np.testing.assert_allclose(together.x[b], alone[b].x[0], atol=1e-5, err_msg=batching)
            np.testing.assert_allclose(
                together.history["measurement_loss"][b], alone[b].history["measurement_loss"][0], rtol=1e-4
            )


def test_same_seed_same_result_and_loops_agree():
    model, params, prob, _ = _problem(3)
    cfg = engine.RecoverConfig(update="joint", iterations=8, log_every=3, loop="python")
    _, a = _run(cfg, [prob], params, model)
    _, b = _run(cfg, [prob], params, model)
    np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])
    _, c = _run(dataclasses.replace(cfg, loop="scan"), [prob], params, model)
    np.testing.assert_allclose(c.z, a.z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.history["loss"], a.history["loss"], rtol=1e-5)


@pytest.mark.parametrize("loop", ["python", "scan"])
def test_compiles_once_per_shape(loop):
    model, params, prob, _ = _problem(4)
    # 7 iterations in chunks of 3 (3, 3, 1): the ragged last chunk must not compile again.
    cfg = engine.RecoverConfig(update="latent", iterations=7, log_every=3, loop=loop)
    rec = solver.Recoverer(model, cfg, T)
    z0 = engine.init_codes(jax.random.key(0), T, SPEC.z_dim, "fixed_z")[None]
    rec.run(z0, _batch(prob), params)
    assert rec.compilations == 1
    rec.run(z0, _batch(prob), params)
    assert rec.compilations == 1


def test_recovers_a_sequence_in_the_generators_range():
    """Latent-only recovery of an in-range, rank-2 video from half its pixels: PSNR climbs high."""
    model, params, prob, truth = _problem(5)
    cfg = engine.RecoverConfig(update="latent", iterations=200, log_every=100, rank=2, rank_type="pca", z_step=100.0)
    _, res = _run(cfg, [prob], params, model, truth=truth[None])
    psnr = res.history["psnr"][0]
    assert psnr[-1] > 40.0 and psnr[-1] > psnr[0] + 10


def test_non_finite_loss_stops_the_run():
    model, params, prob, _ = _problem(6)
    prob = prob.replace(y=prob.y.at[0, 0, 0, 0].set(jnp.nan))
    cfg = engine.RecoverConfig(update="latent", iterations=20, log_every=5)
    with pytest.raises(FloatingPointError, match="non-finite at iteration 1;"):
        _run(cfg, [prob], params, model)


@pytest.mark.parametrize(
    "change, flag",
    [
        (dict(update="both"), "--update"),
        (dict(rank=7), "--rank"),
        (dict(rank=-1), "--rank"),
        (dict(rank_type="nmf"), "--rank_type"),
        (dict(similarity_weight=1.5), "--similarity_weight"),
        (dict(z_step=-1.0), "--z_step"),
        (dict(generator_lr=float("nan")), "--generator_lr"),
        (dict(iterations=0), "--iterations"),
        (dict(generator_lr_decay=0.0), "--generator_lr_decay"),
        (dict(loop="while"), "--loop"),
        (dict(batching="single"), "RecoverConfig.batching"),
    ],
)
def test_config_validation_names_the_flag(change, flag):
    with pytest.raises(ValueError, match=flag):
        dataclasses.replace(engine.RecoverConfig(), **change).validate(num_frames=T, z_dim=SPEC.z_dim)


def test_init_codes():
    key = jax.random.key(0)
    fixed = engine.init_codes(key, 5, 8, "fixed_z")
    assert np.allclose(fixed, fixed[0]) and np.allclose(jnp.linalg.norm(fixed, axis=1), 1)
    per = engine.init_codes(key, 5, 8, "random")
    assert np.allclose(jnp.linalg.norm(per, axis=1), 1) and not np.allclose(per, per[0])
    with pytest.raises(ValueError, match="--z_init"):
        engine.init_codes(key, 5, 8, "zeros")
