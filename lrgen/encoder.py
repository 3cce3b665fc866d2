"""Trained encoders E: frames → latent codes, saved and loaded with their architecture.

An encoder directory written by :func:`save_encoder` holds::

    encoder.json   {"format": "lrgen-encoder", "version": 1, "spec": {...}, "generator_spec": {...}, ...}
    tree/          orbax tree of the evaluation variables {params, batch_stats}

:func:`load_encoder` also accepts an encoder training workdir (whose ``encoder/`` holds the
export). :func:`encode` maps frames in [0, 1] to codes on the unit sphere, the latent domain of
the generators trained here (GLO projects its codes onto it; DCGAN draws z uniformly on it) and
of the recovery's own initial codes.

Example::

    spec, variables = load_encoder("runs/encoder")
    z = encode(spec, variables, frames)      # frames (T, H, W, C) in [0, 1] → z (T, k)
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen import checkpoint, dcgan, models

FORMAT = "lrgen-encoder"
VERSION = 1
META = "encoder.json"


def save_encoder(
    directory: str | os.PathLike,
    spec: dcgan.EncoderSpec,
    variables: Any,
    *,
    generator_spec: models.GeneratorSpec,
    **extra,
) -> str:
    """Write the encoder's evaluation variables and architecture to ``directory`` atomically.

    Args:
      directory: destination; replaced if it already holds an encoder.
      spec: the encoder's architecture.
      variables: ``{"params", "batch_stats"}`` of :class:`lrgen.dcgan.Encoder`.
      generator_spec: the generator it encodes for (its k and frame size must match).
      **extra: JSON-serialisable provenance.
    """
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "spec": spec.to_dict(),
        "generator_spec": generator_spec.to_dict(),
        **extra,
    }
    return checkpoint.save_tree_dir(
        directory, META, meta, {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    )


def load_encoder(path: str | os.PathLike) -> tuple[dcgan.EncoderSpec, dict]:
    """(spec, variables) from an encoder directory or an encoder training workdir.

    Raises:
      ValueError: naming ``--encoder`` when the path is missing, not an encoder, or its weights
        do not match the architecture it declares.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise ValueError(f"--encoder={path}: no such directory (expected an encoder directory or training workdir)")
    kind = "an lrgen encoder or encoder training workdir"
    path, meta = checkpoint.open_tree_dir(path, META, FORMAT, "--encoder", subdir="encoder", kind=kind, version=VERSION)
    try:
        spec = dcgan.EncoderSpec.from_dict(meta["spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"--encoder={path}: malformed architecture in {META} ({e})") from None
    abstract = jax.eval_shape(lambda: spec.init(jax.random.key(0)))
    return spec, checkpoint.load_tree(path, abstract, "--encoder")


def generator_spec_of(path: str | os.PathLike) -> models.GeneratorSpec | None:
    """The generator architecture an encoder directory (or workdir) was trained for, if recorded."""
    kind = "an lrgen encoder or encoder training workdir"
    _, meta = checkpoint.open_tree_dir(path, META, FORMAT, "--encoder", subdir="encoder", kind=kind)
    return models.GeneratorSpec.from_dict(meta["generator_spec"]) if "generator_spec" in meta else None


@functools.lru_cache(maxsize=8)
def _encode_fn(spec: dcgan.EncoderSpec):
    model = spec.build()
    return jax.jit(lambda variables, x: model.apply(variables, 2.0 * x - 1.0, train=False))


def encode(spec: dcgan.EncoderSpec, variables: Any, frames: np.ndarray) -> jax.Array:
    """Codes z = E(2x − 1) of frames x, each of unit norm.

    Args:
      spec: the encoder's architecture.
      variables: its evaluation variables (from :func:`load_encoder`).
      frames: (T, H, W, C) in [0, 1] with H = W = ``spec.image_size``, C = ``spec.channels``.

    Returns:
      z: (T, k) float32.

    Raises:
      ValueError: the frames have another shape.
    """
    frames = np.asarray(frames)
    want = (spec.image_size, spec.image_size, spec.channels)
    if frames.ndim != 4 or frames.shape[1:] != want:
        raise ValueError(
            f"encode: frames have shape {frames.shape}; the encoder takes (T, {', '.join(map(str, want))})"
        )
    return _encode_fn(spec)(variables, jnp.asarray(frames, jnp.float32))
