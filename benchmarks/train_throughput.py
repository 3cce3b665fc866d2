r"""Training throughput (steps per second) of GLO, DCGAN and the encoder, with the real loop.

    python -m benchmarks.train_throughput --image_size=64 --num_steps=30

Each recipe runs ``lrgen.train`` for ``--num_steps`` steps on the built-in MNIST digits in a
temporary workdir (checkpoint, samples and export only at the end, so they are not timed) and
reports the loop's own steps/s: training steps only, after the one AOT compilation. The recipes
are the ones in ``experiments/configs`` (GLO: gmlr k = 32, batch 64; DCGAN: dcgan_bn g = 16,
k = 100, batch 32, two generator updates per step; encoder: g = 32 for the GLO generator, batch
64, pixel loss), plus the encoder with the DCGAN discriminator's perceptual features
(w = 0.75). Prints one JSON line per recipe, with the device.
"""

from __future__ import annotations

import json
import os
import tempfile

import jax
from absl import app, flags, logging

from lrgen import train

flags.DEFINE_integer("image_size", 64, "Image size.")
flags.DEFINE_integer("num_steps", 30, "Timed steps per recipe.")
flags.DEFINE_list("recipes", ["glo", "dcgan", "encoder"], "Which recipes (encoder needs the other two).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO
    quiet = lambda s: None  # noqa: E731
    n, s = FLAGS.num_steps, FLAGS.image_size
    data = train.DataConfig(image_size=s)

    def loop(batch):
        return train.LoopConfig(num_steps=n, batch_size=batch, checkpoint_every=n, sample_every=n, log_every=n)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        glo, dc = os.path.join(tmp, "glo"), os.path.join(tmp, "dcgan")
        if "glo" in FLAGS.recipes or "encoder" in FLAGS.recipes:
            cfg = train.GeneratorTrainConfig(method="glo", arch="gmlr", z_dim=32, data=data, loop=loop(64))
            rows.append(("glo gmlr k=32 batch 64", train.train_generator(cfg, glo, log=quiet)))
        if "dcgan" in FLAGS.recipes or "encoder" in FLAGS.recipes:
            cfg = train.GeneratorTrainConfig(
                method="dcgan",
                arch="dcgan_bn",
                width=16,
                z_dim=100,
                g_steps=2,
                instance_noise=0.3,
                data=data,
                loop=loop(32),
            )
            rows.append(("dcgan dcgan_bn g=16 k=100 batch 32, 2 G steps", train.train_generator(cfg, dc, log=quiet)))
        if "encoder" in FLAGS.recipes:
            cfg = train.EncoderTrainConfig(generator=glo, pixel_weight=1.0, width=32, data=data, loop=loop(64))
            out = train.train_encoder(cfg, os.path.join(tmp, "e1"), log=quiet)
            rows.append(("encoder g=32 for glo, batch 64, pixel loss", out))
            cfg = train.EncoderTrainConfig(
                generator=glo, discriminator=dc, pixel_weight=0.75, width=32, data=data, loop=loop(64)
            )
            out = train.train_encoder(cfg, os.path.join(tmp, "e2"), log=quiet)
            rows.append(("encoder g=32 for glo, batch 64, + discriminator features", out))
    device = str(jax.devices()[0])
    for name, out in rows:
        line = {
            "recipe": name,
            "image_size": s,
            "steps_per_second": round(out["steps_per_second"], 3),
            "compile_seconds": round(out["compile_seconds"], 2),
            "device": device,
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    app.run(main)
