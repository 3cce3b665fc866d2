"""The recovery settings: :class:`RecoverConfig`, its presets and their one resolution.

Every value the recovery loop of :mod:`lrgen.engine` reads, validated in one place
(:meth:`RecoverConfig.validate` raises ValueError naming the flag, the bad value and what is
allowed), and the named starting points a run can take (:data:`PRESETS`, :func:`resolve`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from lrgen import lowrank

UPDATES = ("latent", "generator", "joint")
Z_OPTIMIZERS = ("gd", "adam")
SCHEDULES = ("staircase", "cosine")
Z_INITS = ("fixed_z", "fixed_seed", "random")  # what lrgen.engine.init_codes draws
LOOPS = ("auto", "python", "scan")
BATCHING_CHOICES = ("auto", "unrolled", "vmapped", "mapped", "dispatched")  # see lrgen.engine.BATCHINGS


@dataclasses.dataclass(frozen=True)
class RecoverConfig:
    """Hyperparameters of the recovery loop (keyword-only, validated by :meth:`validate`).

    Attributes:
      update: what is optimised: ``latent`` (Z), ``generator`` (θ) or ``joint`` (both).
      iterations: number of iterations.
      rank: r of the projection; 0 = unconstrained.
      rank_type: ``pca`` or ``svd`` (see :mod:`lrgen.lowrank`).
      similarity_weight: 1 − λ, weight of the temporal smoothness term, in [0, 1].
      z_step: α, step size of the code update; None = 200·T/256.
      generator_lr: Adam learning rate η of θ; None = 0.001·T/256.
      generator_lr_decay: factor applied to η every ``generator_lr_decay_every`` iterations.
      generator_lr_decay_every: 0 = constant η.
      log_every: iterations between host round trips (metrics, PSNR, progress).
      loop: ``python`` (jitted step driven from Python), ``scan`` (jitted loop of ``log_every``
        steps) or ``auto`` (python on CPU, scan elsewhere).
      batching: how a batch of sequences runs the one-sequence step (:data:`lrgen.engine.BATCHINGS`);
        ``auto`` = the per-backend choice of :func:`lrgen.engine.choose_batching`. All compute the
        same numbers; only speed differs (the override exists to measure them side by side).
      preset: the name of the :data:`PRESETS` entry these values started from (for the record;
        :func:`resolve` sets it).
      z_optimizer: ``gd``: Z ← P_r(Z − α ∇_Z L) (the original); ``adam``: Z ← P_r(Z + Adam(∇_Z L;
        lr α_i)), the projection after every Adam step.
      z_step_per_frame: the default α is this times T (original 200/256; journal 10).
      schedule: ``staircase``: η_i = η · decay^⌊i / every⌋ on the generator only (the original's
        knobs above); ``cosine``: η_i = η · ½(1 + cos(π i / N)) with N = ``iterations``, on the
        generator and, with ``z_optimizer=adam``, on Z.
      best_margin: the best iterate is replaced only when the criterion drops below
        (1 − margin) · best (journal code: 0.01).
      holdout_fraction: fraction f of the measured entries of y left out of the loss; the
        iterate with the lowest error on them is kept (0 = off: best by measurement loss).
      patience: stop once the held-out error has not improved for this many iterations (checked
        every ``log_every``; 0 = run all ``iterations``).
      candidate_ranks: ranks tried side by side as one batch (empty = just ``rank``); chosen by
        the held-out error.
      candidate_lr_scales: multipliers s of the generator's learning rate η tried side by side
        (candidate θ steps use s·η; empty = just η); chosen by the held-out error.
      restarts: random starts of the codes per candidate rank (the first keeps ``z_init``).
      screen: with several candidates, run them all only this many iterations, then continue
        the one with the lowest held-out error alone (0 = all run to the end).
      ensemble: with several candidates, return the mean of the best m of them (by held-out
        error), m chosen by the held-out error of the mean (:mod:`lrgen.candidates`; m = 1: the
        best one alone).
      fusion: with missing-pixel measurements, carry the measured pixels of neighbouring frames
        into each recovered frame along the optical flow of the recovered frames, if and as the
        held-out pixels choose (:mod:`lrgen.fusion`); other measurements: skipped.
    """

    update: str = "joint"
    iterations: int = 2000
    rank: int = 2
    rank_type: str = "pca"
    similarity_weight: float = 0.0
    z_step: float | None = None
    generator_lr: float | None = None
    generator_lr_decay: float = 1.0
    generator_lr_decay_every: int = 0
    log_every: int = 100
    loop: str = "auto"
    batching: str = "auto"
    preset: str = "faithful"
    z_optimizer: str = "gd"
    z_step_per_frame: float = 200.0 / 256.0
    schedule: str = "staircase"
    best_margin: float = 0.0
    holdout_fraction: float = 0.0
    patience: int = 0
    candidate_ranks: tuple[int, ...] = ()
    candidate_lr_scales: tuple[float, ...] = ()
    restarts: int = 1
    screen: int = 0
    ensemble: bool = False
    fusion: bool = False

    def validate(self, num_frames: int, z_dim: int) -> None:
        """Raise ValueError naming the flag, the bad value and what is allowed (:func:`validate`)."""
        validate(self, num_frames, z_dim)

    def step_sizes(self, num_frames: int) -> tuple[float, float]:
        """(α, η) with the original's defaults 200·T/256 (``z_step_per_frame``·T) and 0.001·T/256."""
        alpha = self.z_step if self.z_step is not None else self.z_step_per_frame * num_frames
        lr = self.generator_lr if self.generator_lr is not None else 0.001 * num_frames / 256.0
        return alpha, lr

    @property
    def ranks(self) -> tuple[int, ...]:
        """The candidate ranks (just ``rank`` unless ``candidate_ranks`` is given)."""
        return tuple(self.candidate_ranks) or (self.rank,)

    @property
    def candidates(self) -> int:
        """How many recoveries of one video run side by side."""
        return len(self.ranks) * len(self.lr_scales) * self.restarts

    @property
    def lr_scales(self) -> tuple[float, ...]:
        """The candidate multipliers of η (just 1 unless ``candidate_lr_scales`` is given)."""
        return tuple(self.candidate_lr_scales) or (1.0,)

    @property
    def trains_codes(self) -> bool:
        return self.update in ("latent", "joint")

    @property
    def trains_generator(self) -> bool:
        return self.update in ("generator", "joint")


def validate(config: RecoverConfig, num_frames: int, z_dim: int) -> None:
    """Raise ValueError naming the flag, the bad value and what is allowed, for T = ``num_frames``, k = ``z_dim``."""
    if config.update not in UPDATES:
        raise ValueError(f"--update={config.update}: allowed values are {', '.join(UPDATES)}")
    if config.iterations < 1:
        raise ValueError(f"--iterations={config.iterations}: must be ≥ 1")
    if config.rank_type not in lowrank.RANK_TYPES:
        raise ValueError(f"--rank_type={config.rank_type}: allowed values are {', '.join(lowrank.RANK_TYPES)}")
    limit = min(num_frames, z_dim)
    if not 0 <= config.rank <= limit:
        raise ValueError(f"--rank={config.rank}: must lie in [0, min(T, k)] = [0, {limit}] (T={num_frames}, k={z_dim})")
    if not 0.0 <= config.similarity_weight <= 1.0:
        raise ValueError(f"--similarity_weight={config.similarity_weight}: must lie in [0, 1]")
    for name in ("z_step", "generator_lr"):
        v = getattr(config, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"--{name}={v}: must be a positive number")
    if not (0.0 < config.generator_lr_decay <= 1.0):
        raise ValueError(f"--generator_lr_decay={config.generator_lr_decay}: must lie in (0, 1]")
    if config.generator_lr_decay_every < 0:
        raise ValueError(f"--generator_lr_decay_every={config.generator_lr_decay_every}: must be ≥ 0")
    if config.batching not in BATCHING_CHOICES:
        # A library setting, not a flag (the binaries always run ``auto``).
        raise ValueError(f"RecoverConfig.batching={config.batching}: allowed values are {', '.join(BATCHING_CHOICES)}")
    if config.log_every < 1:
        raise ValueError(f"--log_every={config.log_every}: must be ≥ 1")
    if config.loop not in LOOPS:
        raise ValueError(f"--loop={config.loop}: allowed values are {', '.join(LOOPS)}")
    if config.preset not in PRESETS:
        raise ValueError(f"--preset={config.preset}: allowed values are {', '.join(PRESETS)}")
    if config.z_optimizer not in Z_OPTIMIZERS:
        raise ValueError(f"--z_optimizer={config.z_optimizer}: allowed values are {', '.join(Z_OPTIMIZERS)}")
    if config.schedule not in SCHEDULES:
        raise ValueError(f"--schedule={config.schedule}: allowed values are {', '.join(SCHEDULES)}")
    if not (math.isfinite(config.z_step_per_frame) and config.z_step_per_frame > 0):
        raise ValueError(f"--z_step_per_frame={config.z_step_per_frame}: must be a positive number")
    if not 0.0 <= config.best_margin < 1.0:
        raise ValueError(f"--best_margin={config.best_margin}: must lie in [0, 1)")
    if not 0.0 <= config.holdout_fraction < 1.0:
        raise ValueError(f"--holdout_fraction={config.holdout_fraction}: must lie in [0, 1)")
    if config.patience < 0:
        raise ValueError(f"--patience={config.patience}: must be ≥ 0 (0 = never stop early)")
    for r in config.candidate_ranks:
        if not 0 <= r <= limit:
            raise ValueError(
                f"--candidate_ranks={','.join(map(str, config.candidate_ranks))}: each must lie in "
                f"[0, min(T, k)] = [0, {limit}]"
            )
    scales = config.candidate_lr_scales
    shown = ",".join(f"{s:g}" for s in scales)
    if any(not (s > 0 and np.isfinite(s)) for s in scales):
        raise ValueError(f"--candidate_lr_scales={shown}: each must be a finite number > 0")
    if len(scales) > 1 and not config.trains_generator:
        raise ValueError(
            f"--candidate_lr_scales={shown}: scales the generator's learning rate, "
            f"which --update={config.update} does not train; use --update=joint"
        )
    if config.screen < 0:
        raise ValueError(f"--screen={config.screen}: must be ≥ 0 (0 = no screening)")
    if config.restarts < 1:
        raise ValueError(f"--restarts={config.restarts}: must be ≥ 1")
    if config.ensemble and (config.candidates < 2 or config.holdout_fraction <= 0):
        raise ValueError(
            "--ensemble: averages several candidates chosen by held-out error; needs --restarts or "
            f"--candidate_ranks giving ≥ 2 candidates (got {config.candidates}) and --holdout_fraction > 0 "
            f"(got {config.holdout_fraction})"
        )
    if config.fusion and config.holdout_fraction <= 0:
        raise ValueError(
            "--fusion: is chosen by held-out measurements; needs --holdout_fraction > 0 "
            f"(got {config.holdout_fraction})"
        )
    if config.ensemble and 0 < config.screen < config.iterations:
        raise ValueError(f"--ensemble: every candidate must run to the end; needs --screen=0 (got {config.screen})")
    code_candidates = len(config.ranks) * config.restarts  # candidates whose codes differ
    if code_candidates > 1 and config.update == "generator":
        raise ValueError(
            f"--update=generator: the {code_candidates} candidates (--candidate_ranks, --restarts; "
            f"--preset={config.preset}) differ in their codes, which this update keeps fixed; use --update=latent or "
            "joint, or one candidate (e.g. --preset=faithful)"
        )


# jax.random.key takes a 32-bit seed: a negative or larger one silently wraps onto another seed.
MAX_SEED = 2**32 - 1


def check_seed(flag: str, value: int) -> None:
    """Raise ValueError unless ``value`` (the flag ``flag``) is a seed in [0, MAX_SEED]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{flag}={value}: must be an integer in [0, {MAX_SEED}]")


PRESETS: dict[str, RecoverConfig] = {
    # The 2019 notebook, exactly: the defaults above.
    "faithful": RecoverConfig(),
    # The journal code (rakibhyder/gmlr_python, gmlr_fit.py): Adam 2.5e-4 on G, ×0.75 every 500
    # iterations, code step 10·T, the best iterate replaced only on a 1 % lower measurement loss.
    "journal": RecoverConfig(
        preset="journal",
        generator_lr=2.5e-4,
        generator_lr_decay=0.75,
        generator_lr_decay_every=500,
        z_step_per_frame=10.0,
        best_margin=0.01,
    ),
    # lrgen's own (BUILD_NOTES, "Better than the original (issue 11)"): the original's steps from
    # three starts per rank, run side by side to the end: the original's one shared code (smooth
    # motion: the better guide for fusion on two_digits) and two of random codes per frame
    # (rot_mnist: 33.69 dB after 800 iterations against 33.02 from one shared code); 10 % of the
    # measured entries held out to choose each candidate's iterate and to stop (400 iterations
    # without improvement); ranks 2 and 0; the mean of the best candidates returned, how many
    # chosen by the held-out error (lrgen.candidates); then the measured pixels fused along the
    # recovered motion where the held-out pixels say it helps (lrgen.fusion). Measured and
    # rejected: a cosine decay of η (33.62 dB against 34.1 on rotating MNIST), η × 4 or × 8
    # (faster early, then lower: the generator fits
    # the observed pixels and invents the missing ones), Adam on Z (34.03 against 34.09),
    # 300 latent-only iterations before the joint ones (34.25 against 34.10).
    "best": RecoverConfig(
        preset="best",
        holdout_fraction=0.1,
        patience=400,
        candidate_ranks=(2, 0),
        restarts=3,
        ensemble=True,
        fusion=True,
    ),
}
# The initial codes each preset starts from (a job setting, not a loop one): the journal code
# draws one random unit code per frame; faithful and best start from the original's one shared
# code (best's further starts draw random codes per frame: lrgen.jobs.candidate_batch).
PRESET_Z_INIT = {"faithful": "fixed_z", "journal": "random", "best": "fixed_z"}


def resolve(preset: str, **overrides: Any) -> RecoverConfig:
    """The preset's values with ``overrides`` (flags given explicitly) on top: the one place
    presets are resolved.

    Raises:
      ValueError: unknown preset or field.
    """
    if preset not in PRESETS:
        raise ValueError(f"--preset={preset}: allowed values are {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(RecoverConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown recovery settings: {', '.join(unknown)}")
    return dataclasses.replace(PRESETS[preset], **overrides, preset=preset)
