"""Training generators (GLO, DCGAN) and encoders: one loop, pure jitted steps, orbax checkpoints.

Methods
-------
**GLO** (Bojanowski et al., "Optimizing the Latent Space of Generative Networks", ICML 2018).
Each training image x_i has its own code z_i ∈ S^{k−1} (the unit sphere), learned jointly with
the generator weights θ:

    min_{θ, z_1..z_N}  (1/N) Σ_i ℓ(G_θ(z_i), x_i)   subject to ‖z_i‖ = 1,

with ℓ the mean squared error (``l2``) or the Laplacian-pyramid L1 distance (``lap_l1``)
Σ_j mean|L^j(x̂) − L^j(x)|, L^j the j-th band of a pyramid built with 2×2 average pooling and
nearest-neighbour upsampling (J = 4 bands at 64×64, each band's per-pixel mean weighted
equally). θ takes Adam steps on the batch mean; the codes of the batch take "lazy" Adam steps
(per-code moments and step counts, updated only when the code is in the batch) on the gradient
of their own image's loss, and are projected back onto the sphere, z ← z/‖z‖, after every step.
Codes start from the PCA of the training images (as in the paper), normalised.

**DCGAN** (Radford et al., ICLR 2016), non-saturating loss (Goodfellow et al. 2014), for a
discriminator D (logit) and z uniform on the unit sphere S^{k−1} (the latent domain of GLO codes
and of the recovery's initial codes):

    L_D = E_x softplus(−D(x)) + E_z softplus(D(G(z))),    L_G = E_z softplus(−D(G(z))),

one Adam(2e-4, β1 = 0.5) step on D, then one on G with a fresh z, per training step.

**Encoder** E with the generator as decoder (frozen, or fine-tuned with ``finetune_generator``):

    L_E = w · mean (G(E(x)) − x)² + (1 − w) · (1/L) Σ_l ‖φ_l(G(E(x))) − φ_l(x)‖² / ‖φ_l(x)‖²,

φ_l the intermediate features of a trained DCGAN discriminator (evaluation mode, frozen), or
VGG-19 activations at one layer when a weights file is given (then L = 1); the norms run over
the whole batch. Dividing by ‖φ_l(x)‖² makes the perceptual term scale-free (a relative error,
like the pixel term's for images in [−1, 1]), so w means the same for any feature extractor.

The loop (big_vision's shape)
-----------------------------
State is one pytree (dict of arrays): step, parameters, batch statistics, optimiser states,
GLO codes, data-order record. ``step(state, indices, images) -> (state, metrics)`` is pure and
jitted once, its state donated; randomness is ``jax.random.fold_in(key(seed), step)``; the batch
of step s is a function of (seed, s) (:class:`lrgen.data.Batches`). So a run killed at any
moment and restarted from its latest checkpoint recomputes exactly the same steps and ends with
bitwise the same parameters on CPU. A non-finite loss stops the run before it is checkpointed.

Workdir::

    config.json        every setting, the flags, package versions, devices
    checkpoints/       orbax checkpoints (the last ``keep_checkpoints``)
    metrics.jsonl      one JSON object per log step (losses, steps/s)
    samples/           sample grids (GLO and encoder: reconstructions too) every ``sample_every``
    curves.png         loss curves
    generator/         the generator for ``experiments.recover --generator=<workdir>`` (BN folded)
    discriminator/     DCGAN: the discriminator (perceptual features for the encoder)
    encoder/           encoder runs: the encoder (``--encoder=<workdir>``)
    result.json        final metrics and throughput (written last)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrgen import checkpoint, data, dcgan, io, models, pipeline, recover, report
from lrgen import encoder as encoder_lib
from lrgen import training_checkpoint as tc

METHODS = ("glo", "dcgan")
GLO_LOSSES = ("l2", "lap_l1")
DISCRIMINATOR_META = "discriminator.json"
DISCRIMINATOR_FORMAT = "lrgen-discriminator"


# --------------------------------------------------------------------------- configuration
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which images, at what size (see :mod:`lrgen.data`).

    Attributes:
      dataset, data_dir: source (``builtin_mnist`` needs no directory).
      image_size: S; grayscale: C = 1 (else 3); crop: centre-crop side (0 = shorter side).
      max_images: first N images (0 = all); num_holdout: images put aside for evaluation.
      augment: training-batch augmentation, one of :data:`lrgen.data.AUGMENTATIONS`.
    """

    dataset: str = "builtin_mnist"
    data_dir: str = ""
    image_size: int = 64
    grayscale: bool = True
    crop: int = 0
    max_images: int = 0
    num_holdout: int = 500
    augment: str = "none"


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """The training loop: length, batch, seeds and what is written when."""

    num_steps: int = 2000
    batch_size: int = 64
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    sample_every: int = 500
    seed: int = 0

    def validate(self) -> None:
        for name in ("num_steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}={getattr(self, name)}: must be ≥ 1")
        recover.check_seed("--seed", self.seed)


@dataclasses.dataclass(frozen=True)
class GeneratorTrainConfig:
    """``experiments.train_generator``: GLO or DCGAN training of one generator architecture.

    Attributes:
      method: ``glo`` or ``dcgan``.
      arch: ``gmlr`` (the original work's generator) or ``dcgan_bn`` (batch-norm DCGAN).
      z_dim: k; None = 32 (gmlr, gray), 256 (gmlr, RGB), 100 (dcgan_bn).
      width: g, the base width of ``dcgan_bn`` (widths 8g…g) and of the discriminator (g…8g).
      learning_rate, beta1: Adam of the weights; None = 3e-4, 0.9 (GLO) and 2e-4, 0.5 (DCGAN).
      code_learning_rate: Adam step of the GLO codes.
      glo_loss: ``l2`` or ``lap_l1`` (on MNIST, L2 leaves the all-background image sooner).
      label_smoothing: DCGAN: s, real images are labelled 1 − s in D's loss (one-sided).
      instance_noise: DCGAN: σ₀ of the Gaussian noise added to D's inputs, annealed to 0.
      g_steps: DCGAN: generator updates per discriminator update (2, as carpedm20's
        DCGAN-tensorflow, whose 5×5 architecture this is; with 1 the discriminator won outright
        at 64×64 here: D(x) → 1, D(G(z)) → 1e-4 and noise samples after 800 steps).
    """

    method: str = "glo"
    arch: str = "gmlr"
    z_dim: int | None = None
    width: int = 64
    learning_rate: float | None = None
    beta1: float | None = None
    code_learning_rate: float = 0.01
    glo_loss: str = "l2"
    label_smoothing: float = 0.0
    g_steps: int = 2
    instance_noise: float = 0.0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loop: LoopConfig = dataclasses.field(default_factory=LoopConfig)

    @property
    def adam(self) -> tuple[float, float]:
        lr = self.learning_rate if self.learning_rate is not None else (3e-4 if self.method == "glo" else 2e-4)
        b1 = self.beta1 if self.beta1 is not None else (0.9 if self.method == "glo" else 0.5)
        return lr, b1

    def generator_spec(self) -> models.GeneratorSpec:
        channels = 1 if self.data.grayscale else 3
        if self.arch == "gmlr":
            return models.GeneratorSpec.default(image_size=self.data.image_size, channels=channels, z_dim=self.z_dim)
        k = self.z_dim if self.z_dim is not None else 100
        return models.GeneratorSpec(k, dcgan.widths(self.data.image_size, self.width, up=True), channels, "dcgan_bn")

    def validate(self) -> None:
        """Raise ValueError naming the flag, the bad value and what is allowed."""
        if self.method not in METHODS:
            raise ValueError(f"--method={self.method}: allowed values are {', '.join(METHODS)}")
        if self.arch not in models.ARCHS:
            raise ValueError(f"--arch={self.arch}: allowed values are {', '.join(models.ARCHS)}")
        if self.glo_loss not in GLO_LOSSES:
            raise ValueError(f"--glo_loss={self.glo_loss}: allowed values are {', '.join(GLO_LOSSES)}")
        _check_image_size(self.data.image_size, self.arch)
        if self.z_dim is not None and self.z_dim < 2:
            raise ValueError(f"--z_dim={self.z_dim}: must be ≥ 2")
        if self.width < 1:
            raise ValueError(f"--width={self.width}: must be ≥ 1")
        for name in ("learning_rate", "code_learning_rate"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"--{name}={v}: must be a positive number")
        if not (math.isfinite(self.instance_noise) and self.instance_noise >= 0):
            raise ValueError(f"--instance_noise={self.instance_noise}: must be ≥ 0")
        if self.g_steps < 1:
            raise ValueError(f"--g_steps={self.g_steps}: must be ≥ 1")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"--label_smoothing={self.label_smoothing}: must lie in [0, 0.5)")
        if self.beta1 is not None and not 0 <= self.beta1 < 1:
            raise ValueError(f"--beta1={self.beta1}: must lie in [0, 1)")
        if self.method == "glo" and self.data.augment != "none":
            raise ValueError(
                f"--augment={self.data.augment}: GLO learns one code per image, so its images are not "
                "augmented; allowed with --method=glo: none"
            )
        self.loop.validate()


@dataclasses.dataclass(frozen=True)
class EncoderTrainConfig:
    """``experiments.train_encoder``: an encoder for a trained generator.

    Attributes:
      generator: generator directory, training workdir or original .npz (the decoder).
      finetune_generator: train the generator's weights too (exported to ``generator/``).
      pixel_weight: w in L_E (1 = pixels only).
      discriminator: DCGAN training workdir (or ``discriminator/`` dir) whose features are φ;
        '' = the ``--generator`` workdir's, when it has one.
      vgg_weights: VGG-19 .npz (layout: :func:`lrgen.dcgan.load_vgg19`); overrides the
        discriminator; vgg_layer: its feature layer.
      z_dim: must equal the generator's k when given.
      width: g of the encoder (widths g…8g).
      learning_rate: Adam of the encoder (β1 = 0.5); generator_learning_rate: of the generator.
      input_missing_ratio: r; each input image has a fraction r of its pixels (a fresh random
        set every step, shared across channels) set to 0, the mid-grey value of [−1, 1] — the
        zero-filled back-projection Aᵀy of a missing-pixel operator; the target stays the whole
        image. 0 = clean inputs. Such an encoder gives a start from measurements
        (``experiments.recover --z_init=encoder --encoder_input=measurements``).
    """

    generator: str = ""
    finetune_generator: bool = False
    pixel_weight: float = 0.75
    discriminator: str = ""
    vgg_weights: str = ""
    vgg_layer: str = "relu2_2"
    z_dim: int | None = None
    width: int = 64
    learning_rate: float = 1e-3
    generator_learning_rate: float = 1e-4
    input_missing_ratio: float = 0.0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loop: LoopConfig = dataclasses.field(default_factory=LoopConfig)

    def validate(self) -> None:
        if not 0.0 <= self.input_missing_ratio < 1.0:
            raise ValueError(f"--input_missing_ratio={self.input_missing_ratio}: must lie in [0, 1)")
        if not self.generator:
            raise ValueError("--generator is required: a generator directory, training workdir or .npz")
        if not 0.0 <= self.pixel_weight <= 1.0:
            raise ValueError(f"--pixel_weight={self.pixel_weight}: must lie in [0, 1]")
        if self.vgg_layer not in dcgan.VGG_LAYER_NAMES:
            raise ValueError(f"--vgg_layer={self.vgg_layer}: allowed values are {', '.join(dcgan.VGG_LAYER_NAMES)}")
        _check_image_size(self.data.image_size, "dcgan_bn")
        if self.width < 1:
            raise ValueError(f"--width={self.width}: must be ≥ 1")
        for name in ("learning_rate", "generator_learning_rate"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"--{name}={v}: must be a positive number")
        self.loop.validate()


def _check_image_size(image_size: int, arch: str) -> None:
    if arch == "gmlr" and image_size not in (32, 64, 128):
        raise ValueError(f"--image_size={image_size}: allowed values for --arch=gmlr are 32, 64, 128")
    dcgan.num_layers(image_size)  # 4·2^n, n ≥ 2


# --------------------------------------------------------------------------- losses
def laplacian_pyramid(x: jax.Array, levels: int) -> list[jax.Array]:
    """Bands L^0 … L^{J−1} of (N, H, W, C): L^j = g_j − up(g_{j+1}), last band g_{J−1}."""
    bands, g = [], x
    for _ in range(levels - 1):
        n, h, w, c = g.shape
        down = g.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        up = jnp.repeat(jnp.repeat(down, 2, axis=1), 2, axis=2)
        bands.append(g - up)
        g = down
    bands.append(g)
    return bands


def per_image_loss(x_hat: jax.Array, x: jax.Array, kind: str) -> jax.Array:
    """(N,) reconstruction loss: ``l2`` mean squared error, or ``lap_l1`` (see module docstring)."""
    if kind == "l2":
        return jnp.mean(jnp.square(x_hat - x), axis=(1, 2, 3))
    levels = min(4, int(math.log2(x.shape[1])) - 1)
    diffs = laplacian_pyramid(x_hat - x, levels)  # the pyramid is linear
    return sum(jnp.mean(jnp.abs(b), axis=(1, 2, 3)) for b in diffs)


def psnr_per_image(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """PSNR (dB) of each image, both in [−1, 1], measured in [0, 1] (peak 1)."""
    mse = jnp.mean(jnp.square((x_hat - x) / 2), axis=(1, 2, 3))
    return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-12))


def drop_pixels(key: jax.Array, x: jax.Array, ratio: float) -> jax.Array:
    """Set a random fraction ``ratio`` of each image's pixels (all channels) to 0; (N, H, W, C)."""
    if ratio <= 0:
        return x
    keep = jax.random.uniform(key, x.shape[:-1] + (1,)) >= ratio
    return jnp.where(keep, x, 0.0)


def _sphere(key: jax.Array, n: int, k: int) -> jax.Array:
    v = jax.random.normal(key, (n, k))
    return v / jnp.linalg.norm(v, axis=1, keepdims=True)


def _normalize(z: jax.Array) -> jax.Array:
    return z * jax.lax.rsqrt(jnp.sum(jnp.square(z), -1, keepdims=True) + 1e-12)


# --------------------------------------------------------------------------- generator adapters
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


class _G:
    """The generator in training form: gmlr (params only) or dcgan_bn (params + batch stats)."""

    def __init__(self, spec: models.GeneratorSpec):
        self.spec = spec
        self.bn = spec.arch == "dcgan_bn"
        if self.bn:
            self.model = dcgan.DCGANGenerator(tuple(spec.features), spec.channels, folded=False)
        else:
            self.model = models.build_generator(spec)

    def init(self, key: jax.Array) -> dict:
        if self.bn:
            return dict(self.model.init(key, jnp.zeros((1, self.spec.z_dim)), train=False))
        return {"params": he_scaled(models.init_generator(self.spec, key))}

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
        """Parameters of ``models.build_generator(spec)``: batch norm folded for dcgan_bn."""
        return dcgan.fold_generator(variables) if self.bn else variables["params"]


# --------------------------------------------------------------------------- the generic loop
@dataclasses.dataclass
class Task:
    """One training task for :func:`run_loop`: how to start, step, and what to write."""

    name: str
    init: Callable[[], dict]
    step: Callable[[dict, jax.Array, jax.Array], tuple[dict, dict]]
    export: Callable[[dict, int], None]  # generator/, discriminator/, encoder/
    samples: Callable[[dict, int], None]  # sample grids
    evaluate: Callable[[dict], dict] = lambda state: {}


def _append_jsonl(path: str, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _truncate_jsonl(path: str, last_step: int) -> list[dict]:
    """Keep the rows of steps ≤ last_step (a resumed run rewrites what came after)."""
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if row.get("step", 0) <= last_step:
                rows.append(row)
    with io.atomic_write(path) as tmp:
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


def _plot(workdir: str, rows: list[dict]) -> None:
    keys = [k for k in (rows[-1] if rows else {}) if k.endswith("loss") or k.startswith("psnr")]
    curves = {}
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if k in r and r[k] is not None]
        if pts:
            curves[k] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    if curves:
        report.plot_curves(os.path.join(workdir, "curves.png"), curves, log_y_keys=("loss",))


def _fmt_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = int(width * done / total)
    return "#" * filled + "." * (width - filled)


def run_loop(
    task: Task,
    loop: LoopConfig,
    batches: data.Batches,
    workdir: str,
    log: Callable[[str], None],
    on_start: Callable[[], None] | None = None,
) -> dict:
    """Train ``task`` to ``loop.num_steps``, resuming from the newest checkpoint in ``workdir``.

    ``on_start`` runs once the checkpoint (if any) has been restored, before the first step: a
    run refused at the restore leaves the workdir's record (config.json) as it was.

    Returns:
      Throughput and the last metrics: ``steps_per_second`` (training steps only, compile,
      checkpoint and sample writing excluded), ``compile_seconds``, ``start_step``, ``metrics``.

    Raises:
      FloatingPointError: the loss became non-finite (the state is not checkpointed).
      ValueError: the workdir's checkpoint belongs to another architecture.
    """
    what = f"--workdir={workdir}"
    ckpt = tc.TrainCheckpointer(workdir, keep=loop.keep_checkpoints)
    try:
        abstract = jax.eval_shape(task.init)
        restored = ckpt.restore_latest(abstract, what)
        if restored is not None:
            start, state = restored[0], jax.device_put(restored[1])
            log(f"resuming from the checkpoint at step {start} in {workdir}")
        else:
            start, state = 0, task.init()
        if on_start is not None:
            on_start()
        metrics_path = os.path.join(workdir, "metrics.jsonl")
        rows = _truncate_jsonl(metrics_path, start)
        t0 = time.perf_counter()
        idx0, img0 = batches.get(start)
        step = recover.compile_fast(jax.jit(task.step, donate_argnums=0).lower(state, idx0, img0))
        compile_seconds = time.perf_counter() - t0
        if start >= loop.num_steps:
            log(f"nothing to do: the checkpoint is at step {start} ≥ --num_steps={loop.num_steps}")
        train_seconds, side_seconds, done, m = 0.0, 0.0, 0, {}
        last = time.perf_counter()
        for s, idx, images in batches.iterate(start, loop.num_steps):
            state, m = step(state, idx, images)
            s1 = s + 1
            end = s1 == loop.num_steps
            if s1 % loop.log_every == 0 or end or s1 % loop.checkpoint_every == 0:
                host = {k: float(v) for k, v in jax.device_get(m).items()}
                now = time.perf_counter()
                train_seconds += now - last
                done = s1 - start
                bad = [k for k, v in host.items() if not math.isfinite(v)]
                if bad:
                    raise FloatingPointError(
                        f"{task.name}: {bad[0]} is {host[bad[0]]} at step {s1}; stopped without checkpointing "
                        f"(lower the learning rate; the last good checkpoint is step {ckpt.latest_step()})"
                    )
                sps = done / max(train_seconds, 1e-9)
                epoch, index = batches.position(s1)
                row = {"step": s1, "epoch": epoch, **host, "steps_per_second": sps}
                if s1 % loop.log_every == 0 or end:
                    text = " ".join(f"{k} {v:.4g}" for k, v in host.items())
                    log(
                        f"[{_bar(s1, loop.num_steps)}] {s1}/{loop.num_steps} {text}  {sps:.2f} steps/s, "
                        f"ETA {_fmt_time((loop.num_steps - s1) / sps)}"
                    )
                side = time.perf_counter()
                if s1 % loop.sample_every == 0 or end:
                    row.update(task.evaluate(state))
                    task.samples(state, s1)
                rows.append(row)
                _append_jsonl(metrics_path, row)
                if s1 % loop.checkpoint_every == 0 or end:
                    ckpt.save(s1, state)
                    task.export(state, s1)
                    _plot(workdir, rows)
                last = time.perf_counter()
                side_seconds += last - side
        ckpt.wait_until_finished()
    finally:
        ckpt.close()
    return {
        "steps_per_second": done / train_seconds if train_seconds > 0 else None,
        "steps_run": done,
        "start_step": start,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "side_seconds": side_seconds,
        "metrics": rows[-1] if rows else {},
    }


# --------------------------------------------------------------------------- GLO and DCGAN
def _pca_codes(images: np.ndarray, k: int) -> np.ndarray:
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


def _glo_task(cfg: GeneratorTrainConfig, spec: models.GeneratorSpec, train_images: np.ndarray, batches, workdir, flags):
    g = _G(spec)
    lr, b1 = cfg.adam
    opt = optax.adam(lr, b1)
    code_lr, cb1, cb2, eps = cfg.code_learning_rate, 0.9, 0.999, 1e-8
    n, k, B = len(train_images), spec.z_dim, cfg.loop.batch_size
    spe = batches.steps_per_epoch
    codes0 = _pca_codes(train_images, k)
    show = np.linspace(0, n - 1, min(10, n)).astype(int)  # spread: datasets are often sorted by class
    probe = np.linspace(0, n - 1, min(n, 256)).astype(int)

    def init():
        variables = g.init(jax.random.key(cfg.loop.seed))
        return {
            "step": jnp.zeros((), jnp.int32),
            "g": variables,
            "g_opt": opt.init(variables["params"]),
            "codes": jnp.asarray(codes0),
            "codes_m": jnp.zeros((n, k)),
            "codes_v": jnp.zeros((n, k)),
            "codes_t": jnp.zeros((n,), jnp.int32),
            "data": {"epoch": jnp.zeros((), jnp.int32), "index": jnp.zeros((), jnp.int32)},
        }

    def step(state, idx, images):
        x = data.to_float(images)
        z = state["codes"][idx]

        def loss_fn(params, z):
            x_hat, variables = g.apply_train({**state["g"], "params": params}, z)
            per = per_image_loss(x_hat, x, cfg.glo_loss)
            # Σ over the batch for the codes (each code sees its own image's loss), mean for θ.
            return jnp.sum(per), (jnp.mean(per), variables)

        (_, (loss, variables)), (gp, gz) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            state["g"]["params"], z
        )
        gp = jax.tree.map(lambda a: a / B, gp)
        updates, g_opt = opt.update(gp, state["g_opt"], state["g"]["params"])
        params = optax.apply_updates(state["g"]["params"], updates)
        t = state["codes_t"][idx] + 1
        m = cb1 * state["codes_m"][idx] + (1 - cb1) * gz
        v = cb2 * state["codes_v"][idx] + (1 - cb2) * jnp.square(gz)
        tf = t.astype(jnp.float32)[:, None]
        z_new = z - code_lr * (m / (1 - cb1**tf)) / (jnp.sqrt(v / (1 - cb2**tf)) + eps)
        s = state["step"] + 1
        new = {
            "step": s,
            "g": {**variables, "params": params},
            "g_opt": g_opt,
            "codes": state["codes"].at[idx].set(_normalize(z_new)),
            "codes_m": state["codes_m"].at[idx].set(m),
            "codes_v": state["codes_v"].at[idx].set(v),
            "codes_t": state["codes_t"].at[idx].set(t),
            "data": {"epoch": s // spe, "index": s % spe},
        }
        return new, {"loss": loss}

    render = jax.jit(lambda variables, z: g.apply_eval(variables, z))

    def evaluate(state):
        x_hat = render(state["g"], state["codes"][probe])
        return {"psnr_train": float(jnp.mean(psnr_per_image(x_hat, data.to_float(train_images[probe]))))}

    def samples(state, s):
        real = train_images[show].astype(np.float32) / 255.0
        rec = np.asarray(render(state["g"], state["codes"][show])) * 0.5 + 0.5
        rand = np.asarray(render(state["g"], _sphere(jax.random.key(1), len(show), k))) * 0.5 + 0.5
        _save_samples(workdir, s, [real, rec, rand])

    def export(state, s):
        checkpoint.save_generator(
            os.path.join(workdir, "generator"), spec, g.export(state["g"]), **_provenance(cfg, s, flags)
        )

    return Task("glo", init, step, export, samples, evaluate)


def _dcgan_task(
    cfg: GeneratorTrainConfig, spec: models.GeneratorSpec, train_images: np.ndarray, batches, workdir, flags
):
    g = _G(spec)
    d_features = dcgan.widths(cfg.data.image_size, cfg.width, up=False)
    disc = dcgan.Discriminator(d_features)
    lr, b1 = cfg.adam
    g_opt, d_opt = optax.adam(lr, b1), optax.adam(lr, b1)
    k, B, C, S = spec.z_dim, cfg.loop.batch_size, spec.channels, cfg.data.image_size
    spe = batches.steps_per_epoch
    base = jax.random.key(cfg.loop.seed)
    fixed_z = _sphere(jax.random.key(cfg.loop.seed + 1), 20, k)

    def init():
        kg, kd = jax.random.split(base)
        gv = g.init(kg)
        dv = dict(disc.init(kd, jnp.zeros((1, S, S, C)), train=False))
        return {
            "step": jnp.zeros((), jnp.int32),
            "g": gv,
            "g_opt": g_opt.init(gv["params"]),
            "d": dv,
            "d_opt": d_opt.init(dv["params"]),
            "data": {"epoch": jnp.zeros((), jnp.int32), "index": jnp.zeros((), jnp.int32)},
        }

    def d_apply(dv, x):
        (logit, _), upd = disc.apply(dv, x, train=True, mutable=["batch_stats"])
        return logit, {"params": dv["params"], "batch_stats": upd["batch_stats"]}

    def step(state, idx, images):
        key = jax.random.fold_in(base, state["step"])
        kz1, kz2, kn = jax.random.split(key, 3)
        # Instance noise (Sønderby et al. 2017): D sees real and fake images through the same
        # Gaussian blur of the pixel values, σ annealed linearly to 0 over the run, so that it
        # cannot win on details the generator cannot yet produce (exact −1 backgrounds).
        sigma = cfg.instance_noise * jnp.maximum(0.0, 1.0 - state["step"] / cfg.loop.num_steps)
        noisy = lambda img, j: img + sigma * jax.random.normal(jax.random.fold_in(kn, j), img.shape)  # noqa: E731
        x = data.to_float(images)
        x_fake, _ = g.apply_train(state["g"], _sphere(kz1, B, k))
        x_fake = jax.lax.stop_gradient(x_fake)

        def d_loss_fn(params):
            real, dv = d_apply({**state["d"], "params": params}, noisy(x, 0))
            fake, dv = d_apply(dv, noisy(x_fake, 1))
            s = cfg.label_smoothing  # one-sided: real targets 1 − s (Salimans et al. 2016)
            loss = jnp.mean((1 - s) * jax.nn.softplus(-real) + s * jax.nn.softplus(real)) + jnp.mean(
                jax.nn.softplus(fake)
            )
            return loss, (dv, jnp.mean(jax.nn.sigmoid(real)), jnp.mean(jax.nn.sigmoid(fake)))

        (d_loss, (dv, d_real, d_fake)), gd = jax.value_and_grad(d_loss_fn, has_aux=True)(state["d"]["params"])
        upd, d_opt_state = d_opt.update(gd, state["d_opt"], state["d"]["params"])
        dv = {**dv, "params": optax.apply_updates(state["d"]["params"], upd)}

        gv, g_opt_state = state["g"], state["g_opt"]
        for j in range(cfg.g_steps):  # carpedm20/DCGAN-tensorflow: 2, so that L_D does not reach 0

            def g_loss_fn(params, gv=gv, j=j):
                x_g, gv = g.apply_train({**gv, "params": params}, _sphere(jax.random.fold_in(kz2, j), B, k))
                logit, _ = d_apply(dv, noisy(x_g, 2 + j))  # D's statistics are updated on its own step only
                return jnp.mean(jax.nn.softplus(-logit)), gv

            (g_loss, gv_new), gg = jax.value_and_grad(g_loss_fn, has_aux=True)(gv["params"])
            upd, g_opt_state = g_opt.update(gg, g_opt_state, gv["params"])
            gv = {**gv_new, "params": optax.apply_updates(gv["params"], upd)}
        s = state["step"] + 1
        new = {
            "step": s,
            "g": gv,
            "g_opt": g_opt_state,
            "d": dv,
            "d_opt": d_opt_state,
            "data": {"epoch": s // spe, "index": s % spe},
        }
        return new, {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake}

    render = jax.jit(lambda variables, z: g.apply_eval(variables, z))

    def samples(state, s):
        x = np.asarray(render(state["g"], fixed_z)) * 0.5 + 0.5
        _save_samples(workdir, s, [x[:10], x[10:]])

    def export(state, s):
        checkpoint.save_generator(
            os.path.join(workdir, "generator"), spec, g.export(state["g"]), **_provenance(cfg, s, flags)
        )
        meta = {
            "format": DISCRIMINATOR_FORMAT,
            "features": list(d_features),
            "image_size": S,
            "channels": C,
            "step": s,
        }
        checkpoint.save_tree_dir(os.path.join(workdir, "discriminator"), DISCRIMINATOR_META, meta, state["d"])

    return Task("dcgan", init, step, export, samples)


def _save_samples(workdir: str, s: int, rows: list[np.ndarray]) -> None:
    report.save_grid(os.path.join(workdir, "samples", f"step_{s:07d}.png"), rows, num_columns=10)


def _provenance(cfg, s: int, flags: dict | None) -> dict:
    return {"source": "lrgen.train", "method": getattr(cfg, "method", "encoder"), "step": s, "latent": "sphere"}


# --------------------------------------------------------------------------- workdir bookkeeping
def _fingerprint(cfg) -> dict:
    """The settings a resumed run must share with the checkpoint (length and cadence may change)."""
    d = dataclasses.asdict(cfg)
    for name in ("num_steps", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every"):
        d["loop"].pop(name)
    return d


def _check_workdir(workdir: str, cfg) -> None:
    """Refuse, writing nothing, a workdir that cannot be written or holds a checkpoint of another run.

    Only a saved checkpoint step makes a workdir "another run's": a run refused or stopped
    before its first checkpoint leaves nothing that a corrected rerun must match.
    """
    io.check_output_dir(workdir, "--workdir")
    config_path = os.path.join(workdir, "config.json")
    ckpt_dir = os.path.join(workdir, tc.SUBDIR)
    if not (os.path.isdir(ckpt_dir) and any(name.isdigit() for name in os.listdir(ckpt_dir))):
        return
    fp = json.loads(json.dumps(_fingerprint(cfg)))
    try:
        with open(config_path) as f:
            old = json.load(f).get("fingerprint")
    except (OSError, ValueError, AttributeError):  # missing, not JSON, not text, not an object
        old = None
    if isinstance(old, dict):  # settings added since the checkpoint was written take their defaults
        _fill_missing(old, json.loads(json.dumps(_fingerprint(type(cfg)()))))
    if old is not None and old != fp:
        diff = sorted(_diff(old, fp))
        raise ValueError(
            f"--workdir={workdir}: holds a checkpoint of another run (differs in {', '.join(diff[:4])}); "
            "use another --workdir or the same settings"
        )


def _write_config(workdir: str, cfg, flags: dict | None, extra: dict) -> None:
    """config.json: the settings (and the fingerprint a resumed run must match), flags, versions, devices."""
    os.makedirs(workdir, exist_ok=True)
    out = {
        "config": dataclasses.asdict(cfg),
        "fingerprint": _fingerprint(cfg),
        "flags": flags or {},
        "environment": pipeline.environment(),
        **extra,
    }
    with io.atomic_write(os.path.join(workdir, "config.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1, default=str)


def _fill_missing(d: dict, defaults: dict) -> None:
    for key, value in defaults.items():
        if key not in d:
            d[key] = value
        elif isinstance(d[key], dict) and isinstance(value, dict):
            _fill_missing(d[key], value)


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in set(a) | set(b):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _load_data(cfg: DataConfig, log) -> tuple[np.ndarray, np.ndarray]:
    images = data.load_images(
        cfg.dataset,
        cfg.data_dir,
        image_size=cfg.image_size,
        grayscale=cfg.grayscale,
        crop=cfg.crop,
        max_images=cfg.max_images,
    )
    train, holdout = data.split(images, cfg.num_holdout)
    log(f"{cfg.dataset}: {len(train)} training and {len(holdout)} held-out images of {images.shape[1:]}")
    return train, holdout


def _finish(workdir: str, out: dict, log) -> dict:
    with io.atomic_write(os.path.join(workdir, "result.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1, default=str)
    sps = out.get("steps_per_second")
    log(f"done: {out['num_steps']} steps" + (f", {sps:.2f} steps/s" if sps else "") + f" → {workdir}")
    return out


def train_generator(
    cfg: GeneratorTrainConfig, workdir: str, *, log: Callable[[str], None] = print, flags: dict | None = None
) -> dict:
    """Train a generator with GLO or DCGAN into ``workdir`` (resuming if it holds a checkpoint).

    Raises:
      ValueError: a user input is wrong (nothing is written then).
      FloatingPointError: the loss became non-finite.
    """
    cfg.validate()
    io.check_output_dir(workdir, "--workdir")
    spec = cfg.generator_spec()
    train_images, _ = _load_data(cfg.data, log)
    batches = data.Batches(train_images, cfg.loop.batch_size, cfg.loop.seed, cfg.data.augment)
    _check_workdir(workdir, cfg)
    record = {"generator_spec": spec.to_dict(), "num_train_images": len(train_images)}
    make = _glo_task if cfg.method == "glo" else _dcgan_task
    task = make(cfg, spec, train_images, batches, workdir, flags)
    log(
        f"training a {spec.arch} generator (k={spec.z_dim}, {spec.image_size}×{spec.image_size}×{spec.channels}) "
        f"with {cfg.method}, batch {cfg.loop.batch_size}, {cfg.loop.num_steps} steps, backend {jax.default_backend()}"
    )
    out = run_loop(task, cfg.loop, batches, workdir, log, on_start=lambda: _write_config(workdir, cfg, flags, record))
    return _finish(workdir, {**out, "num_steps": cfg.loop.num_steps, "generator_spec": spec.to_dict()}, log)


# --------------------------------------------------------------------------- encoder
def load_discriminator(path: str) -> tuple[dcgan.Discriminator, dict, dict]:
    """(module, variables, meta) of a DCGAN workdir's (or a ``discriminator/`` dir's) discriminator."""
    kind = "a DCGAN training workdir"
    path, meta = checkpoint.open_tree_dir(
        path, DISCRIMINATOR_META, DISCRIMINATOR_FORMAT, "--discriminator", subdir="discriminator", kind=kind
    )
    disc = dcgan.Discriminator(tuple(meta["features"]))
    shape = (1, meta["image_size"], meta["image_size"], meta["channels"])
    abstract = jax.eval_shape(lambda: dict(disc.init(jax.random.key(0), jnp.zeros(shape), train=False)))
    return disc, checkpoint.load_tree(path, abstract, "--discriminator"), meta


def _perceptual(cfg: EncoderTrainConfig, channels: int) -> tuple[Callable | None, str]:
    """φ as a function of images in [−1, 1] → list of feature maps, and a description."""
    if cfg.vgg_weights:
        weights = dcgan.load_vgg19(cfg.vgg_weights, cfg.vgg_layer)
        return (lambda x: [dcgan.vgg_features(weights, x * 0.5 + 0.5)]), f"VGG-19 {cfg.vgg_layer}"
    source = cfg.discriminator
    if not source and os.path.isdir(os.path.join(cfg.generator, "discriminator")):
        source = cfg.generator
    if not source:
        if cfg.pixel_weight < 1:
            raise ValueError(
                f"--pixel_weight={cfg.pixel_weight} needs perceptual features: --generator={cfg.generator} has no "
                "discriminator/; pass --discriminator=<dcgan workdir>, --vgg_weights=<npz>, or --pixel_weight=1"
            )
        return None, "none"
    disc, dv, meta = load_discriminator(source)
    if meta["image_size"] != cfg.data.image_size or meta["channels"] != channels:
        raise ValueError(
            f"--discriminator={source}: takes {meta['image_size']}×{meta['image_size']}×{meta['channels']} images, "
            f"this run has {cfg.data.image_size}×{cfg.data.image_size}×{channels}"
        )
    return (lambda x: disc.apply(dv, x, train=False)[1]), f"discriminator of {source}"


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
    phi, phi_name = _perceptual(cfg, channels)
    train_images, holdout = _load_data(cfg.data, log)
    batches = data.Batches(train_images, cfg.loop.batch_size, cfg.loop.seed, cfg.data.augment)
    e_spec = dcgan.EncoderSpec(
        g_spec.z_dim, dcgan.widths(cfg.data.image_size, cfg.width, up=False), channels, cfg.data.image_size
    )
    _check_workdir(workdir, cfg)
    record = {"generator_spec": g_spec.to_dict(), "encoder_spec": e_spec.to_dict()}
    enc = e_spec.build()
    gen = models.build_generator(g_spec)
    e_opt = optax.adam(cfg.learning_rate, 0.5)
    g_opt = optax.adam(cfg.generator_learning_rate, 0.5)
    w, spe = cfg.pixel_weight, batches.steps_per_epoch
    evaluation = holdout if len(holdout) else train_images[:256]
    show = evaluation[np.linspace(0, len(evaluation) - 1, min(10, len(evaluation))).astype(int)]

    def init():
        ev = e_spec.init(jax.random.key(cfg.loop.seed))
        state = {
            "step": jnp.zeros((), jnp.int32),
            "e": ev,
            "e_opt": e_opt.init(ev["params"]),
            "data": {"epoch": jnp.zeros((), jnp.int32), "index": jnp.zeros((), jnp.int32)},
        }
        if cfg.finetune_generator:
            state["g_params"] = jax.tree.map(jnp.asarray, g_params)
            state["g_opt"] = g_opt.init(g_params)
        return state

    drop_key = jax.random.fold_in(jax.random.key(cfg.loop.seed), 2)

    def step(state, idx, images):
        x = data.to_float(images)
        gp0 = state["g_params"] if cfg.finetune_generator else g_params
        x_in = drop_pixels(jax.random.fold_in(drop_key, state["step"]), x, cfg.input_missing_ratio)

        def loss_fn(ep, gp):
            z, upd = enc.apply({**state["e"], "params": ep}, x_in, train=True, mutable=["batch_stats"])
            x_hat = gen.apply({"params": gp}, z)
            pix = jnp.mean(jnp.square(x_hat - x))
            loss = w * pix
            perc = jnp.zeros(())
            if phi is not None and w < 1:
                fa, fb = phi(x_hat), phi(x)
                perc = sum(
                    jnp.sum(jnp.square(a - b)) / (jnp.sum(jnp.square(jax.lax.stop_gradient(b))) + 1e-12)
                    for a, b in zip(fa, fb)
                ) / len(fa)
                loss = loss + (1 - w) * perc
            return loss, (upd["batch_stats"], pix, perc)

        argnums = (0, 1) if cfg.finetune_generator else 0
        (loss, (stats, pix, perc)), grads = jax.value_and_grad(loss_fn, argnums=argnums, has_aux=True)(
            state["e"]["params"], gp0
        )
        ge = grads[0] if cfg.finetune_generator else grads
        upd, e_opt_state = e_opt.update(ge, state["e_opt"], state["e"]["params"])
        s = state["step"] + 1
        new = {
            "step": s,
            "e": {"params": optax.apply_updates(state["e"]["params"], upd), "batch_stats": stats},
            "e_opt": e_opt_state,
            "data": {"epoch": s // spe, "index": s % spe},
        }
        if cfg.finetune_generator:
            upd, g_opt_state = g_opt.update(grads[1], state["g_opt"], gp0)
            new["g_params"] = optax.apply_updates(gp0, upd)
            new["g_opt"] = g_opt_state
        return new, {"loss": loss, "pixel_loss": pix, "perceptual_loss": perc}

    @jax.jit
    def reconstruct(ev, gp, x, x_in):
        return gen.apply({"params": gp}, enc.apply(ev, x_in, train=False))

    def inputs(x, i):  # the evaluation's inputs: the same pixels dropped at every evaluation
        return drop_pixels(jax.random.fold_in(jax.random.key(1), i), jnp.asarray(x), cfg.input_missing_ratio)

    def _gp(state):
        return state["g_params"] if cfg.finetune_generator else g_params

    def evaluate(state):
        psnrs = []
        for i in range(0, len(evaluation), 250):
            x = data.to_float(evaluation[i : i + 250])
            psnrs.append(np.asarray(psnr_per_image(reconstruct(state["e"], _gp(state), x, inputs(x, i)), x)))
        return {"psnr_holdout": float(np.mean(np.concatenate(psnrs)))}

    def samples(state, s):
        x = data.to_float(show)
        x_in = inputs(x, 1_000_000)  # a key of its own (evaluation batches use 0, 250, …)
        rec = np.asarray(reconstruct(state["e"], _gp(state), x, x_in)) * 0.5 + 0.5
        rows = [show.astype(np.float32) / 255.0] + ([np.asarray(x_in) * 0.5 + 0.5] if cfg.input_missing_ratio else [])
        _save_samples(workdir, s, [*rows, rec])

    def export(state, s):
        prov = {"step": s, "generator": os.path.abspath(cfg.generator), "finetuned": cfg.finetune_generator}
        prov["input_missing_ratio"] = cfg.input_missing_ratio
        encoder_lib.save_encoder(os.path.join(workdir, "encoder"), e_spec, state["e"], generator_spec=g_spec, **prov)
        if cfg.finetune_generator:
            checkpoint.save_generator(os.path.join(workdir, "generator"), g_spec, state["g_params"], **prov)

    task = Task("encoder", init, step, export, samples, evaluate)
    log(
        f"training an encoder for the {g_spec.arch} generator {cfg.generator} (k={g_spec.z_dim}), "
        f"{'fine-tuning' if cfg.finetune_generator else 'frozen'} generator, perceptual: {phi_name}, w={w}"
        + (f", inputs with {cfg.input_missing_ratio:.0%} of pixels dropped" if cfg.input_missing_ratio else "")
    )
    out = run_loop(task, cfg.loop, batches, workdir, log, on_start=lambda: _write_config(workdir, cfg, flags, record))
    out["psnr_holdout"] = out["metrics"].get("psnr_holdout")
    return _finish(workdir, {**out, "num_steps": cfg.loop.num_steps, "num_holdout": len(holdout)}, log)


def argv_flags(module_name: str, flag_values) -> dict:
    """Every flag a binary module defines, resolved, for config.json."""
    return {f.name: f.value for f in flag_values.get_flags_for_module(sys.modules[module_name])}
