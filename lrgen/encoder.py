"""Trained encoders E: frames in [0, 1] → latent codes on the unit sphere.

:func:`encode` maps frames to codes on the unit sphere, the latent domain of the generators
trained here (GLO projects its codes onto it; DCGAN draws z uniformly on it) and of the
recovery's own initial codes. Encoders are saved and loaded by :mod:`lrgen.checkpoint`
(``save_encoder``, ``load_encoder``; the directory format is described there).

Example::

    spec, variables = checkpoint.load_encoder("runs/encoder")
    z = encode(spec, variables, frames)      # frames (T, H, W, C) in [0, 1] → z (T, k)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrgen.nets import networks
from lrgen.pixels import to_model


@functools.lru_cache(maxsize=8)
def _encode_fn(spec: networks.EncoderSpec):
    model = spec.build()
    return jax.jit(lambda variables, x: model.apply(variables, to_model(x), train=False))


def encode(spec: networks.EncoderSpec, variables: Any, frames: np.ndarray) -> jax.Array:
    """Codes z = E(2x − 1) of frames x, each of unit norm.

    Args:
      spec: the encoder's architecture.
      variables: its evaluation variables (from :func:`lrgen.checkpoint.load_encoder`).
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
