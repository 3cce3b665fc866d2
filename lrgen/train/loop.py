"""The host loop: a pure step compiled once, run to ``num_steps`` with resume and records.

A :class:`Task` is what is trained: ``init() -> state``, a pure ``step(state, *inputs) ->
(state, metrics)``, and what to write along the way (``evaluate``, ``samples``, ``export``).
:func:`run` restores the newest checkpoint of the workdir (else calls ``init``), compiles the
step once with its state donated, then calls it from Python for each step's inputs (on XLA:CPU
a jitted step called from Python is far faster than the same step in ``lax.scan``; DESIGN.md).
Every ``log_every`` steps it pulls the metrics to the host, stops on a non-finite value before
anything is checkpointed, logs progress and appends a row to ``metrics.jsonl``; every
``sample_every`` steps it evaluates and writes samples; every ``checkpoint_every`` steps (and at
the end) it saves a checkpoint, exports the models and redraws the curves. The step's inputs are
a function of the step number (:class:`Inputs`), so a run killed at any moment and restarted
recomputes the same steps: on CPU the final state is bitwise that of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
from flax import struct

from lrgen import checkpoint, engine
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

    def iterate(self, start: int, stop: int) -> Iterator[tuple]: ...  # (step, *inputs)

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
        step = engine.compile_fast(jax.jit(task.step, donate_argnums=0).lower(state, *inputs.get(start)))
        progress.compile_seconds = time.perf_counter() - t0
        if start >= loop.num_steps:
            log(f"nothing to do: the checkpoint is at step {start} ≥ --num_steps={loop.num_steps}")
        progress.last = time.perf_counter()
        for s, *args in inputs.iterate(start, loop.num_steps):
            state, metrics = step(state, *args)
            progress.after(s + 1, state, metrics)
        ckpt.wait()
    finally:
        ckpt.close()
    return progress.summary()


@dataclasses.dataclass
class _Progress:
    """The host side of one run: what is pulled, logged and written after each step, and timing."""

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
    last: float = 0.0
    done: int = 0
    rows: list[dict] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.metrics_path = os.path.join(self.workdir, "metrics.jsonl")
        self.rows = records.truncate_jsonl(self.metrics_path, self.start)

    def _due(self, s: int, every: int) -> bool:
        return s % every == 0 or s == self.loop.num_steps

    def after(self, s: int, state: Any, metrics: dict) -> None:
        """After step s (1-based): report, evaluate, sample, checkpoint and export as due."""
        loop = self.loop
        if not (self._due(s, loop.log_every) or self._due(s, loop.checkpoint_every)):
            return
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}  # waits for the step
        self.train_seconds += time.perf_counter() - self.last
        self.done = s - self.start
        bad = [k for k, v in host.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"{self.task.name}: {bad[0]} is {host[bad[0]]} at step {s}; stopped without checkpointing "
                f"(lower the learning rate; the last good checkpoint is step {self.ckpt.latest_step()})"
            )
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
        if self._due(s, loop.checkpoint_every):
            self.ckpt.save(s, state)
            self.task.export(state, s)
            records.plot_curves(self.workdir, self.rows)
        self.last = time.perf_counter()
        self.side_seconds += self.last - side

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
