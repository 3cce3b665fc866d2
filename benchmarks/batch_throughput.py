r"""Per-sequence speed of batches of B sequences against B = 1, each batching strategy side by side.

    python -m benchmarks.batch_throughput --batch_sizes=1,4,16,64 --update=latent,joint \
        --batchings=auto,vmapped,unrolled,mapped --timing_rounds=3

Setting of the original work (T = 32 frames of 64×64 gray, k = 32, 80 % missing pixels), random
weights (speed does not depend on them). Every (update, B, batching) is compiled and warmed up
first; then ``--timing_rounds`` rounds time each of them for ``--iterations`` iterations in turn
(interleaved, so that load from elsewhere falls on all alike) and the table gives medians:
ms per iteration, sequences per second at 2000 iterations per sequence and the speed-up per
sequence over B = 1 (ms(B = 1) · B / ms(B); ideal 1.00 on a device that one sequence fills).
``auto`` is the strategy :func:`lrgen.engine.choose_batching` picks, named in the table; the
others force one of :data:`lrgen.engine.BATCHINGS` (the strategies older code used are among
them, so this is also the side-by-side with the code before a change of the choice).
``--candidates`` times B candidates of ONE video (same frames and operator, different starts)
instead of B different videos. Simulate several CPU devices with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` to exercise the sharded path.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from lrgen import engine, operators, solver
from lrgen.nets import generators

flags.DEFINE_list("batch_sizes", ["1", "4", "16"], "Batch sizes B.")
flags.DEFINE_list("update", ["latent", "joint"], "Update modes.")
flags.DEFINE_integer("iterations", 30, "Measured iterations per B and round (after compilation).")
flags.DEFINE_list("batchings", ["auto"], "Strategies for B > 1: auto and/or names of lrgen.engine.BATCHINGS.")
flags.DEFINE_integer("timing_rounds", 3, "Interleaved timing rounds; medians are reported.")
flags.DEFINE_bool("candidates", False, "B starts of one video instead of B different videos.")
FLAGS = flags.FLAGS


def setting(T: int = 32, S: int = 64):
    """(spec, random weights, generator module) of the original work's gray generator at S×S."""
    spec = generators.GeneratorSpec.default(image_size=S, channels=1)
    return spec, generators.init_generator(spec, jax.random.key(0)), generators.build_generator(spec)


class Timer(NamedTuple):
    """``run()`` → seconds per iteration of a fresh recovery of the batch (same executables)."""

    run: Callable[[], float]
    compile_s: float
    loop: str  # the loop that ran
    batching: str  # the batching strategy that ran (``auto`` resolved)
    devices: int


def timer(
    update: str,
    B: int,
    iterations: int,
    *,
    T: int = 32,
    S: int = 64,
    loop: str = "auto",
    mesh=None,
    batching: str = "auto",
    candidates: bool = False,
):
    """A compiled, warmed-up batch of B sequences (:class:`Timer`).

    Each call of ``run`` recovers the batch again for ``iterations`` iterations with the same
    executables, so that several contenders can be timed in alternation. ``mesh`` is used only
    when B is a multiple of its size. ``batching`` forces a strategy (``auto``: the engine's
    choice); ``candidates``: the B sequences are one video's frames and operator.
    """
    spec, params, model = setting(T, S)
    cfg = engine.RecoverConfig(update=update, iterations=iterations, log_every=iterations, loop=loop, batching=batching)
    rec = solver.Recoverer(model, cfg, T)
    probs = []
    for b in range(B):
        video = 0 if candidates else b
        op = operators.make(operators.MeasurementSpec("missing"), jax.random.key(video), T, (S, S, 1))
        x = jax.random.uniform(jax.random.key(100 + video), (T, S, S, 1)) * 2 - 1
        probs.append(engine.Problem(op.A(x), op))
    problem = jax.tree.map(lambda *v: jnp.stack(v), *probs)
    z0 = jnp.stack([engine.init_codes(jax.random.key(b), T, spec.z_dim, "random") for b in range(B)])
    mesh = mesh if mesh is not None and B % mesh.devices.size == 0 else None
    first = rec.run(z0, problem, params, mesh=mesh)  # compile + warm up

    def run() -> float:
        return rec.run(z0, problem, params, mesh=mesh).seconds / iterations

    devices = 1 if mesh is None else int(mesh.devices.size)
    return Timer(run, first.compile_seconds, first.loop, first.batching, devices)


def throughput(
    update: str, B: int, iterations: int, *, T: int = 32, S: int = 64, loop: str = "auto", mesh=None
) -> dict:
    """Steady-state speed of one batch of B sequences (compiled and warmed up first).

    Returns a dict: ``ms_per_iteration`` (loop wall time / iterations), ``sequences_per_s``
    (at 2000 iterations per sequence), ``compile_s``, the ``loop`` and ``batching`` used and the
    ``devices``.
    """
    t = timer(update, B, iterations, T=T, S=S, loop=loop, mesh=mesh)
    per_iter = t.run()
    return {
        "update": update,
        "B": B,
        "ms_per_iteration": per_iter * 1e3,
        "sequences_per_s": B / (per_iter * 2000),
        "compile_s": t.compile_s,
        "loop": t.loop,
        "batching": t.batching,
        "devices": t.devices,
    }


def main(argv):
    del argv

    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("seq",)) if len(devices) > 1 else None
    what = "candidates of one video" if FLAGS.candidates else "different videos"
    print(f"backend={jax.default_backend()} devices={len(devices)} ({devices[0].device_kind}); batches of {what}")
    for update in FLAGS.update:
        # (B, requested batching) → (timer, compile s, batching that ran); B = 1 runs unbatched.
        runs = {}
        for B in map(int, FLAGS.batch_sizes):
            for how in ["auto"] if B == 1 else FLAGS.batchings:
                kw = dict(mesh=mesh, batching=how, candidates=FLAGS.candidates)
                t = timer(update, B, FLAGS.iterations, **kw)
                runs[B, how] = (t.run, t.compile_s, t.batching)
                print(f"  {update} B={B} {t.batching}: compiled in {t.compile_s:.1f} s", file=sys.stderr, flush=True)
        times = {key: [] for key in runs}
        for _ in range(FLAGS.timing_rounds):
            for key, (run, _, _) in runs.items():
                times[key].append(run())
        ms = {key: statistics.median(t) * 1e3 for key, t in times.items()}
        one = ms.get((1, "auto"))
        print(
            f"\n| update | B | batching | ms / iteration (median of {FLAGS.timing_rounds}) | "
            "sequences / s (2000 it.) | speed-up per sequence vs B=1 | compile s |\n|---|---|---|---|---|---|---|"
        )
        for (B, how), (_, compile_s, ran) in runs.items():
            name = ran if how in ("auto", ran) else f"{how} (ran {ran})"
            name = f"auto → {ran}" if how == "auto" and B > 1 else name
            per_seq = f"{one * B / ms[B, how]:.2f}" if one else "–"
            print(
                f"| {update} | {B} | {name} | {ms[B, how]:.1f} | {B / (ms[B, how] * 2):.4f} | {per_seq} | "
                f"{compile_s:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    app.run(main)
