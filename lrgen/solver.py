"""The engine compiled and driven on a batch of sequences: :class:`Recoverer`.

``Recoverer(model, config, T).run(z0, problem, params)`` recovers B sequences of one shape:
it picks the batching strategy (:func:`lrgen.engine.choose_batching`) and the loop
(:func:`lrgen.engine.choose_loop`), compiles the batched step (or chunk) and the log-point
evaluation once per input shape and mesh, shards per device when given a mesh, and hands the
iterations to the one host loop (:func:`lrgen.driver.run`). The result records the strategy
and loop it ran with.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrgen import driver, engine, metrics
from lrgen.engine import Problem, RecoverConfig, RecoverState


@dataclasses.dataclass
class RecoverResult:
    """What :meth:`Recoverer.run` returns (arrays on the host, leading axis B).

    Attributes:
      z: best codes (B, T, k).
      params: the best generator weights (batched, B leading) when trained, else None.
      x: reconstructions G(z) of the best iterate, (B, T, H, W, C) in [0, 1].
      measurement_loss: (B,) data term of the best iterate.
      history: ``loss`` and ``measurement_loss`` (B, iterations) per iteration, and at each log
        point ``log_iteration`` (m,), ``log_seconds`` (m,) (loop wall time so far, evaluations
        included) and, with ground truth, ``psnr`` (B, m) of the current iterate;
        ``holdout_error`` (B, iterations) with a held-out set.
      compile_seconds, seconds (loop wall time, log-point work included),
      seconds_per_iteration (median over chunks of the step time alone).
      loop: ``python`` or ``scan``.
      iterations: iterations run (fewer than configured after an early stop).
      best_step: (B,) iteration of each returned iterate.
      holdout_error: (B,) held-out error of each returned iterate (inf without a held-out set).
      state: the final (batched) state, to continue with ``run(resume=(state, history))``.
      batching: the strategy the step ran with (:data:`lrgen.engine.BATCHINGS`), prefixed
        ``per_device:`` when sharded over several devices.
      screened: the all-candidates result a screened run chose from (:mod:`lrgen.recovery`).
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
    batching: str = ""
    screened: Any = None


class Recoverer(engine.Engine):
    """The :class:`lrgen.engine.Engine` compiled once per shape and run by :mod:`lrgen.driver`.

    Build it once and call :meth:`run` on batches of sequences of one shape.

    Args:
      model: the generator module (e.g. :class:`lrgen.nets.generators.Generator`).
      config: the hyperparameters.
      num_frames: T, to resolve the default step sizes.
    """

    def __init__(self, model: nn.Module, config: RecoverConfig, num_frames: int):
        super().__init__(model, config, num_frames)
        self.loop = engine.choose_loop(config)
        self.cache = driver.ExecutableCache()  # (step or chunk, evaluate) per shape, batching and mesh
        self.tails = driver.ExecutableCache()  # (finalize, render) per batching and mesh

    @property
    def compilations(self) -> int:
        """Distinct input shapes (and meshes) compiled so far."""
        return self.cache.compilations

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

    def render_batch(self, z: jax.Array, own_params: Any, shared_params: Any) -> jax.Array:
        """G(z) in [0, 1] for a batch: each sequence's own weights when trained, else shared."""
        if self.config.trains_generator:
            return jax.vmap(self.render)(z, own_params)
        return jax.vmap(self.render, in_axes=(0, None))(z, shared_params)

    def run(
        self,
        z0: jax.Array,
        problem: Problem,
        params: Any,
        *,
        truth=None,
        callback=None,
        mesh=None,
        resume=None,
        checkpoint=None,
        own_params=None,
        until: int | None = None,
    ) -> RecoverResult:
        """Recover a batch of B sequences of one shape; returns a :class:`RecoverResult`.

        Args:
          z0: initial codes (B, T, k); ``problem``: batched :class:`Problem` (leading axis B).
          params: generator weights, shared by the batch (each sequence gets its own copy when
            the generator is trained; ``own_params``: per-sequence starting weights instead).
          truth: optional ground truth (B, T, H, W, C) in [0, 1] for PSNR at log points.
          callback: called at each log point with (iteration, {name: host array (B,)}).
          mesh: optional mesh with one axis, ``seq``: per-sequence arrays are sharded along
            their batch axis (B a multiple of its size), shared weights replicated, and each
            device runs the step on its own sequences (no collectives).
          resume: (state, history) of an interrupted run, as given to ``checkpoint`` (called
            with them after every chunk of ``log_every`` iterations; the caller decides to save).
          until: stop after this many iterations instead of ``config.iterations`` (schedules
            still span ``config.iterations``); the returned ``state`` lets a later call resume.

        Raises:
          FloatingPointError: the measurement loss of a sequence became non-finite.
        """
        cfg, B = self.config, z0.shape[0]
        state, shared = self.initial_state(z0, params, own_params)
        hist = _empty_history(engine.metric_names(problem), B) if resume is None else resume[1]
        state = state if resume is None else resume[0]
        state, problem, truth, shared = _place(mesh, state, problem, truth, shared)
        n_devices = 1 if mesh is None else mesh.devices.size
        batching = engine.choose_batching(cfg, B // n_devices, n_devices)
        if batching == "dispatched" and (self.loop != "python" or n_devices > 1):
            raise ValueError("RecoverConfig.batching=dispatched: runs with the python loop on one device only")
        step_fn, eval_fn, compile_seconds = _compile(self, state, problem, shared, truth, batching, mesh)
        chunks = driver.python_chunks if self.loop == "python" else driver.scan_chunks
        chunks = driver.dispatched_chunks if batching == "dispatched" else chunks
        loop = driver.run(
            chunks(step_fn, problem, shared),
            state,
            done=int(jax.device_get(state.step).reshape(-1)[0]),
            stop=min(until, cfg.iterations) if until is not None else cfg.iterations,
            log_every=cfg.log_every,
            history=hist,
            evaluate=lambda s: eval_fn(s, problem, shared, truth),
            record=("psnr",),
            watch=("measurement_loss",),
            diverged=lambda bad: (
                f"the measurement loss of sequence {bad.sequence} became non-finite at iteration {bad.iteration + 1}; "
                f"lower --z_step (now {self.alpha:g}) or --generator_lr (now {self.lr:g})"
            ),
            on_log=None if callback is None else lambda done, metrics, state: callback(done, metrics),
            checkpoint=checkpoint,
            # No sequence's held-out error (or loss) has improved for `patience` iterations.
            should_stop=lambda done, logs: (
                cfg.patience > 0 and bool(np.all(done - np.asarray(logs["best_step"]) >= cfg.patience))
            ),
        )
        return _result(self, loop, problem, shared, truth, batching, mesh, compile_seconds)


def _result(rec: Recoverer, loop: driver.LoopResult, problem, shared, truth, batching, mesh, compile_seconds):
    """The :class:`RecoverResult` of a finished loop: the best iterate finalized and rendered."""
    B, n_devices = loop.state.z.shape[0], 1 if mesh is None else mesh.devices.size
    # The finalize after the loop: the run's strategy when sharded, else single or vmapped.
    finalize_fn, render_fn = _tail(rec, batching if n_devices > 1 else ("single" if B == 1 else "vmapped"), mesh)
    final = finalize_fn(loop.state, problem, shared)
    best_params = final.best_params if rec.config.trains_generator else None
    if truth is None:
        loop.history.pop("psnr")
    return RecoverResult(
        z=np.asarray(final.best_z),
        params=jax.device_get(best_params),
        x=np.asarray(render_fn(final.best_z, best_params, shared)),
        measurement_loss=np.asarray(final.best_loss),
        history=loop.history,
        compile_seconds=compile_seconds,
        seconds=loop.seconds,
        seconds_per_iteration=loop.seconds_per_iteration,
        loop=rec.loop,
        iterations=loop.done,
        best_step=np.asarray(final.best_step),
        holdout_error=np.asarray(final.best_holdout),
        state=loop.state,
        batching=("per_device:" if n_devices > 1 else "") + batching,
    )


def _empty_history(names: tuple[str, ...], B: int) -> dict[str, np.ndarray]:
    return {
        **{k: np.zeros((B, 0), np.float32) for k in names},
        "log_iteration": np.zeros((0,), np.int64),
        "log_seconds": np.zeros((0,), np.float64),
        "psnr": np.zeros((B, 0), np.float32),
    }


def _place(mesh, state, problem, truth, shared):
    """With a mesh: per-sequence arrays sharded along the batch axis, shared weights replicated."""
    if mesh is None:
        return state, problem, truth, shared
    from jax.sharding import NamedSharding, PartitionSpec

    state, problem, truth = jax.device_put((state, problem, truth), NamedSharding(mesh, PartitionSpec("seq")))
    return state, problem, truth, jax.device_put(shared, NamedSharding(mesh, PartitionSpec()))


def _chunk(rec: Recoverer, state, problem, shared, n, batching: str):
    """``n`` (traced) iterations inside one jitted loop; per-iteration metrics in a buffer."""
    step = engine.BATCHINGS[batching](rec.step)
    B = state.z.shape[0]
    buf = {k: jnp.zeros((B, rec.config.log_every), state.z.dtype) for k in engine.metric_names(problem)}

    def body(i, carry):
        s, b = carry
        s, m = step(s, problem, shared)
        return s, {k: b[k].at[:, i].set(m[k]) for k in b}

    return jax.lax.fori_loop(0, n, body, (state, buf))


def _evaluate(rec: Recoverer, state, problem, shared, truth):
    """Log-point metrics: best measurement loss so far and, with truth, the current PSNR."""
    B = state.z.shape[0]
    fin = engine.BATCHINGS["single" if B == 1 else "vmapped"](rec.finalize)(state, problem, shared)
    out = {"best_measurement_loss": fin.best_loss, "best_step": fin.best_step}
    if problem.holdout is not None:
        out["best_holdout_error"] = fin.best_holdout
    if truth is not None:
        out["psnr"] = jax.vmap(metrics.psnr)(rec.render_batch(state.z, state.params, shared), truth)
    return out


def _compile(rec: Recoverer, state, problem, shared, truth, batching: str, mesh) -> tuple[Callable, Callable, float]:
    """(step or chunk executable, evaluation executable, seconds spent compiling now).

    Compiled ahead of time once per input shape, batching and mesh, and reused by later runs,
    so compile time and steady-state time are measured apart. With a mesh of several devices
    each runs per device (:func:`lrgen.engine.per_device`).
    """
    devices = None if mesh is None else tuple(d.id for d in mesh.devices.flat)

    def build():
        if batching == "dispatched":  # the one-sequence step, called per sequence (driver.dispatched_chunks)
            one = engine.index((state, problem), 0)
            lowered = jax.jit(rec.step, donate_argnums=0).lower(*one, shared)
        elif rec.loop == "python":
            step = engine.per_device(engine.BATCHINGS[batching](rec.step), mesh, replicated=(2,))
            lowered = jax.jit(step, donate_argnums=0).lower(state, problem, shared)
        else:
            chunk = engine.per_device(functools.partial(_chunk, rec, batching=batching), mesh, replicated=(2, 3))
            lowered = jax.jit(chunk, donate_argnums=0).lower(state, problem, shared, 0)
        evaluate = engine.per_device(functools.partial(_evaluate, rec), mesh, replicated=(2,))
        return engine.compile_fast(lowered), engine.compile_fast(jax.jit(evaluate).lower(state, problem, shared, truth))

    (step, evaluate), seconds = rec.cache.get((state, problem, shared, truth), build, (batching, devices))
    return step, evaluate, seconds


def _tail(rec: Recoverer, batching: str, mesh) -> tuple[Callable, Callable]:
    """(finalize, render), jitted; per device with a mesh of several devices."""
    devices = None if mesh is None else tuple(d.id for d in mesh.devices.flat)

    def build():
        finalize = engine.BATCHINGS[batching](rec.finalize)
        if devices is None or len(devices) == 1:
            return jax.jit(finalize), jax.jit(rec.render_batch)
        return (
            jax.jit(engine.per_device(finalize, mesh, replicated=(2,))),
            jax.jit(engine.per_device(rec.render_batch, mesh, replicated=(2,))),
        )

    return rec.tails.get((), build, (batching, devices))[0]
