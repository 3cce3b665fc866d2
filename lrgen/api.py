"""The Python API: what a notebook needs to recover a video, without absl or a workdir.

    frames = lrgen.load_video("builtin:rotating_digit", image_size=32, num_frames=8)
    generator = lrgen.load_generator(image_size=32)          # or lrgen.load_generator("G.npz")
    operator, y = lrgen.measure_frames(frames, "missing", missing_ratio=0.8)
    out = lrgen.recover_video(y, operator, generator, lrgen.RecoverConfig(iterations=100), truth=frames)
    out.frames, out.psnr

Every function draws its randomness exactly as ``experiments.recover`` does from ``--seed`` and
``--z_seed``, so the same seeds give the binary's operator, measurements, codes and result.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import engine, jobs, metrics, operators, pixels, solver
from lrgen.config import RecoverConfig
from lrgen.nets import generators


def load_video(
    source: str, *, image_size: int = 64, num_frames: int | None = None, grayscale: bool | None = True
) -> np.ndarray:
    """Frames (T, S, S, C) in [0, 1] of a folder, video file, .npy/.npz or ``builtin:<name>``.

    ``num_frames``: the first T (None: at most 32; 0: all).
    """
    job = jobs.RecoverJob(video=source, image_size=image_size, num_frames=num_frames, grayscale=grayscale)
    return jobs.load_frames(job)


def load_generator(
    path: str = "", *, image_size: int = 64, channels: int = 1, z_dim: int | None = None, seed: int = 0
) -> tuple[generators.GeneratorSpec, Any]:
    """(architecture, weights) of a generator: an lrgen generator directory, a training workdir,
    the original authors' .npz, or ('' ) a randomly initialised one drawn from ``seed``."""
    if path:
        from lrgen import checkpoint

        return checkpoint.load_generator(path)
    job = jobs.RecoverJob(image_size=image_size, z_dim=z_dim, seed=seed)
    spec, _ = jobs.load_model(job, channels)
    return spec, jobs.init_params(job, spec, None)


def measure_frames(
    frames: np.ndarray, kind: str = "missing", *, seed: int = 0, noise_snr_db: float | None = None, **options
) -> tuple[operators.Operator, jax.Array]:
    """(operator A, measurements y = A(x) + noise) of frames (T, H, W[, C]) in [0, 1].

    ``kind`` and ``options`` are those of :class:`lrgen.operators.MeasurementSpec` (e.g.
    ``missing_ratio=0.8``, ``num_measurements=512``); y is in the model's range (x ∈ [−1, 1]).
    """
    x = _frames(frames)
    T, H, W, C = x.shape
    spec = operators.MeasurementSpec(kind=kind, noise_snr_db=noise_snr_db, **options)
    spec.validate((H, W, C), T)
    op_key, noise_key, _, _ = jax.random.split(jax.random.key(seed), 4)
    operator = operators.make(spec, op_key, T, (H, W, C))
    return operator, operator.measure(jnp.asarray(pixels.to_model(x)), noise_key)


@dataclasses.dataclass
class Recovered:
    """A recovered video.

    Attributes:
      frames: G(z_t) of the best iterate, (T, H, W, C) in [0, 1].
      z: its codes (T, k).
      psnr: PSNR in dB against ``truth`` (None without it).
      result: the full :class:`lrgen.solver.RecoverResult` (batch of one).
    """

    frames: np.ndarray
    z: np.ndarray
    psnr: float | None
    result: solver.RecoverResult


def recover_video(
    y: jax.Array,
    operator: operators.Operator,
    generator: tuple[generators.GeneratorSpec, Any],
    config: RecoverConfig | None = None,
    *,
    truth: np.ndarray | None = None,
    z_init: str = "fixed_z",
    z_seed: int = 100,
    seed: int = 0,
) -> Recovered:
    """Recover one video from its measurements (``experiments.recover`` without the files).

    Args:
      y, operator: from :func:`measure_frames` (or any operator of :mod:`lrgen.operators`).
      generator: (spec, params) from :func:`load_generator`.
      config: the hyperparameters (default: the faithful preset); one candidate only.
      truth: optional frames in [0, 1] for the PSNR.
      z_init, z_seed, seed: the initial codes, as the binary's flags of those names.

    Raises:
      ValueError: a setting is out of range (naming it), or several candidates are asked for.
    """
    spec, params = generator
    cfg = config or RecoverConfig()
    T = y.shape[0]
    cfg.validate(T, spec.z_dim)
    if cfg.candidates > 1:
        raise ValueError("candidate_ranks/_lr_scales/restarts: run several candidates with experiments.recover")
    key = jax.random.key(z_seed) if z_init != "random" else jax.random.split(jax.random.key(seed), 4)[2]
    z0 = engine.init_codes(key, T, spec.z_dim, z_init)
    holdout = None
    if cfg.holdout_fraction > 0:
        holdout = engine.holdout_mask(jobs.holdout_key(seed), operator, y, cfg.holdout_fraction)
    problem = jax.tree.map(lambda a: a[None], engine.Problem(y, operator, holdout))
    x = None if truth is None else jnp.asarray(_frames(truth))[None]
    result = solver.Recoverer(generators.build_generator(spec), cfg, T).run(z0[None], problem, params, truth=x)
    psnr = None if x is None else float(metrics.psnr(jnp.asarray(result.x[0]), x[0]))
    return Recovered(frames=result.x[0], z=result.z[0], psnr=psnr, result=result)


def _frames(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) or (T, H, W, C) → (T, H, W, C) float32."""
    x = np.asarray(frames, np.float32)
    return x[..., None] if x.ndim == 3 else x
