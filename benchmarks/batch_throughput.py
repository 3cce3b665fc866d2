r"""Sequences per second for batches of B = 1, 4, 16 sequences (one vmapped, sharded program).

    python -m benchmarks.batch_throughput --batch_sizes=1,4,16 --update=latent,joint

Setting of the original work (T = 32 frames of 64×64 gray, k = 32, 80 % missing pixels), random
weights (speed does not depend on them). For each B it compiles once, runs ``--iterations``
steady-state iterations and reports ms per iteration, sequences per second at 2000 iterations
per sequence, and the speed-up over B = 1 (ideal: B). Simulate several CPU devices with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` to exercise the sharded path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from lrgen import engine, operators, solver
from lrgen.nets import generators

flags.DEFINE_list("batch_sizes", ["1", "4", "16"], "Batch sizes B.")
flags.DEFINE_list("update", ["latent", "joint"], "Update modes.")
flags.DEFINE_integer("iterations", 30, "Measured iterations per B (after compilation).")
FLAGS = flags.FLAGS


def setting(T: int = 32, S: int = 64):
    """(spec, random weights, generator module) of the original work's gray generator at S×S."""
    spec = generators.GeneratorSpec.default(image_size=S, channels=1)
    return spec, generators.init_generator(spec, jax.random.key(0)), generators.build_generator(spec)


def timer(update: str, B: int, iterations: int, *, T: int = 32, S: int = 64, loop: str = "auto", mesh=None):
    """A compiled, warmed-up batch of B sequences: (run → seconds per iteration, compile s, loop, devices).

    Each call of ``run`` recovers the batch again for ``iterations`` iterations with the same
    executables, so that several contenders can be timed in alternation. ``mesh`` is used only
    when B is a multiple of its size.
    """
    spec, params, model = setting(T, S)
    cfg = engine.RecoverConfig(update=update, iterations=iterations, log_every=iterations, loop=loop)
    rec = solver.Recoverer(model, cfg, T)
    probs = []
    for b in range(B):
        op = operators.make(operators.MeasurementSpec("missing"), jax.random.key(b), T, (S, S, 1))
        x = jax.random.uniform(jax.random.key(100 + b), (T, S, S, 1)) * 2 - 1
        probs.append(engine.Problem(op.A(x), op))
    problem = jax.tree.map(lambda *v: jnp.stack(v), *probs)
    z0 = jnp.stack([engine.init_codes(jax.random.key(b), T, spec.z_dim, "random") for b in range(B)])
    mesh = mesh if mesh is not None and B % mesh.devices.size == 0 else None
    first = rec.run(z0, problem, params, mesh=mesh)  # compile + warm up

    def run() -> float:
        return rec.run(z0, problem, params, mesh=mesh).seconds / iterations

    return run, first.compile_seconds, first.loop, 1 if mesh is None else int(mesh.devices.size)


def throughput(
    update: str, B: int, iterations: int, *, T: int = 32, S: int = 64, loop: str = "auto", mesh=None
) -> dict:
    """Steady-state speed of one batch of B sequences (compiled and warmed up first).

    Returns a dict: ``ms_per_iteration`` (loop wall time / iterations), ``sequences_per_s``
    (at 2000 iterations per sequence), ``compile_s``, the ``loop`` used and the ``devices``.
    """
    run, compile_s, used, devices = timer(update, B, iterations, T=T, S=S, loop=loop, mesh=mesh)
    per_iter = run()
    return {
        "update": update,
        "B": B,
        "ms_per_iteration": per_iter * 1e3,
        "sequences_per_s": B / (per_iter * 2000),
        "compile_s": compile_s,
        "loop": used,
        "devices": devices,
    }


def main(argv):
    del argv
    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("seq",)) if len(devices) > 1 else None
    print(f"backend={jax.default_backend()} devices={len(devices)} ({devices[0].device_kind})")
    print("| update | B | ms / iteration | sequences / s (2000 it.) | speed-up vs B=1 |\n|---|---|---|---|---|")
    for update in FLAGS.update:
        base = None
        for B in map(int, FLAGS.batch_sizes):
            r = throughput(update, B, FLAGS.iterations, mesh=mesh)
            base = base or r["sequences_per_s"]
            print(
                f"| {update} | {B} | {r['ms_per_iteration']:.1f} | {r['sequences_per_s']:.4f} | "
                f"{r['sequences_per_s'] / base:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    app.run(main)
