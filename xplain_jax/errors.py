"""Which exceptions are the user's to fix, and how they are shown: one line, no traceback."""

from __future__ import annotations

import errno


class XplainError(Exception):
  """A problem the user can fix; the message says what was wrong and what to do (one line)."""


class ConfigError(XplainError, ValueError):
  """A config field or command-line usage is invalid (exit status 2)."""


class DataError(XplainError, ValueError):
  """A dataset is missing, unprepared, damaged or inconsistent (or a data argument is invalid)."""


class CheckpointError(XplainError, RuntimeError):
  """No usable checkpoint (or result file) could be restored although some exist."""


class DamagedFileError(CheckpointError, ValueError):
  """A result file of the workdir (JSON, npz) is truncated or not what it should be."""


class NonFiniteError(XplainError, FloatingPointError):
  """A loss, gradient, metric or parameter became NaN or Inf."""


class DatasetNotPreparedError(DataError, FileNotFoundError):
  """A dataset's prepared files were not found (the message says how to prepare them)."""


class MissingDependencyError(XplainError, ImportError):
  """An optional package a feature needs is not installed (the message names the pip extra)."""


class WorkdirBusyError(XplainError):
  """Another run holds the workdir's lock (the message names the holder)."""


class StorageError(XplainError, OSError):
  """A file could not be written (disk full, no permission); nothing half-written is left."""


def is_user_error(e: BaseException) -> bool:
  """True for an ``XplainError`` (shown as one line); everything else is a bug that keeps its
  traceback."""
  return isinstance(e, XplainError)


def one_line(e: BaseException) -> str:
  """The exception's message on one line (a KeyError's quotes stripped)."""
  msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
  return " ".join(msg.split()) or type(e).__name__


def exit_code(e: BaseException) -> int:
  """2 for config/usage errors, 1 for problems found while running."""
  return 2 if isinstance(e, ConfigError) else 1


def exception_chain(e: BaseException | None) -> list:
  """``e`` and the exceptions it was raised from or while handling, outermost first."""
  out = []
  while e is not None and e not in out:
    out.append(e)
    e = e.__cause__ or e.__context__
  return out


_FULL = (errno.ENOSPC, errno.EDQUOT)
# How libraries that do not raise OSError (orbax through TensorStore) word a full disk.
_FULL_WORDS = ("RESOURCE_EXHAUSTED", "No space left on device", "Disk quota exceeded")


def full_disk(e: BaseException) -> OSError | bool:
  """Whether ``e`` (or an exception in its chain) says the disk or quota is full: the OSError
  when one does (its ``filename`` names the file), True for a library's own wording, else
  False."""
  for err in exception_chain(e):
    if isinstance(err, OSError) and err.errno in _FULL:
      return err
  return any(w in str(err) for err in exception_chain(e) for w in _FULL_WORDS)


def storage_error(e: BaseException) -> StorageError | None:
  """A one-line ``StorageError`` for a full disk anywhere in ``e``'s chain, else None."""
  full = full_disk(e)
  if not full:
    return None
  name = getattr(full, "filename", None) if isinstance(full, OSError) else None
  return StorageError(f"cannot write {name or 'a file'}: the disk is full; free space and rerun "
                      "the same command to resume.")
