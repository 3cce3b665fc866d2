r"""The whole recovery step under other per-layer formulations, interleaved in one process.

    python -m benchmarks.picks_ab --variant=before=4:dx:strided,4:dW:dilated --rounds=12

Every variant overrides :mod:`lrgen.nets.layers`' picks (which exact formulation computes a
layer's forward ``fwd``, input gradient ``dx`` or weight gradient ``dW``) for the layers whose
input is ``size``×``size`` pixels: ``--variant=name=size:part:how,...`` (the flag once per
variant), ``how`` one of
``layers._FORWARDS``, ``_GRADS_X`` or ``_GRADS_W``. The current picks run as ``now``. Each
variant's step is compiled exactly as :class:`lrgen.solver.Recoverer` compiles it (as
:mod:`benchmarks.roofline` builds it) and all of them are timed in turn, ``--steps`` steps per
round, so that load from anything else falls on every variant alike. Prints min and median ms
per step and the medians' ratio to ``now`` (< 1: the variant is faster). All formulations are
exact (``tests/test_generators.py``), so a variant changes speed and float32 rounding only.
``--configs``, ``--updates``, ``--num_frames``, ``--rounds`` and ``--steps`` are
:mod:`benchmarks.roofline`'s flags.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags

from benchmarks import roofline
from lrgen.nets import generators, layers

flags.DEFINE_multi_string("variant", [], "name=size:part:how[,size:part:how...]; once per variant.")
FLAGS = flags.FLAGS

_PARTS = {"fwd": ("_forward_formulation", layers._FORWARDS), "dx": ("_grad_x_formulation", layers._GRADS_X)}
_PARTS["dW"] = ("_grad_w_formulation", layers._GRADS_W)


def parse(spec: str) -> tuple[str, dict[tuple[int, str], str]]:
    """'name=4:dx:strided,4:dW:dilated' → (name, {(4, 'dx'): 'strided', (4, 'dW'): 'dilated'})."""
    name, _, body = spec.partition("=")
    overrides = {}
    for item in filter(None, body.split(",")):
        size, part, how = (item.split(":") + ["", "", ""])[:3]
        if not size.isdigit():
            raise ValueError(f"--variant={spec}: {item!r}: expected size:part:how, e.g. 4:dW:dilated")
        if part not in _PARTS or how not in _PARTS[part][1]:
            parts = ", ".join(f"{p} ({' '.join(h)})" for p, (_, h) in _PARTS.items())
            raise ValueError(f"--variant={spec}: {item!r}: allowed parts and formulations: {parts}")
        overrides[int(size), part] = how
    return name, overrides


def patched(overrides: dict[tuple[int, str], str]):
    """The pick functions with ``overrides`` on top of the current ones (keyed by input size)."""
    out = {}
    for part, (fn_name, _) in _PARTS.items():
        current = getattr(layers, fn_name)

        def pick(x_shape, c_out, current=current, part=part):
            return overrides.get((int(x_shape[1]), part)) or current(x_shape, c_out)

        out[fn_name] = pick
    return out


def main(argv):
    del argv
    try:
        variants = [("now", {})] + [parse(s) for s in FLAGS.variant]
    except ValueError as e:
        sys.exit(f"error: {e}")
    originals = {fn_name: getattr(layers, fn_name) for fn_name, _ in _PARTS.values()}
    cells = {}
    for cfg in FLAGS.configs:
        spec = generators.GeneratorSpec.default(image_size=64, channels=1 if cfg == "gray" else 3)
        for update in FLAGS.updates:
            for name, overrides in variants:
                for fn_name, fn in patched(overrides).items():
                    setattr(layers, fn_name, fn)
                cells[cfg, update, name] = roofline.step_contender(spec, update, FLAGS.num_frames, 1)[0]
                for fn_name, fn in originals.items():
                    setattr(layers, fn_name, fn)
    for c in cells.values():  # warm up
        c.run(1)
        c.times.clear()
    load0 = os.getloadavg()
    for r in range(FLAGS.rounds):
        for c in cells.values():
            c.run(FLAGS.steps)
        print(f"round {r + 1}/{FLAGS.rounds}, load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\nload before {load0}, after {os.getloadavg()}\n")
    print("| generator | update | variant | min ms | median ms | median / now |\n|---|---|---|---|---|---|")
    for (cfg, update, name), c in cells.items():
        now = np.median(cells[cfg, update, "now"].times)
        t = np.median(c.times)
        print(f"| {cfg} | {update} | {name} | {min(c.times) * 1e3:.1f} | {t * 1e3:.1f} | {t / now:.3f} |")


if __name__ == "__main__":
    app.run(main)
