"""Checkpoints (orbax) and atomic result files: save, restore the latest good one, resume.

Orbax writes every checkpoint into a temporary directory and renames it only when complete, so
a run killed mid-save never leaves a half-written checkpoint that looks finished. On restore,
the newest checkpoint is tried first; one that fails to load (corrupt or truncated files) is
reported, moved aside to ``corrupt-<dir>-<step>`` (never deleted) and the previous one is used;
when none can be read, nothing is moved and ``CheckpointError`` says so.

Orbax does not notice every kind of damage: a data file overwritten in place restores as
garbage without an error. Each checkpoint therefore carries a fingerprint of its arrays (two
wrap-around sums of their bits per leaf, ``fingerprint``) in its meta, checked after restoring.

A ``Checkpointer`` given a run identity (``fingerprint=stages.stage_fingerprint(config,
stage)``) saves it in every checkpoint's meta and refuses, before reading any array, to restore
a checkpoint written under another identity: a different config never resumes from, or reuses,
another config's state, whatever happened to ``config.json``.

Result files are written atomically (``utils.write_atomic``: a temporary file renamed into
place, removed again when the write fails, e.g. on a full disk) with the permissions the user's
umask gives, and read back with errors that say what to do (``read_json``, ``load_npz``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from xplain_jax import errors
from xplain_jax.spec import stages
from xplain_jax import utils
from xplain_jax.errors import CheckpointError, DamagedFileError, NonFiniteError, StorageError

log = logging.getLogger(__name__)


class Checkpointer:
  """Saves and restores a train-state pytree plus a small JSON ``meta`` dict.

  Args:
    directory: where the numbered checkpoints live (created if missing).
    max_to_keep: how many recent checkpoints to keep (at least 2, so that a corrupt latest one
      leaves a previous one to fall back on).
    fingerprint: the run identity of the stage (``stages.stage_fingerprint``); when given it
      is saved in every checkpoint's meta, and restoring a checkpoint saved under another
      identity (or none) raises ``CheckpointError``.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2, fingerprint: str | None = None):
    self.directory = os.path.abspath(directory)
    self._identity = fingerprint
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
    meta = dict(meta or {}, **{_FINGERPRINT_KEY: fingerprint(state)})
    if self._identity is not None:
      meta[IDENTITY_KEY] = self._identity
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      cause = next((c for c in errors.exception_chain(e) if isinstance(c, OSError)), None)
      full = errors.full_disk(e)
      if cause is None and not full:
        raise
      why = "the disk is full" if full else cause.strerror or type(cause).__name__
      raise StorageError(f"cannot write checkpoint {step} in {self.directory}: {why}; free "
                         "space (or fix the permissions) and rerun the same command to resume "
                         "from the previous checkpoint.") from None

  def _restore_step(self, step: int, abstract: Any) -> tuple[Any, dict]:
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    meta = dict(out["meta"] or {})
    meta.pop(IDENTITY_KEY, None)
    expected = meta.pop(_FINGERPRINT_KEY, None)
    if expected is not None and fingerprint(out["state"]) != list(expected):
      raise ValueError("its arrays do not match the fingerprint saved with them (damaged files)")
    return out["state"], meta

  def restore(self, target: Any) -> tuple[Any, dict, int] | None:
    """Restores the newest loadable checkpoint into the structure/shardings of ``target``.

    Unreadable checkpoints newer than the one restored are moved aside (kept, renamed).

    Returns:
      ``(state, meta, step)``, or None when there is no checkpoint at all.

    Raises:
      CheckpointError: checkpoints exist but none of them can be read (none is moved).
    """
    steps = self.steps()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    failed, problem = [], ""
    for step in reversed(steps):
      self._check_identity(step)
      try:
        state, meta = self._restore_step(step, abstract)
      except Exception as e:  # pylint: disable=broad-except
        why = " ".join(str(e).split()).split(" See full TensorStore details")[0][:160]
        why = f"{type(e).__name__}: {why}"
        problem = problem or why
        log.warning("checkpoint %d in %s is unreadable (%s); trying the previous one.", step,
                    self.directory, why)
        failed.append(step)
        continue
      for bad in failed:
        self._move_aside(bad)
      if failed:
        log.warning("restored checkpoint %d of %s; the unreadable newer checkpoint(s) %s were "
                    "moved aside to corrupt-%s-<step>.", step, self.directory, failed,
                    os.path.basename(self.directory))
      return state, meta, step
    if steps:
      raise CheckpointError(
          f"none of the checkpoints {steps} in {self.directory} can be read (newest: {problem}); "
          "restore that folder from a backup, or start again in a new --workdir.")
    return None

  def _check_identity(self, step: int) -> None:
    """Raises ``CheckpointError`` when checkpoint ``step`` has another run identity (read from
    its meta alone, before any array; an unreadable meta is left to the restore)."""
    if self._identity is None:
      return
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      recorded = dict(out["meta"] or {}).get(IDENTITY_KEY)
    except Exception:  # pylint: disable=broad-except
      return  # damaged meta: the restore reports it and falls back
    stages.check_fingerprint(recorded, self._identity, os.path.dirname(self.directory))

  def _move_aside(self, step: int) -> None:
    src = os.path.join(self.directory, str(step))
    if jax.process_index() == 0 and os.path.isdir(src):
      dst = os.path.join(os.path.dirname(self.directory),
                         f"corrupt-{os.path.basename(self.directory)}-{step}")
      shutil.rmtree(dst, ignore_errors=True)
      shutil.move(src, dst)
    self._manager.reload()

  def close(self) -> None:
    self._manager.close()


_FINGERPRINT_KEY = "_fingerprint"
IDENTITY_KEY = "_identity"  # the run identity in a checkpoint's meta


def _leaf_sums(x: jax.Array) -> jax.Array:
  """Two uint32 wrap-around sums of the bits of ``x``: plain and weighted by odd position."""
  if jnp.issubdtype(x.dtype, jnp.floating):
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  else:
    bits = x.astype(jnp.uint32)
  bits = bits.ravel()
  odd = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
  return jnp.stack([jnp.sum(bits, dtype=jnp.uint32), jnp.sum(bits * odd, dtype=jnp.uint32)])


@jax.jit
def _fingerprint(leaves: list) -> list:
  return [_leaf_sums(x) for x in leaves]


def fingerprint(tree: Any) -> list[int]:
  """A content fingerprint of a pytree of arrays: exact, order-independent of devices.

  Any change of a single element changes it (the position weights are odd, hence invertible
  modulo 2^32). Float leaves are compared as float32 bits.

  Returns:
    ``2 * num_leaves`` Python ints.
  """
  leaves = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
  if not leaves:
    return []
  return [int(v) for pair in jax.device_get(_fingerprint(leaves)) for v in pair]


def _check_finite_json(obj: Any, path: str, where: str = "") -> None:
  """Raises ``NonFiniteError`` naming the first NaN/Inf number in a JSON-able object."""
  if isinstance(obj, dict):
    for k, v in obj.items():
      _check_finite_json(v, path, f"{where}.{k}" if where else str(k))
  elif isinstance(obj, (list, tuple)):
    for i, v in enumerate(obj):
      _check_finite_json(v, path, f"{where}[{i}]")
  elif isinstance(obj, (float, np.floating)) or (
      isinstance(obj, np.ndarray) and np.issubdtype(obj.dtype, np.floating)):
    if not np.all(np.isfinite(obj)):
      raise NonFiniteError(f"{where or 'a value'} is {obj} in {os.path.basename(path)}, which was "
                           f"not written; the previous {path} (if any) is kept. Check the "
                           "inputs and the training logs for NaN.")


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON to ``path`` via a temporary file and ``os.replace``: never half-written.

  Raises:
    NonFiniteError: ``obj`` holds a NaN or Inf (not valid JSON); nothing is written.
    StorageError: the disk is full or the file cannot be written.
  """
  if jax.process_index() != 0:
    return
  _check_finite_json(obj, path)
  text = json.dumps(obj, indent=2, sort_keys=True, default=_to_builtin, allow_nan=False)
  utils.write_atomic(path, lambda f: f.write(text), binary=False)


def save_npz_atomic(path: str, **arrays) -> None:
  """Writes an ``.npz`` via a temporary file and ``os.replace`` (see ``utils.write_atomic``)."""
  if jax.process_index() != 0:
    return
  utils.write_atomic(path, lambda f: np.savez(f, **arrays))


def load_npz(path: str) -> dict[str, np.ndarray]:
  """The arrays of an ``.npz`` result file.

  Raises:
    DamagedFileError: the file is missing, truncated or not an ``.npz`` (the message says to
      delete it and rerun the stage that writes it).
  """
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    why = "it does not exist" if not os.path.exists(path) else f"it is damaged ({type(e).__name__})"
    raise DamagedFileError(f"cannot read {path}: {why}; delete it and rerun the stage that "
                          "writes it (eval/*.npz: the evaluate stage).") from None


def read_json(path: str) -> Any:
  """Reads a JSON file, with a clear error when it is damaged."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DamagedFileError(f"{path} is not valid JSON ({e}); delete it and rerun to recompute "
                           "it.") from e


def _to_builtin(x):
  if isinstance(x, (np.generic,)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"cannot write {type(x).__name__} to JSON")
