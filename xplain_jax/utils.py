"""Small helpers every layer uses: the atomic file write, dotted keys, comma-separated lists.

Each exists once, here. This module imports only the standard library and ``errors``, so any
module of the package (the maths included) may use it without importing upward.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from typing import Any, Callable

from xplain_jax.errors import StorageError


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_atomic(path: str | os.PathLike, write: Callable[[Any], None], *,
                 binary: bool = True) -> None:
  """Writes ``path`` through ``write(file)`` into a temporary file renamed into place.

  The temporary file sits in the same folder (created if missing), is flushed and fsynced
  before ``os.replace``, so a kill or a crash leaves either the previous file or the complete
  new one, never half of it. The file gets the permissions the user's umask gives a new file
  (not mkstemp's 0600). When the write fails (a full disk, a quota), the temporary file is
  removed and the previous ``path`` (if any) is kept.

  Args:
    path: the file to write.
    write: called once with the open temporary file (bytes when ``binary``, else UTF-8 text).
    binary: open the temporary file in binary (default) or text mode.

  Raises:
    StorageError: the file could not be written (the message names it and what to do).
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  tmp = None
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())
    with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
    tmp = None
  except OSError as e:
    raise write_error(e, path) from None
  finally:
    if tmp is not None:
      with contextlib.suppress(OSError):
        os.remove(tmp)


def write_error(e: OSError, path: str) -> StorageError:
  """A one-line ``StorageError`` for an ``OSError`` met while writing ``path``: what stood in
  the way (a full disk, no permission, a folder where the file goes, a file where a folder
  goes) and what to do."""
  if e.errno in (errno.ENOSPC, errno.EDQUOT):
    why, fix = "the disk is full", "free space"
  elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
    why, fix = (f"{e.strerror or 'permission denied'}",
                f"make {os.path.dirname(os.path.abspath(path))} writable")
  elif e.errno == errno.EISDIR:
    why, fix = "a folder of that name is in the way", "move that folder away"
  elif e.errno in (errno.EEXIST, errno.ENOTDIR):
    why, fix = ("a file stands where a folder of its path belongs",
                f"move the file {e.filename or 'named'} away")
  else:
    why, fix = e.strerror or type(e).__name__, "fix the cause"
  return StorageError(f"cannot write {path}: {why}; {fix} and rerun the same command to "
                      "resume.")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """A nested mapping as ``{"a.b.c": leaf}``, in key order.

  Args:
    tree: a dict, ``ml_collections.ConfigDict`` or anything else with ``items()``; nested
      values with ``items()`` are descended into, every other value is a leaf (kept as is).
    prefix: put in front of every key (``"config."`` gives ``"config.a.b"``).

  Returns:
    one entry per leaf; an empty nested mapping gives no entry.
  """
  out: dict[str, Any] = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if hasattr(value, "items"):
      out.update(flatten(value, path + "."))
    else:
      out[path] = value
  return out


def split_list(text: Any) -> list[str]:
  """The comma-separated words of a config string: ``"a, b,,c"`` -> ``["a", "b", "c"]``.

  Args:
    text: a string (anything else is passed through ``str`` first).

  Returns:
    the words, stripped of surrounding blanks, empty ones dropped, in order.
  """
  return [word.strip() for word in str(text).split(",") if word.strip()]


def get_field(config: Any, dotted: str) -> Any:
  """The value of the dotted field ``"block.field"`` of a ConfigDict (or nested dict).

  Raises:
    KeyError: a part of the path does not exist.
  """
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def set_fields(config: Any, fields: dict[str, Any]) -> Any:
  """Sets each dotted field of ``fields`` (``{"explainer.beta": 1.0}``) in ``config``, in
  place, and returns ``config``."""
  for dotted, value in fields.items():
    head, _, last = dotted.rpartition(".")
    (get_field(config, head) if head else config)[last] = value
  return config
