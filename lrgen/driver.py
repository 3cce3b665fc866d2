"""The host loop: one for recovery (and, at merge, training), around a pure, jitted step.

    state = init(...) or restored                      (resume: the caller passes both in)
    while done < stop:
        state, per_step = advance(state, done, n)      n = min(log_every, stop − done) iterations
        done += n
        logs = evaluate(state)                         log-point metrics (host)
        history ← per_step, done, wall time, logs[record]
        stop with FloatingPointError on a non-finite per_step[watch]
        on_log(done, last per-step metrics | logs);  checkpoint(state, history)
        if should_stop(done, logs): break

``advance`` hides how the iterations run on the device: :func:`python_chunks` calls a jitted
step n times from Python (fast on XLA:CPU, where convolutions in a loop body run ~30× slower),
:func:`scan_chunks` calls one jitted loop of n steps (one dispatch per chunk; GPU/TPU). Both
bring the per-step metrics to the host once per chunk, iterations along their LAST axis (a
batch of B sequences: (B, n); a training step's scalars: (n,)). :class:`ExecutableCache`
compiles each function once per input shape, so compile time and steady-state time are
measured apart.

Training's loop maps onto it: ``advance`` runs the train step on ``batches.get(s)`` for
s in [done, done + n); ``evaluate`` is the task's evaluation (samples at the log points that
are multiples of ``sample_every``); ``checkpoint`` saves and exports at multiples of
``checkpoint_every`` (chunks of ``log_every`` = the gcd of the three cadences); ``watch`` is the
loss; ``resume`` is the restored (step, state).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

Metrics = dict[str, np.ndarray]


class ExecutableCache:
    """Compiled executables, built once per (pytree structure, shapes, dtypes, extra key)."""

    def __init__(self):
        self._store: dict = {}
        self.compilations = 0  # distinct keys compiled so far

    def get(self, args: Any, build: Callable[[], Any], extra: Any = ()) -> tuple[Any, float]:
        """(``build()``'s result for arguments shaped like ``args``, seconds spent building now)."""
        leaves, tree = jax.tree.flatten(args)
        key = (tree, tuple((a.shape, a.dtype) for a in leaves), extra)
        if key in self._store:
            return self._store[key], 0.0
        t0 = time.perf_counter()
        self._store[key] = build()
        self.compilations += 1
        return self._store[key], time.perf_counter() - t0

    def values(self) -> list:
        return list(self._store.values())


def python_chunks(step: Callable, *args: Any) -> Callable:
    """``advance`` from a compiled ``step(state, *args) -> (state, metrics)``: n calls from Python."""

    def advance(state, done: int, n: int):
        ms = []
        for _ in range(n):
            state, m = step(state, *args)
            ms.append(m)
        # Stacked on the host: a device-side stack would be one more (sharded) program.
        ms = jax.device_get(ms)
        return state, {k: np.stack([m[k] for m in ms], axis=-1) for k in ms[0]}

    return advance


def scan_chunks(chunk: Callable, *args: Any) -> Callable:
    """``advance`` from a compiled ``chunk(state, *args, n) -> (state, buffer)`` running n steps
    in one jitted loop; the buffer holds ``log_every`` slots per metric, the first n filled."""

    def advance(state, done: int, n: int):
        state, buf = chunk(state, *args, n)
        return state, {k: v[..., :n] for k, v in jax.device_get(buf).items()}

    return advance


@dataclasses.dataclass
class LoopResult:
    """What :func:`run` returns.

    Attributes:
      state: the final state (on the device).
      history: per-step metrics (iterations along the last axis), ``log_iteration`` (m,),
        ``log_seconds`` (m,) (loop wall time at each log point, evaluations included) and the
        recorded log-point metrics (log points along the last axis).
      done: iterations done in all (a resumed run counts its earlier ones).
      seconds: wall time of this call's loop.
      seconds_per_iteration: median over chunks of the step time alone (the first chunk can
        include one-off work: allocation, page faults).
    """

    state: Any
    history: dict[str, np.ndarray]
    done: int
    seconds: float
    seconds_per_iteration: float


def _append(history: dict, name: str, value: np.ndarray) -> None:
    value = np.asarray(value)
    history[name] = np.concatenate([history[name], value], axis=-1) if name in history else value


def run(
    advance: Callable[[Any, int, int], tuple[Any, Metrics]],
    state: Any,
    *,
    done: int,
    stop: int,
    log_every: int,
    history: dict[str, np.ndarray] | None = None,
    evaluate: Callable[[Any], Metrics] | None = None,
    record: tuple[str, ...] = (),
    watch: str | None = None,
    diverged: Callable[[int | None, int], str] | None = None,
    on_log: Callable[[int, Metrics], None] | None = None,
    checkpoint: Callable[[Any, dict], None] | None = None,
    should_stop: Callable[[int, Metrics], bool] | None = None,
) -> LoopResult:
    """Run iterations ``done`` … ``stop`` in chunks of ``log_every``; see the module docstring.

    Args:
      advance: (state, done, n) → (state, per-step host metrics, iterations on the last axis).
      state: the starting state (fresh, or restored to resume at ``done``).
      done, stop: iterations done already and the iteration to stop at.
      log_every: iterations per chunk (one host round trip each).
      history: the history so far (resume) or initial empty arrays; copied, not changed.
      evaluate: state → host log-point metrics.
      record: names of ``evaluate``'s metrics to append to the history (as a column).
      watch: a per-step metric that must stay finite.
      diverged: (sequence index or None, 0-based iteration) → the FloatingPointError message.
      on_log: called with (done, last per-step metrics and the log-point metrics).
      checkpoint: called with (state, history) after every chunk; the caller decides to save.
      should_stop: (done, log-point metrics) → end early (e.g. patience).

    Raises:
      FloatingPointError: ``watch`` became non-finite (before ``on_log`` and ``checkpoint``).
    """
    hist = {k: np.asarray(v) for k, v in (history or {}).items()}
    rates = []
    t_loop = time.perf_counter()
    while done < stop:
        n = min(log_every, stop - done)
        t0 = time.perf_counter()
        state, chunk = advance(state, done, n)
        rates.append((time.perf_counter() - t0) / n)
        done += n
        logs = jax.device_get(evaluate(state)) if evaluate is not None else {}
        for k, v in chunk.items():
            _append(hist, k, np.asarray(v, np.float32))
        _append(hist, "log_iteration", np.asarray([done], np.int64))
        before = hist["log_seconds"][-1] if len(hist.get("log_seconds", ())) else 0.0
        _append(hist, "log_seconds", np.asarray([before + time.perf_counter() - t0], np.float64))
        for k in record:
            if k in logs:
                _append(hist, k, np.asarray(logs[k], np.float32)[..., None])
        if watch is not None:
            _check_finite(chunk[watch], done - n, diverged)
        if on_log is not None:
            on_log(done, {**{k: v[..., -1] for k, v in chunk.items()}, **logs})
        if checkpoint is not None:
            checkpoint(state, hist)
        if should_stop is not None and should_stop(done, logs):
            break
    seconds = time.perf_counter() - t_loop
    return LoopResult(state, hist, done, seconds, float(np.median(rates)) if rates else 0.0)


def _check_finite(values: np.ndarray, first: int, diverged: Callable[[int | None, int], str] | None) -> None:
    """Raise FloatingPointError at the first non-finite value (iterations on the last axis)."""
    values = np.asarray(values)
    bad = ~np.isfinite(values.reshape(-1, values.shape[-1])).all(axis=1)
    if not bad.any():
        return
    b = int(np.argmax(bad))
    it = first + int(np.argmax(~np.isfinite(values.reshape(-1, values.shape[-1])[b])))
    b = b if values.ndim > 1 else None
    raise FloatingPointError(diverged(b, it) if diverged else f"non-finite value at iteration {it + 1}")
