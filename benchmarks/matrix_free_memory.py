r"""Memory of the dense Gaussian operator against the matrix-free one, for a long colour video.

    python -m benchmarks.matrix_free_memory --num_frames=256 --num_measurements=2048 --image_size=64

T×m×n float32 numbers for the stored operator (T = 256, m = 2048, n = 64·64·3: 25.8 GB, more
than this machine's memory) against the matrix-free operator, which regenerates A_t in blocks of
``--chunk`` rows inside the forward and the adjoint. Reports XLA's memory analysis of the
compiled forward, adjoint and data-term gradient (temporaries) and the process's peak resident
memory after running them once, with the time each took.
"""

from __future__ import annotations

import resource
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from lrgen import operators

flags.DEFINE_integer("num_frames", 256, "T.")
flags.DEFINE_integer("num_measurements", 2048, "m.")
flags.DEFINE_integer("image_size", 64, "Frames are image_size² × 3.")
flags.DEFINE_integer("chunk", 256, "Rows regenerated at a time.")
flags.DEFINE_bool("execute", True, "Also run each computation once and report peak resident memory.")
FLAGS = flags.FLAGS


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv):
    del argv
    T, m, S = FLAGS.num_frames, FLAGS.num_measurements, FLAGS.image_size
    shape = (S, S, 3)
    n = S * S * 3
    spec = operators.MeasurementSpec("gaussian", num_measurements=m, matrix_free=True, matrix_free_chunk=FLAGS.chunk)
    op = operators.make(spec, jax.random.key(0), T, shape)
    x = jax.random.uniform(jax.random.key(1), (T, *shape)) * 2 - 1
    y = jnp.zeros((T, m))
    dense_gb = T * m * n * 4 / 1e9
    print(
        f"T={T} m={m} n={n}: a stored operator holds {dense_gb:.1f} GB of float32; chunk={FLAGS.chunk} rows "
        f"({FLAGS.chunk * n * 4 / 1e6:.1f} MB per block)"
    )
    base = _peak_rss_mb()
    fns = {
        "forward A x": (lambda o, x: o.A(x), (op, x)),
        "adjoint Aᵀ y": (lambda o, y: o.A_adjoint(y), (op, y)),
        "∇ₓ ½‖Ax − y‖²": (jax.grad(lambda x, o: 0.5 * jnp.sum((o.A(x) - y) ** 2)), (x, op)),
    }
    compiled = {name: jax.jit(fn).lower(*args).compile() for name, (fn, args) in fns.items()}
    print("| computation | XLA arguments (MB) | XLA outputs (MB) | XLA temporaries (MB) |\n|---|---|---|---|")
    for name, c in compiled.items():
        mem = c.memory_analysis()
        mb = lambda field: getattr(mem, field, float("nan")) / 1e6  # noqa: E731
        print(
            f"| {name} | {mb('argument_size_in_bytes'):.1f} | {mb('output_size_in_bytes'):.1f} | "
            f"{mb('temp_size_in_bytes'):.1f} |",
            flush=True,
        )
    if not FLAGS.execute:
        return
    print("\n| computation | peak RSS of the process after it (MB) | seconds |\n|---|---|---|")
    for name, c in compiled.items():
        t0 = time.perf_counter()
        jax.block_until_ready(c(*fns[name][1]))
        print(f"| {name} | {_peak_rss_mb():.0f} | {time.perf_counter() - t0:.1f} |", flush=True)
    print(f"process baseline before the runs: {base:.0f} MB")


if __name__ == "__main__":
    app.run(main)
