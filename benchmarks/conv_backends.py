r"""The joint step compiled with XLA's default options against lrgen's CPU options, side by side.

XLA:CPU gives convolutions to YNNPACK by default; ``lrgen.recover.compile_fast`` keeps them on
XLA's Eigen kernels. This runs both executables on the same state, interleaved, and prints the
milliseconds per step (min and median over rounds) and the ratio.

    python -m benchmarks.conv_backends --rounds=10

Shapes are those of the original setting (T = 32 frames of 64×64, k = 32, joint update); the
weights are random (the speed does not depend on them), so nothing from ../shared is needed.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags

from lrgen import measure, models, recover

flags.DEFINE_integer("rounds", 10, "Interleaved rounds.")
flags.DEFINE_integer("steps", 10, "Steps per round.")
flags.DEFINE_enum("update", "joint", list(recover.UPDATES), "Update mode.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    T = 32
    spec = models.GeneratorSpec.default(image_size=64, channels=1)
    params = models.init_generator(spec, jax.random.key(0))
    op = measure.make_operator(measure.MeasurementSpec("missing", missing_ratio=0.8), jax.random.key(1), T, (64, 64, 1))
    x = jax.random.uniform(jax.random.key(2), (T, 64, 64, 1)) * 2 - 1
    problem = jax.tree.map(lambda a: a[None], recover.Problem(op.A(x), op))
    rec = recover.Recoverer(models.build_generator(spec), recover.RecoverConfig(update=FLAGS.update), T)
    z0 = recover.init_codes(jax.random.key(3), T, spec.z_dim, "fixed_z")[None]

    state, shared = rec.initial_state(z0, params)
    lowered = jax.jit(rec._batched(rec.step), donate_argnums=0).lower(state, problem, shared)
    contenders = {"XLA default": lowered.compile(), "lrgen (compile_fast)": recover.compile_fast(lowered)}
    states = {name: rec.initial_state(z0, params)[0] for name in contenders}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for name, fn in contenders.items():  # warm up
        states[name], m = fn(states[name], problem, shared)
        jax.block_until_ready(m)
    for _ in range(FLAGS.rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            for _ in range(FLAGS.steps):
                states[name], m = fn(states[name], problem, shared)
            jax.block_until_ready(m)
            times[name].append((time.perf_counter() - t0) / FLAGS.steps)
    base = np.median(times["XLA default"])
    print(f"{FLAGS.update} step, T={T}, 64×64, k={spec.z_dim}, backend={jax.default_backend()}, {jax.devices()[0]}")
    print("| compilation | min ms/step | median ms/step | × default |\n|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {np.min(ts) * 1e3:.1f} | {np.median(ts) * 1e3:.1f} | {np.median(ts) / base:.2f} |")


if __name__ == "__main__":
    app.run(main)
