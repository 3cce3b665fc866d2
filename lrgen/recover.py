"""Low-rank generative video recovery (Hyder & Asif, 2019): the jitted, vmapped loop.

Problem, for one sequence of T frames with codes Z = [z_1 … z_T]ᵀ ∈ R^{T×k} and generator G_θ:

    L(Z, θ) = λ · mean_t,i (A_t(G_θ(z_t)) − y_t)_i²  +  (1 − λ) · mean_t,j (z_{t+1} − z_t)_j²

with λ = 1 − ``similarity_weight`` (the means run over all measurement entries and all code
differences; the smoothness term needs T ≥ 2). One iteration, from a single forward pass:

    latent, joint:     Z ← P_r(Z − α ∇_Z L)              (plain gradient step, then projection)
    generator, joint:  θ ← Adam(θ, ∇_θ L; lr η_i)        (gradient at the old Z and θ)

P_r is :func:`lrgen.lowrank.project`. Defaults follow the original notebook: α = 200·T/256,
η = 0.001·T/256, 2000 iterations, rank 2 ``pca``, every frame starting from one unit-norm code.

The best iterate by measurement loss (the data term) is kept, codes and weights together — the
original kept the best weights but the latest codes. The state before each update is the
candidate, and the final state is compared once more at the end.

Batching: every per-sequence quantity (y, operator, Z and, when G is trained, θ and its Adam
state) has a leading batch axis B and the step is ``jax.vmap``-ed, so one code path serves 1 or
1,000 sequences. A generator that is not trained is shared (not batched), so its convolutions
run once over all B·T frames. Per-sequence generators on XLA:CPU are the exception: there the
step is applied to each sequence in turn within one program (B ≤ 16, one device), since vmap
would turn their convolutions into grouped ones, which XLA:CPU runs slowly.

Sharding: with a mesh of several devices every batched function runs under ``jax.shard_map``
over the sequence axis, so each device runs the one-device program on its own sequences and the
programs hold no collective at all (left to the SPMD partitioner, vmapped per-sequence
convolutions became all-gathers of every sequence's activations). On XLA:CPU the devices also
run their sequences one by one (unrolled): simulated CPU devices share one intra-op thread pool,
and jaxlib 0.10's batched LAPACK kernels (the SVD of the projection) block a pool thread while
their batch chunks wait in that same pool, so devices that reach the SVD together deadlock;
a one-matrix SVD never waits (BUILD_NOTES, issue 10).

Looping: the step is pure. Iterations are chained either by a jitted step called from Python
(fast on XLA:CPU, where convolutions inside a loop body run far slower) or by a jitted
``lax.fori_loop`` over ``log_every`` iterations (one dispatch per chunk; the default on GPU/TPU).
Metrics reach the host once per chunk.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lrgen import lowrank, measure, metrics

UPDATES = ("latent", "generator", "joint")
Z_OPTIMIZERS = ("gd", "adam")
SCHEDULES = ("staircase", "cosine")
Z_INITS = ("fixed_z", "fixed_seed", "random", "encoder")  # encoder: z0 = E(frames), set by lrgen.pipeline
LOOPS = ("auto", "python", "scan")
MAX_UNROLLED_BATCH = 16  # larger batches of per-sequence generators stay vmapped (compile time grows with B)


@dataclasses.dataclass(frozen=True)
class RecoverConfig:
    """Hyperparameters of the recovery loop (keyword-only, validated by :meth:`validate`).

    Attributes:
      update: what is optimised: ``latent`` (Z), ``generator`` (θ) or ``joint`` (both).
      iterations: number of iterations.
      rank: r of the projection; 0 = unconstrained.
      rank_type: ``pca`` or ``svd`` (see :mod:`lrgen.lowrank`).
      similarity_weight: 1 − λ, weight of the temporal smoothness term, in [0, 1].
      z_step: α, step size of the code update; None = 200·T/256.
      generator_lr: Adam learning rate η of θ; None = 0.001·T/256.
      generator_lr_decay: factor applied to η every ``generator_lr_decay_every`` iterations.
      generator_lr_decay_every: 0 = constant η.
      log_every: iterations between host round trips (metrics, PSNR, progress).
      loop: ``python`` (jitted step driven from Python), ``scan`` (jitted loop of ``log_every``
        steps) or ``auto`` (python on CPU, scan elsewhere).
      preset: the name of the :data:`PRESETS` entry these values started from (for the record;
        :func:`resolve` sets it).
      z_optimizer: ``gd``: Z ← P_r(Z − α ∇_Z L) (the original); ``adam``: Z ← P_r(Z + Adam(∇_Z L;
        lr α_i)), the projection after every Adam step.
      z_step_per_frame: the default α is this times T (original 200/256; journal 10).
      schedule: ``staircase``: η_i = η · decay^⌊i / every⌋ on the generator only (the original's
        knobs above); ``cosine``: η_i = η · ½(1 + cos(π i / N)) with N = ``iterations``, on the
        generator and, with ``z_optimizer=adam``, on Z.
      best_margin: the best iterate is replaced only when the criterion drops below
        (1 − margin) · best (journal code: 0.01).
      holdout_fraction: fraction f of the measured entries of y left out of the loss; the
        iterate with the lowest error on them is kept (0 = off: best by measurement loss).
      patience: stop once the held-out error has not improved for this many iterations (checked
        every ``log_every``; 0 = run all ``iterations``).
      candidate_ranks: ranks tried side by side as one batch (empty = just ``rank``); chosen by
        the held-out error.
      restarts: random starts of the codes per candidate rank (the first keeps ``z_init``).
      screen: with several candidates, run them all only this many iterations, then continue
        the one with the lowest held-out error alone (0 = all run to the end).
    """

    update: str = "joint"
    iterations: int = 2000
    rank: int = 2
    rank_type: str = "pca"
    similarity_weight: float = 0.0
    z_step: float | None = None
    generator_lr: float | None = None
    generator_lr_decay: float = 1.0
    generator_lr_decay_every: int = 0
    log_every: int = 100
    loop: str = "auto"
    preset: str = "faithful"
    z_optimizer: str = "gd"
    z_step_per_frame: float = 200.0 / 256.0
    schedule: str = "staircase"
    best_margin: float = 0.0
    holdout_fraction: float = 0.0
    patience: int = 0
    candidate_ranks: tuple[int, ...] = ()
    restarts: int = 1
    screen: int = 0

    def validate(self, num_frames: int, z_dim: int) -> None:
        """Raise ValueError naming the flag, the bad value and what is allowed."""
        if self.update not in UPDATES:
            raise ValueError(f"--update={self.update}: allowed values are {', '.join(UPDATES)}")
        if self.iterations < 1:
            raise ValueError(f"--iterations={self.iterations}: must be ≥ 1")
        if self.rank_type not in lowrank.RANK_TYPES:
            raise ValueError(f"--rank_type={self.rank_type}: allowed values are {', '.join(lowrank.RANK_TYPES)}")
        limit = min(num_frames, z_dim)
        if not 0 <= self.rank <= limit:
            raise ValueError(
                f"--rank={self.rank}: must lie in [0, min(T, k)] = [0, {limit}] (T={num_frames}, k={z_dim})"
            )
        if not 0.0 <= self.similarity_weight <= 1.0:
            raise ValueError(f"--similarity_weight={self.similarity_weight}: must lie in [0, 1]")
        for name in ("z_step", "generator_lr"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"--{name}={v}: must be a positive number")
        if not (0.0 < self.generator_lr_decay <= 1.0):
            raise ValueError(f"--generator_lr_decay={self.generator_lr_decay}: must lie in (0, 1]")
        if self.generator_lr_decay_every < 0:
            raise ValueError(f"--generator_lr_decay_every={self.generator_lr_decay_every}: must be ≥ 0")
        if self.log_every < 1:
            raise ValueError(f"--log_every={self.log_every}: must be ≥ 1")
        if self.loop not in LOOPS:
            raise ValueError(f"--loop={self.loop}: allowed values are {', '.join(LOOPS)}")
        if self.preset not in PRESETS:
            raise ValueError(f"--preset={self.preset}: allowed values are {', '.join(PRESETS)}")
        if self.z_optimizer not in Z_OPTIMIZERS:
            raise ValueError(f"--z_optimizer={self.z_optimizer}: allowed values are {', '.join(Z_OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule={self.schedule}: allowed values are {', '.join(SCHEDULES)}")
        if not (math.isfinite(self.z_step_per_frame) and self.z_step_per_frame > 0):
            raise ValueError(f"--z_step_per_frame={self.z_step_per_frame}: must be a positive number")
        if not 0.0 <= self.best_margin < 1.0:
            raise ValueError(f"--best_margin={self.best_margin}: must lie in [0, 1)")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"--holdout_fraction={self.holdout_fraction}: must lie in [0, 1)")
        if self.patience < 0:
            raise ValueError(f"--patience={self.patience}: must be ≥ 0 (0 = never stop early)")
        for r in self.candidate_ranks:
            if not 0 <= r <= limit:
                raise ValueError(
                    f"--candidate_ranks={','.join(map(str, self.candidate_ranks))}: each must lie in "
                    f"[0, min(T, k)] = [0, {limit}]"
                )
        if self.screen < 0:
            raise ValueError(f"--screen={self.screen}: must be ≥ 0 (0 = no screening)")
        if self.restarts < 1:
            raise ValueError(f"--restarts={self.restarts}: must be ≥ 1")
        if self.candidates > 1 and self.update == "generator":
            raise ValueError(
                "--candidate_ranks/--restarts: candidates differ in their codes; needs --update=latent or joint"
            )

    def step_sizes(self, num_frames: int) -> tuple[float, float]:
        """(α, η) with the original's defaults 200·T/256 (``z_step_per_frame``·T) and 0.001·T/256."""
        alpha = self.z_step if self.z_step is not None else self.z_step_per_frame * num_frames
        lr = self.generator_lr if self.generator_lr is not None else 0.001 * num_frames / 256.0
        return alpha, lr

    @property
    def ranks(self) -> tuple[int, ...]:
        """The candidate ranks (just ``rank`` unless ``candidate_ranks`` is given)."""
        return tuple(self.candidate_ranks) or (self.rank,)

    @property
    def candidates(self) -> int:
        """How many recoveries of one video run side by side."""
        return len(self.ranks) * self.restarts

    @property
    def trains_codes(self) -> bool:
        return self.update in ("latent", "joint")

    @property
    def trains_generator(self) -> bool:
        return self.update in ("generator", "joint")


# jax.random.key takes a 32-bit seed: a negative or larger one silently wraps onto another seed.
MAX_SEED = 2**32 - 1


def check_seed(flag: str, value: int) -> None:
    """Raise ValueError unless ``value`` (the flag ``flag``) is a seed in [0, MAX_SEED]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{flag}={value}: must be an integer in [0, {MAX_SEED}]")


PRESETS: dict[str, RecoverConfig] = {
    # The 2019 notebook, exactly: the defaults above.
    "faithful": RecoverConfig(),
    # The journal code (rakibhyder/gmlr_python, gmlr_fit.py): Adam 2.5e-4 on G, ×0.75 every 500
    # iterations, code step 10·T, the best iterate replaced only on a 1 % lower measurement loss.
    "journal": RecoverConfig(
        preset="journal",
        generator_lr=2.5e-4,
        generator_lr_decay=0.75,
        generator_lr_decay_every=500,
        z_step_per_frame=10.0,
        best_margin=0.01,
    ),
    # lrgen's own (BUILD_NOTES, "Better than the original (issue 11)"): the original's steps;
    # 10 % of the measured entries held out to choose the iterate and to stop (400 iterations
    # without improvement); rank 2 and unconstrained codes screened side by side for 200
    # iterations, the one with the lower held-out error continued. (Measured and rejected: a
    # cosine decay of η, 33.62 dB against 34.1 on rotating MNIST; η ×4, faster early — 27.7 dB
    # against 22.0 after 100 iterations — but 33.2 dB after 1200 against 33.5.)
    "best": RecoverConfig(
        preset="best",
        holdout_fraction=0.1,
        patience=400,
        candidate_ranks=(2, 0),
        screen=200,
    ),
}
# The initial codes each preset starts from (a job setting, not a loop one): the journal code
# draws one random unit code per frame.
PRESET_Z_INIT = {"faithful": "fixed_z", "journal": "random", "best": "fixed_z"}


def resolve(preset: str, **overrides: Any) -> RecoverConfig:
    """The preset's values with ``overrides`` (flags given explicitly) on top: the one place
    presets are resolved.

    Raises:
      ValueError: unknown preset or field.
    """
    if preset not in PRESETS:
        raise ValueError(f"--preset={preset}: allowed values are {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(RecoverConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown recovery settings: {', '.join(unknown)}")
    return dataclasses.replace(PRESETS[preset], **overrides, preset=preset)


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
    """

    y: jax.Array
    operator: measure.Operator
    holdout: jax.Array | None = None
    rank: jax.Array | None = None


def holdout_mask(key: jax.Array, operator: measure.Operator, y: jax.Array, fraction: float) -> jax.Array:
    """A seeded fraction of the *measured* entries of y, as a 0/1 array shaped like y.

    Operator-agnostic: the entries with ``operator.measured(y) = 1`` (observed pixels, rows of a
    Gaussian A_t, entries of M_t X M_tᵀ, …) are each held out with probability ``fraction``.
    """
    measured = jnp.broadcast_to(operator.measured(y), y.shape)
    return (measured * (jax.random.uniform(key, y.shape) < fraction)).astype(y.dtype)


class RecoverState(struct.PyTreeNode):
    """Everything that changes during recovery, for one sequence (batched: leading axis B).

    Attributes:
      step: iterations done.
      z: current codes (T, k).
      params: the generator's weights when trained, else None (the shared weights are passed
        to the step separately).
      opt_state: Adam state of ``params`` (None when not trained).
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


@dataclasses.dataclass
class RecoverResult:
    """What :func:`recover` returns (arrays on the host, leading axis B).

    Attributes:
      z: best codes (B, T, k).
      params: the best generator weights (batched, B leading) when trained, else None.
      x: reconstructions G(z) of the best iterate, (B, T, H, W, C) in [0, 1].
      measurement_loss: (B,) data term of the best iterate.
      history: ``iteration`` (n,), ``loss`` and ``measurement_loss`` (B, iterations) per
        iteration, and at each log point ``log_iteration`` (m,), ``log_seconds`` (m,) (loop wall
        time so far, evaluations included) and, with ground truth, ``psnr`` (B, m) of the current
        iterate; ``holdout_error`` (B, iterations) with a held-out set.
      compile_seconds, seconds (loop wall time, log-point work included),
      seconds_per_iteration (median over chunks of the step time alone).
      iterations: iterations run (fewer than configured after an early stop).
      best_step: (B,) iteration of each returned iterate.
      holdout_error: (B,) held-out error of each returned iterate (inf without a held-out set).
      state: the final (batched) state, to continue with ``run(resume=(state, history))``.
    """

    z: np.ndarray
    params: Any
    x: np.ndarray
    measurement_loss: np.ndarray
    history: dict[str, np.ndarray]
    compile_seconds: float
    seconds: float
    seconds_per_iteration: float
    loop: str
    iterations: int = 0
    best_step: np.ndarray | None = None
    holdout_error: np.ndarray | None = None
    state: Any = None
    screened: Any = None  # the all-candidates result a screened run chose from (lrgen.pipeline)


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


def _metric_names(problem: Problem) -> tuple[str, ...]:
    """Per-iteration metrics of the step: the held-out error only when there is a held-out set."""
    return ("loss", "measurement_loss") + (("holdout_error",) if problem.holdout is not None else ())


def _select(pred: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


class Recoverer:
    """Compiled recovery for one generator architecture and one configuration.

    Build it once and call :meth:`run` on batches of sequences of one shape; every function
    is jitted once per shape.

    Args:
      model: the generator module (e.g. :class:`lrgen.models.Generator`).
      config: the loop's hyperparameters.
      num_frames: T, to resolve the default step sizes.
    """

    def __init__(self, model: nn.Module, config: RecoverConfig, num_frames: int):
        self.model = model
        self.config = config
        self.num_frames = num_frames
        self.alpha, self.lr = config.step_sizes(num_frames)
        if config.schedule == "cosine":
            schedule = optax.cosine_decay_schedule(self.lr, config.iterations)
        elif config.generator_lr_decay_every > 0:
            schedule = optax.exponential_decay(
                self.lr, config.generator_lr_decay_every, config.generator_lr_decay, staircase=True
            )
        else:
            schedule = self.lr
        self.optimizer = optax.adam(schedule)
        z_schedule = self.alpha
        if config.schedule == "cosine":
            z_schedule = optax.cosine_decay_schedule(self.alpha, config.iterations)
        self.z_optimizer = optax.adam(z_schedule) if config.z_optimizer == "adam" else None
        self.loop = config.loop
        if self.loop == "auto":
            self.loop = "python" if jax.default_backend() == "cpu" else "scan"
        self._executables: dict = {}
        self.compilations = 0  # distinct input shapes compiled so far
        self._finalize = jax.jit(self._batched(self.finalize))
        self._render = jax.jit(self._render_batch)
        self._sharded_tail: dict = {}  # mesh → (finalize, render) run per device

    # ------------------------------------------------------------------ pure functions
    def losses(self, z: jax.Array, params: Any, problem: Problem) -> tuple[jax.Array, jax.Array]:
        """(total loss L, measurement loss) of one sequence."""
        total, (data, _) = self._losses(z, params, problem)
        return total, data

    def _losses(self, z: jax.Array, params: Any, problem: Problem) -> tuple[jax.Array, tuple]:
        """(L, (measurement loss, held-out error or None)) from one forward pass.

        With a held-out mask h (1 on held-out entries, :func:`holdout_mask`) and the measured
        entries m, the data term fits the others only, rescaled to estimate the full one,

            D = mean_i ((1 − h_i) r_i²) · Σ m / Σ (m − h),       r = A(G(Z)) − y,

        so step sizes tuned for the full loss still apply, and the held-out error is the mean
        squared residual on the held-out entries, E = Σ h_i r_i² / Σ h_i.
        """
        lam = 1.0 - self.config.similarity_weight
        x = self.model.apply({"params": params}, z)
        r2 = jnp.square(problem.operator.A(x) - problem.y)
        held = None
        if problem.holdout is None:
            data = jnp.mean(r2)
        else:
            h = problem.holdout
            n_measured = jnp.sum(jnp.broadcast_to(problem.operator.measured(problem.y), r2.shape))
            n_held = jnp.sum(h)
            data = jnp.mean((1.0 - h) * r2) * n_measured / jnp.maximum(n_measured - n_held, 1.0)
            held = jnp.sum(h * r2) / jnp.maximum(n_held, 1.0)
        total = lam * data
        if self.config.similarity_weight > 0 and z.shape[0] > 1:
            total = total + (1.0 - lam) * jnp.mean(jnp.square(z[1:] - z[:-1]))
        return total, (data, held)

    def _better(self, data: jax.Array, held: jax.Array | None, state: RecoverState) -> jax.Array:
        """Whether an iterate replaces the best one: lower held-out error when there is a
        held-out set, else measurement loss below (1 − ``best_margin``) × the best."""
        if held is not None:
            return held < state.best_holdout
        if self.config.best_margin > 0:
            return data < (1.0 - self.config.best_margin) * state.best_loss
        return data < state.best_loss

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

    def project(self, z: jax.Array, problem: Problem) -> jax.Array:
        """P_r(Z): the config's static rank, or the sequence's own (a candidate batch)."""
        if problem.rank is None:
            return lowrank.project(z, self.config.rank, self.config.rank_type)
        return lowrank.project_traced(z, problem.rank, self.config.rank_type)

    def step(self, state: RecoverState, problem: Problem, shared_params: Any) -> tuple[RecoverState, dict]:
        """One iteration for one sequence (pure; ``vmap`` over sequences)."""
        cfg = self.config
        params = state.params if cfg.trains_generator else shared_params
        argnums = (0, 1) if cfg.update == "joint" else ((0,) if cfg.trains_codes else (1,))
        (loss, (data, held)), grads = jax.value_and_grad(self._losses, argnums, has_aux=True)(
            state.z, params, problem
        )
        better = self._better(data, held, state)
        best_z = jnp.where(better, state.z, state.best_z)
        best_params = _select(better, params, state.best_params) if cfg.trains_generator else None
        z, new_params, opt_state, z_opt = state.z, state.params, state.opt_state, state.z_opt_state
        if cfg.trains_codes:
            if self.z_optimizer is None:
                z = z - self.alpha * grads[0]
            else:
                z_upd, z_opt = self.z_optimizer.update(grads[0], z_opt, z)
                z = z + z_upd
            z = self.project(z, problem)
        if cfg.trains_generator:
            updates, opt_state = self.optimizer.update(grads[-1], opt_state, params)
            new_params = optax.apply_updates(params, updates)
        new_state = RecoverState(
            step=state.step + 1,
            z=z,
            params=new_params,
            opt_state=opt_state,
            best_loss=jnp.where(better, data, state.best_loss) if held is not None or cfg.best_margin > 0
            else jnp.minimum(data, state.best_loss),
            best_z=best_z,
            best_params=best_params,
            best_holdout=jnp.where(better, held, state.best_holdout) if held is not None else state.best_holdout,
            best_step=jnp.where(better, state.step, state.best_step),
            z_opt_state=z_opt,
        )
        out = {"loss": loss, "measurement_loss": data}
        if held is not None:
            out["holdout_error"] = held
        return new_state, out

    def finalize(self, state: RecoverState, problem: Problem, shared_params: Any) -> RecoverState:
        """Compare the final iterate with the best one; return the state holding the winner."""
        params = state.params if self.config.trains_generator else shared_params
        _, (data, held) = self._losses(state.z, params, problem)
        better = self._better(data, held, state)
        return state.replace(
            best_loss=jnp.where(better, data, state.best_loss),
            best_z=jnp.where(better, state.z, state.best_z),
            best_params=_select(better, state.params, state.best_params) if self.config.trains_generator else None,
            best_holdout=jnp.where(better, held, state.best_holdout) if held is not None else state.best_holdout,
            best_step=jnp.where(better, state.step, state.best_step),
        )

    def render(self, z: jax.Array, params: Any) -> jax.Array:
        """G(z) mapped to [0, 1]."""
        return self.model.apply({"params": params}, z) * 0.5 + 0.5

    # ------------------------------------------------------------------ batched drivers
    def _batched(self, fn: Callable, unroll: bool = False) -> Callable:
        """``fn`` of one sequence → the same over the leading batch axis (shared weights unbatched).

        B = 1 calls ``fn`` unbatched and ``unroll`` calls it once per sequence (B copies of the
        graph in one program) instead of ``vmap``: vmap's batching rule turns the convolutions of
        per-sequence generators into grouped convolutions, which XLA:CPU runs slowly (joint B = 4:
        354 → 198 ms per iteration unrolled; BUILD_NOTES).
        """
        vfn = jax.vmap(fn, in_axes=(0, 0, None))

        def batched(state, problem, shared):
            B = jax.tree.leaves(state)[0].shape[0]
            if B != 1 and not unroll:
                return vfn(state, problem, shared)
            pick = lambda t, i: jax.tree.map(lambda a: a[i], t)  # noqa: E731
            outs = [fn(pick(state, i), pick(problem, i), shared) for i in range(B)]
            return jax.tree.map(lambda *a: jnp.stack(a), *outs)

        return batched

    def _unrolls(self, batch: int, mesh) -> bool:
        """Unroll the batch (see :meth:`_batched`): per-sequence generators on XLA:CPU, one device."""
        one_device = mesh is None or mesh.devices.size == 1
        return (
            self.config.trains_generator
            and jax.default_backend() == "cpu"
            and one_device
            and 1 < batch <= MAX_UNROLLED_BATCH
        )

    @staticmethod
    def _per_device(fn: Callable, mesh, replicated: tuple[int, ...] = ()) -> Callable:
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
            return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec("seq"), check_vma=False)(
                *args
            )

        return on_devices

    def _render_batch(self, z: jax.Array, own_params: Any, shared_params: Any) -> jax.Array:
        """G(z) in [0, 1] for a batch: each sequence's own weights when trained, else shared."""
        if self.config.trains_generator:
            return jax.vmap(self.render)(z, own_params)
        return jax.vmap(self.render, in_axes=(0, None))(z, shared_params)

    def _chunk(self, state, problem, shared_params, n, unroll=False):
        """``n`` (traced) iterations inside one jitted loop; per-iteration metrics in a buffer."""
        step = self._batched(self.step, unroll)
        size = self.config.log_every
        B = state.z.shape[0]
        buf = {k: jnp.zeros((B, size), state.z.dtype) for k in _metric_names(problem)}

        def body(i, carry):
            s, b = carry
            s, m = step(s, problem, shared_params)
            b = {k: b[k].at[:, i].set(m[k]) for k in b}
            return s, b

        return jax.lax.fori_loop(0, n, body, (state, buf))

    def _evaluate(self, state, problem, shared, truth):
        """Log-point metrics: best measurement loss so far and, with truth, the current PSNR."""
        fin = self._batched(self.finalize)(state, problem, shared)
        out = {"best_measurement_loss": fin.best_loss, "best_step": fin.best_step}
        if problem.holdout is not None:
            out["best_holdout_error"] = fin.best_holdout
        if truth is not None:
            out["psnr"] = jax.vmap(metrics.psnr)(self._render_batch(state.z, state.params, shared), truth)
        return out

    def _compile(self, state, problem, shared, truth, unroll=False, mesh=None):
        """(step or chunk executable, evaluation executable, seconds spent compiling now).

        Compiled ahead of time once per input shape (and mesh) and reused by later :meth:`run`
        calls, so compile time and steady-state time are measured apart. With a mesh of several
        devices each function runs per device (:meth:`_per_device`).
        """
        leaves, tree = jax.tree.flatten((state, problem, shared, truth))
        devices = None if mesh is None else tuple(d.id for d in mesh.devices.flat)
        key = (tree, tuple((a.shape, a.dtype) for a in leaves), unroll, devices)
        if key in self._executables:
            return (*self._executables[key], 0.0)
        t0 = time.perf_counter()
        if self.loop == "python":
            step = self._per_device(self._batched(self.step, unroll), mesh, replicated=(2,))
            lowered = jax.jit(step, donate_argnums=0).lower(state, problem, shared)
        else:
            chunk = self._per_device(functools.partial(self._chunk, unroll=unroll), mesh, replicated=(2, 3))
            lowered = jax.jit(chunk, donate_argnums=0).lower(state, problem, shared, 0)
        step = compile_fast(lowered)
        evaluate = self._per_device(self._evaluate, mesh, replicated=(2,))
        evaluate = compile_fast(jax.jit(evaluate).lower(state, problem, shared, truth))
        self._executables[key] = (step, evaluate)
        self.compilations += 1
        return step, evaluate, time.perf_counter() - t0

    def initial_state(self, z0: jax.Array, params: Any, own_params: Any = None) -> tuple[RecoverState, Any]:
        """(batched state, shared generator weights or None) for codes z0 (B, T, k).

        ``own_params``: optional starting weights per sequence (leading axis B) for a trained
        generator (candidates from different random weights); by default each starts from ``params``.
        """
        B = z0.shape[0]
        if self.config.trains_generator:
            own = own_params
            if own is None:
                own = jax.tree.map(lambda p: jnp.broadcast_to(p, (B, *p.shape)), params)
            state, shared = jax.vmap(self.init_state)(z0, own), None
        else:
            state, shared = jax.vmap(lambda z: self.init_state(z, None))(z0), params
        # The state is donated to each step: give every leaf its own buffer (z and best_z start
        # equal, and the caller keeps its z0).
        return jax.tree.map(lambda a: jnp.array(a, copy=True), state), shared

    def run(
        self,
        z0: jax.Array,
        problem: Problem,
        params: Any,
        *,
        truth: jax.Array | None = None,
        callback: Callable[[int, dict], None] | None = None,
        mesh: jax.sharding.Mesh | None = None,
        resume: tuple[RecoverState, dict] | None = None,
        checkpoint: Callable[[RecoverState, dict], None] | None = None,
        own_params: Any = None,
        until: int | None = None,
    ) -> RecoverResult:
        """Recover a batch of B sequences of one shape.

        Args:
          z0: initial codes (B, T, k).
          problem: batched :class:`Problem` (leading axis B on y and on the operator's arrays).
          params: generator weights, shared by the batch (each sequence gets its own copy when
            the generator is trained).
          truth: optional ground truth (B, T, H, W, C) in [0, 1] for PSNR at log points.
          callback: called at each log point with (iteration, {name: host array (B,)}).
          mesh: optional mesh with one axis, ``seq``: every per-sequence array (state, problem,
            truth) is sharded along its batch axis, shared weights are replicated, and each
            device runs the step on its own sequences (no collectives). B must be a multiple
            of the mesh size.
          resume: (state, history) from an earlier, interrupted run of the same problem, as
            given to ``checkpoint``; the run continues at ``state.step``.
          checkpoint: called after every chunk of ``log_every`` iterations with the state and
            the history so far (host arrays); the caller decides whether to save.
          own_params: optional per-sequence starting weights (leading axis B) of a trained
            generator, e.g. candidates from different random initialisations.
          until: stop after this many iterations instead of ``config.iterations`` (schedules
            still span ``config.iterations``); the returned ``state`` lets a later call resume.

        Returns:
          A :class:`RecoverResult`.

        Raises:
          FloatingPointError: the measurement loss of a sequence became non-finite.
        """
        cfg = self.config
        B = z0.shape[0]
        state, shared = self.initial_state(z0, params, own_params)
        names = _metric_names(problem)
        hist = {
            **{k: np.zeros((B, 0), np.float32) for k in names},
            "log_iteration": np.zeros((0,), np.int64),
            "log_seconds": np.zeros((0,), np.float64),
            "psnr": np.zeros((B, 0), np.float32),
        }
        if resume is not None:
            state, hist = resume
            hist = {k: np.asarray(v) for k, v in hist.items()}
        if mesh is not None:
            from jax.sharding import NamedSharding, PartitionSpec

            along = NamedSharding(mesh, PartitionSpec("seq"))
            state, problem, truth = jax.device_put((state, problem, truth), along)
            shared = jax.device_put(shared, NamedSharding(mesh, PartitionSpec()))

        n_devices = 1 if mesh is None else mesh.devices.size
        if n_devices > 1 and jax.default_backend() == "cpu":
            # One-matrix SVDs only: see the module docstring (simulated devices, one thread pool).
            unroll = B // n_devices > 1
        else:
            unroll = self._unrolls(B // n_devices, None)  # each device runs the one-device program
        step_fn, eval_fn, compile_seconds = self._compile(state, problem, shared, truth, unroll, mesh)
        finalize_fn, render_fn = self._finalize, self._render
        if n_devices > 1:
            devices = tuple(d.id for d in mesh.devices.flat)
            if devices not in self._sharded_tail:
                self._sharded_tail[devices] = (
                    jax.jit(self._per_device(self._batched(self.finalize, unroll), mesh, replicated=(2,))),
                    jax.jit(self._per_device(self._render_batch, mesh, replicated=(2,))),
                )
            finalize_fn, render_fn = self._sharded_tail[devices]

        chunk_rates = []
        done = int(jax.device_get(state.step).reshape(-1)[0])
        t_loop = time.perf_counter()
        stop = min(until, cfg.iterations) if until is not None else cfg.iterations
        while done < stop:
            n = min(cfg.log_every, stop - done)
            t0 = time.perf_counter()
            if self.loop == "python":
                ms = []
                for _ in range(n):
                    state, m = step_fn(state, problem, shared)
                    ms.append(m)
                # Stacked on the host: a device-side stack would be one more (sharded) program.
                ms = jax.device_get(ms)
                chunk = {k: np.stack([m[k] for m in ms], axis=1) for k in ms[0]}
            else:
                state, buf = step_fn(state, problem, shared, n)
                chunk = {k: v[:, :n] for k, v in jax.device_get(buf).items()}
            chunk_rates.append((time.perf_counter() - t0) / n)
            done += n
            logs = jax.device_get(eval_fn(state, problem, shared, truth))
            for k in names:
                hist[k] = np.concatenate([hist[k], np.asarray(chunk[k], np.float32)], axis=1)
            hist["log_iteration"] = np.append(hist["log_iteration"], done)
            # Loop wall time at this log point (evaluations included): time-to-quality curves.
            before = hist["log_seconds"][-1] if len(hist.get("log_seconds", ())) else 0.0
            hist["log_seconds"] = np.append(hist.get("log_seconds", np.zeros(0)), before + time.perf_counter() - t0)
            if "psnr" in logs:
                hist["psnr"] = np.concatenate([hist["psnr"], np.asarray(logs["psnr"], np.float32)[:, None]], axis=1)
            bad = ~np.isfinite(chunk["measurement_loss"]).all(axis=1)
            if bad.any():
                b = int(np.argmax(bad))
                it = done - n + int(np.argmax(~np.isfinite(chunk["measurement_loss"][b])))
                raise FloatingPointError(
                    f"the measurement loss of sequence {b} became non-finite at iteration {it + 1}; "
                    f"lower --z_step (now {self.alpha:g}) or --generator_lr (now {self.lr:g})"
                )
            if callback is not None:
                last = {k: chunk[k][:, -1] for k in names}
                callback(done, {**last, **logs})
            if checkpoint is not None:
                checkpoint(state, hist)
            if cfg.patience > 0 and np.all(done - np.asarray(logs["best_step"]) >= cfg.patience):
                break  # no sequence's held-out error (or loss) has improved for `patience` iterations
        seconds = time.perf_counter() - t_loop

        final = finalize_fn(state, problem, shared)
        best_params = final.best_params if cfg.trains_generator else None
        x = render_fn(final.best_z, best_params, shared)
        if truth is None:
            hist.pop("psnr")
        return RecoverResult(
            z=np.asarray(final.best_z),
            params=jax.device_get(best_params),
            x=np.asarray(x),
            measurement_loss=np.asarray(final.best_loss),
            history=hist,
            compile_seconds=compile_seconds,
            seconds=seconds,
            # Median over chunks: the first can include one-off work (allocation, page faults).
            seconds_per_iteration=float(np.median(chunk_rates)) if chunk_rates else 0.0,
            loop=self.loop,
            iterations=done,
            best_step=np.asarray(final.best_step),
            holdout_error=np.asarray(final.best_holdout),
            state=state,
        )
