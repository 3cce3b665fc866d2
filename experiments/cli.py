"""What every lrgen binary does the same way: quiet logs, flag records, one-line user errors."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator

from absl import flags, logging

from lrgen import recover


def resolved_flags(*module_names: str) -> dict:
    """Every flag defined by the named modules, with its value (recorded next to results)."""
    FLAGS = flags.FLAGS
    return {f.name: f.value for name in module_names for f in FLAGS.get_flags_for_module(sys.modules[name])}


def recover_config_from_flags() -> recover.RecoverConfig:
    """The :class:`lrgen.recover.RecoverConfig` of the flags named like its fields.

    The binaries that run the recovery loop (recover, interpolate) define flags named like the
    fields, with their meaning. With a ``--preset`` flag, the preset's values
    (:data:`lrgen.recover.PRESETS`) are the base and only flags given explicitly override them;
    without one, every field's flag value is taken (fields without a flag stay faithful).
    """
    FLAGS = flags.FLAGS
    fields = [f.name for f in dataclasses.fields(recover.RecoverConfig) if f.name != "preset" and f.name in FLAGS]
    if "preset" not in FLAGS:  # a binary without presets: its flags' values, the rest faithful
        return recover.RecoverConfig(**{name: _field_value(name) for name in fields})
    # Flags given explicitly (command line or flagfile) override the preset's values.
    return recover.resolve(FLAGS.preset, **{name: _field_value(name) for name in fields if FLAGS[name].present})


def _field_value(name: str):
    value = flags.FLAGS[name].value
    if name == "candidate_ranks":  # a list flag of strings
        try:
            return tuple(int(v) for v in value)
        except ValueError:
            raise ValueError(f"--candidate_ranks={','.join(value)}: must be comma-separated integers") from None
    return value


def preset_z_init() -> str:
    """``--z_init`` as given, else the preset's initial codes."""
    FLAGS = flags.FLAGS
    if FLAGS["z_init"].present or "preset" not in FLAGS:
        return FLAGS.z_init
    return recover.PRESET_Z_INIT[FLAGS.preset]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user mistake (ValueError) or a diverged optimisation into one line and exit status 1.

    The library raises ValueError naming the flag or file, the bad value and what is allowed;
    a traceback would only bury that line. An OSError that gets past the checks (the disk
    fills, a file vanishes mid-run) names its file and is reported the same way.
    """
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    try:
        yield
    except (ValueError, FloatingPointError, OSError) as e:
        print(f"error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        sys.exit(1)


def log(message: str) -> None:
    print(message, flush=True)
