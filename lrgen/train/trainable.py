"""The generator in training form, for GLO and DCGAN: initialisation, batch statistics, export.

``gmlr`` generators have parameters only; ``dcgan_bn`` ones carry batch statistics in training
and are exported with batch norm folded into per-channel affine maps
(:func:`lrgen.nets.generators.fold_generator`), the form recovery loads.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from lrgen.nets import generators


def he_scaled(params: dict) -> dict:
    """gmlr weights rescaled from PyTorch 0.4's rule to variance-preserving (He et al. 2015).

    PyTorch 0.4 draws U(±1/√(16·C_in)), standard deviation 1/√(48·C_in); each output of the
    first layer sums C_in products and each output of a stride-2 layer 4·C_in, so the signal
    shrinks ~5× per layer and G(z) starts as a flat grey whatever z is. Trained from there, the
    bias-free network first learns the all-background image and its ReLUs die (measured: GLO
    stuck at the black image for 1,000+ steps). Here each kernel is scaled to standard deviation
    √(2/fan_in) (√(1/fan_in) for the tanh layer), fan_in = C_in (first) or 4·C_in (others).
    """
    last = len(params) - 1
    out = {}
    for name, layer in params.items():
        i, w = int(name.rsplit("_", 1)[1]), layer["kernel"]
        fan_in = w.shape[0] * (1 if i == 0 else 4)
        gain = 1.0 if i == last else 2.0
        out[name] = {"kernel": w * math.sqrt(gain / fan_in) * math.sqrt(48.0 * w.shape[0])}
    return out


class TrainGenerator:
    """The generator in training form: gmlr (params only) or dcgan_bn (params + batch stats).

    Variables are ``{"params"}`` (gmlr) or ``{"params", "batch_stats"}`` (dcgan_bn, batch norm
    unfolded); z (B, k) → images (B, S, S, C) in [−1, 1].
    """

    def __init__(self, spec: generators.GeneratorSpec):
        self.spec = spec
        self.bn = spec.arch == "dcgan_bn"
        if self.bn:
            self.model = generators.DCGANGenerator(tuple(spec.features), spec.channels, folded=False)
        else:
            self.model = generators.build_generator(spec)
        self.render = jax.jit(self.apply_eval)  # (variables, z) → images, for samples and evaluation

    def init(self, key: jax.Array) -> dict:
        if self.bn:
            return dict(self.model.init(key, jnp.zeros((1, self.spec.z_dim)), train=False))
        return {"params": he_scaled(generators.init_generator(self.spec, key))}

    def apply_train(self, variables: dict, z: jax.Array) -> tuple[jax.Array, dict]:
        """(images, variables with updated batch statistics)."""
        if not self.bn:
            return self.model.apply(variables, z), variables
        x, upd = self.model.apply(variables, z, train=True, mutable=["batch_stats"])
        return x, {"params": variables["params"], "batch_stats": upd["batch_stats"]}

    def apply_eval(self, variables: dict, z: jax.Array) -> jax.Array:
        if not self.bn:
            return self.model.apply(variables, z)
        return self.model.apply(variables, z, train=False)

    def export(self, variables: dict) -> Any:
        """Parameters of ``generators.build_generator(spec)``: batch norm folded for dcgan_bn."""
        return generators.fold_generator(variables) if self.bn else variables["params"]
