"""Encoder training: E learns to invert a trained generator G (frozen, or fine-tuned with it).

    L_E = w · mean (G(E(x̃)) − x)² + (1 − w) · (1/L) Σ_l ‖φ_l(G(E(x̃))) − φ_l(x)‖² / ‖φ_l(x)‖²,

x̃ the input: x itself, or x with a fraction r of its pixels set to 0 (the zero-filled
back-projection Aᵀy of a missing-pixel operator; :func:`lrgen.train.losses.drop_pixels`), so
that the encoder gives recovery a start from measurements. φ_l are the intermediate features of
a trained DCGAN discriminator (evaluation mode, frozen), or VGG-19 activations at one layer
(L = 1); the norms run over the whole batch (:func:`lrgen.train.losses.feature_distance`).
Dividing by ‖φ_l(x)‖² makes the perceptual term scale-free (a relative error, like the pixel
term's for images in [−1, 1]), so w means the same for any feature extractor. One Adam step
(β₁ = 0.5) on E per training step, and one on G when it is fine-tuned.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lrgen import checkpoint, data, io
from lrgen.nets import generators, networks
from lrgen.pixels import to_unit
from lrgen.train import loop, losses
from lrgen.train import workdir as records
from lrgen.train.config import EncoderTrainConfig


class EncoderState(struct.PyTreeNode):
    """Everything an encoder run carries from step to step (and checkpoints).

    Attributes:
      step: () int32, steps taken.
      e: the encoder's variables ``{params, batch_stats}``; e_opt: their Adam state.
      g_params, g_opt: the generator's parameters and Adam state (None when it is frozen).
      data: the data order's position.
    """

    step: jax.Array
    e: dict
    e_opt: optax.OptState
    g_params: dict | None
    g_opt: optax.OptState | None
    data: loop.Position


class EncoderTraining:
    """E for G on uint8 images: a pure ``init``/``step`` and the run's records.

    Args:
      cfg: the run's settings; e_spec, g_spec, g_params: the encoder's architecture and the
        generator's; phi: φ (images → feature maps) or None; images, holdout: the training and
        held-out images; batches: the data order; workdir: where samples and models go.
    """

    def __init__(self, cfg: EncoderTrainConfig, e_spec, g_spec, g_params, phi, images, holdout, batches, workdir):
        self.cfg, self.e_spec, self.g_spec, self.g_params, self.phi = cfg, e_spec, g_spec, g_params, phi
        self.workdir, self.steps_per_epoch = workdir, batches.steps_per_epoch
        self.enc, self.gen = e_spec.build(), generators.build_generator(g_spec)
        self.e_opt = optax.adam(cfg.learning_rate, 0.5)
        self.g_opt = optax.adam(cfg.generator_learning_rate, 0.5)
        self.drop_key = jax.random.fold_in(jax.random.key(cfg.loop.seed), 2)
        self.evaluation = holdout if len(holdout) else images[:256]
        n = len(self.evaluation)
        self.show = self.evaluation[np.linspace(0, n - 1, min(10, n)).astype(int)]
        self.reconstruct = jax.jit(
            lambda ev, gp, x_in: self.gen.apply({"params": gp}, self.enc.apply(ev, x_in, train=False))
        )

    def task(self) -> loop.Task:
        return loop.Task("encoder", self.init, self.step, self.export, self.samples, self.evaluate)

    def init(self) -> EncoderState:
        ev = self.e_spec.init(jax.random.key(self.cfg.loop.seed))
        finetune = self.cfg.finetune_generator
        gp = jax.tree.map(jnp.asarray, self.g_params) if finetune else None
        step = jnp.zeros((), jnp.int32)
        return EncoderState(
            step=step,
            e=ev,
            e_opt=self.e_opt.init(ev["params"]),
            g_params=gp,
            g_opt=self.g_opt.init(self.g_params) if finetune else None,
            data=loop.Position.at(step, self.steps_per_epoch),
        )

    def _generator(self, state: EncoderState) -> dict:
        return state.g_params if self.cfg.finetune_generator else self.g_params

    def loss(self, e_params, g_params, e_vars: dict, x_in: jax.Array, x: jax.Array):
        """(L_E, (E's new batch statistics, pixel term, perceptual term)) for inputs x̃, targets x."""
        z, upd = self.enc.apply({**e_vars, "params": e_params}, x_in, train=True, mutable=["batch_stats"])
        x_hat = self.gen.apply({"params": g_params}, z)
        w = self.cfg.pixel_weight
        pix = jnp.mean(jnp.square(x_hat - x))
        loss, perc = w * pix, jnp.zeros(())
        if self.phi is not None and w < 1:
            perc = losses.feature_distance(self.phi(x_hat), self.phi(x))
            loss = loss + (1 - w) * perc
        return loss, (upd["batch_stats"], pix, perc)

    def step(self, state: EncoderState, idx: jax.Array, images: jax.Array) -> tuple[EncoderState, dict]:
        """One Adam step of E (and of G when fine-tuned) on the batch ``images`` (B, S, S, C) uint8."""
        del idx
        x = data.to_float(images)
        x_in = losses.drop_pixels(jax.random.fold_in(self.drop_key, state.step), x, self.cfg.input_missing_ratio)
        finetune, gp = self.cfg.finetune_generator, self._generator(state)
        argnums = (0, 1) if finetune else 0
        (loss, (stats, pix, perc)), grads = jax.value_and_grad(self.loss, argnums=argnums, has_aux=True)(
            state.e["params"], gp, state.e, x_in, x
        )
        updates, e_opt = self.e_opt.update(grads[0] if finetune else grads, state.e_opt, state.e["params"])
        e = {"params": optax.apply_updates(state.e["params"], updates), "batch_stats": stats}
        g_params, g_opt = None, None
        if finetune:
            updates, g_opt = self.g_opt.update(grads[1], state.g_opt, gp)
            g_params = optax.apply_updates(gp, updates)
        s = state.step + 1
        new = EncoderState(s, e, e_opt, g_params, g_opt, loop.Position.at(s, self.steps_per_epoch))
        return new, {"loss": loss, "pixel_loss": pix, "perceptual_loss": perc}

    def _inputs(self, x: np.ndarray, i: int) -> jax.Array:
        """The evaluation's inputs: the same pixels dropped at every evaluation (key i)."""
        key = jax.random.fold_in(jax.random.key(1), i)
        return losses.drop_pixels(key, jnp.asarray(x), self.cfg.input_missing_ratio)

    def evaluate(self, state: EncoderState) -> dict:
        """Mean PSNR of G(E(x̃)) against x over the held-out images."""
        psnrs = []
        for i in range(0, len(self.evaluation), 250):
            x = data.to_float(self.evaluation[i : i + 250])
            x_hat = self.reconstruct(state.e, self._generator(state), self._inputs(x, i))
            psnrs.append(np.asarray(losses.psnr_per_image(x_hat, x)))
        return {"psnr_holdout": float(np.mean(np.concatenate(psnrs)))}

    def samples(self, state: EncoderState, s: int) -> None:
        """Rows: held-out images, [their inputs x̃,] their reconstructions G(E(x̃))."""
        x_in = self._inputs(data.to_float(self.show), 1_000_000)  # a key of its own (evaluation: 0, 250, …)
        rec = to_unit(np.asarray(self.reconstruct(state.e, self._generator(state), x_in)))
        seen = [to_unit(np.asarray(x_in))] if self.cfg.input_missing_ratio else []
        records.save_samples(self.workdir, s, [data.to_unit_float(self.show), *seen, rec])

    def export(self, state: EncoderState, s: int) -> None:
        cfg = self.cfg
        prov = {"step": s, "generator": os.path.abspath(cfg.generator), "finetuned": cfg.finetune_generator}
        prov["input_missing_ratio"] = cfg.input_missing_ratio
        path = os.path.join(self.workdir, "encoder")
        checkpoint.save_encoder(path, self.e_spec, state.e, generator_spec=self.g_spec, **prov)
        if cfg.finetune_generator:
            checkpoint.save_generator(os.path.join(self.workdir, "generator"), self.g_spec, state.g_params, **prov)


def _load_decoder(cfg: EncoderTrainConfig, workdir: str) -> tuple[generators.GeneratorSpec, dict]:
    """The generator to invert, checked against the run's settings (ValueError naming the flag)."""
    inputs = {"--generator": cfg.generator, "--discriminator": cfg.discriminator, "--vgg_weights": cfg.vgg_weights}
    io.check_not_inputs("--workdir", workdir, inputs)
    if cfg.finetune_generator:  # <workdir>/generator is replaced as a whole
        io.check_not_inputs("--workdir", workdir, inputs, written=os.path.join(workdir, "generator"), inside=True)
    g_spec, g_params = checkpoint.load_generator(cfg.generator)
    channels = 1 if cfg.data.grayscale else 3
    if g_spec.image_size != cfg.data.image_size or g_spec.channels != channels:
        raise ValueError(
            f"--generator={cfg.generator}: makes {g_spec.image_size}×{g_spec.image_size}×{g_spec.channels} images "
            f"({g_spec.arch}), but --image_size={cfg.data.image_size} --grayscale={cfg.data.grayscale} asks for "
            f"{cfg.data.image_size}×{cfg.data.image_size}×{channels}"
        )
    if cfg.z_dim is not None and cfg.z_dim != g_spec.z_dim:
        raise ValueError(f"--z_dim={cfg.z_dim}: the generator {cfg.generator} has k = {g_spec.z_dim}")
    return g_spec, g_params


def train_encoder(
    cfg: EncoderTrainConfig, workdir: str, *, log: Callable[[str], None] = print, flags: dict | None = None
) -> dict:
    """Train an encoder for ``cfg.generator`` into ``workdir`` (resuming if it holds a checkpoint).

    Raises:
      ValueError: a user input is wrong (nothing is written then), e.g. a generator whose frame
        size or channels differ from ``--image_size``/``--grayscale`` or whose k differs from
        ``--z_dim``.
      FloatingPointError: the loss became non-finite.
    """
    cfg.validate()
    io.check_output_dir(workdir, "--workdir")
    g_spec, g_params = _load_decoder(cfg, workdir)
    size, channels = cfg.data.image_size, 1 if cfg.data.grayscale else 3
    phi, phi_name = losses.perceptual(cfg, channels)
    images, holdout = records.load_data(cfg.data, log)
    batches = data.Batches(images, cfg.loop.batch_size, cfg.loop.seed, cfg.data.augment)
    e_spec = networks.EncoderSpec(g_spec.z_dim, generators.widths(size, cfg.width, up=False), channels, size)
    records.check_workdir(workdir, cfg)
    record = {"generator_spec": g_spec.to_dict(), "encoder_spec": e_spec.to_dict()}
    training = EncoderTraining(cfg, e_spec, g_spec, g_params, phi, images, holdout, batches, workdir)
    log(
        f"training an encoder for the {g_spec.arch} generator {cfg.generator} (k={g_spec.z_dim}), "
        f"{'fine-tuning' if cfg.finetune_generator else 'frozen'} generator, perceptual: {phi_name}, "
        f"w={cfg.pixel_weight}"
        + (f", inputs with {cfg.input_missing_ratio:.0%} of pixels dropped" if cfg.input_missing_ratio else "")
    )
    on_start = lambda: records.write_config(workdir, cfg, flags, record)  # noqa: E731
    out = loop.run(training.task(), cfg.loop, batches, workdir, log, on_start=on_start)
    out["psnr_holdout"] = out["metrics"].get("psnr_holdout")
    return records.finish(workdir, {**out, "num_steps": cfg.loop.num_steps, "num_holdout": len(holdout)}, log)
