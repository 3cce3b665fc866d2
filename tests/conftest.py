"""Suite-wide settings: one persistent XLA compilation cache for this test run.

Many tests compile the same programs again (the same tiny generator's steps, in this process and
in every ``python -m experiments.*`` the tests start). JAX's persistent compilation cache keeps
each executable on disk under a key of the program, its compile options, the devices and the
jax/jaxlib versions, so a second compile of the same program is a file read. The folder is new
for each pytest run and removed at its end: a run starts empty (as on CI) and nothing leaks
between runs. It is exported through the environment, so the subprocesses the tests start (they
all copy ``os.environ``) share it.

What the cache cannot change: results (a hit is the executable a compile would produce, bit for
bit: the bitwise resume tests compare runs of which one may compile and the other read), and
lrgen's own compile counts (``Recoverer.compilations`` counts the shapes its in-memory
``ExecutableCache`` built, whether XLA then compiled the executable or read it from disk).
Nothing in the suite counts XLA's own compiles (``benchmarks.bad_inputs`` prints such a count in
its table, but the tests do not assert on it).
"""

from __future__ import annotations

import os
import shutil
import tempfile

_CACHE_DIR = tempfile.mkdtemp(prefix="lrgen-tests-xla-cache-")
# Set before any test module imports jax (conftest.py is imported first); jax reads these at import.
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # tiny test programs compile in < 1 s
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"


def pytest_configure(config):
    import jax

    # In case jax was imported before this file (a plugin): the same settings, explicitly.
    jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)
