"""Training configurations: frozen dataclasses, validated before anything is compiled or written.

Each ``validate`` raises ValueError naming the flag, the bad value and what is allowed, so a
binary turns a user mistake into one line (``experiments/_train_flags.py``).
"""

from __future__ import annotations

import dataclasses
import math

from lrgen import config
from lrgen.nets import generators, networks

METHODS = ("glo", "dcgan")
GLO_LOSSES = ("l2", "lap_l1")


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
        config.check_seed("--seed", self.seed)


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

    def generator_spec(self) -> generators.GeneratorSpec:
        channels = 1 if self.data.grayscale else 3
        if self.arch == "gmlr":
            return generators.GeneratorSpec.default(
                image_size=self.data.image_size, channels=channels, z_dim=self.z_dim
            )
        k = self.z_dim if self.z_dim is not None else 100
        return generators.GeneratorSpec(
            k, generators.widths(self.data.image_size, self.width, up=True), channels, "dcgan_bn"
        )

    def validate(self) -> None:
        """Raise ValueError naming the flag, the bad value and what is allowed."""
        if self.method not in METHODS:
            raise ValueError(f"--method={self.method}: allowed values are {', '.join(METHODS)}")
        if self.arch not in generators.ARCHS:
            raise ValueError(f"--arch={self.arch}: allowed values are {', '.join(generators.ARCHS)}")
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
      vgg_weights: VGG-19 .npz (layout: :func:`lrgen.nets.networks.load_vgg19`); overrides the
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
        if self.vgg_layer not in networks.VGG_LAYER_NAMES:
            raise ValueError(f"--vgg_layer={self.vgg_layer}: allowed values are {', '.join(networks.VGG_LAYER_NAMES)}")
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
    generators.num_layers(image_size)  # 4·2^n, n ≥ 2
