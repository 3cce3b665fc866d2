"""Training checkpoints: an orbax ``CheckpointManager`` over one plain pytree of arrays.

A training state (parameters, batch statistics, optimiser states, step, GLO codes, data-order
state) is saved under ``<workdir>/checkpoints/<step>/`` every ``checkpoint_every`` steps and at
the end; the last ``keep`` are kept. Saving is asynchronous: :meth:`TrainCheckpointer.save`
copies the state to host memory and returns while orbax writes it; orbax writes into a
temporary directory and renames it when complete, so a process killed at any moment (SIGKILL
included) leaves only complete checkpoints behind, and :meth:`restore_latest` picks the newest
of them. Restoring is done against an abstract target (``jax.eval_shape`` of the initial
state), so shapes and dtypes are checked and a checkpoint of another architecture is refused
with one line rather than a tree-mismatch traceback.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

SUBDIR = "checkpoints"


class TrainCheckpointer:
    """Save and restore one training state pytree under ``<workdir>/checkpoints``.

    Args:
      workdir: the training workdir (made absolute: orbax rejects relative paths).
      keep: how many of the latest checkpoints to keep.
    """

    def __init__(self, workdir: str | os.PathLike, *, keep: int = 2):
        self.directory = os.path.join(os.path.abspath(os.fspath(workdir)), SUBDIR)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore_latest(self, abstract_state: Any, what: str) -> tuple[int, Any] | None:
        """(step, state) of the newest complete checkpoint, or None when there is none.

        Args:
          abstract_state: ``jax.eval_shape`` of the initial state (shapes, dtypes, tree).
          what: how to name the workdir in an error (e.g. ``--workdir=runs/glo``).

        Raises:
          ValueError: the checkpoint holds a tree of other shapes (another architecture).
        """
        step = self.manager.latest_step()
        if step is None:
            return None
        try:
            state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as e:  # orbax raises several types for a tree of other shapes
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise ValueError(
                f"{what}: its checkpoint {step} does not match this run's architecture ({first[:200]}); "
                "use another --workdir"
            ) from None
        _check_shapes(abstract_state, state, what, step)
        return step, state

    def save(self, step: int, state: Any) -> None:
        """Start saving ``state`` as checkpoint ``step`` (copied to host memory first).

        The copy matters: the training step donates its state buffers, so an asynchronous
        writer must not read device memory that the next step reuses.
        """
        host = jax.tree.map(lambda a: np.array(a, copy=True), jax.device_get(state))
        self.manager.save(step, args=ocp.args.StandardSave(host), force=True)

    def wait_until_finished(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _check_shapes(abstract: Any, state: Any, what: str, step: int) -> None:
    want = jax.tree.map(lambda a: (tuple(a.shape), np.dtype(a.dtype)), abstract)
    got = jax.tree.map(lambda a: (tuple(np.shape(a)), np.dtype(a.dtype)), state)
    if want != got:
        raise ValueError(f"{what}: its checkpoint {step} does not match this run's architecture; use another --workdir")
