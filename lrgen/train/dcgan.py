"""DCGAN training (Radford et al., ICLR 2016) with the non-saturating loss (Goodfellow et al. 2014).

For a discriminator D (logit) and z uniform on the unit sphere S^{k−1} (the latent domain of GLO
codes and of the recovery's initial codes; :func:`lrgen.sphere.sample`):

    L_D = E_x [(1 − s) softplus(−D(x)) + s softplus(D(x))] + E_z softplus(D(G(z))),
    L_G = E_z softplus(−D(G(z))),

s the one-sided label smoothing (Salimans et al. 2016; 0 by default). Per training step: one
Adam step on D (on a batch of real images and one of G(z)), then ``g_steps`` Adam steps on G, each
with a fresh z. With instance noise σ₀ (Sønderby et al. 2017) D sees real and generated images
plus N(0, σ²) noise, σ = σ₀ · max(0, 1 − step/num_steps).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lrgen import checkpoint, data, sphere
from lrgen.nets import generators, networks
from lrgen.pixels import to_unit
from lrgen.train import workdir as records
from lrgen.train.config import GeneratorTrainConfig
from lrgen.train.loop import Position, Task
from lrgen.train.trainable import TrainGenerator


class DCGANState(struct.PyTreeNode):
    """Everything a DCGAN run carries from step to step (and checkpoints).

    Attributes:
      step: () int32, steps taken.
      g, d: the generator's and the discriminator's variables ``{params, batch_stats}``.
      g_opt, d_opt: their Adam states.
      data: the data order's position.
    """

    step: jax.Array
    g: dict
    g_opt: optax.OptState
    d: dict
    d_opt: optax.OptState
    data: Position


class DCGAN:
    """DCGAN on uint8 images (S, S, C): a pure ``init``/``step`` and the run's records.

    Args:
      cfg: the run's settings; spec: the generator's architecture; batches: the data order;
      workdir: where samples, the generator and the discriminator go.
    """

    def __init__(self, cfg: GeneratorTrainConfig, spec: generators.GeneratorSpec, batches, workdir: str):
        self.cfg, self.spec, self.workdir = cfg, spec, workdir
        self.g = TrainGenerator(spec)
        self.d_features = generators.widths(cfg.data.image_size, cfg.width, up=False)
        self.disc = networks.Discriminator(self.d_features)
        self.g_opt, self.d_opt = optax.adam(*cfg.adam), optax.adam(*cfg.adam)
        self.steps_per_epoch = batches.steps_per_epoch
        self.key = jax.random.key(cfg.loop.seed)
        self.fixed_z = sphere.sample(jax.random.key(cfg.loop.seed + 1), (20, spec.z_dim))

    def task(self) -> Task:
        return Task("dcgan", self.init, self.step, self.export, self.samples)

    def init(self) -> DCGANState:
        kg, kd = jax.random.split(self.key)
        size, channels = self.cfg.data.image_size, self.spec.channels
        gv = self.g.init(kg)
        dv = dict(self.disc.init(kd, jnp.zeros((1, size, size, channels)), train=False))
        step = jnp.zeros((), jnp.int32)
        return DCGANState(
            step=step,
            g=gv,
            g_opt=self.g_opt.init(gv["params"]),
            d=dv,
            d_opt=self.d_opt.init(dv["params"]),
            data=Position.at(step, self.steps_per_epoch),
        )

    def _d_apply(self, dv: dict, x: jax.Array) -> tuple[jax.Array, dict]:
        """(logits, variables with D's batch statistics updated)."""
        (logit, _), upd = self.disc.apply(dv, x, train=True, mutable=["batch_stats"])
        return logit, {"params": dv["params"], "batch_stats": upd["batch_stats"]}

    def _z(self, key: jax.Array) -> jax.Array:
        return sphere.sample(key, (self.cfg.loop.batch_size, self.spec.z_dim))

    def step(self, state: DCGANState, idx: jax.Array, images: jax.Array) -> tuple[DCGANState, dict]:
        """One D step and ``g_steps`` G steps on the batch ``images`` (B, S, S, C) uint8."""
        del idx
        kz1, kz2, kn = jax.random.split(jax.random.fold_in(self.key, state.step), 3)
        # Instance noise: D sees real and generated images through the same Gaussian blur of the
        # pixel values, σ annealed to 0, so that it cannot win on details the generator cannot
        # yet produce (exact −1 backgrounds).
        sigma = self.cfg.instance_noise * jnp.maximum(0.0, 1.0 - state.step / self.cfg.loop.num_steps)
        noisy = lambda img, j: img + sigma * jax.random.normal(jax.random.fold_in(kn, j), img.shape)  # noqa: E731
        x_fake, _ = self.g.apply_train(state.g, self._z(kz1))
        x_real, x_fake = noisy(data.to_float(images), 0), noisy(jax.lax.stop_gradient(x_fake), 1)
        d, d_opt, d_metrics = self._d_step(state, x_real, x_fake)
        g, g_opt = state.g, state.g_opt
        for j in range(self.cfg.g_steps):  # carpedm20/DCGAN-tensorflow: 2, so that L_D does not reach 0
            g, g_opt, g_loss = self._g_step(g, g_opt, d, jax.random.fold_in(kz2, j), lambda img, j=j: noisy(img, 2 + j))
        s = state.step + 1
        new = DCGANState(step=s, g=g, g_opt=g_opt, d=d, d_opt=d_opt, data=Position.at(s, self.steps_per_epoch))
        return new, {**d_metrics, "g_loss": g_loss}

    def _d_step(self, state: DCGANState, x_real: jax.Array, x_fake: jax.Array):
        """One Adam step of D on L_D; its batch statistics see the real batch, then the fake one."""

        def d_loss_fn(params):
            real, dv = self._d_apply({**state.d, "params": params}, x_real)
            fake, dv = self._d_apply(dv, x_fake)
            s = self.cfg.label_smoothing
            loss = jnp.mean((1 - s) * jax.nn.softplus(-real) + s * jax.nn.softplus(real)) + jnp.mean(
                jax.nn.softplus(fake)
            )
            return loss, (dv, jnp.mean(jax.nn.sigmoid(real)), jnp.mean(jax.nn.sigmoid(fake)))

        (d_loss, (dv, d_real, d_fake)), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d["params"])
        updates, d_opt = self.d_opt.update(grads, state.d_opt, state.d["params"])
        dv = {**dv, "params": optax.apply_updates(state.d["params"], updates)}
        return dv, d_opt, {"d_loss": d_loss, "d_real": d_real, "d_fake": d_fake}

    def _g_step(self, gv: dict, g_opt, dv: dict, key: jax.Array, noisy):
        """One Adam step of G on L_G with a fresh z; D's statistics are updated on its own step only."""

        def g_loss_fn(params):
            x_g, new_gv = self.g.apply_train({**gv, "params": params}, self._z(key))
            logit, _ = self._d_apply(dv, noisy(x_g))
            return jnp.mean(jax.nn.softplus(-logit)), new_gv

        (g_loss, new_gv), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(gv["params"])
        updates, g_opt = self.g_opt.update(grads, g_opt, gv["params"])
        return {**new_gv, "params": optax.apply_updates(gv["params"], updates)}, g_opt, g_loss

    def samples(self, state: DCGANState, s: int) -> None:
        """Two rows of G at 20 fixed points of the sphere."""
        x = to_unit(np.asarray(self.g.render(state.g, self.fixed_z)))
        records.save_samples(self.workdir, s, [x[:10], x[10:]])

    def export(self, state: DCGANState, s: int) -> None:
        path = os.path.join(self.workdir, "generator")
        checkpoint.save_generator(path, self.spec, self.g.export(state.g), **records.provenance(self.cfg, s))
        size, channels = self.cfg.data.image_size, self.spec.channels
        path = os.path.join(self.workdir, "discriminator")
        checkpoint.save_discriminator(path, self.d_features, size, channels, state.d, step=s)
