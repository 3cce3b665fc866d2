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
      model: the generator module (e.g. :class:`lrgen.models.Generator`).
      config: the hyperparameters.
      num_frames: T, to resolve the default step sizes.
    """

    def __init__(self, model: nn.Module, config: RecoverConfig, num_frames: int):
        super().__init__(model, config, num_frames)
        self.loop = engine.choose_loop(config)
        self.cache = driver.ExecutableCache()
        self._tails = driver.ExecutableCache()  # (finalize, render) per batching and mesh

    @property
    def compilations(self) -> int:
        """Distinct input shapes (and meshes) compiled so far."""
        return self.cache.compilations

    def _chunk(self, state, problem, shared, n, batching="vmapped"):
        """``n`` (traced) iterations inside one jitted loop; per-iteration metrics in a buffer."""
        step = engine.BATCHINGS[batching](self.step)
        size = self.config.log_every
        B = state.z.shape[0]
        buf = {k: jnp.zeros((B, size), state.z.dtype) for k in engine.metric_names(problem)}

        def body(i, carry):
            s, b = carry
            s, m = step(s, problem, shared)
            return s, {k: b[k].at[:, i].set(m[k]) for k in b}

        return jax.lax.fori_loop(0, n, body, (state, buf))

    def _evaluate(self, state, problem, shared, truth):
        """Log-point metrics: best measurement loss so far and, with truth, the current PSNR."""
        B = state.z.shape[0]
        fin = engine.BATCHINGS["single" if B == 1 else "vmapped"](self.finalize)(state, problem, shared)
        out = {"best_measurement_loss": fin.best_loss, "best_step": fin.best_step}
        if problem.holdout is not None:
            out["best_holdout_error"] = fin.best_holdout
        if truth is not None:
            out["psnr"] = jax.vmap(metrics.psnr)(self.render_batch(state.z, state.params, shared), truth)
        return out

    def compile(self, state, problem, shared, truth, batching: str, mesh=None) -> tuple[Callable, Callable, float]:
        """(step or chunk executable, evaluation executable, seconds spent compiling now).

        Compiled ahead of time once per input shape, batching and mesh, and reused by later
        :meth:`run` calls. With a mesh of several devices each runs per device.
        """
        devices = None if mesh is None else tuple(d.id for d in mesh.devices.flat)

        def build():
            if self.loop == "python":
                step = engine.per_device(engine.BATCHINGS[batching](self.step), mesh, replicated=(2,))
                lowered = jax.jit(step, donate_argnums=0).lower(state, problem, shared)
            else:
                chunk = functools.partial(self._chunk, batching=batching)
                chunk = engine.per_device(chunk, mesh, replicated=(2, 3))
                lowered = jax.jit(chunk, donate_argnums=0).lower(state, problem, shared, 0)
            step = engine.compile_fast(lowered)
            evaluate = engine.per_device(self._evaluate, mesh, replicated=(2,))
            return step, engine.compile_fast(jax.jit(evaluate).lower(state, problem, shared, truth))

        (step, evaluate), seconds = self.cache.get((state, problem, shared, truth), build, (batching, devices))
        return step, evaluate, seconds

    def _tail(self, batching: str, mesh) -> tuple[Callable, Callable]:
        """(finalize, render), jitted; per device with a mesh of several devices."""
        devices = None if mesh is None else tuple(d.id for d in mesh.devices.flat)

        def build():
            if devices is None or len(devices) == 1:
                return jax.jit(engine.BATCHINGS[batching](self.finalize)), jax.jit(self.render_batch)
            return (
                jax.jit(engine.per_device(engine.BATCHINGS[batching](self.finalize), mesh, replicated=(2,))),
                jax.jit(engine.per_device(self.render_batch, mesh, replicated=(2,))),
            )

        return self._tails.get((), build, (batching, devices))[0]

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
        names = engine.metric_names(problem)
        hist = {
            **{k: np.zeros((B, 0), np.float32) for k in names},
            "log_iteration": np.zeros((0,), np.int64),
            "log_seconds": np.zeros((0,), np.float64),
            "psnr": np.zeros((B, 0), np.float32),
        }
        if resume is not None:
            state, hist = resume
        if mesh is not None:
            from jax.sharding import NamedSharding, PartitionSpec

            along = NamedSharding(mesh, PartitionSpec("seq"))
            state, problem, truth = jax.device_put((state, problem, truth), along)
            shared = jax.device_put(shared, NamedSharding(mesh, PartitionSpec()))
        n_devices = 1 if mesh is None else mesh.devices.size
        batching = engine.choose_batching(cfg, B // n_devices, n_devices)
        step_fn, eval_fn, compile_seconds = self.compile(state, problem, shared, truth, batching, mesh)
        if self.loop == "python":
            advance = driver.python_chunks(step_fn, problem, shared)
        else:
            advance = driver.scan_chunks(step_fn, problem, shared)

        def diverged(b, it):
            return (
                f"the measurement loss of sequence {b} became non-finite at iteration {it + 1}; "
                f"lower --z_step (now {self.alpha:g}) or --generator_lr (now {self.lr:g})"
            )

        def patient(done, logs):  # no sequence's held-out error (or loss) improved for `patience`
            return cfg.patience > 0 and bool(np.all(done - np.asarray(logs["best_step"]) >= cfg.patience))

        loop = driver.run(
            advance,
            state,
            done=int(jax.device_get(state.step).reshape(-1)[0]),
            stop=min(until, cfg.iterations) if until is not None else cfg.iterations,
            log_every=cfg.log_every,
            history=hist,
            evaluate=lambda s: eval_fn(s, problem, shared, truth),
            record=("psnr",),
            watch="measurement_loss",
            diverged=diverged,
            on_log=callback,
            checkpoint=checkpoint,
            should_stop=patient,
        )
        # The finalize after the loop: the run's strategy when sharded, else single or vmapped.
        tail = batching if n_devices > 1 else ("single" if B == 1 else "vmapped")
        finalize_fn, render_fn = self._tail(tail, mesh)
        final = finalize_fn(loop.state, problem, shared)
        best_params = final.best_params if cfg.trains_generator else None
        x = render_fn(final.best_z, best_params, shared)
        hist = loop.history
        if truth is None:
            hist.pop("psnr")
        return RecoverResult(
            z=np.asarray(final.best_z),
            params=jax.device_get(best_params),
            x=np.asarray(x),
            measurement_loss=np.asarray(final.best_loss),
            history=hist,
            compile_seconds=compile_seconds,
            seconds=loop.seconds,
            seconds_per_iteration=loop.seconds_per_iteration,
            loop=self.loop,
            iterations=loop.done,
            best_step=np.asarray(final.best_step),
            holdout_error=np.asarray(final.best_holdout),
            state=loop.state,
            batching=("per_device:" if n_devices > 1 else "") + batching,
        )
