r"""The one entry point: every stage a config asks for, in a workdir that makes it resumable.

  python launch/run.py --config=configs/synthetic.py --workdir=runs/synthetic \
      [--config.explainer.beta=0.5] [--config.stages=evaluate,report]

This file parses the flags and calls the pipeline, which prepares the run once
(``run.pipeline.prepare``): before anything is computed or written, the config is checked whole
(types by the locked ConfigDict, ranges, names, consistency, a dry build of the real networks),
the workdir is locked (one run at a time) and compared with the run it holds. Mistakes the user
can fix (``xplain_jax.errors.XplainError``) end the run with one line on stderr, ``error: ...``,
saying what was wrong and what to do: exit status 2 for a config or usage problem (the config file
itself included), 1 for anything found while running (a full disk in any writer included), 130 for
Ctrl-C and 143 for SIGTERM. Every other exception is a bug and keeps its traceback.
``WORKDIR/command.json`` records the command (``--config`` and its overrides) and whether every
stage it asked for has ended (``finished``), so a study never takes a cut-off run for done. A run
killed at any moment resumes from its last checkpoint when the same command is rerun.
"""

import gc
import logging as pylogging
import os
import re
import signal
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
import ml_collections  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from xplain_jax import errors  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, metrics and the report.")

USAGE = ("usage: python launch/run.py --config=configs/FILE.py[:ARG] --workdir=DIR "
         "[--config.FIELD=VALUE ...]")
INTERRUPTED = "interrupted; rerun the same command to resume"
_TYPE_PARSERS = {int: flags.IntegerParser(), float: flags.FloatParser(),
                 bool: flags.BooleanParser()}  # absl's, as ml_collections parses such fields
_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false"}
_OVERRIDE = re.compile(r"-{1,2}(no)?config\.([^=]*)(=.*)?", re.DOTALL)  # --[no]config.FIELD[=V]


def _exit(message: str, code: int) -> None:
  gc.collect()  # anything collected now reports before the error line, not after it
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(code)


def _config_files(argv) -> list:
  """The ``--config`` arguments (``FILE[:ARG]``) of a command line, in order."""
  found = []
  for i, a in enumerate(argv):
    if a == "--":
      break
    name, eq, value = a.lstrip("-").partition("=")
    if a.startswith("-") and name == "config":
      found.append(value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
  return found


def _config_file(argv=None) -> str:
  """The ``--config`` argument of a command line (``sys.argv`` by default); "" when none."""
  return (_config_files(sys.argv if argv is None else argv) or [""])[-1]


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
  path, colon, config_arg = arg.partition(":")
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
    config = namespace["get_config"](*([config_arg] if colon else []))
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
    match = _OVERRIDE.fullmatch(argv[i])
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


def parse_flags(argv):
  """Parses the command line; any mistake becomes one ``error:`` line and exit status 2.

  The config file is loaded and the overrides checked first (``load_config``,
  ``check_overrides``), so that their errors are worded here; absl and ml_collections then parse
  the same command line, and their own exceptions word whatever else is wrong with it."""
  try:
    expanded = FLAGS.read_flags_from_files(argv, force_gnu=False)  # --flagfile=FILE
    if len(_config_files(expanded)) > 1:
      _exit(f"--config is given {len(_config_files(expanded))} times; give it once. {USAGE}", 2)
    if _config_file(expanded):
      check_overrides(load_config(_config_file(expanded)), expanded[1:])
    elif any(_OVERRIDE.fullmatch(a) for a in expanded[1:]):
      _exit(f"--config is required with --config.FIELD overrides. {USAGE}", 2)
    rest = FLAGS(argv)
  except KeyboardInterrupt as e:
    _interrupted(e)
  except errors.XplainError as e:
    _exit(errors.one_line(e), 2)
  except flags.UnrecognizedFlagError as e:
    _exit(f"unknown command line flag --{e.flagname}; {USAGE}", 2)
  except Exception as e:  # pylint: disable=broad-except  (all of it is the user's command)
    _exit(f"{errors.one_line(e)}; {USAGE}", 2)
  for name in ("config", "workdir"):
    if FLAGS[name].value is None:
      _exit(f"--{name} is required. {USAGE}", 2)
  return rest


def _quiet_unraisable(unraisable) -> None:
  """Drops "Exception ignored in <coroutine>" reports (with their tracebacks) that Python
  prints when orbax's abandoned read tasks of an unreadable checkpoint are collected; the
  checkpoint's problem itself is reported by ``xplain_jax.infra.checkpoint``."""
  logging.debug("ignored in %r: %r", unraisable.object, unraisable.exc_value)


def _handled_signals(config) -> tuple:
  """Ctrl-C always; SIGTERM only in a one-process run: with several processes it is left to
  JAX's preemption notifier, whose sync point makes every process save at the same step
  (``train.preemption``)."""
  distributed = config.get("distributed", {}) if config is not None else {}
  if int(distributed.get("num_processes", 0) or 0) > 1:
    return (signal.SIGINT,)
  return (signal.SIGINT, signal.SIGTERM)


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  sys.unraisablehook = _quiet_unraisable
  warnings.filterwarnings("ignore", message="coroutine .* was never awaited",
                          category=RuntimeWarning)  # the same abandoned tasks, at exit
  pylogging.getLogger("asyncio").setLevel(pylogging.CRITICAL)  # "Future exception was never
  # retrieved": the same abandoned tasks again
  if len(argv) > 1:
    _exit(f"unexpected arguments {argv[1:]}; pass settings as --config.FIELD=VALUE.", 2)
  on_signal = _OnSignal()
  for signum in _handled_signals(FLAGS.config):
    signal.signal(signum, on_signal)
  try:
    from xplain_jax.infra import compile_cache  # pylint: disable=import-outside-toplevel
    compile_cache.enable()  # before the first jit: a rerun or resume reads its compiles back
    from xplain_jax.run import pipeline  # pylint: disable=import-outside-toplevel
    pipeline.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                                command=(_config_file(), overrides(sys.argv)))
  except KeyboardInterrupt as e:
    _interrupted(e)
  except Exception as e:  # pylint: disable=broad-except
    full = None if errors.is_user_error(e) else errors.storage_error(e)
    if full is not None:  # a full disk in any writer (figures, logs, libraries)
      _exit(errors.one_line(full), errors.exit_code(full))
    if not errors.is_user_error(e):
      raise  # a bug: the traceback is what its reader needs
    _exit(errors.one_line(e), errors.exit_code(e))


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


class _OnSignal:
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


def _interrupted(e: BaseException) -> None:
  """One line, then an immediate exit: library threads (an orbax save) cut off mid-way would
  otherwise print their tracebacks after it. Checkpoints are renamed into place only when
  complete and the lock dies with the process, so nothing is left half-made."""
  for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
  threading.excepthook = lambda args: None
  signum = e.args[0] if e.args and isinstance(e.args[0], int) else signal.SIGINT
  gc.collect()
  sys.stdout.flush()
  print(f"error: {INTERRUPTED}", file=sys.stderr, flush=True)
  os._exit(128 + int(signum))  # pylint: disable=protected-access


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
