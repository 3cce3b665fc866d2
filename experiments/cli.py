"""What every lrgen binary does the same way: quiet logs, flag records, one-line user errors."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from absl import flags, logging


def resolved_flags(*module_names: str) -> dict:
    """Every flag defined by the named modules, with its value (recorded next to results)."""
    FLAGS = flags.FLAGS
    return {f.name: f.value for name in module_names for f in FLAGS.get_flags_for_module(sys.modules[name])}


def recover_config_from_flags():
    """The one way flags become a :class:`lrgen.config.RecoverConfig`: :func:`experiments.flags.recover_config`."""
    from experiments import flags as groups

    return groups.recover_config()


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
