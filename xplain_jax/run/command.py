"""The command line of a run, read once: the ``--config=FILE[:ARG]`` file loaded and its
``--config.FIELD=VALUE`` overrides checked with one-line errors, the command recorded in
``command.json``, and the run's end turned into one ``error:`` line and an exit status
(``launch/run.py`` wires them to absl).

Exit statuses: 2 for a config or usage problem (the config file itself included), 1 for anything
found while running (a full disk in any writer included), 130 for Ctrl-C and 143 for SIGTERM.
Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import gc
import logging as pylogging
import os
import re
import signal
import sys
import threading
import time
import warnings
from typing import Callable

from absl import flags, logging
import ml_collections

from xplain_jax import errors

INTERRUPTED = "interrupted; rerun the same command to resume"
OVERRIDE = re.compile(r"-{1,2}(no)?config\.([^=]*)(=.*)?", re.DOTALL)  # --[no]config.FIELD[=V]
_TYPE_PARSERS = {int: flags.IntegerParser(), float: flags.FloatParser(),
                 bool: flags.BooleanParser()}  # absl's, as ml_collections parses such fields
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false"}


def fail(message: str, code: int) -> None:
  """Ends the process with ``error: MESSAGE`` (one line) on stderr and exit status ``code``."""
  gc.collect()  # anything collected now reports before the error line, not after it
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(code)


def _config_flag(arg: str) -> bool:
  return arg.startswith("-") and arg.lstrip("-").partition("=")[0] == "config"


def config_arg(argv) -> str:
  """The ``--config`` argument (``FILE[:ARG]``) of a command line; "" when there is none.

  Raises:
    errors.ConfigError: ``--config`` is given more than once.
  """
  found = []
  for i, a in enumerate(argv):
    if a == "--":
      break
    if _config_flag(a):
      _, eq, value = a.partition("=")
      found.append(value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
  if len(found) > 1:
    raise errors.ConfigError(f"--config is given {len(found)} times; give it once.")
  return found[0] if found else ""


def without_config_arg(argv) -> list:
  """``argv`` less its ``--config FILE`` / ``--config=FILE`` (the overrides are kept)."""
  out, i = [], 0
  while i < len(argv):
    if argv[i] == "--":
      return out + list(argv[i:])
    if _config_flag(argv[i]):
      i += 1 if "=" in argv[i] else 2
      continue
    out.append(argv[i])
    i += 1
  return out


def _missing_config_file(arg: str, unreadable: bool = False) -> str | None:
  """The one-line error for a ``--config`` file that does not exist (or, with
  ``unreadable``, cannot be read); None when it exists."""
  path = arg.partition(":")[0]
  if not path or (os.path.isfile(path) and not unreadable):
    return None
  why = "it does not exist" if not os.path.exists(path) else "it cannot be read"
  return (f"cannot load the config file {path!r}: {why}; pass --config=configs/FILE.py[:ARG] "
          "with a file that exists.")


def load_config(arg: str) -> ml_collections.ConfigDict:
  """What ``--config=FILE[:ARG]`` names: FILE's ``get_config(ARG)`` (``get_config()`` without
  ``:ARG``), as ml_collections calls it.

  Raises:
    errors.ConfigError: one line saying what is wrong with the file and what to do.
  """
  path, colon, config_arg_text = arg.partition(":")
  if _missing_config_file(arg):
    raise errors.ConfigError(_missing_config_file(arg))
  try:
    with open(path, "rb") as f:
      source = f.read()
  except OSError:
    raise errors.ConfigError(_missing_config_file(arg, unreadable=True)) from None
  namespace = {"__name__": "config_file", "__file__": path}
  try:
    exec(compile(source, path, "exec"), namespace)  # pylint: disable=exec-used
  except SyntaxError as e:
    raise errors.ConfigError(f"cannot load the config file {path}: {e.msg} at line {e.lineno}; "
                             "--config must name a Python file defining get_config(arg).") from None
  except Exception as e:  # pylint: disable=broad-except  (the user's file)
    raise _file_error(e, f"the config file {path} failed to load") from None
  if not callable(namespace.get("get_config")):
    raise errors.ConfigError(f"the config file {path} defines no get_config(); a config file "
                             "defines get_config(arg) returning a ConfigDict (see configs/).")
  try:
    config = namespace["get_config"](*([config_arg_text] if colon else []))
  except Exception as e:  # pylint: disable=broad-except  (the user's file)
    raise _file_error(e, f"the config file {path} failed in get_config") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise errors.ConfigError(f"get_config in the config file {path} returned a "
                             f"{type(config).__name__}, not a ConfigDict; return one built from "
                             "xplain_jax.spec.config_base (see configs/).")
  return config


def _file_error(e: Exception, what: str) -> errors.ConfigError:
  """A config file's own exception as one line: its message where it is one of ours (a
  rejected ``get_config`` argument), else ``what`` and the exception."""
  if isinstance(e, errors.XplainError):
    return errors.ConfigError(errors.one_line(e))
  return errors.ConfigError(f"{what}: {type(e).__name__}: {errors.one_line(e)}; fix the config "
                            "file (the files in configs/ show the form).")


def check_overrides(config: ml_collections.ConfigDict, argv) -> None:
  """Checks every ``--config.FIELD[=VALUE]`` of ``argv`` against ``config`` before absl parses
  them: the field exists, is one value (not a block of fields) and ``VALUE`` parses to the
  field's type.

  Raises:
    errors.ConfigError: one line naming the override, what is wrong and what to do.
  """
  i = 0
  while i < len(argv) and argv[i] != "--":
    match = OVERRIDE.fullmatch(argv[i])
    i += 1
    if not match:
      continue
    negated, field, value = match[1], match[2], match[3] and match[3][1:]
    holder = config
    for key in field.split("."):
      if not isinstance(holder, ml_collections.ConfigDict) or key not in holder:
        raise errors.ConfigError(f"unknown config field --config.{field}: the config has no field "
                                 f"{field!r}; check the spelling against the config file.")
      kind, holder = holder.get_type(key), holder[key]
    if isinstance(holder, ml_collections.ConfigDict):
      raise errors.ConfigError(f"--config.{field} is a block of fields, not one value; set its "
                               f"fields one by one: --config.{field}.FIELD=VALUE.")
    if kind is bool and value is None:
      continue  # --config.FIELD / --noconfig.FIELD: true / false
    if negated:
      raise errors.ConfigError(f"--noconfig.{field}: only a true/false field can be negated; pass "
                               f"--config.{field}=VALUE.")
    if value is None:  # --config.FIELD VALUE
      if i == len(argv) or argv[i].startswith("--"):
        raise errors.ConfigError(f"--config.{field} has no value; pass --config.{field}=VALUE.")
      value, i = argv[i], i + 1
    parser = _TYPE_PARSERS.get(kind)
    try:
      if parser is not None:
        parser.parse(value)
    except ValueError:
      raise errors.ConfigError(f"--config.{field}={value}: {value!r} is not of the field's type "
                               f"in the config file ({kind.__name__}); give {_TYPE_WORDS[kind]}."
                               ) from None


def overrides(argv) -> dict:
  """``{FIELD: VALUE text}`` of the ``--config.FIELD=VALUE`` (or ``--config.FIELD VALUE``)
  arguments of a command line, in order."""
  out, i = {}, 1
  while i < len(argv):
    if argv[i].startswith("--config."):
      field, eq, value = argv[i][len("--config."):].partition("=")
      if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
        value, i = argv[i + 1], i + 1
      out[field] = value if eq or value else "true"
    i += 1
  return out


def _quiet_unraisable(unraisable) -> None:
  """Drops "Exception ignored in <coroutine>" reports (with their tracebacks) that Python
  prints when orbax's abandoned read tasks of an unreadable checkpoint are collected; the
  checkpoint's problem itself is reported by ``xplain_jax.infra.checkpoint``."""
  logging.debug("ignored in %r: %r", unraisable.object, unraisable.exc_value)


def quiet_libraries() -> None:
  """Keeps the libraries' routine reports off stderr, where the one error line goes: orbax's
  INFO line per save and the reports of its abandoned read tasks (see ``_quiet_unraisable``)."""
  logging.set_verbosity(logging.WARNING)
  sys.unraisablehook = _quiet_unraisable
  warnings.filterwarnings("ignore", message="coroutine .* was never awaited",
                          category=RuntimeWarning)  # the same abandoned tasks, at exit
  pylogging.getLogger("asyncio").setLevel(pylogging.CRITICAL)  # "Future exception was never
  # retrieved": the same abandoned tasks again


class OnSignal:
  """Ctrl-C or SIGTERM: the run stops through ``KeyboardInterrupt`` at the next Python
  instruction. Repeats within ``GRACE_S`` are ignored (a study forwards what a terminal also
  sends); a later one raises again (in case a library swallowed the first)."""

  GRACE_S = 2.0

  def __init__(self):
    self.last = None

  def __call__(self, signum, frame) -> None:
    del frame
    now = time.monotonic()
    if self.last is not None and now - self.last < self.GRACE_S:
      return
    self.last = now
    raise KeyboardInterrupt(signum)


def interrupted(e: BaseException) -> None:
  """One line, then an immediate exit (128 + the signal): library threads (an orbax save) cut
  off mid-way would otherwise print their tracebacks after it. Checkpoints are renamed into
  place only when complete and the lock dies with the process, so nothing is left half-made."""
  for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
  threading.excepthook = lambda args: None
  signum = e.args[0] if e.args and isinstance(e.args[0], int) else signal.SIGINT
  gc.collect()
  sys.stdout.flush()
  print(f"error: {INTERRUPTED}", file=sys.stderr, flush=True)
  os._exit(128 + int(signum))  # pylint: disable=protected-access


def run_or_exit(fn: Callable[[], object]) -> None:
  """Calls ``fn``; Ctrl-C or SIGTERM (``interrupted``), a user error or a full disk in any
  writer (figures, logs, libraries) end the process with one line, a bug keeps its traceback."""
  try:
    fn()
  except KeyboardInterrupt as e:
    interrupted(e)
  except Exception as e:  # pylint: disable=broad-except
    full = None if errors.is_user_error(e) else errors.storage_error(e)
    if full is not None:
      fail(errors.one_line(full), errors.exit_code(full))
    if not errors.is_user_error(e):
      raise  # a bug: the traceback is what its reader needs
    fail(errors.one_line(e), errors.exit_code(e))
