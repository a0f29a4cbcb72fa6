"""Checkpoints (orbax) and atomic result files: save, restore the latest good one, resume.

Orbax writes every checkpoint into a temporary directory and renames it only when complete, so
a run killed mid-save never leaves a half-written checkpoint that looks finished. On restore,
the newest checkpoint is tried first; one that fails to load (corrupt or truncated files) is
reported, moved aside to ``corrupt-<step>`` (never deleted) and the previous one is used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """No usable checkpoint could be restored although some exist."""


class Checkpointer:
  """Saves and restores a train-state pytree plus a small JSON ``meta`` dict.

  Args:
    directory: where the numbered checkpoints live (created if missing).
    max_to_keep: how many recent checkpoints to keep (at least 2, so that a corrupt latest one
      leaves a previous one to fall back on).
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max(2, max_to_keep), create=True, enable_async_checkpointing=False))

  def steps(self) -> list[int]:
    """Finalised checkpoint steps, oldest first."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, meta: dict | None = None) -> None:
    """Writes checkpoint ``step`` (blocking until it is complete and renamed into place)."""
    if step in self.steps():
      return
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})))
    self._manager.wait_until_finished()

  def restore(self, target: Any) -> tuple[Any, dict, int] | None:
    """Restores the newest loadable checkpoint into the structure/shardings of ``target``.

    Returns:
      ``(state, meta, step)``, or None when there is no checkpoint at all.

    Raises:
      CheckpointError: checkpoints exist but none of them can be read.
    """
    steps = self.steps()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    for step in reversed(steps):
      try:
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["meta"] or {}), step
      except Exception as e:  # pylint: disable=broad-except
        log.warning("checkpoint %d in %s is unreadable (%s: %s); moving it aside and trying the "
                    "previous one.", step, self.directory, type(e).__name__, str(e)[:200])
        self._move_aside(step)
    if steps:
      raise CheckpointError(f"none of the checkpoints {steps} in {self.directory} could be read; "
                            "delete that directory to start the stage afresh.")
    return None

  def _move_aside(self, step: int) -> None:
    src = os.path.join(self.directory, str(step))
    if jax.process_index() == 0 and os.path.isdir(src):
      dst = os.path.join(os.path.dirname(self.directory), f"corrupt-{os.path.basename(self.directory)}-{step}")
      shutil.rmtree(dst, ignore_errors=True)
      shutil.move(src, dst)
    self._manager.reload()

  def close(self) -> None:
    self._manager.close()


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON to ``path`` via a temporary file and ``os.replace``: never half-written."""
  if jax.process_index() != 0:
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
  with os.fdopen(fd, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_to_builtin)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def save_npz_atomic(path: str, **arrays) -> None:
  """Writes an ``.npz`` via a temporary file and ``os.replace``."""
  import numpy as np
  if jax.process_index() != 0:
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp.npz")
  with os.fdopen(fd, "wb") as f:
    np.savez(f, **arrays)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  """Reads a JSON file, with a clear error when it is damaged."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}); delete it to recompute that stage.") from e


def _to_builtin(x):
  import numpy as np
  if isinstance(x, (np.generic,)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"cannot write {type(x).__name__} to JSON")
