"""lrgen: low-rank generative video reconstruction in JAX.

A video x_1..x_T is represented by a generator G and one latent code z_t per frame; the T×k
code matrix Z is constrained to rank r and to change smoothly in time (Hyder & Asif, "Generative
Models for Low-Rank Video Representation and Reconstruction", IEEE TSP 2020, arXiv:1902.11132).

The Python API (:mod:`lrgen.api`, loaded on first use), for notebooks::

    import lrgen
    frames = lrgen.load_video("builtin:rotating_digit", image_size=32, num_frames=8)  # (T, H, W, C) in [0, 1]
    generator = lrgen.load_generator(image_size=32)          # or lrgen.load_generator("G.npz")
    operator, y = lrgen.measure_frames(frames, "missing", missing_ratio=0.8)
    out = lrgen.recover_video(y, operator, generator, lrgen.RecoverConfig(iterations=100), truth=frames)

Layers, from the bottom (BUILD_NOTES.md, "Architecture"):

* maths, no I/O: :mod:`lrgen.operators`, :mod:`lrgen.lowrank`, :mod:`lrgen.metrics`,
  :mod:`lrgen.pixels`, :mod:`lrgen.sphere`, :mod:`lrgen.nets` (layers, generators, networks);
* the engine: :mod:`lrgen.config` (settings, presets), :mod:`lrgen.engine` (problem, loss, the
  pure step, batching strategies);
* the driver: :mod:`lrgen.driver` (the host loop of recovery and training), :mod:`lrgen.solver`
  (recovery on it);
* applications: :mod:`lrgen.recovery` (one video = a manifest of one; :mod:`lrgen.jobs`,
  :mod:`lrgen.outputs`), :mod:`lrgen.interpolation` (:mod:`lrgen.latent_paths`,
  :mod:`lrgen.baselines`, :mod:`lrgen.selection`, :mod:`lrgen.observed`),
  :mod:`lrgen.compression` with the pure bitstream :mod:`lrgen.codec`, :mod:`lrgen.train`;
* infrastructure: :mod:`lrgen.checkpoint` (every orbax call), :mod:`lrgen.io`,
  :mod:`lrgen.loading`, :mod:`lrgen.sequences`, :mod:`lrgen.data`, :mod:`lrgen.report`.
"""

import importlib

__version__ = "0.1.0"

_API = {
    "load_video": "lrgen.api",
    "load_generator": "lrgen.api",
    "measure_frames": "lrgen.api",
    "recover_video": "lrgen.api",
    "Recovered": "lrgen.api",
    "RecoverConfig": "lrgen.config",
    "resolve": "lrgen.config",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    # Loaded on first use: `import lrgen.pixels` stays as light as that module.
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'lrgen' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
