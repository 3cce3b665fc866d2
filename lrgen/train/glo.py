"""GLO: a generator learned jointly with one code per training image (Bojanowski et al., ICML 2018).

Each training image x_i has its own code z_i ∈ S^{k−1} (the unit sphere):

    min_{θ, z_1..z_N}  (1/N) Σ_i ℓ(G_θ(z_i), x_i)   subject to ‖z_i‖ = 1,

ℓ from :func:`lrgen.train.losses.per_image_loss`. Per step, on a batch I of B images:

    θ ← Adam(θ, (1/B) Σ_{i∈I} ∇_θ ℓ_i)
    z_i ← normalize(z_i + LazyAdam_i(∇_{z_i} ℓ_i)),  i ∈ I     (lrgen.train.lazy_adam)

so each code follows the gradient of its own image's loss, and is projected back onto the sphere
(:func:`lrgen.sphere.normalize`). Codes start from the PCA of the training images, normalised.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lrgen import checkpoint, data, sphere
from lrgen.nets import generators
from lrgen.pixels import to_unit
from lrgen.train import losses
from lrgen.train import workdir as records
from lrgen.train.config import GeneratorTrainConfig
from lrgen.train.lazy_adam import LazyAdamState, lazy_adam
from lrgen.train.loop import Position, Task
from lrgen.train.trainable import TrainGenerator


class GLOState(struct.PyTreeNode):
    """Everything a GLO run carries from step to step (and checkpoints).

    Attributes:
      step: () int32, steps taken.
      g: the generator's variables ``{params[, batch_stats]}``.
      g_opt: Adam state of θ.
      codes: (N, k) the codes z_i, each of unit norm.
      codes_opt: lazy Adam state of the codes.
      data: the data order's position.
    """

    step: jax.Array
    g: dict
    g_opt: optax.OptState
    codes: jax.Array
    codes_opt: LazyAdamState
    data: Position


def pca_codes(images: np.ndarray, k: int) -> np.ndarray:
    """Top-k principal-component coordinates of the images, each row normalised (GLO's init)."""
    x = data.to_float(images).reshape(len(images), -1).astype(np.float64)
    x -= x.mean(0)
    # Randomised SVD (Halko et al. 2011; k + 10 columns, 3 power iterations): the top-k
    # subspace without the full SVD of an N × HWC matrix, which takes minutes on a laptop.
    rng = np.random.Generator(np.random.PCG64(0))
    y = x @ rng.standard_normal((x.shape[1], min(k + 10, min(x.shape))))
    for _ in range(3):
        y, _ = np.linalg.qr(x @ (x.T @ np.linalg.qr(y)[0]))
    ub, s, _ = np.linalg.svd(y.T @ x, full_matrices=False)
    u = y @ ub
    z = u[:, :k] * s[:k]
    if z.shape[1] < k:  # fewer images than k
        z = np.pad(z, ((0, 0), (0, k - z.shape[1])))
    z += 1e-6 * np.random.Generator(np.random.PCG64(0)).standard_normal(z.shape)  # no zero rows
    return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)


class GLO:
    """GLO on ``images`` (N, S, S, C) uint8: a pure ``init``/``step`` and the run's records.

    Args:
      cfg: the run's settings.
      spec: the generator's architecture.
      images: the training images; batches: their order (:class:`lrgen.data.Batches`).
      workdir: where samples and the generator go.
    """

    def __init__(self, cfg: GeneratorTrainConfig, spec: generators.GeneratorSpec, images: np.ndarray, batches, workdir):
        self.cfg, self.spec, self.images, self.workdir = cfg, spec, images, workdir
        self.g = TrainGenerator(spec)
        self.opt = optax.adam(*cfg.adam)
        self.code_opt = lazy_adam(cfg.code_learning_rate)
        self.steps_per_epoch = batches.steps_per_epoch
        n = len(images)
        self.codes0 = pca_codes(images, spec.z_dim)
        self.show = np.linspace(0, n - 1, min(10, n)).astype(int)  # spread: datasets are often sorted by class
        self.probe = np.linspace(0, n - 1, min(n, 256)).astype(int)

    def task(self) -> Task:
        return Task("glo", self.init, self.step, self.export, self.samples, self.evaluate)

    def init(self) -> GLOState:
        variables = self.g.init(jax.random.key(self.cfg.loop.seed))
        codes = jnp.asarray(self.codes0)
        step = jnp.zeros((), jnp.int32)
        return GLOState(
            step=step,
            g=variables,
            g_opt=self.opt.init(variables["params"]),
            codes=codes,
            codes_opt=self.code_opt.init(codes),
            data=Position.at(step, self.steps_per_epoch),
        )

    def step(self, state: GLOState, idx: jax.Array, images: jax.Array) -> tuple[GLOState, dict]:
        """One step on the batch ``images`` (B, S, S, C) uint8, rows ``idx`` (B,) of the code table."""
        x = data.to_float(images)
        z = state.codes[idx]

        def loss_fn(params, z):
            x_hat, variables = self.g.apply_train({**state.g, "params": params}, z)
            per = losses.per_image_loss(x_hat, x, self.cfg.glo_loss)
            # Σ over the batch for the codes (each code sees its own image's loss), mean for θ.
            return jnp.sum(per), (jnp.mean(per), variables)

        (_, (loss, variables)), (g_theta, g_z) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            state.g["params"], z
        )
        g_theta = jax.tree.map(lambda a: a / self.cfg.loop.batch_size, g_theta)
        updates, g_opt = self.opt.update(g_theta, state.g_opt, state.g["params"])
        params = optax.apply_updates(state.g["params"], updates)
        u, codes_opt = self.code_opt.update(g_z, state.codes_opt, rows=idx)
        s = state.step + 1
        new = GLOState(
            step=s,
            g={**variables, "params": params},
            g_opt=g_opt,
            codes=state.codes.at[idx].set(sphere.normalize(z + u)),
            codes_opt=codes_opt,
            data=Position.at(s, self.steps_per_epoch),
        )
        return new, {"loss": loss}

    def evaluate(self, state: GLOState) -> dict:
        x_hat = self.g.render(state.g, state.codes[self.probe])
        x = data.to_float(self.images[self.probe])
        return {"psnr_train": float(jnp.mean(losses.psnr_per_image(x_hat, x)))}

    def samples(self, state: GLOState, s: int) -> None:
        """Rows: training images, their reconstructions G(z_i), G at random points of the sphere."""
        rec = self.g.render(state.g, state.codes[self.show])
        rand = self.g.render(state.g, sphere.sample(jax.random.key(1), (len(self.show), self.spec.z_dim)))
        real = data.to_unit_float(self.images[self.show])
        records.save_samples(self.workdir, s, [real, to_unit(np.asarray(rec)), to_unit(np.asarray(rand))])

    def export(self, state: GLOState, s: int) -> None:
        path = os.path.join(self.workdir, "generator")
        checkpoint.save_generator(path, self.spec, self.g.export(state.g), **records.provenance(self.cfg, s))
