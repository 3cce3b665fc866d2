r"""Convolution formulations and XLA options for the generator's step, side by side.

``--layers``: per layer of the original generator (N = ``--frames`` frames), ms of each exact
formulation of the transposed convolution's forward pass (``layers._FORWARDS``: input-dilated
convolution, sub-pixel 2×2 convolution, GEMM + col2im, phase GEMM), its input gradient
(``layers._GRADS_X``: stride-2 convolution, adjoint of the sub-pixel form, phase GEMM) and its
weight gradient (``layers._GRADS_W``: dilated convolution over the batch, phase GEMM), all
compiled as lrgen compiles them; interleaved, min over rounds. ``lrgen.nets.layers`` picks a
formulation per layer from these numbers.

Default:
XLA:CPU gives convolutions to YNNPACK by default; ``lrgen.engine.compile_fast`` keeps them on
XLA's Eigen kernels. This runs both executables on the same state, interleaved, and prints the
milliseconds per step (min and median over rounds) and the ratio.

    python -m benchmarks.conv_backends --rounds=10

Shapes are those of the original setting (T = 32 frames of 64×64, k = 32, joint update); the
weights are random (the speed does not depend on them), so nothing from ../shared is needed.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags

from lrgen import config, engine, operators, solver
from lrgen.nets import generators, layers

flags.DEFINE_integer("rounds", 10, "Interleaved rounds.")
flags.DEFINE_integer("steps", 10, "Steps per round.")
flags.DEFINE_enum("update", "joint", list(engine.UPDATES), "Update mode.")
flags.DEFINE_bool("layers", False, "Time the formulations of every layer instead of the whole step.")
flags.DEFINE_integer("frames", 32, "N, frames per layer call (--layers).")
flags.DEFINE_integer("channels", 1, "1 (gray generator) or 3 (RGB) (--layers).")
FLAGS = flags.FLAGS


def layer_table():
    n = FLAGS.frames
    spec = generators.GeneratorSpec.default(image_size=64, channels=FLAGS.channels)
    widths = (*spec.features, spec.channels)
    print(
        f"transposed-convolution layers, N={n}, backend={jax.default_backend()}, {jax.devices()[0]}, "
        f"load {os.getloadavg()}"
    )
    cols = [f"fwd {h}" for h in layers._FORWARDS] + [f"dx {h}" for h in layers._GRADS_X]
    cols += [f"dW {h}" for h in layers._GRADS_W]
    print("| layer | " + " | ".join(cols) + " | picks (fwd, dx, dW) |")
    print("|---|" + "---|" * (len(cols) + 1))
    for i in range(1, len(widths)):
        h, c_in, c_out = 4 * 2 ** (i - 1), widths[i - 1], widths[i]
        k1, k2, k3 = jax.random.split(jax.random.key(i), 3)
        x = jax.random.normal(k1, (n, h, h, c_in))
        w = jax.random.normal(k2, (c_in, c_out, 4, 4))
        dy = jax.random.normal(k3, (n, 2 * h, 2 * h, c_out))
        fns = {
            f"fwd {how}": (lambda a, b, how=how: layers._conv_transpose_fwd(a, b, how), x, w)
            for how in layers._FORWARDS
        }
        fns |= {
            f"dx {how}": (lambda a, b, how=how: layers._conv_transpose_grad_x(a, b, how), dy, w)
            for how in layers._GRADS_X
        }
        fns |= {
            f"dW {how}": (lambda a, b, how=how: layers._conv_transpose_grad_w(a, b, how), x, dy)
            for how in layers._GRADS_W
        }
        compiled = {k: (engine.compile_fast(jax.jit(f).lower(*a)), a) for k, (f, *a) in fns.items()}
        times: dict[str, list[float]] = {k: [] for k in compiled}
        for _ in range(FLAGS.rounds):
            for k, (f, a) in compiled.items():
                jax.block_until_ready(f(*a))
                t0 = time.perf_counter()
                for _ in range(FLAGS.steps):
                    out = f(*a)
                jax.block_until_ready(out)
                times[k].append((time.perf_counter() - t0) / FLAGS.steps * 1e3)
        cell = [f"{min(times[k]):.2f}" for k in cols]
        picks = (
            layers._forward_formulation(x.shape, c_out),
            layers._grad_x_formulation(x.shape, c_out),
            layers._grad_w_formulation(x.shape, c_out),
        )
        print(f"| {h}→{2 * h}, {c_in}→{c_out} | " + " | ".join(cell) + f" | {', '.join(picks)} |", flush=True)
    print(f"load after {os.getloadavg()}")


def main(argv):
    del argv
    if FLAGS.layers:
        return layer_table()
    T = 32
    spec = generators.GeneratorSpec.default(image_size=64, channels=1)
    params = generators.init_generator(spec, jax.random.key(0))
    op = operators.make(operators.MeasurementSpec("missing", missing_ratio=0.8), jax.random.key(1), T, (64, 64, 1))
    x = jax.random.uniform(jax.random.key(2), (T, 64, 64, 1)) * 2 - 1
    problem = jax.tree.map(lambda a: a[None], engine.Problem(op.A(x), op))
    rec = solver.Recoverer(generators.build_generator(spec), config.RecoverConfig(update=FLAGS.update), T)
    z0 = engine.init_codes(jax.random.key(3), T, spec.z_dim, "fixed_z")[None]

    state, shared = rec.initial_state(z0, params)
    lowered = jax.jit(engine.single(rec.step), donate_argnums=0).lower(state, problem, shared)
    contenders = {"XLA default": lowered.compile(), "lrgen (compile_fast)": engine.compile_fast(lowered)}
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
