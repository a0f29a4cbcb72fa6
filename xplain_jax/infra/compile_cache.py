"""Compile once: JAX's persistent compilation cache, on by default for every entry point.

Each process that trains a performer, featurises a dataset or fits an explainer compiles the same
XLA programs; with the cache on, a second process with the same shapes (a resumed run, the next
run of a study, a second own-model fit, a test's subprocess) reads the compiled program from disk
instead. ``launch/run.py``, ``launch/study.py``, ``api.fit_explainer`` / ``featurize_dataset`` and
the test suite call ``enable()`` before they compile anything.

Where it lives, first match wins:

* ``XPLAIN_JAX_COMPILATION_CACHE=PATH``: that folder; ``=off`` switches the cache off;
* a folder set already through JAX (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update("jax_compilation_cache_dir", ...)`` in the caller's own code);
* ``$XDG_CACHE_HOME/xplain_jax/jax_compilation_cache`` (``~/.cache/...`` without XDG_CACHE_HOME).

Clearing it is deleting the folder (``python -m xplain_jax.infra.compile_cache --clear``); entries
are keyed by the program, the JAX/jaxlib version, the backend and XLA flags, so a stale entry is
never used, only kept. JAX keeps a program only when it took at least ``MIN_COMPILE_SECONDS`` to
compile: CPU compiles of this project's small programs mostly take well under JAX's default of 1 s,
so the threshold is far below it, yet above the few milliseconds of an eager op, which would only
fill the folder.

Example:
  >>> from xplain_jax.infra import compile_cache
  >>> folder = compile_cache.enable()  # before the first jit; None when switched off
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil

import jax

ENV_VAR = "XPLAIN_JAX_COMPILATION_CACHE"
OFF = "off"
# Compiles shorter than this are not written: eager ops (milliseconds) would only fill the folder.
MIN_COMPILE_SECONDS = 0.05
# 0 for JAX means "no size limit, unless the filesystem's cache backend sets one"; -1 is none ever.
MIN_ENTRY_BYTES = -1

_log = logging.getLogger(__name__)


def default_dir() -> str:
  """The folder used when neither ``XPLAIN_JAX_COMPILATION_CACHE`` nor JAX names one."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "xplain_jax", "jax_compilation_cache")


def resolve_dir() -> str | None:
  """The cache folder ``enable()`` would use now, or None when the cache is switched off."""
  chosen = os.environ.get(ENV_VAR, "").strip()
  if chosen.lower() == OFF:
    return None
  if chosen:
    return os.path.abspath(os.path.expanduser(chosen))
  return jax.config.jax_compilation_cache_dir or default_dir()


def enable() -> str | None:
  """Turns JAX's persistent compilation cache on (idempotent; call it before the first jit).

  Returns:
    The cache folder, or None when ``XPLAIN_JAX_COMPILATION_CACHE=off`` or the folder cannot be
    made (then the run goes on without the cache, after one warning).
  """
  path = resolve_dir()
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    _log.warning("compilation cache off: cannot make %s (%s); set %s=PATH to a writable folder "
                 "or %s=off.", path, e.strerror or e, ENV_VAR, ENV_VAR)
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", MIN_ENTRY_BYTES)
  return path


def disk_usage(path: str) -> tuple[int, int]:
  """``(entries, bytes)`` of the cache folder ``path`` (0, 0 when it does not exist)."""
  count = size = 0
  for root, _, files in os.walk(path):
    for name in files:
      try:
        size += os.path.getsize(os.path.join(root, name))
        count += 1
      except OSError:
        pass  # an entry evicted or written while counting
  return count, size


def main(argv=None) -> None:
  """``python -m xplain_jax.infra.compile_cache [--clear]``: prints the folder and its size."""
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument("--clear", action="store_true", help="delete the cache folder")
  args = parser.parse_args(argv)
  path = resolve_dir()
  if path is None:
    print(f"compilation cache: off ({ENV_VAR}={OFF})")
    return
  count, size = disk_usage(path)
  print(f"compilation cache: {path}: {count} entries, {size / 2**20:.1f} MiB")
  if args.clear and os.path.isdir(path):
    shutil.rmtree(path)
    print(f"cleared {path}")


if __name__ == "__main__":
  main()
