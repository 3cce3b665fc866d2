"""Generator checkpoints: the one place lrgen touches ``orbax.checkpoint``.

A generator directory written by :func:`save_generator` holds::

    generator.json   {"format": "lrgen-generator", "version": 1, "spec": {...}, ...}
    params/          orbax StandardCheckpointer tree of the flax parameters

The architecture travels with the weights, so ``--generator=<dir>`` needs no retyped shapes, and
a tree of other shapes is refused with a clear error. :func:`load_generator` also accepts the
original authors' PyTorch state dicts saved as .npz (see :func:`lrgen.models.load_torch_npz`)
and training workdirs whose ``generator/`` subdirectory holds the exported generator.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from lrgen import io, models


def process_local() -> ocp.options.MultiprocessingOptions:
    """Orbax options for files that one process writes alone (per-video results, batch state).

    Orbax synchronises all processes around every save by default; per-process work in a
    multi-host job saves at different times, so those barriers would not match.
    """
    pid = jax.process_index()
    return ocp.options.MultiprocessingOptions(
        primary_host=pid, active_processes={pid}, barrier_sync_key_prefix=f"p{pid}"
    )


FORMAT = "lrgen-generator"
VERSION = 1
META = "generator.json"


def save_tree_dir(directory: str | os.PathLike, meta_file: str, meta: dict, tree: Any, subdir: str = "tree") -> str:
    """Write ``meta`` (JSON, as ``meta_file``) and ``tree`` (orbax, under ``subdir/``) atomically.

    The directory is assembled under a temporary name beside it and renamed into place; an
    existing directory is replaced only if it holds ``meta_file`` (never a user's folder). The
    writing process works alone (:func:`process_local`).

    Returns:
      The absolute path written.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(directory) + "-", dir=parent)
    try:
        checkpointer = ocp.StandardCheckpointer(multiprocessing_options=process_local())
        checkpointer.save(os.path.join(tmp, subdir), jax.tree.map(np.asarray, jax.device_get(tree)))
        checkpointer.wait_until_finished()
        with open(os.path.join(tmp, meta_file), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.isdir(directory):
            if not os.path.isfile(os.path.join(directory, meta_file)):
                raise ValueError(f"{directory}: exists and holds no {meta_file}; refusing to replace it")
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def save_generator(directory: str | os.PathLike, spec: models.GeneratorSpec, params: Any, **extra) -> str:
    """Write ``spec`` and ``params`` to ``directory`` atomically (temporary name, then rename).

    Args:
      directory: destination; replaced if it already holds a generator.
      spec: the architecture.
      params: flax parameters matching ``spec``.
      **extra: JSON-serialisable provenance stored in ``generator.json``.

    Returns:
      The absolute path written.
    """
    directory = os.path.abspath(os.fspath(directory))
    models.check_params(spec, params, directory)
    meta = {"format": FORMAT, "version": VERSION, "spec": spec.to_dict(), **extra}
    return save_tree_dir(directory, META, meta, params, subdir="params")


def read_tree_meta(directory: str, meta_file: str, fmt: str, flag: str) -> dict:
    """The JSON of a :func:`save_tree_dir` directory; ValueError naming ``flag`` if it is not one."""
    try:
        with open(os.path.join(directory, meta_file)) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:  # ValueError: not JSON, or not text at all
        raise ValueError(f"{flag}={directory}: unreadable {meta_file} ({' '.join(str(e).split())})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{flag}={directory}: {meta_file} holds a JSON {type(meta).__name__}, not an {fmt} record")
    if meta.get("format") != fmt:
        raise ValueError(f"{flag}={directory}: {meta_file} is not an {fmt} (format={meta.get('format')!r})")
    return meta


def open_tree_dir(
    path: str | os.PathLike, meta_file: str, fmt: str, flag: str, *, subdir: str, kind: str, version: int | None = None
) -> tuple[str, dict]:
    """(directory, metadata) of a :func:`save_tree_dir` directory given as itself or as the workdir holding it.

    ``path`` may be the directory or a workdir whose ``subdir/`` is the directory. ``kind`` says
    what was expected, for the error; with ``version``, the metadata must record that version.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise ValueError(f"{flag}={path}: no such file or directory; expected {kind}")
    if not os.path.isfile(os.path.join(path, meta_file)) and os.path.isfile(os.path.join(path, subdir, meta_file)):
        path = os.path.join(path, subdir)
    if not os.path.isfile(os.path.join(path, meta_file)):
        raise ValueError(f"{flag}={path}: holds no {meta_file}; not {kind}")
    meta = read_tree_meta(path, meta_file, fmt, flag)
    if version is not None and meta.get("version") != version:
        raise ValueError(
            f"{flag}={path}: {meta_file} format version {meta.get('version')} is not supported (need {version})"
        )
    return path, meta


def load_tree(
    directory: str, abstract: Any, flag: str, subdir: str = "tree", what: str = "the architecture it declares"
) -> Any:
    """Restore ``subdir/`` of a :func:`save_tree_dir` directory against ``abstract`` (shapes checked)."""
    try:
        checkpointer = ocp.StandardCheckpointer(multiprocessing_options=process_local())
        tree = checkpointer.restore(os.path.join(directory, subdir), abstract)
    except Exception as e:  # orbax raises several types for a tree of other shapes
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{flag}={directory}: weights do not match {what} ({first[:200]})") from None
    shapes = lambda t: jax.tree.map(lambda a: (tuple(np.shape(a)), np.dtype(a.dtype)), t)  # noqa: E731
    if shapes(abstract) != shapes(tree):
        raise ValueError(f"{flag}={directory}: weights do not match {what}")
    check_finite(tree, f"{flag}={directory}")
    return tree


def check_finite(tree: Any, where: str) -> None:
    """Refuse weights holding NaN or ±inf when they are loaded, naming where they came from.

    Such weights (a diverged run's, or a damaged file's) would otherwise surface much later as
    a non-finite loss, blamed on a step size or a learning rate.
    """
    leaves = [np.asarray(a) for a in jax.tree.leaves(tree)]
    bad = sum(int(np.size(a) - np.count_nonzero(np.isfinite(a))) for a in leaves if np.issubdtype(a.dtype, np.inexact))
    if bad:
        total = sum(int(np.size(a)) for a in leaves)
        raise ValueError(f"{where}: {bad} of {total} weights are NaN or infinite; allowed are finite weights")


def load_generator(path: str | os.PathLike) -> tuple[models.GeneratorSpec, Any]:
    """Load (spec, params) from an lrgen generator directory, a training workdir or an .npz.

    Raises:
      ValueError: the path is missing, of an unknown kind, or its weights do not match the
        architecture it declares.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise ValueError(f"--generator={path}: no such file or directory")
    if os.path.isfile(path):
        if path.endswith(".npz"):
            state = io.read_array_file(path, f"--generator={path}")
            if not isinstance(state, dict):  # a bare .npy array under an .npz name
                raise ValueError(f"--generator={path}: holds a single array, not a state dict archive (.npz)")
            spec, params = models.params_from_torch_state_dict(state, f"--generator={path}")
            check_finite(params, f"--generator={path}")
            return spec, params
        raise ValueError(f"--generator={path}: expected an lrgen generator directory or an .npz state dict")
    kind = "an lrgen generator or training workdir"
    path, meta = open_tree_dir(path, META, FORMAT, "--generator", subdir="generator", kind=kind, version=VERSION)
    try:
        spec = models.GeneratorSpec.from_dict(meta["spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"--generator={path}: malformed architecture in {META} ({e})") from None
    target = jax.eval_shape(lambda: models.init_generator(spec, jax.random.key(0)))
    params = load_tree(path, target, "--generator", subdir="params", what=f"the architecture {spec.to_dict()}")
    return spec, params


# ---------------------------------------------------------------------------- batch-run checkpoints
# (moved from lrgen.batch: the recovery state of one batch of a manifest job, so that a killed job
# resumes an unfinished batch where its last checkpoint left it.)
class BatchCheckpoint:
    """Orbax checkpoints of one batch's recovery state and history (latest kept).

    ``directory/<step>/`` holds the state (StandardSave) and ``directory/history_<step>.npz``
    the host history up to that step, written first, so any step orbax reports as saved has
    its history. Saves are synchronous: the state's buffers are donated to the next step right
    after a save.
    """

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                create=False,  # made above: orbax refuses create=True with active_processes
                enable_async_checkpointing=False,
                multiprocessing_options=process_local(),
            ),
        )

    def restore(self, like_state: Any) -> tuple[Any, dict] | None:
        """(state, history) of the latest checkpoint, or None; ``like_state`` gives shapes and shardings."""
        step = self.manager.latest_step()
        if step is None:
            return None
        target = jax.tree.map(_abstract, like_state)
        state = self.manager.restore(step, args=ocp.args.StandardRestore(target))
        with np.load(self._history(step)) as f:
            return state, {k: f[k] for k in f.files}

    def _history(self, step: int) -> str:
        return os.path.join(self.directory, f"history_{step}.npz")

    def save(self, state: Any, hist: dict) -> None:
        step = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])
        with io.atomic_write(self._history(step)) as tmp:
            np.savez(tmp, **hist)
        self.manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)))
        for old in os.listdir(self.directory):
            if old.startswith("history_") and old != os.path.basename(self._history(step)):
                os.remove(os.path.join(self.directory, old))

    def close(self, delete: bool) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
        if delete:
            shutil.rmtree(self.directory, ignore_errors=True)


def _abstract(a: Any) -> jax.ShapeDtypeStruct:
    if isinstance(a, jax.Array):
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding)
    a = np.asarray(a)
    return jax.ShapeDtypeStruct(a.shape, a.dtype)
