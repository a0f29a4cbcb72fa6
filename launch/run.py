r"""The one entry point: every stage a config asks for, in a workdir that makes it resumable.

  python launch/run.py --config=configs/synthetic.py --workdir=runs/synthetic \
      [--config.explainer.beta=0.5] [--config.stages=evaluate,report]

This file wires the command line to the pipeline. The config file is loaded once and its
overrides checked (``xplain_jax.run.command``), then ml_collections applies the overrides to that
config. The fields that need no JAX (types, ranges) are checked before JAX is imported, so such a
mistake fails at once; then the pipeline prepares the run once (``run.pipeline.prepare``): before
anything is computed or written, the config is checked whole (types by the locked ConfigDict,
ranges, names, consistency, a dry build of the real networks), the workdir is locked (one run at
a time) and compared with the run it holds. Mistakes the user can fix
(``xplain_jax.errors.XplainError``) end the run with one line on stderr, ``error: ...``, saying
what was wrong and what to do: exit status 2 for a config or usage problem (the config file
itself included), 1 for anything found while running (a full disk in any writer included), 130
for Ctrl-C and 143 for SIGTERM. Every other exception is a bug and keeps its traceback.
``WORKDIR/command.json`` records the command (``--config`` and its overrides) and whether every
stage it asked for has ended (``finished``), so a study never takes a cut-off run for done. A
run killed at any moment resumes from its last checkpoint when the same command is rerun.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from xplain_jax import errors  # noqa: E402
from xplain_jax.run import command, validate  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, metrics and the report.")
CONFIG_HELP = "Experiment config file (configs/*.py[:arg]); --config.FIELD=VALUE sets a field."

USAGE = ("usage: python launch/run.py --config=configs/FILE.py[:ARG] --workdir=DIR "
         "[--config.FIELD=VALUE ...]")


def parse_flags(argv):
  """Parses the command line; any mistake becomes one ``error:`` line and exit status 2.

  The config file is loaded and the overrides checked first (``command.load_config``,
  ``command.check_overrides``), so that their errors are worded here; the loaded config then
  becomes the ``--config`` flag, and absl and ml_collections parse the rest of the command line
  (the overrides, applied to that config), their own exceptions wording whatever else is wrong."""
  try:
    expanded = FLAGS.read_flags_from_files(argv, force_gnu=False)  # --flagfile=FILE
    config_arg = command.config_arg(expanded)
    if config_arg:
      config = command.load_config(config_arg)
      command.check_overrides(config, expanded[1:])
      expanded = command.without_config_arg(expanded)
      config_flags.DEFINE_config_dict("config", config, CONFIG_HELP, lock_config=True,
                                      sys_argv=expanded)
    elif any(command.OVERRIDE.fullmatch(a) for a in expanded[1:]):
      command.fail(f"--config is required with --config.FIELD overrides. {USAGE}", 2)
    else:
      flags.DEFINE_string("config", None, CONFIG_HELP)
    rest = FLAGS(expanded)
  except KeyboardInterrupt as e:
    command.interrupted(e)
  except errors.XplainError as e:
    command.fail(errors.one_line(e), 2)
  except flags.UnrecognizedFlagError as e:
    command.fail(f"unknown command line flag --{e.flagname}; {USAGE}", 2)
  except Exception as e:  # pylint: disable=broad-except  (all of it is the user's command)
    command.fail(f"{errors.one_line(e)}; {USAGE}", 2)
  for name in ("config", "workdir"):
    if not FLAGS[name].value:
      command.fail(f"--{name} is required. {USAGE}", 2)
  return rest


def _handled_signals(config) -> tuple:
  """Ctrl-C always; SIGTERM only in a one-process run: with several processes it is left to
  JAX's preemption notifier, whose sync point makes every process save at the same step
  (``train.preemption``)."""
  distributed = config.get("distributed", {}) if config is not None else {}
  if int(distributed.get("num_processes", 0) or 0) > 1:
    return (signal.SIGINT,)
  return (signal.SIGINT, signal.SIGTERM)


def _run() -> None:
  validate.check_fields(FLAGS.config)  # a value out of range fails at once, before JAX loads
  from xplain_jax.infra import compile_cache, host_memory  # pylint: disable=import-outside-toplevel
  host_memory.tune()  # freed step buffers stay in the heap for the next step
  compile_cache.enable()  # before the first jit: a rerun or resume reads its compiles back
  from xplain_jax.run import pipeline  # pylint: disable=import-outside-toplevel
  pipeline.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                              command=(command.config_arg(sys.argv), command.overrides(sys.argv)))


def main(argv):
  command.quiet_libraries()
  if len(argv) > 1:
    command.fail(f"unexpected arguments {argv[1:]}; pass settings as --config.FIELD=VALUE.", 2)
  on_signal = command.OnSignal()
  for signum in _handled_signals(FLAGS.config):
    signal.signal(signum, on_signal)
  command.run_or_exit(_run)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
