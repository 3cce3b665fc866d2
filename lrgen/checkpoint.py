"""Every ``orbax.checkpoint`` call of lrgen: model directories and numbered run checkpoints.

**Model directories** (one format, :class:`TreeFormat`): a JSON record ``<name>.json`` holding
``{"format": ..., ["version": ...,] <architecture>, <provenance>}`` next to an orbax tree of
arrays, written atomically (assembled under a temporary name, then renamed). The architecture
travels with the weights, so ``--generator=<dir>`` needs no retyped shapes, and a tree of other
shapes is refused with one line. Each may be named by the directory itself or by the training
workdir holding it under ``<subdir>/``::

    generator/       generator.json     {"format": "lrgen-generator", "version": 1, "spec": ...}
                     params/            the flax parameters (batch norm folded)
    encoder/         encoder.json       {"format": "lrgen-encoder", "version": 1, "spec": ...,
                                         "generator_spec": ...}
                     tree/              {params, batch_stats} of :class:`lrgen.nets.networks.Encoder`
    discriminator/   discriminator.json {"format": "lrgen-discriminator", "features": ...,
                                         "image_size": ..., "channels": ...}
                     tree/              {params, batch_stats} of :class:`lrgen.nets.networks.Discriminator`

:func:`load_generator` also accepts the original authors' PyTorch state dicts saved as .npz
(see :func:`lrgen.nets.generators.load_torch_npz`).

**Run checkpoints** (:class:`Checkpointer`): one state pytree saved as ``<directory>/<step>/``,
the latest ``keep`` kept; orbax writes into a temporary directory and renames it when complete,
so a process killed at any moment (SIGKILL included) leaves only complete checkpoints, and the
newest of them is restored against an abstract target (``jax.eval_shape`` of the initial state).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lrgen import io
from lrgen.nets import generators, networks


def process_local() -> ocp.options.MultiprocessingOptions:
    """Orbax options for files that one process writes alone (per-video results, batch state).

    Orbax synchronises all processes around every save by default; per-process work in a
    multi-host job saves at different times, so those barriers would not match.
    """
    pid = jax.process_index()
    return ocp.options.MultiprocessingOptions(
        primary_host=pid, active_processes={pid}, barrier_sync_key_prefix=f"p{pid}"
    )


# --------------------------------------------------------------------------- model directories
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
    if _shapes(abstract) != _shapes(tree):
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


@dataclasses.dataclass(frozen=True)
class TreeFormat:
    """One kind of model directory: a JSON record and an orbax tree (see the module docstring).

    Attributes:
      name: the record's ``"format"`` value, e.g. ``lrgen-generator``.
      meta_file: the record's file name.
      flag: how errors name a path of this kind (``--generator``).
      subdir: the directory's name inside a training workdir (``generator``).
      kind: what was expected, for errors.
      tree: the tree's subdirectory.
      version: the format version written and required (None: not recorded).
    """

    name: str
    meta_file: str
    flag: str
    subdir: str
    kind: str
    tree: str = "tree"
    version: int | None = None

    def save(self, directory: str | os.PathLike, record: dict, tree: Any) -> str:
        """Write ``{"format", ["version"], **record}`` and ``tree`` to ``directory`` atomically."""
        head = {"format": self.name} | ({"version": self.version} if self.version is not None else {})
        return save_tree_dir(directory, self.meta_file, head | record, tree, subdir=self.tree)

    def open(self, path: str | os.PathLike, *, check_version: bool = True) -> tuple[str, dict]:
        """(directory, record) of ``path``: the directory itself or a workdir holding it."""
        version = self.version if check_version else None
        return open_tree_dir(
            path, self.meta_file, self.name, self.flag, subdir=self.subdir, kind=self.kind, version=version
        )

    def open_spec(self, path: str | os.PathLike, from_dict: Callable[[dict], Any]) -> tuple[str, dict, Any]:
        """(directory, record, architecture) of ``path``: :meth:`open`, then ``from_dict(record["spec"])``."""
        path, meta = self.open(path)
        try:
            return path, meta, from_dict(meta["spec"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{self.flag}={path}: malformed architecture in {self.meta_file} ({e})") from None

    def load(self, directory: str, abstract: Any, what: str = "the architecture it declares") -> Any:
        """The tree of an opened directory, restored against ``abstract`` (shapes checked, finite)."""
        return load_tree(directory, abstract, self.flag, subdir=self.tree, what=what)


GENERATOR = TreeFormat(
    "lrgen-generator",
    "generator.json",
    "--generator",
    "generator",
    "an lrgen generator or training workdir",
    tree="params",
    version=1,
)
ENCODER = TreeFormat(
    "lrgen-encoder", "encoder.json", "--encoder", "encoder", "an lrgen encoder or encoder training workdir", version=1
)
DISCRIMINATOR = TreeFormat(
    "lrgen-discriminator", "discriminator.json", "--discriminator", "discriminator", "a DCGAN training workdir"
)
# The generator format's names as they were (callers and tests use them).
FORMAT, VERSION, META = GENERATOR.name, GENERATOR.version, GENERATOR.meta_file


def save_generator(directory: str | os.PathLike, spec: generators.GeneratorSpec, params: Any, **extra) -> str:
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
    generators.check_params(spec, params, directory)
    return GENERATOR.save(directory, {"spec": spec.to_dict(), **extra}, params)


def load_generator(path: str | os.PathLike) -> tuple[generators.GeneratorSpec, Any]:
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
            spec, params = generators.params_from_torch_state_dict(state, f"--generator={path}")
            check_finite(params, f"--generator={path}")
            return spec, params
        raise ValueError(f"--generator={path}: expected an lrgen generator directory or an .npz state dict")
    path, _, spec = GENERATOR.open_spec(path, generators.GeneratorSpec.from_dict)
    target = jax.eval_shape(lambda: generators.init_generator(spec, jax.random.key(0)))
    return spec, GENERATOR.load(path, target, what=f"the architecture {spec.to_dict()}")


def save_encoder(
    directory: str | os.PathLike,
    spec: networks.EncoderSpec,
    variables: Any,
    *,
    generator_spec: generators.GeneratorSpec,
    **extra,
) -> str:
    """Write the encoder's evaluation variables and architecture to ``directory`` atomically.

    Args:
      directory: destination; replaced if it already holds an encoder.
      spec: the encoder's architecture.
      variables: ``{"params", "batch_stats"}`` of :class:`lrgen.nets.networks.Encoder`.
      generator_spec: the generator it encodes for (its k and frame size must match).
      **extra: JSON-serialisable provenance.
    """
    record = {"spec": spec.to_dict(), "generator_spec": generator_spec.to_dict(), **extra}
    return ENCODER.save(directory, record, {"params": variables["params"], "batch_stats": variables["batch_stats"]})


def load_encoder(path: str | os.PathLike) -> tuple[networks.EncoderSpec, dict]:
    """(spec, variables) from an encoder directory or an encoder training workdir.

    Raises:
      ValueError: naming ``--encoder`` when the path is missing, not an encoder, or its weights
        do not match the architecture it declares.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise ValueError(f"--encoder={path}: no such directory (expected an encoder directory or training workdir)")
    path, _, spec = ENCODER.open_spec(path, networks.EncoderSpec.from_dict)
    return spec, ENCODER.load(path, jax.eval_shape(lambda: spec.init(jax.random.key(0))))


def encoder_generator_spec(path: str | os.PathLike) -> generators.GeneratorSpec | None:
    """The generator architecture an encoder directory (or workdir) was trained for, if recorded."""
    _, meta = ENCODER.open(path, check_version=False)
    return generators.GeneratorSpec.from_dict(meta["generator_spec"]) if "generator_spec" in meta else None


def save_discriminator(
    directory: str | os.PathLike, features: tuple[int, ...], image_size: int, channels: int, variables: Any, **extra
) -> str:
    """Write a DCGAN discriminator's ``{params, batch_stats}`` and architecture to ``directory``."""
    record = {"features": list(features), "image_size": image_size, "channels": channels, **extra}
    return DISCRIMINATOR.save(directory, record, variables)


def load_discriminator(path: str | os.PathLike) -> tuple[networks.Discriminator, dict, dict]:
    """(module, variables, record) of a DCGAN workdir's (or a ``discriminator/`` dir's) discriminator."""
    path, meta = DISCRIMINATOR.open(path)
    disc = networks.Discriminator(tuple(meta["features"]))
    shape = (1, meta["image_size"], meta["image_size"], meta["channels"])
    abstract = jax.eval_shape(lambda: dict(disc.init(jax.random.key(0), jnp.zeros(shape), train=False)))
    return disc, DISCRIMINATOR.load(path, abstract), meta


# --------------------------------------------------------------------------- run checkpoints
class Checkpointer:
    """Numbered checkpoints of one state pytree under ``directory`` (an orbax ``CheckpointManager``).

    Args:
      directory: where ``<step>/`` directories go; made absolute (orbax rejects relative
        paths) and created.
      keep: how many of the latest checkpoints to keep.
      asynchronous: :meth:`save` returns while orbax writes (False: once written).
      alone: this process writes alone (:func:`process_local`), e.g. per-process work
        in a multi-host job.

    Example::

        ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=2)
        restored = ckpt.restore(jax.eval_shape(init), "--workdir=runs/x")   # None: start afresh
        step, state = restored if restored is not None else (0, init())
        ckpt.save(step, state)
        ckpt.close()                                                        # waits for the writes
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 2, asynchronous: bool = True, alone: bool = False):
        self.directory = os.path.abspath(os.fspath(directory))
        os.makedirs(self.directory, exist_ok=True)  # orbax refuses create=True with active_processes
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=False,
            cleanup_tmp_directories=True,  # a killed run's torn step
            enable_async_checkpointing=asynchronous,
            **({"multiprocessing_options": process_local()} if alone else {}),
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self.manager.latest_step()

    def restore(self, abstract: Any, what: str, step: int | None = None) -> tuple[int, Any] | None:
        """(step, state) of checkpoint ``step`` (default: the newest), or None when there is none.

        Args:
          abstract: ``jax.eval_shape`` of the initial state (tree, shapes, dtypes, shardings).
          what: how to name the run in an error (e.g. ``--workdir=runs/glo``).

        Raises:
          ValueError: the checkpoint holds a tree of other shapes (another architecture).
        """
        step = self.manager.latest_step() if step is None else step
        if step is None:
            return None
        mismatch = f"{what}: its checkpoint {step} does not match this run's architecture"
        try:
            state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax raises several types for a tree of other shapes
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise ValueError(f"{mismatch} ({first[:200]}); use another --workdir") from None
        if _shapes(abstract) != _shapes(state):
            raise ValueError(f"{mismatch}; use another --workdir")
        return step, state

    def save(self, step: int, state: Any) -> None:
        """Start saving ``state`` as checkpoint ``step`` (copied to host memory first).

        The copy matters: a jitted step donates its state buffers, so an asynchronous writer
        must not read device memory that the next step reuses.
        """
        host = jax.tree.map(lambda a: np.array(a, copy=True), jax.device_get(state))
        self.manager.save(step, args=ocp.args.StandardSave(host), force=True)

    def wait(self) -> None:
        """Block until every started save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _shapes(tree: Any) -> Any:
    return jax.tree.map(lambda a: (tuple(np.shape(a)), np.dtype(a.dtype)), tree)


class BatchCheckpoint:
    """The recovery state of one batch of a manifest job, so that a killed job resumes it.

    A :class:`Checkpointer` (latest kept, synchronous: the state's buffers are donated to the
    next step right after a save; process-local) plus ``directory/history_<step>.npz``, the host
    history up to that step, written first, so any step orbax reports as saved has its history.
    """

    def __init__(self, directory: str | os.PathLike):
        self.steps = Checkpointer(directory, keep=1, asynchronous=False, alone=True)
        self.directory = self.steps.directory

    def restore(self, like_state: Any) -> tuple[Any, dict] | None:
        """(state, history) of the latest checkpoint, or None; ``like_state`` gives shapes and shardings."""
        got = self.steps.restore(jax.tree.map(_abstract, like_state), f"the batch checkpoint {self.directory}")
        if got is None:
            return None
        step, state = got
        with np.load(self._history(step)) as f:
            return state, {k: f[k] for k in f.files}

    def _history(self, step: int) -> str:
        return os.path.join(self.directory, f"history_{step}.npz")

    def save(self, state: Any, hist: dict) -> None:
        step = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])
        with io.atomic_write(self._history(step)) as tmp:
            np.savez(tmp, **hist)
        self.steps.save(step, state)
        for old in os.listdir(self.directory):
            if old.startswith("history_") and old != os.path.basename(self._history(step)):
                os.remove(os.path.join(self.directory, old))

    def close(self, delete: bool) -> None:
        self.steps.close()
        if delete:
            shutil.rmtree(self.directory, ignore_errors=True)


def _abstract(a: Any) -> jax.ShapeDtypeStruct:
    if isinstance(a, jax.Array):
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding)
    a = np.asarray(a)
    return jax.ShapeDtypeStruct(a.shape, a.dtype)
