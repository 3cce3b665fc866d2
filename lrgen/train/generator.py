"""``train_generator``: GLO or DCGAN training of one generator into a workdir."""

from __future__ import annotations

from collections.abc import Callable

import jax

from lrgen import data, io
from lrgen.train import loop
from lrgen.train import workdir as records
from lrgen.train.config import GeneratorTrainConfig
from lrgen.train.dcgan import DCGAN
from lrgen.train.glo import GLO


def train_generator(
    cfg: GeneratorTrainConfig, workdir: str, *, log: Callable[[str], None] = print, flags: dict | None = None
) -> dict:
    """Train a generator with GLO or DCGAN into ``workdir`` (resuming if it holds a checkpoint).

    Args:
      cfg: the settings (validated here).
      workdir: the run's directory (contents: :mod:`lrgen.train`).
      log: receives the progress lines.
      flags: the binary's flags, recorded in config.json.

    Returns:
      What result.json holds: throughput, the last metrics, the generator's architecture.

    Raises:
      ValueError: a user input is wrong (nothing is written then).
      FloatingPointError: the loss became non-finite.
    """
    cfg.validate()
    io.check_output_dir(workdir, "--workdir")
    spec = cfg.generator_spec()
    images, _ = records.load_data(cfg.data, log)
    batches = data.Batches(images, cfg.loop.batch_size, cfg.loop.seed, cfg.data.augment)
    records.check_workdir(workdir, cfg)
    record = {"generator_spec": spec.to_dict(), "num_train_images": len(images)}
    method = GLO(cfg, spec, images, batches, workdir) if cfg.method == "glo" else DCGAN(cfg, spec, batches, workdir)
    log(
        f"training a {spec.arch} generator (k={spec.z_dim}, {spec.image_size}×{spec.image_size}×{spec.channels}) "
        f"with {cfg.method}, batch {cfg.loop.batch_size}, {cfg.loop.num_steps} steps, backend {jax.default_backend()}"
    )
    on_start = lambda: records.write_config(workdir, cfg, flags, record)  # noqa: E731
    out = loop.run(method.task(), cfg.loop, batches, workdir, log, on_start=on_start)
    return records.finish(workdir, {**out, "num_steps": cfg.loop.num_steps, "generator_spec": spec.to_dict()}, log)
