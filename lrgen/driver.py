"""The host loop, one for recovery and for training, around a pure, jitted step.

    state = init(...) or restored                      (resume: the caller passes both in)
    while done < stop:
        state, per_step = advance(state, done, n)      n: to the next log point, at most stop − done
        done += n
        stop with FloatingPointError on a non-finite per_step[w], w in watch
        logs = evaluate(state)                         log-point metrics (host)
        history ← per_step, done, wall time, logs[record]
        on_log(done, last per-step metrics | logs, state);  checkpoint(state, history)
        if should_stop(done, logs): break

The log points are every ``log_every`` iterations after ``done``, or those a function
``log_every(done)`` names. ``advance`` hides how the iterations run on the device:
:func:`python_chunks` calls a jitted step n times from Python (fast on XLA:CPU, where
convolutions in a loop body run ~30× slower), :func:`scan_chunks` calls one jitted loop of n
steps (one dispatch per chunk; GPU/TPU). Both bring the per-step metrics of all n iterations to
the host once per chunk, iterations along their LAST axis (a batch of B sequences: (B, n));
an ``advance`` may bring only the chunk's last m < n iterations (training: the last, (1,)).
:class:`ExecutableCache` compiles each function once per input shape, so compile time and
steady-state time are measured apart.

Recovery (:class:`lrgen.solver.Recoverer`) runs python or scan chunks of ``log_every``, watches
the measurement loss, evaluates PSNR and the best iterate, and stops early on patience.
Training (:func:`lrgen.train.loop.run`) runs its step from Python on the inputs of steps
done … done + n − 1, bringing back the last step's metrics; its log points are the multiples
of ``log_every`` and ``checkpoint_every``; it watches every metric of the step; ``on_log``
writes the metrics row (evaluation and samples at multiples of ``sample_every``) and
``checkpoint`` saves and exports at multiples of ``checkpoint_every``; resuming is starting at
the restored (step, state).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from lrgen import engine

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


def dispatch(step: Callable, states: list, problems: list, shared: Any) -> tuple[list, list]:
    """One iteration of a batch held as per-sequence states: the compiled one-sequence step called
    once per sequence. Returns (new states, each sequence's metrics)."""
    outs = [step(s, p, shared) for s, p in zip(states, problems, strict=True)]
    return [o[0] for o in outs], [o[1] for o in outs]


def dispatched_chunks(step: Callable, problem: Any, shared: Any) -> Callable:
    """``advance`` for a batch from a compiled ONE-sequence ``step(state, problem, shared)``:
    every iteration calls it once per sequence from Python. The batch's state is split into
    per-sequence states at the start of a chunk and stacked again at its end, so the steps
    themselves work on one sequence's buffers (in place, donated) at the speed of B = 1."""
    B = jax.tree.leaves(problem)[0].shape[0]
    problems = [engine.index(problem, i) for i in range(B)]

    def advance(state, done: int, n: int):
        states = [engine.index(state, i) for i in range(B)]
        ms = [[] for _ in range(B)]
        for _ in range(n):
            states, m = dispatch(step, states, problems, shared)
            for i in range(B):
                ms[i].append(m[i])
        ms = jax.device_get(ms)
        metrics = {k: np.stack([np.stack([m[k] for m in seq], axis=-1) for seq in ms]) for k in ms[0][0]}
        return jax.tree.map(lambda *a: jax.numpy.stack(a), *states), metrics

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
      history: per-step metrics as ``advance`` returned them (iterations along the last axis;
        training: the log points' steps only), ``log_iteration`` (m,),
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


class NonFinite(NamedTuple):
    """The first non-finite watched value of a chunk, given to ``diverged`` for its message.

    Attributes:
      metric: the watched metric's name.
      sequence: the sequence's index in a batch (metrics (B, n)), None for metrics (n,).
      iteration: the 0-based iteration (1-based: the step that produced the value).
      value: the value (nan, inf or −inf).
    """

    metric: str
    sequence: int | None
    iteration: int
    value: float


def _append(history: dict, name: str, value: np.ndarray) -> None:
    value = np.asarray(value)
    history[name] = np.concatenate([history[name], value], axis=-1) if name in history else value


def run(
    advance: Callable[[Any, int, int], tuple[Any, Metrics]],
    state: Any,
    *,
    done: int,
    stop: int,
    log_every: int | Callable[[int], int],
    history: dict[str, np.ndarray] | None = None,
    evaluate: Callable[[Any], Metrics] | None = None,
    record: tuple[str, ...] = (),
    watch: tuple[str, ...] = (),
    diverged: Callable[[NonFinite], str] | None = None,
    on_log: Callable[[int, Metrics, Any], None] | None = None,
    checkpoint: Callable[[Any, dict], None] | None = None,
    should_stop: Callable[[int, Metrics], bool] | None = None,
) -> LoopResult:
    """Run iterations ``done`` … ``stop`` in chunks that end at log points; see the module docstring.

    Args:
      advance: (state, done, n) → (state, host metrics of the chunk's last m ≤ n iterations,
        iterations on the last axis).
      state: the starting state (fresh, or restored to resume at ``done``).
      done, stop: iterations done already and the iteration to stop at.
      log_every: iterations per chunk (one host round trip each), or done → the next log point
        (> done); each chunk ends at the next log point or at ``stop``.
      history: the history so far (resume) or initial empty arrays; copied, not changed.
      evaluate: state → host log-point metrics.
      record: names of ``evaluate``'s metrics to append to the history (as a column).
      watch: per-step metrics that must stay finite, checked in this order.
      diverged: the first non-finite watched value (:class:`NonFinite`) → the FloatingPointError
        message.
      on_log: called with (done, last per-step metrics and the log-point metrics, state).
      checkpoint: called with (state, history) after every chunk; the caller decides to save.
      should_stop: (done, log-point metrics) → end early (e.g. patience).

    Raises:
      FloatingPointError: a watched metric became non-finite (before ``evaluate``, ``on_log`` and
        ``checkpoint``).
    """
    hist = {k: np.asarray(v) for k, v in (history or {}).items()}
    rates = []
    t_loop = time.perf_counter()
    while done < stop:
        n = min(log_every(done) if callable(log_every) else done + log_every, stop) - done
        t0 = time.perf_counter()
        state, chunk = advance(state, done, n)
        rates.append((time.perf_counter() - t0) / n)
        done += n
        for name in watch:
            _check_finite(name, chunk[name], done, diverged)
        logs = jax.device_get(evaluate(state)) if evaluate is not None else {}
        for k, v in chunk.items():
            _append(hist, k, np.asarray(v, np.float32))
        _append(hist, "log_iteration", np.asarray([done], np.int64))
        before = hist["log_seconds"][-1] if len(hist.get("log_seconds", ())) else 0.0
        _append(hist, "log_seconds", np.asarray([before + time.perf_counter() - t0], np.float64))
        for k in record:
            if k in logs:
                _append(hist, k, np.asarray(logs[k], np.float32)[..., None])
        if on_log is not None:
            on_log(done, {**{k: v[..., -1] for k, v in chunk.items()}, **logs}, state)
        if checkpoint is not None:
            checkpoint(state, hist)
        if should_stop is not None and should_stop(done, logs):
            break
    seconds = time.perf_counter() - t_loop
    return LoopResult(state, hist, done, seconds, float(np.median(rates)) if rates else 0.0)


def _check_finite(name: str, values: np.ndarray, done: int, diverged: Callable[[NonFinite], str] | None) -> None:
    """Raise FloatingPointError at the first non-finite value of the iterations up to ``done``
    (iterations on the last axis: the chunk's last ones)."""
    values = np.asarray(values)
    rows = values.reshape(-1, values.shape[-1])
    bad = ~np.isfinite(rows).all(axis=1)
    if not bad.any():
        return
    b = int(np.argmax(bad))
    i = int(np.argmax(~np.isfinite(rows[b])))
    found = NonFinite(name, b if values.ndim > 1 else None, done - values.shape[-1] + i, float(rows[b, i]))
    default = f"{name} is {found.value} at iteration {found.iteration + 1}"
    raise FloatingPointError(diverged(found) if diverged else default)
