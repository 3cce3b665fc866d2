"""Training on the one host loop (:func:`lrgen.driver.run`): a :class:`Task` run to ``num_steps``.

A :class:`Task` is what is trained: ``init() -> state``, a pure ``step(state, *inputs) ->
(state, metrics)``, and what to write along the way (``evaluate``, ``samples``, ``export``).
:func:`run` restores the newest checkpoint of the workdir (else calls ``init``), compiles the
step once with its state donated and hands the steps to the driver in chunks that end at the
row points (the multiples of ``log_every`` and ``checkpoint_every``, and ``num_steps``). A
chunk calls the step from Python on each step's inputs (on XLA:CPU a jitted step called from
Python is far faster than the same step in ``lax.scan``) and pulls only its last metrics to
the host. The driver stops on a non-finite metric before anything is written. At each row
point the run logs progress (multiples of ``log_every``), evaluates and writes samples
(multiples of ``sample_every``) and appends a row to ``metrics.jsonl``; at multiples of
``checkpoint_every`` (and at the end) it saves a checkpoint, exports the models and redraws
the curves. The step's inputs are a function of the step number (:class:`Inputs`), so a run
killed at any moment and restarted recomputes the same steps: on CPU the final state is
bitwise that of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol

import jax
import numpy as np
from flax import struct

from lrgen import checkpoint, driver, engine
from lrgen.train import workdir as records
from lrgen.train.config import LoopConfig


class Position(struct.PyTreeNode):
    """Where the data order stands after a step: its epoch and the batch's index within it."""

    epoch: jax.Array
    index: jax.Array

    @classmethod
    def at(cls, step: jax.Array, steps_per_epoch: int) -> Position:
        return cls(step // steps_per_epoch, step % steps_per_epoch)


class Inputs(Protocol):
    """The step's inputs as a function of the step number (e.g. :class:`lrgen.data.Batches`)."""

    def get(self, step: int) -> tuple: ...

    def iterate(self, start: int, stop: int) -> Generator[tuple, None, None]: ...  # (step, *inputs)

    def position(self, step: int) -> tuple[int, int]: ...  # (epoch, index)


@dataclasses.dataclass(frozen=True)
class Task:
    """What :func:`run` trains.

    Attributes:
      name: for messages.
      init: () → the initial state (a pytree; ``jax.eval_shape(init)`` is the restore target).
      step: (state, *inputs) → (state, metrics): pure; compiled once, the state donated.
      export: (state, step) → None: writes the trained models (at every checkpoint).
      samples: (state, step) → None: writes sample pictures (every ``sample_every``).
      evaluate: state → {name: float}, added to the metrics row (every ``sample_every``).
    """

    name: str
    init: Callable[[], Any]
    step: Callable[..., tuple[Any, dict]]
    export: Callable[[Any, int], None]
    samples: Callable[[Any, int], None]
    evaluate: Callable[[Any], dict] = lambda state: {}


def run(
    task: Task,
    loop: LoopConfig,
    inputs: Inputs,
    workdir: str,
    log: Callable[[str], None],
    on_start: Callable[[], None] | None = None,
) -> dict:
    """Train ``task`` to ``loop.num_steps``, resuming from the newest checkpoint in ``workdir``.

    ``on_start`` runs once the checkpoint (if any) has been restored, before the first step: a
    run refused at the restore leaves the workdir's record (config.json) as it was.

    Returns:
      Throughput and the last metrics: ``steps_per_second`` (training steps only, compile,
      checkpoint and sample writing excluded), ``steps_run``, ``start_step``,
      ``compile_seconds``, ``train_seconds``, ``side_seconds``, ``metrics``.

    Raises:
      FloatingPointError: the loss became non-finite (the state is not checkpointed).
      ValueError: the workdir's checkpoint belongs to another architecture.
    """
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, records.CHECKPOINTS), keep=loop.keep_checkpoints)
    try:
        restored = ckpt.restore(jax.eval_shape(task.init), f"--workdir={workdir}")
        if restored is not None:
            start, state = restored[0], jax.device_put(restored[1])
            log(f"resuming from the checkpoint at step {start} in {workdir}")
        else:
            start, state = 0, task.init()
        if on_start is not None:
            on_start()
        progress = _Progress(task, loop, inputs, workdir, log, ckpt, start)
        t0 = time.perf_counter()
        lowered = jax.jit(task.step, donate_argnums=0).lower(state, *inputs.get(start))
        step = engine.compile_fast(lowered)
        progress.compile_seconds = time.perf_counter() - t0
        if start >= loop.num_steps:
            log(f"nothing to do: the checkpoint is at step {start} ≥ --num_steps={loop.num_steps}")
        batches = inputs.iterate(start, loop.num_steps)
        try:
            driver.run(
                progress.python_steps(step, batches),
                state,
                done=start,
                stop=loop.num_steps,
                log_every=progress.next_row,
                watch=tuple(lowered.out_info[1]),  # every metric of the step (sorted, as pulled)
                diverged=progress.diverged,
                on_log=progress.write_row,
                checkpoint=progress.checkpoint,
            )
        finally:
            batches.close()
        ckpt.wait()
    finally:
        ckpt.close()
    return progress.summary()


@dataclasses.dataclass
class _Progress:
    """The host side of one run: the steps between row points, what is logged and written at
    each, and timing."""

    task: Task
    loop: LoopConfig
    inputs: Inputs
    workdir: str
    log: Callable[[str], None]
    ckpt: checkpoint.Checkpointer
    start: int
    compile_seconds: float = 0.0
    train_seconds: float = 0.0
    side_seconds: float = 0.0
    done: int = 0
    rows: list[dict] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.metrics_path = os.path.join(self.workdir, "metrics.jsonl")
        self.rows = records.truncate_jsonl(self.metrics_path, self.start)

    def _due(self, s: int, every: int) -> bool:
        return s % every == 0 or s == self.loop.num_steps

    def next_row(self, done: int) -> int:
        """The row point after step ``done``: the next multiple of ``log_every`` or ``checkpoint_every``."""
        return min((done // every + 1) * every for every in (self.loop.log_every, self.loop.checkpoint_every))

    def python_steps(self, step: Callable, batches: Generator[tuple, None, None]) -> Callable:
        """``advance`` for the driver: the compiled step on the next n inputs of ``batches``;
        only the last step's metrics come to the host, as (1,) arrays."""

        def advance(state, done: int, n: int):
            t0 = time.perf_counter()
            for _ in range(n):
                _, *args = next(batches)
                state, metrics = step(state, *args)
            host = jax.device_get(metrics)  # waits for the steps
            self.train_seconds += time.perf_counter() - t0
            return state, {k: np.asarray(v)[None] for k, v in host.items()}

        return advance

    def diverged(self, bad: driver.NonFinite) -> str:
        return (
            f"{self.task.name}: {bad.metric} is {bad.value} at step {bad.iteration + 1}; stopped without "
            f"checkpointing (lower the learning rate; the last good checkpoint is step {self.ckpt.latest_step()})"
        )

    def write_row(self, s: int, metrics: dict, state: Any) -> None:
        """At row point s: log progress, evaluate and write samples as due, append the row."""
        loop = self.loop
        host = {k: float(v) for k, v in metrics.items()}
        self.done = s - self.start
        sps = self.done / max(self.train_seconds, 1e-9)
        row = {"step": s, "epoch": self.inputs.position(s)[0], **host, "steps_per_second": sps}
        if self._due(s, loop.log_every):
            text = " ".join(f"{k} {v:.4g}" for k, v in host.items())
            eta = _fmt_time((loop.num_steps - s) / sps)
            self.log(f"[{_bar(s, loop.num_steps)}] {s}/{loop.num_steps} {text}  {sps:.2f} steps/s, ETA {eta}")
        side = time.perf_counter()
        if self._due(s, loop.sample_every):
            row.update(self.task.evaluate(state))
            self.task.samples(state, s)
        self.rows.append(row)
        records.append_jsonl(self.metrics_path, row)
        self.side_seconds += time.perf_counter() - side

    def checkpoint(self, state: Any, history: dict) -> None:
        """At a multiple of ``checkpoint_every`` (and at the end): save, export, redraw the curves."""
        s = int(history["log_iteration"][-1])
        if self._due(s, self.loop.checkpoint_every):
            side = time.perf_counter()
            self.ckpt.save(s, state)
            self.task.export(state, s)
            records.plot_curves(self.workdir, self.rows)
            self.side_seconds += time.perf_counter() - side

    def summary(self) -> dict:
        return {
            "steps_per_second": self.done / self.train_seconds if self.train_seconds > 0 else None,
            "steps_run": self.done,
            "start_step": self.start,
            "compile_seconds": self.compile_seconds,
            "train_seconds": self.train_seconds,
            "side_seconds": self.side_seconds,
            "metrics": self.rows[-1] if self.rows else {},
        }


def _fmt_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = int(width * done / total)
    return "#" * filled + "." * (width - filled)
