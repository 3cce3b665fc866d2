r"""The recovery step against the machine's own fp32 matmul rate, in one run.

    python -m benchmarks.roofline --rounds=5

Prints, all measured in the same process and interleaved (so that load from anything else on the
machine falls on every figure alike):

* the machine's fp32 matmul rate: ``jax.jit(a @ b)`` on ``--matmul_size``² float32 matrices,
  best of ``--rounds`` × ``--matmul_repeats`` calls, 2n³ FLOP each;
* per step (latent, generator, joint; gray 64×64 k = 32 and RGB 64×64 k = 256, the original
  widths; T = ``--num_frames``; B = 1 and B = ``--batch``): the FLOPs counted analytically (the
  transposed convolutions' multiply–adds, see :func:`step_flops`) and by XLA's cost analysis,
  the step time (min and median over rounds of the compiled step exactly as
  :class:`lrgen.solver.Recoverer` runs it) and the fraction of the matmul rate it reaches
  (analytic FLOPs / min time / matmul rate);
* per layer of the gray generator (N = T frames): forward, input gradient and weight gradient
  as :mod:`lrgen.nets.layers` computes them, the three in one program (as a step runs them),
  and for reference a plain GEMM of the layer's size with its operands in place, contracted as
  the forward (NN) and as the weight gradient (over the M = N·h·w rows, with the rows leading
  or with one operand stored transposed); time and fraction of the matmul rate. Last, the
  layers' one-program times summed, and the same arithmetic at the plain GEMMs' rates, against
  the time a whole joint step may take at 0.75 of the matmul rate.

Analytic count: a 4×4 transposed convolution from (H, W, C_in) to (2H, 2W, C_out) multiplies
every input pixel with every tap, 2·H·W·C_in·C_out·16 FLOP per frame (as PyTorch counts it; the
taps that fall outside the output at the border are included); its input gradient and weight
gradient cost the same. The code layer (k → 4×4×C_1) costs 2·k·16·C_1. A latent step needs the
forward and input gradients, a generator step the forward, the weight gradients and the input
gradients of all layers above the first, a joint step all three. Elementwise work, the loss,
Adam and the projection are not counted (they are < 1 % of the FLOPs).
Batches run as :class:`lrgen.solver.Recoverer` runs them (``single``, ``unrolled``, ``vmapped``,
``mapped`` — :data:`lrgen.engine.BATCHINGS` — or ``dispatched``: the one-sequence step called per
sequence from Python, whose XLA count is B times the one-sequence program's); XLA counts the
whole program otherwise.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from lrgen import config, driver, engine, operators, solver
from lrgen.nets import generators, layers

flags.DEFINE_integer("rounds", 5, "Interleaved rounds; min and median over them.")
flags.DEFINE_integer("steps", 3, "Steps per round and contender.")
flags.DEFINE_integer("matmul_size", 2048, "n of the n×n fp32 matmul that sets the machine's rate.")
flags.DEFINE_integer("matmul_repeats", 4, "matmul calls per round (best of rounds × repeats).")
flags.DEFINE_integer("num_frames", 32, "T.")
flags.DEFINE_integer("batch", 4, "B of the batched rows.")
flags.DEFINE_list("configs", ["gray", "rgb"], "gray (64×64×1, k = 32) and/or rgb (64×64×3, k = 256).")
flags.DEFINE_list("updates", list(engine.UPDATES), "Update modes.")
flags.DEFINE_bool("layers", True, "Also time every layer of the gray generator.")
FLAGS = flags.FLAGS


def layer_flops(spec: generators.GeneratorSpec) -> list[tuple[str, float]]:
    """(name, forward FLOPs per frame) of every layer; input and weight gradients cost the same."""
    widths = (*spec.features, spec.channels)
    out = [(f"code {spec.z_dim}→4×4×{widths[0]}", 2.0 * spec.z_dim * 16 * widths[0])]
    for i in range(1, len(widths)):
        h = 4 * 2 ** (i - 1)
        out.append((f"{h}→{2 * h}, {widths[i - 1]}→{widths[i]}", 2.0 * h * h * widths[i - 1] * widths[i] * 16))
    return out


def step_flops(spec: generators.GeneratorSpec, update: str, frames: int) -> float:
    """Analytic FLOPs of one step over ``frames`` frames (see the module docstring)."""
    f = [v for _, v in layer_flops(spec)]
    fwd, dx, dw = sum(f), sum(f), sum(f)
    if update == "latent":
        return frames * (fwd + dx)
    if update == "generator":
        return frames * (fwd + dw + dx - f[0])
    return frames * (fwd + dx + dw)


def xla_flops(compiled) -> float:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("flops", float("nan"))) if ca else float("nan")


class Timed:
    """A compiled function and its arguments; ``run`` times ``steps`` calls (state threaded through)."""

    def __init__(self, fn, args, threads_state: bool):
        self.fn, self.args, self.threads_state = fn, list(args), threads_state
        self.times: list[float] = []

    def run(self, steps: int) -> None:
        out = None
        t0 = time.perf_counter()
        for _ in range(steps):
            out = self.fn(*self.args)
            if self.threads_state:
                self.args[0] = out[0]
        jax.block_until_ready(out)
        self.times.append((time.perf_counter() - t0) / steps)


def step_contender(spec: generators.GeneratorSpec, update: str, T: int, B: int):
    S, C = spec.image_size, spec.channels
    params = generators.init_generator(spec, jax.random.key(0))
    rec = solver.Recoverer(generators.build_generator(spec), config.RecoverConfig(update=update), T)
    probs = []
    for b in range(B):
        op = operators.make(operators.MeasurementSpec("missing"), jax.random.key(b), T, (S, S, C))
        x = jax.random.uniform(jax.random.key(100 + b), (T, S, S, C)) * 2 - 1
        probs.append(engine.Problem(op.A(x), op))
    problem = jax.tree.map(lambda *a: jnp.stack(a), *probs)
    z0 = jnp.stack([engine.init_codes(jax.random.key(b), T, spec.z_dim, "random") for b in range(B)])
    state, shared = rec.initial_state(z0, params)
    how = engine.choose_batching(rec.config, B)
    t0 = time.perf_counter()
    step, _, _ = solver._compile(rec, state, problem, shared, None, how, None)
    compile_s = time.perf_counter() - t0
    if how == "dispatched":  # the one-sequence step called per sequence, as driver.dispatched_chunks does
        return Timed(Dispatched(step, state, problem, shared), (), False), B * xla_flops(step), compile_s, how
    return Timed(step, (state, problem, shared), True), xla_flops(step), compile_s, how


class Dispatched:
    """One batch step of the ``dispatched`` strategy, as :func:`lrgen.driver.dispatched_chunks` runs it
    (without its per-chunk split and restacking of the batch state)."""

    def __init__(self, step, state, problem, shared):
        B = jax.tree.leaves(problem)[0].shape[0]
        self.step, self.shared = step, shared
        self.states = [engine.index(state, i) for i in range(B)]
        self.problems = [engine.index(problem, i) for i in range(B)]

    def __call__(self):
        self.states, metrics = driver.dispatch(self.step, self.states, self.problems, self.shared)
        return metrics


def layer_contenders(spec: generators.GeneratorSpec, n: int):
    """Per stride-2 layer: forward, input gradient, weight gradient as lrgen computes them."""
    widths = (*spec.features, spec.channels)
    out = []
    for i in range(1, len(widths)):
        h, c_in, c_out = 4 * 2 ** (i - 1), widths[i - 1], widths[i]
        k1, k2, k3 = jax.random.split(jax.random.key(i), 3)
        x = jax.random.normal(k1, (n, h, h, c_in))
        w = jax.random.normal(k2, (c_in, c_out, 4, 4)) * 0.05
        dy = jax.random.normal(k3, (n, 2 * h, 2 * h, c_out))
        flops = 2.0 * n * h * h * c_in * c_out * 16
        how = layers._forward_formulation(x.shape, c_out)
        # The layer's arithmetic as one plain matrix product with its operands already in place
        # (M = N·h·w rows, 4·C_in × 4·C_out: the sub-pixel GEMM without padding), once as the
        # forward and input gradient contract (NN) and once as the weight gradient does (over M).
        m = n * h * h
        a = jax.random.normal(k1, (m, 4 * c_in))
        b = jax.random.normal(k2, (4 * c_in, 4 * c_out))
        d = jax.random.normal(k3, (m, 4 * c_out))
        for part, fn, args, fl in (
            (f"forward ({how})", layers._conv_transpose_fwd, (x, w), flops),
            ("input gradient", layers._conv_transpose_grad_x, (dy, w), flops),
            ("weight gradient", layers._conv_transpose_grad_w, (x, dy), flops),
            (ALL_THREE, _layer_forward_and_gradients, (x, w, dy), 3 * flops),
            (f"{PLAIN_FWD} {m}×{4 * c_in} · {4 * c_in}×{4 * c_out}", jnp.matmul, (a, b), flops),
            (f"{PLAIN_DW} ({m}×{4 * c_in})ᵀ · {m}×{4 * c_out}", _contract_rows, (a, d), flops),
            (f"{PLAIN_DW} {4 * c_in}×{m} · {m}×{4 * c_out}", jnp.matmul, (a.T.copy(), d), flops),
        ):
            compiled = engine.compile_fast(jax.jit(fn).lower(*args))
            out.append((f"{h}→{2 * h}, {c_in}→{c_out}", part, fl, Timed(compiled, args, False)))
    return out


ALL_THREE = "forward + both gradients, one program"
PLAIN_FWD = "plain GEMM NN:"
PLAIN_DW = "plain GEMM over M:"


def _layer_forward_and_gradients(x, w, dy):
    """The three convolutions of a layer as a training step runs them (the layer's own VJP): one program."""
    y, vjp = jax.vjp(layers.conv_transpose_s2, x, w)
    return y, *vjp(dy)


def _contract_rows(a, d):
    return jax.lax.dot_general(a, d, (((0,), (0,)), ((), ())))


def main(argv):
    del argv
    T, n = FLAGS.num_frames, FLAGS.matmul_size
    load0 = os.getloadavg()
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(lambda u, v: u @ v)
    jax.block_until_ready(matmul(a, b))
    mm_times: list[float] = []

    specs = {
        "gray": generators.GeneratorSpec.default(image_size=64, channels=1),
        "rgb": generators.GeneratorSpec.default(image_size=64, channels=3),
    }
    steps = {}
    for cfg in FLAGS.configs:
        for update in FLAGS.updates:
            for B in (1, FLAGS.batch):
                steps[(cfg, update, B)] = step_contender(specs[cfg], update, T, B)
    layers = layer_contenders(specs["gray"], T) if FLAGS.layers else []
    for c in [s[0] for s in steps.values()] + [lc[3] for lc in layers]:  # warm up
        c.run(1)
        c.times.clear()

    for r in range(FLAGS.rounds):
        for _ in range(FLAGS.matmul_repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(matmul(a, b))
            mm_times.append(time.perf_counter() - t0)
        for c in [s[0] for s in steps.values()] + [lc[3] for lc in layers]:
            c.run(FLAGS.steps)
        print(f"round {r + 1}/{FLAGS.rounds}, load {os.getloadavg()[0]:.1f}", flush=True)

    rate = 2.0 * n**3 / min(mm_times)
    print(
        f"\nbackend={jax.default_backend()} ({jax.devices()[0].device_kind}), load before {load0}, "
        f"after {os.getloadavg()}"
    )
    print(
        f"fp32 matmul {n}²: best {min(mm_times) * 1e3:.1f} ms = **{rate / 1e9:.0f} GFLOP/s** "
        f"(median {2.0 * n**3 / np.median(mm_times) / 1e9:.0f})\n"
    )
    print(
        "| generator | update | B | GFLOP analytic | GFLOP XLA | min ms | median ms | GFLOP/s | "
        "fraction of matmul rate | batching | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (cfg, update, B), (c, xf, cs, how) in steps.items():
        fl = step_flops(specs[cfg], update, B * T)
        xla = xf
        t = min(c.times)
        print(
            f"| {cfg} 64×64 | {update} | {B} | {fl / 1e9:.2f} | {xla / 1e9:.2f} | {t * 1e3:.1f} | "
            f"{np.median(c.times) * 1e3:.1f} | {fl / t / 1e9:.0f} | **{fl / t / rate:.2f}** | {how} | {cs:.1f} |"
        )
    if layers:
        print(f"\nPer layer, gray generator, N = {T} frames:\n")
        print(
            "| layer | part | GFLOP | min ms | median ms | GFLOP/s | fraction of matmul rate |\n"
            "|---|---|---|---|---|---|---|"
        )
        for name, part, fl, c in layers:
            t = min(c.times)
            print(
                f"| {name} | {part} | {fl / 1e9:.3f} | {t * 1e3:.2f} | {np.median(c.times) * 1e3:.2f} | "
                f"{fl / t / 1e9:.0f} | {fl / t / rate:.2f} |"
            )
        together = sum(min(c.times) for _, part, _, c in layers if part == ALL_THREE)
        fl = sum(f for _, part, f, _ in layers if part == ALL_THREE)
        budget = step_flops(specs["gray"], "joint", T) / (0.75 * rate)
        plain = 0.0  # per layer: forward and input gradient at the NN rate, weight gradient at the better over-M rate
        for name in dict.fromkeys(lname for lname, *_ in layers):
            t = {part: min(c.times) for lname, part, _, c in layers if lname == name}
            plain += 2 * next(v for k, v in t.items() if k.startswith(PLAIN_FWD))
            plain += min(v for k, v in t.items() if k.startswith(PLAIN_DW))
        print(
            f"\nThe stride-2 layers' convolutions alone (each layer's three in one program, summed): "
            f"{together * 1e3:.1f} ms for {fl / 1e9:.2f} GFLOP = {fl / together / rate:.2f} of the matmul rate; "
            f"the same arithmetic as plain GEMMs with every operand already in place: {plain * 1e3:.1f} ms "
            f"({fl / plain / rate:.2f}); a whole gray joint step (T = {T}, B = 1) at 0.75 of the matmul rate "
            f"would take {budget * 1e3:.1f} ms."
        )


if __name__ == "__main__":
    app.run(main)
