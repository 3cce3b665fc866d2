"""Low-rank generative video recovery (Hyder & Asif, 2019): the problem and the pure step.

Problem, for one sequence of T frames with codes Z = [z_1 … z_T]ᵀ ∈ R^{T×k}, generator G_θ and
measurements y_t = A_t(x_t):

    L(Z, θ) = λ · D(Z, θ)  +  (1 − λ) · mean_t,j (z_{t+1} − z_t)_j²,
    D(Z, θ) = mean_t,i (A_t(G_θ(z_t)) − y_t)_i²                          (the measurement loss)

with λ = 1 − ``similarity_weight`` (the smoothness term needs T ≥ 2). One iteration, from a single
forward and backward pass at the current (Z, θ):

    (L, (g_Z, g_θ)) = value_and_grad(L)(Z, θ)
    Z ← P_r(Z − α g_Z)            (update = latent or joint; P_r is :func:`lrgen.lowrank.project`)
    θ ← Adam(θ, g_θ; η_i)         (update = generator or joint)

The variable that is not optimised is a constant of L and gets no gradient. With
``z_optimizer=adam`` the code update is Z ← P_r(Z + Adam(g_Z; α_i)). Defaults follow the
original notebook: α = 200·T/256, η = 0.001·T/256, 2000 iterations, rank 2 ``pca``.

The best iterate is kept, codes and weights together (the original kept the best weights but
the latest codes): the state before each update is the candidate, compared by measurement loss
(or, with a held-out set, by the held-out error), and the final state once more at the end.

Batching (:data:`BATCHINGS`, the chosen name is recorded in every result): every per-sequence
quantity (y, operator, Z and, when G is trained, θ and its Adam state) has a leading batch axis
B. A generator that is not trained is shared (not batched), so its convolutions run once over
all B·T frames. ``single`` (B = 1) runs the one-sequence program; ``vmapped`` is ``jax.vmap``;
``unrolled`` applies the step to each sequence in turn within one program (several CPU
devices); per-sequence generators on one XLA:CPU device are ``dispatched``: the driver calls the
one-sequence step per sequence from Python, since vmap would turn their convolutions into
grouped ones that XLA:CPU runs slowly and even unrolled copies cost ~1.15× per sequence;
``mapped`` runs the step on each sequence in turn inside one ``lax.map``, used for a shared
generator on one XLA:CPU device: each sequence then works on the activations of T frames, which
stay in cache, where vmap streams B·T frames (:func:`choose_batching` gives the measurements).

Sharding (:func:`per_device`): with a mesh of several devices every batched function runs under
``jax.shard_map`` over the sequence axis, so each device runs the one-device program on its own
sequences and the programs hold no collective at all. On XLA:CPU the devices also run their
sequences one by one (``unrolled``): jaxlib 0.10's batched SVD deadlocks simulated CPU devices
that share one thread pool (BUILD_NOTES, issue 10).

Looping is the driver's (:mod:`lrgen.driver`); the step is pure, so a jitted step called from
Python (:func:`choose_loop`: fast on XLA:CPU) and a jitted loop of ``log_every`` steps (the
default on GPU/TPU) run the same maths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from lrgen import lowrank, operators, pixels
from lrgen.config import (  # noqa: F401  (re-exported: the engine's settings)
    LOOPS,
    MAX_SEED,
    PRESET_Z_INIT,
    PRESETS,
    SCHEDULES,
    UPDATES,
    Z_INITS,
    Z_OPTIMIZERS,
    RecoverConfig,
    check_seed,
    resolve,
)

MAX_UNROLLED_BATCH = 16  # larger batches of per-sequence generators stay vmapped (compile time grows with B)


def init_codes(key: jax.Array, num_frames: int, z_dim: int, how: str, dtype=jnp.float32) -> jax.Array:
    """Initial codes (T, k), each of unit norm.

    ``fixed_z``: one code v/‖v‖, v ~ N(0, I_k), for every frame (the original's default);
    ``fixed_seed`` and ``random``: an independent unit-norm code per frame. The two differ only
    in the key the caller passes (a fixed one, or one derived from the run's seed).
    """
    if how == "fixed_z":
        v = jax.random.normal(key, (z_dim,), dtype)
        return jnp.broadcast_to(v / jnp.linalg.norm(v), (num_frames, z_dim))
    if how in ("fixed_seed", "random"):
        v = jax.random.normal(key, (num_frames, z_dim), dtype)
        return v / jnp.linalg.norm(v, axis=1, keepdims=True)
    raise ValueError(f"--z_init={how}: allowed values are {', '.join(Z_INITS)}")


class Problem(struct.PyTreeNode):
    """Per-sequence data: measurements y (T, ...) and the operator that made them.

    Attributes:
      y: measurements (T, ...).
      operator: the operator that made them.
      holdout: optional 0/1 array shaped like y: measured entries left out of the loss and used
        only to choose the iterate (:func:`holdout_mask`); None = every entry is fitted.
      rank: optional int32 scalar overriding ``RecoverConfig.rank`` for this sequence (a batch of
        candidates of different ranks); None = the config's static rank.
      lr_scale: optional scalar s: this sequence's generator steps are s·η (candidate η's); None = η.
    """

    y: jax.Array
    operator: operators.Operator
    holdout: jax.Array | None = None
    rank: jax.Array | None = None
    lr_scale: jax.Array | None = None


def holdout_mask(key: jax.Array, operator: operators.Operator, y: jax.Array, fraction: float) -> jax.Array:
    """A seeded fraction of the *measured* entries of y, as a 0/1 array shaped like y.

    Operator-agnostic: the entries with ``operator.measured(y) = 1`` (observed pixels, rows of a
    Gaussian A_t, entries of M_t X M_tᵀ, …) are each held out with probability ``fraction``.
    The C channels of one entry of a channel-last y (pixels, separable entries) go together: a
    channel held out beside its measured siblings is predicted from them (BUILD_NOTES, session 9).
    """
    measured = jnp.broadcast_to(operator.measured(y), y.shape)
    shape = (*y.shape[:-1], 1) if y.ndim == 4 else y.shape
    return (measured * (jax.random.uniform(key, shape) < fraction)).astype(y.dtype)


class RecoverState(struct.PyTreeNode):
    """Everything that changes during recovery, for one sequence (batched: leading axis B).

    Attributes:
      step: iterations done.
      z: current codes Z (T, k).
      params: the generator's weights θ when trained, else None (the shared weights are passed
        to the step separately).
      opt_state: Adam state of θ (None when not trained).
      best_loss: measurement loss of the best iterate (the lowest seen, unless ``best_margin`` or
        a held-out set decide).
      best_z, best_params: the best iterate.
      best_holdout: held-out error of the best iterate (inf without a held-out set).
      best_step: the iteration the best iterate comes from.
      z_opt_state: Adam state of Z (``z_optimizer=adam``), else None.
    """

    step: jax.Array
    z: jax.Array
    params: Any
    opt_state: Any
    best_loss: jax.Array
    best_z: jax.Array
    best_params: Any
    best_holdout: jax.Array
    best_step: jax.Array
    z_opt_state: Any = None


def metric_names(problem: Problem) -> tuple[str, ...]:
    """Per-iteration metrics of the step: the held-out error only when there is a held-out set."""
    return ("loss", "measurement_loss") + (("holdout_error",) if problem.holdout is not None else ())


def _select(pred: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


def data_term(r2: jax.Array, problem: Problem) -> tuple[jax.Array, jax.Array | None]:
    """(D, E) from the squared residuals r² = (A(G(Z)) − y)² of one sequence.

    Without a held-out set D = mean_i r_i² and E = None. With a held-out mask h (1 on held-out
    entries, :func:`holdout_mask`) and the measured entries m, D fits the others only, rescaled
    to estimate the full one, and E is the mean squared residual on the held-out entries:

        D = mean_i ((1 − h_i) r_i²) · Σ m / Σ (m − h),       E = Σ h_i r_i² / Σ h_i,

    so step sizes tuned for the full loss still apply.
    """
    if problem.holdout is None:
        return jnp.mean(r2), None
    h = problem.holdout
    n_measured = jnp.sum(jnp.broadcast_to(problem.operator.measured(problem.y), r2.shape))
    n_held = jnp.sum(h)
    data = jnp.mean((1.0 - h) * r2) * n_measured / jnp.maximum(n_measured - n_held, 1.0)
    return data, jnp.sum(h * r2) / jnp.maximum(n_held, 1.0)


def project(config: RecoverConfig, z: jax.Array, problem: Problem) -> jax.Array:
    """P_r(Z): the config's static rank, or the sequence's own (a candidate batch)."""
    if problem.rank is None:
        return lowrank.project(z, config.rank, config.rank_type)
    return lowrank.project_traced(z, problem.rank, config.rank_type)


def improves(config: RecoverConfig, data: jax.Array, held: jax.Array | None, state: RecoverState) -> jax.Array:
    """Whether an iterate replaces the best one: lower held-out error when there is a held-out
    set, else measurement loss below (1 − ``best_margin``) × the best."""
    if held is not None:
        return held < state.best_holdout
    if config.best_margin > 0:
        return data < (1.0 - config.best_margin) * state.best_loss
    return data < state.best_loss


def best_iterate(config: RecoverConfig, state: RecoverState, data, held, z, params, running: bool) -> dict:
    """The best-iterate fields after comparing the iterate (z, params) with scores (data, held)
    (:func:`improves`).

    During the run the original's rule (no held-out set, no margin) keeps the running minimum
    of D, min(D, best), which carries a NaN forward; otherwise the winner's own scores.
    """
    better = improves(config, data, held, state)
    if running and held is None and config.best_margin == 0:
        best_loss = jnp.minimum(data, state.best_loss)
    else:
        best_loss = jnp.where(better, data, state.best_loss)
    return dict(
        best_loss=best_loss,
        best_z=jnp.where(better, z, state.best_z),
        best_params=_select(better, params, state.best_params) if config.trains_generator else None,
        best_holdout=jnp.where(better, held, state.best_holdout) if held is not None else state.best_holdout,
        best_step=jnp.where(better, state.step, state.best_step),
    )


def optimizers(config: RecoverConfig, alpha: float, lr: float) -> tuple[optax.GradientTransformation, Any]:
    """(Adam of θ with its schedule η_i, Adam of Z with α_i for ``z_optimizer=adam`` else None).

    ``staircase``: η_i = η · decay^⌊i / every⌋ (constant without ``generator_lr_decay_every``);
    ``cosine``: η_i = η · ½(1 + cos(π i / N)), N = ``iterations``, and the same on α for Adam on Z.
    """
    every, decay = config.generator_lr_decay_every, config.generator_lr_decay
    schedule = optax.exponential_decay(lr, every, decay, staircase=True) if every > 0 else lr
    if config.schedule == "cosine":
        schedule = optax.cosine_decay_schedule(lr, config.iterations)
    z_schedule = optax.cosine_decay_schedule(alpha, config.iterations) if config.schedule == "cosine" else alpha
    return optax.adam(schedule), (optax.adam(z_schedule) if config.z_optimizer == "adam" else None)


class Engine:
    """The pure functions of recovery for one generator architecture and one configuration.

    Everything here acts on ONE sequence (no batch axis); :data:`BATCHINGS` lift it to B.

    Args:
      model: the generator module G (e.g. :class:`lrgen.nets.generators.Generator`).
      config: the hyperparameters.
      num_frames: T, to resolve the default step sizes.
    """

    def __init__(self, model: nn.Module, config: RecoverConfig, num_frames: int):
        self.model, self.config, self.num_frames = model, config, num_frames
        self.alpha, self.lr = config.step_sizes(num_frames)
        self.optimizer, self.z_optimizer = optimizers(config, self.alpha, self.lr)

    def loss(self, z: jax.Array, params: Any, problem: Problem) -> tuple[jax.Array, tuple]:
        """(L(Z, θ), (D, E)): the loss of the module docstring, its data term and held-out error."""
        x = self.model.apply({"params": params}, z)
        data, held = data_term(jnp.square(problem.operator.A(x) - problem.y), problem)
        lam = 1.0 - self.config.similarity_weight
        total = lam * data
        if self.config.similarity_weight > 0 and z.shape[0] > 1:
            total = total + (1.0 - lam) * jnp.mean(jnp.square(z[1:] - z[:-1]))
        return total, (data, held)

    def step(self, state: RecoverState, problem: Problem, shared_params: Any) -> tuple[RecoverState, dict]:
        """One iteration for one sequence (pure): (L, (g_Z, g_θ)) = value_and_grad(L)(Z, θ),
        Z ← P_r(Z − α g_Z), θ ← Adam(θ, g_θ). A frozen variable (θ for ``latent``, Z for
        ``generator``) is None among the unknowns: a constant of L, no gradient, no update."""
        cfg, z = self.config, state.z
        theta = state.params if cfg.trains_generator else shared_params

        def L(unknowns):  # L of the optimised variables; a frozen one (None) is held constant
            z_u, theta_u = unknowns
            return self.loss(z if z_u is None else z_u, theta if theta_u is None else theta_u, problem)

        unknowns = (z if cfg.trains_codes else None, state.params)  # state.params: None when frozen
        (loss, (data, held)), (g_z, g_theta) = jax.value_and_grad(L, has_aux=True)(unknowns)
        best = best_iterate(cfg, state, data, held, z, theta, running=True)  # (Z, θ) before this update
        new_z, z_opt, new_theta, opt_state = z, state.z_opt_state, state.params, state.opt_state
        if g_z is not None:  # Z ← P_r(Z − α g_Z)        (z_optimizer=adam: Z ← P_r(Z + Adam(g_Z)))
            if self.z_optimizer is None:
                new_z = z - self.alpha * g_z
            else:
                dz, z_opt = self.z_optimizer.update(g_z, z_opt, z)
                new_z = z + dz
            new_z = project(cfg, new_z, problem)
        if g_theta is not None:  # θ ← Adam(θ, g_θ)
            dtheta, opt_state = self.optimizer.update(g_theta, opt_state, theta)
            if problem.lr_scale is not None:  # this candidate's η: s·η
                dtheta = jax.tree.map(lambda d: problem.lr_scale * d, dtheta)
            new_theta = optax.apply_updates(theta, dtheta)
        out = {"loss": loss, "measurement_loss": data, **({"holdout_error": held} if held is not None else {})}
        new = dict(step=state.step + 1, z=new_z, params=new_theta, opt_state=opt_state, z_opt_state=z_opt)
        return state.replace(**new, **best), out

    def losses(self, z: jax.Array, params: Any, problem: Problem) -> tuple[jax.Array, jax.Array]:
        """(L, D) of one sequence."""
        total, (data, _) = self.loss(z, params, problem)
        return total, data

    def finalize(self, state: RecoverState, problem: Problem, shared_params: Any) -> RecoverState:
        """Compare the final iterate with the best one; return the state holding the winner."""
        params = state.params if self.config.trains_generator else shared_params
        _, (data, held) = self.loss(state.z, params, problem)
        return state.replace(**best_iterate(self.config, state, data, held, state.z, state.params, running=False))

    def init_state(self, z0: jax.Array, params: Any | None) -> RecoverState:
        """State of one sequence; ``params`` is its own generator copy when trained, else None."""
        trained = params if self.config.trains_generator else None
        opt_state = self.optimizer.init(trained) if trained is not None else None
        z_opt = self.z_optimizer.init(z0) if self.z_optimizer is not None and self.config.trains_codes else None
        return RecoverState(
            step=jnp.zeros((), jnp.int32),
            z=z0,
            params=trained,
            opt_state=opt_state,
            best_loss=jnp.full((), jnp.inf, z0.dtype),
            best_z=z0,
            best_params=trained,
            best_holdout=jnp.full((), jnp.inf, z0.dtype),
            best_step=jnp.zeros((), jnp.int32),
            z_opt_state=z_opt,
        )

    def render(self, z: jax.Array, params: Any) -> jax.Array:
        """G(z) mapped to [0, 1]."""
        return pixels.to_unit(self.model.apply({"params": params}, z))


# ---------------------------------------------------------------------------- batching strategies
# Each lifts fn(state, problem, shared) of ONE sequence to the same over a leading batch axis B of
# state and problem (shared weights unbatched); the name chosen is recorded in every result.
def index(tree: Any, i: int) -> Any:
    """Sequence i of a batched pytree (the leading axis taken off)."""
    return jax.tree.map(lambda a: a[i], tree)


def single(fn: Callable) -> Callable:
    """B = 1: the one-sequence program, with the batch axis taken off and put back."""

    def one(state, problem, shared):
        out = fn(index(state, 0), index(problem, 0), shared)
        return jax.tree.map(lambda a: jnp.stack((a,)), out)

    return one


def unrolled(fn: Callable) -> Callable:
    """B copies of the one-sequence graph in one program, outputs stacked (no grouped convolutions)."""

    def each(state, problem, shared):
        B = jax.tree.leaves(state)[0].shape[0]
        outs = [fn(index(state, i), index(problem, i), shared) for i in range(B)]
        return jax.tree.map(lambda *a: jnp.stack(a), *outs)

    return each


def vmapped(fn: Callable) -> Callable:
    """``jax.vmap`` over the batch axis of state and problem; the shared weights broadcast."""
    return jax.vmap(fn, in_axes=(0, 0, None))


def mapped(fn: Callable) -> Callable:
    """Each sequence in turn inside one program (``jax.lax.map``): every sequence runs the very
    computation of B = 1, at its working-set size, and the program does not grow with B."""

    def each(state, problem, shared):
        return jax.lax.map(lambda sp: fn(sp[0], sp[1], shared), (state, problem))

    return each


BATCHINGS: dict[str, Callable[[Callable], Callable]] = {
    "single": single,
    "unrolled": unrolled,
    "vmapped": vmapped,
    "mapped": mapped,
    # "dispatched" is not a transformation of the step: the driver calls the one-sequence step
    # per sequence from Python (lrgen.driver.dispatched_chunks; python loop only).
}


def choose_batching(config: RecoverConfig, batch: int, devices: int = 1) -> str:
    """The strategy for ``batch`` sequences per device on ``devices`` devices (measured choices).

    One sequence: ``single``. Several CPU devices: ``unrolled`` (one-matrix SVDs only; see the
    module docstring). One XLA:CPU device: ``mapped`` for a shared (frozen) generator, whose
    sequences then cost what one costs (latent, 2 cores, per-sequence speed vs B = 1 at
    B = 4 / 16: mapped 0.97 / 0.97, unrolled 0.89 / 0.89, vmapped 0.76 / 0.70); ``unrolled``
    for per-sequence generators before (joint B = 4 / 16: 0.85 / 0.88; the same step inside
    ``lax.map`` runs ~30× slower on XLA:CPU, its convolution gradients in a loop body); now
    ``dispatched`` for them with the python loop: the one-sequence step called per sequence from
    Python (:func:`lrgen.driver.dispatched_chunks`; joint B = 4 / 16: 0.95 / 0.95).
    Accelerators: ``vmapped``. ``config.batching`` overrides.
    """
    if config.batching != "auto":
        return config.batching
    cpu = jax.default_backend() == "cpu"
    if batch == 1:
        return "single"
    if devices > 1 and cpu:
        return "unrolled"
    if cpu and not config.trains_generator:
        return "mapped"
    if cpu and choose_loop(config) == "python":
        return "dispatched"
    return "vmapped"


def per_device(fn: Callable, mesh: jax.sharding.Mesh | None, replicated: tuple[int, ...] = ()) -> Callable:
    """``fn`` of batched arguments → each device runs it on its own slice of the batch.

    ``jax.shard_map`` over the mesh axis ``seq``: arguments are split along their leading
    (sequence) axis except those at ``replicated`` (shared weights, a loop count), outputs
    are concatenated along it. Nothing is exchanged between devices, by construction.
    Without a mesh, or with one device, ``fn`` itself.
    """
    if mesh is None or mesh.devices.size == 1:
        return fn
    from jax.sharding import PartitionSpec

    def on_devices(*args):
        specs = tuple(PartitionSpec() if i in replicated else PartitionSpec("seq") for i in range(len(args)))
        # check_vma=False: the generator's custom VJPs carry no varying-axis types, and the
        # body has no collective whose replication such types would need to check.
        return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec("seq"), check_vma=False)(*args)

    return on_devices


def choose_loop(config: RecoverConfig) -> str:
    """``python`` (a jitted step called from Python) on XLA:CPU, where convolutions inside a loop
    body run far slower (measured ~30×); ``scan`` (a jitted loop of ``log_every`` steps) elsewhere."""
    if config.loop != "auto":
        return config.loop
    return "python" if jax.default_backend() == "cpu" else "scan"


# XLA:CPU hands convolutions to YNNPACK by default; for this generator's gradient convolutions
# (stride-2 and dilated-kernel) its Eigen kernels are ~20 % faster end to end (measured on the
# joint step, 2 cores: benchmarks/conv_backends.py). The option is per executable and only kept
# where this XLA knows it; elsewhere the default compilation is used.
_CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def compile_fast(lowered: jax.stages.Lowered) -> jax.stages.Compiled:
    """Compile with the per-backend options above, falling back to XLA's defaults."""
    if jax.default_backend() == "cpu":
        try:
            return lowered.compile(compiler_options=_CPU_COMPILER_OPTIONS)
        except Exception:  # an XLA without this option: the default compilation is correct too
            pass
    return lowered.compile()
