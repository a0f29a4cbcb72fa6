r"""The one entry point: every stage a config asks for, in a workdir that makes it resumable.

  python launch/run.py --config=configs/synthetic.py --workdir=runs/synthetic \
      [--config.explainer.beta=0.5] [--config.stages=evaluate,report]

Mistakes (bad flags, bad config values, missing data, unreadable checkpoints, NaN losses) end
the run with one line on stderr, ``error: ...``, saying what was wrong and what to do, and no
traceback: exit status 2 for a config or usage error, 1 for anything found while running.
A run killed at any moment resumes from its last checkpoint when the same command is rerun.
"""

import gc
import importlib.util
import logging as pylogging
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, metrics and the report.")
flags.mark_flags_as_required(["config", "workdir"])

USAGE = ("usage: python launch/run.py --config=configs/FILE.py[:ARG] --workdir=DIR "
         "[--config.FIELD=VALUE ...]")


def _exit(message: str, code: int) -> None:
  gc.collect()  # anything collected now reports before the error line, not after it
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def _one_line(text: str) -> str:
  """The informative line of a flag error (ml_collections embeds whole tracebacks in some)."""
  lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
  if any(ln.startswith("Traceback") for ln in lines):
    lines = [lines[-1]]  # "ValueError: ..." raised by the config file
  return " ".join(" ".join(lines).split())


def _config_arg(argv) -> str | None:
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _unknown_field(argv) -> str | None:
  """The first ``--config.FIELD`` override whose FIELD is not in the config file's config."""
  path = _config_arg(argv)
  if not path:
    return None
  file, _, arg = path.partition(":")
  try:
    spec = importlib.util.spec_from_file_location("_run_config", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  except Exception:  # pylint: disable=broad-except
    return None
  for a in argv:
    if not a.startswith("--config."):
      continue
    dotted = a[len("--config."):].split("=", 1)[0]
    node = config
    for part in dotted.split("."):
      if not hasattr(node, "keys") or part not in node.keys():
        return dotted
      node = node[part]
  return None


def parse_flags(argv):
  """Parses the command line; any mistake becomes one ``error:`` line and exit status 2."""
  try:
    rest = FLAGS(argv)
    FLAGS.config.keys()  # raises OSError when the config file failed to load
    return rest
  except flags.Error as e:
    msg = _one_line(e)
    for name in ("config", "workdir"):
      if f"Flag --{name} must have a value other than None" in msg:
        _exit(f"--{name} is required. {USAGE}", 2)
    if "Unknown command line flag 'config." in msg:
      field = msg.split("'config.", 1)[1].split("'", 1)[0]
      _exit(f"unknown config field --config.{field}: the config has no field {field!r}; "
            "check the spelling against the config file.", 2)
    if msg.startswith("flag --config."):  # a value of the wrong type
      _exit(f"{msg}; give a value of the type the field has in the config file.", 2)
    if "Error whilst parsing config file" in msg or msg.startswith("ValueError: "):
      _exit(f"the config file rejected its argument: {msg.removeprefix('ValueError: ')}", 2)
    _exit(f"{msg}; {USAGE}" if "Unknown command line flag" in msg else msg, 2)
  except (AttributeError, KeyError) as e:  # an override of a field the locked config lacks
    field = _unknown_field(argv)
    what = f"--config.{field}" if field else f"a --config.FIELD override ({_one_line(e)})"
    _exit(f"unknown config field {what}: the config has no such field; check the spelling "
          "against the config file.", 2)
  except OSError as e:  # config file missing or unreadable
    path = (_config_arg(argv) or "").partition(":")[0]
    why = "it does not exist" if not os.path.exists(path) else _one_line(e)[-200:]
    _exit(f"cannot load the config file {path!r}: {why}; pass --config=configs/FILE.py[:ARG] "
          "with a file that exists.", 2)


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
  from xplain_jax import errors
  try:
    from xplain_jax.train import pipeline
    pipeline.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except errors.USER_ERRORS as e:
    _exit(errors.one_line(e), errors.exit_code(e))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
