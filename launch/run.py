r"""The one entry point: every stage a config asks for, in a workdir that makes it resumable.

  python launch/run.py --config=configs/synthetic.py --workdir=runs/synthetic \
      [--config.explainer.beta=0.5] [--config.stages=evaluate,report]

This file parses the flags and calls the pipeline, which prepares the run once
(``train.pipeline.prepare``): before anything is computed or written, the config is checked whole
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
import signal
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402
from ml_collections.config_flags import config_path  # noqa: E402

from xplain_jax import errors  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, metrics and the report.")

USAGE = ("usage: python launch/run.py --config=configs/FILE.py[:ARG] --workdir=DIR "
         "[--config.FIELD=VALUE ...]")
INTERRUPTED = "interrupted; rerun the same command to resume"


def _exit(message: str, code: int) -> None:
  gc.collect()  # anything collected now reports before the error line, not after it
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(code)


def _frames(e: BaseException):
  tb = e.__traceback__
  while tb is not None:
    yield tb.tb_frame
    tb = tb.tb_next


def _config_file() -> str:
  """The ``--config`` argument (``FILE[:ARG]``) as given on the command line."""
  argv = sys.argv
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return ""


def _unknown_override(e: BaseException) -> str | None:
  """The first ``--config.FIELD`` override that the loaded config lacks (ml_collections's own
  config and override list, from the frame of its flag parser that raised)."""
  for frame in _frames(e):
    loc = frame.f_locals
    if frame.f_code.co_name == "_parse" and "config" in loc and "overrides" in loc:
      for path in loc["overrides"]:
        try:
          config_path.get_value(path, loc["config"])
        except (AttributeError, KeyError, IndexError, ValueError):
          return path
        except OSError:  # the config file itself failed to load
          return None
  return None


def _config_file_error(e: BaseException, path: str) -> str | None:
  """A one-line description of a problem in the config file itself, or None."""
  for err in reversed(errors.exception_chain(e)):  # innermost first (ml_collections re-raises with a traceback)
    if isinstance(err, errors.XplainError):  # get_config rejected its argument
      return errors.one_line(err)
    if isinstance(err, SyntaxError):
      return (f"cannot load the config file {path}: {err.msg} at line {err.lineno}; "
              "--config must name a Python file defining get_config(arg).")
    if isinstance(err, AttributeError) and getattr(err, "name", None) == "get_config":
      return (f"the config file {path} defines no get_config(); a config file defines "
              "get_config(arg) returning a ConfigDict (see configs/).")
  root = errors.exception_chain(e)[-1]
  if any(f.f_code.co_name == "get_config" for f in _frames(root)):
    return (f"the config file {path} failed in get_config: {type(root).__name__}: "
            f"{errors.one_line(root)}")
  return None


def _flag_error(e: BaseException) -> tuple[str, int]:
  """What went wrong while parsing the command line, as (message, exit status)."""
  path = _config_file()
  missing = _missing_config_file(path)
  if missing:
    return missing, 2
  field = _unknown_override(e)
  if field is not None:
    return (f"unknown config field --config.{field}: the config has no field {field!r}; check "
            "the spelling against the config file.", 2)
  bad_flag = next((f.f_locals["flag"] for f in _frames(e) if isinstance(f.f_locals.get("flag"),
                                                                           flags.Flag)), None)
  if bad_flag is not None and bad_flag.name.startswith("config."):
    cause = errors.exception_chain(e)[-1]
    return (f"--{bad_flag.name}: {errors.one_line(cause)}; give a value of the type the field "
            f"has in the config file ({bad_flag.flag_type()}).", 2)
  about_file = _config_file_error(e, path.partition(":")[0] or path)
  if about_file:
    return about_file, 2
  if isinstance(e, flags.UnrecognizedFlagError):
    return f"unknown command line flag --{e.flagname}; {USAGE}", 2
  return f"{errors.one_line(e)}; {USAGE}", 2


def parse_flags(argv):
  """Parses the command line; any mistake becomes one ``error:`` line and exit status 2."""
  try:
    rest = FLAGS(argv)
  except KeyboardInterrupt as e:
    _interrupted(e)
  except Exception as e:  # pylint: disable=broad-except  (all of it is the user's command)
    _exit(*_flag_error(e))
  for name in ("config", "workdir"):
    if FLAGS[name].value is None:
      _exit(f"--{name} is required. {USAGE}", 2)
  try:
    FLAGS.config.keys()  # the config file could not be read (ml_collections defers the error)
  except OSError:
    _exit(_missing_config_file(_config_file()) or _missing_config_file(_config_file(), True), 2)
  return rest


def _missing_config_file(arg: str, unreadable: bool = False) -> str | None:
  """The one-line error for a ``--config`` file that does not exist (or, with
  ``unreadable``, cannot be read); None when it exists."""
  path = arg.partition(":")[0]
  if not path or (os.path.isfile(path) and not unreadable):
    return None
  why = "it does not exist" if not os.path.exists(path) else "it cannot be read"
  return (f"cannot load the config file {path!r}: {why}; pass --config=configs/FILE.py[:ARG] "
          "with a file that exists.")


def _quiet_unraisable(unraisable) -> None:
  """Drops "Exception ignored in <coroutine>" reports (with their tracebacks) that Python
  prints when orbax's abandoned read tasks of an unreadable checkpoint are collected; the
  checkpoint's problem itself is reported by ``xplain_jax.checkpoint``."""
  logging.debug("ignored in %r: %r", unraisable.object, unraisable.exc_value)


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
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, on_signal)
  try:
    from xplain_jax.train import pipeline  # pylint: disable=import-outside-toplevel
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
