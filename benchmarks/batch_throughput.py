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

from lrgen import measure, models, recover

flags.DEFINE_list("batch_sizes", ["1", "4", "16"], "Batch sizes B.")
flags.DEFINE_list("update", ["latent", "joint"], "Update modes.")
flags.DEFINE_integer("iterations", 30, "Measured iterations per B (after compilation).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    T, S = 32, 64
    spec = models.GeneratorSpec.default(image_size=S, channels=1)
    params = models.init_generator(spec, jax.random.key(0))
    model = models.build_generator(spec)
    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("seq",)) if len(devices) > 1 else None
    print(f"backend={jax.default_backend()} devices={len(devices)} ({devices[0].device_kind})")
    print("| update | B | ms / iteration | sequences / s (2000 it.) | speed-up vs B=1 |\n|---|---|---|---|---|")
    for update in FLAGS.update:
        base = None
        for B in map(int, FLAGS.batch_sizes):
            cfg = recover.RecoverConfig(update=update, iterations=FLAGS.iterations, log_every=FLAGS.iterations)
            rec = recover.Recoverer(model, cfg, T)
            probs = []
            for b in range(B):
                op = measure.make_operator(measure.MeasurementSpec("missing"), jax.random.key(b), T, (S, S, 1))
                x = jax.random.uniform(jax.random.key(100 + b), (T, S, S, 1)) * 2 - 1
                probs.append(recover.Problem(op.A(x), op))
            problem = jax.tree.map(lambda *v: jnp.stack(v), *probs)
            z0 = jnp.stack([recover.init_codes(jax.random.key(b), T, spec.z_dim, "random") for b in range(B)])
            rec.run(z0, problem, params, mesh=mesh if B % len(devices) == 0 else None)  # compile + warm up
            res = rec.run(z0, problem, params, mesh=mesh if B % len(devices) == 0 else None)
            per_iter = res.seconds / FLAGS.iterations
            seqs = B / (per_iter * 2000)
            base = base or seqs
            print(f"| {update} | {B} | {per_iter * 1e3:.1f} | {seqs:.4f} | {seqs / base:.2f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
