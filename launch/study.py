r"""Runs a study: every grid point of configs/studies/FILE.py as an ordinary launch/run.py run
in its own sub-workdir (finished ones skipped, cut-off ones resumed), then aggregates them into
WORKDIR/study.json, study.md, study.html and figures/. Everything that can be checked is checked
before any run starts (one ``error:`` line, exit 2; a sub-workdir still held by a run, exit 1);
Ctrl-C or SIGTERM is forwarded to the running runs (exit 130 / 143, one line).

  python launch/study.py --config=configs/studies/beta_sweep.py --workdir=studies/beta
      [--jobs=N [--devices=0,1,2,3]]   N worker processes, each on its share of the devices
      [--aggregate-only]               only aggregate what has finished (missing runs marked)
      [--emit=slurm]                   write an sbatch job array + dependent aggregation job
      [--set=FIELD=VALUE ...]          an override for every run, e.g. --set=dataset.data_dir=/d
      [--config.FIELD=VALUE ...]       override a study field, e.g. --config.base=...:tiny

  python launch/study.py --workdir=studies/regimes_targets --pair=FIELD --a=A --b=B \
      --metrics=M1,M2
prints the paired table A − B of the finished study in --workdir and runs nothing: the runs
whose grid points differ only in FIELD (FIELD=A against FIELD=B) are paired by the rest of their
point (e.g. by seed), and each metrics.json path Mi reads mean difference ± half-width of the
95 % t-interval, the paired t-test's p-value and the number of pairs (xplain_jax.study.paired).
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Study config file (configs/studies/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Study folder: one sub-workdir per run, study.* results.")
flags.DEFINE_integer("jobs", 1, "Runs at once, each a worker process with its share of devices.")
flags.DEFINE_list("devices", None, "Device ids split among the workers (CUDA_VISIBLE_DEVICES); "
                  "default: those in CUDA_VISIBLE_DEVICES, else every worker sees all.")
flags.DEFINE_enum("emit", "", ["", "slurm"], "Write job scripts instead of running.")
flags.DEFINE_multi_string("set", [], "FIELD=VALUE: a --config.FIELD=VALUE for every run.")
flags.DEFINE_string("seed-run", None, "Only seed the sub-workdir of run NAME from the run that "
                    "trained its performer (used by the SLURM follower array).")
flags.DEFINE_bool("aggregate-only", False, "Aggregate the finished runs; run nothing.")
flags.DEFINE_string("pair", None, "FIELD: only print the paired table A − B of the finished "
                    "study in --workdir (runs nothing); with --a, --b and --metrics.")
flags.DEFINE_string("a", None, "With --pair: the value of FIELD on side A.")
flags.DEFINE_string("b", None, "With --pair: the value of FIELD on side B.")
flags.DEFINE_string("metrics", None, "With --pair: comma-separated metrics.json paths.")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USAGE = ("usage: python launch/study.py --config=configs/studies/FILE.py[:ARG] --workdir=DIR "
         "[--jobs=N] [--emit=slurm] [--aggregate-only] [--set=FIELD=VALUE], or --workdir=DIR "
         "--pair=FIELD --a=A --b=B --metrics=M1,M2")
PAIR_FLAGS = ("a", "b", "metrics")


def _fail(message: str, code: int = 2) -> None:
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(code)


def parse_flags(argv):
  """Parses the command line; a mistake becomes one ``error:`` line and exit status 2."""
  try:
    rest = FLAGS(argv)
    if FLAGS.workdir is None:
      _fail(f"--workdir is required. {USAGE}")
    if FLAGS.pair is not None:
      _check_pair_flags()
      return rest
    if any(FLAGS[n].present for n in PAIR_FLAGS):
      _fail(f"--a, --b and --metrics go with --pair=FIELD. {USAGE}")
    if FLAGS.config is None:
      _fail(f"--config is required. {USAGE}")
    FLAGS.config.keys()  # raises OSError when the study config failed to load
    return rest
  except KeyboardInterrupt:
    _fail(INTERRUPTED, 128 + signal.SIGINT)
  except flags.Error as e:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    _fail(f"{lines[-1] if lines else e}; {USAGE}")
  except (AttributeError, KeyError) as e:
    _fail(f"unknown study field in a --config.FIELD override ({e}); check the spelling against "
          "the study config file.")
  except OSError as e:
    _fail(f"cannot load the study config: {' '.join(str(e).split())}; pass "
          "--config=configs/studies/FILE.py with a file that exists.")


INTERRUPTED = "interrupted; rerun the same command to resume"


def _check_pair_flags() -> None:
  """``--pair`` reads a finished study: it needs its three values and asks for nothing else."""
  missing = [f"--{n}" for n in PAIR_FLAGS if FLAGS[n].value is None]
  if missing:
    _fail(f"--pair={FLAGS.pair} needs {', '.join(missing)}. {USAGE}")
  actions = [f"--{n}" for n in ("emit", "aggregate-only", "seed-run") if FLAGS[n].present]
  if actions:
    _fail(f"--pair only prints the table of a finished study; drop {', '.join(actions)} (or "
          "--pair) and rerun.")


def study_args(argv) -> list[str]:
  """The ``--config``, ``--config.FIELD`` and ``--set`` arguments of a command line, each as one
  ``--NAME=VALUE`` (``--set F=V`` and ``--config FILE`` spellings joined), for follow-up jobs."""
  out, i = [], 1
  while i < len(argv):
    arg = argv[i]
    name, eq, _ = arg[2:].partition("=")
    ours = arg.startswith("--") and (name in ("config", "set") or name.startswith("config."))
    if ours and not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
      arg, i = f"{arg}={argv[i + 1]}", i + 1
    if ours:
      out.append(arg)
    i += 1
  return out


def _check_workdir(workdir: str) -> None:
  try:
    workdir.encode("utf-8")
  except UnicodeEncodeError:
    _fail(f"--workdir={workdir.encode('utf-8', 'backslashreplace').decode()} is not a valid "
          "UTF-8 name; choose a UTF-8 name.")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    _fail(f"--workdir={workdir} is a file; choose a directory.")
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    _fail(f"--workdir={workdir} is below the file {existing}; choose a directory.")
  if not os.access(existing, os.W_OK):
    _fail(f"--workdir={workdir} cannot be written ({existing} is not writable); choose a "
          "directory you can write to.")


def main(argv):
  from xplain_jax import errors
  from xplain_jax.study import runner
  children = runner.Children()

  def on_signal(signum, frame):
    del frame
    if not children.stop(signum):  # no run to wait for: stop here
      raise KeyboardInterrupt(signum)

  for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, on_signal)
  try:
    _main(argv, children)
  except KeyboardInterrupt as e:
    signum = e.args[0] if e.args and isinstance(e.args[0], int) else signal.SIGINT
    _fail(INTERRUPTED, 128 + int(signum))
  except Exception as e:  # pylint: disable=broad-except
    if errors.is_user_error(e):
      _fail(errors.one_line(e), errors.exit_code(e))
    full = errors.storage_error(e)
    if full is None:
      raise  # a bug: the traceback is what its reader needs
    _fail(errors.one_line(full), 1)
  if children.stopped is not None:
    _fail(INTERRUPTED, 128 + int(children.stopped))


def _main(argv, children):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; pass study settings as --config.FIELD=VALUE.")
  if FLAGS.pair is not None:
    from xplain_jax import errors
    from xplain_jax.study import paired
    try:
      print(paired.table(FLAGS.workdir, FLAGS.pair, FLAGS.a, FLAGS.b, FLAGS.metrics))
    except errors.DataError as e:  # the finished study's or the command line's
      _fail(errors.one_line(e))
    return
  from xplain_jax.infra import compile_cache
  from xplain_jax import utils
  from xplain_jax.study import commands
  # Every run of the study (each a launch/run.py process) reads and adds to the same cache.
  os.environ[compile_cache.ENV_VAR] = compile_cache.enable() or compile_cache.OFF
  config, workdir = FLAGS.config, FLAGS.workdir
  _check_workdir(workdir)
  if FLAGS["seed-run"].value:
    try:
      seeded = commands.seed_one(config, workdir, FLAGS["seed-run"].value, FLAGS.set,
                             REPO_ROOT)
    except ValueError as e:  # the command line's (--seed-run, --set)
      _fail(str(e))
    print(f"seeded {', '.join(seeded)}" if seeded else "nothing to seed")
    return
  running = not (FLAGS.emit or FLAGS["aggregate-only"].value)
  try:
    runs = commands.check(config, workdir, sets=FLAGS.set, repo_root=REPO_ROOT, running=running)
  except ValueError as e:  # the study config's or --set's (ConfigError is one too)
    _fail(str(e))
  if FLAGS.emit == "slurm":
    for path in commands.emit_slurm(config, workdir, study_args=study_args(sys.argv),
                                sets=FLAGS.set):
      print(f"wrote {path}")
    print(f"{len(runs)} grid points; submit from the repository root with "
          f"bash {os.path.join(workdir, 'submit.sh')}")
    return
  failed, start = [], time.monotonic()
  if running:
    devices = FLAGS.devices
    if devices is None:
      devices = utils.split_list(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    status = commands.run(config, workdir, jobs=FLAGS.jobs, devices=devices, repo_root=REPO_ROOT,
                      sets=FLAGS.set, children=children)
    if children.stopped is not None:
      return  # main says so; the next run of this command aggregates
    failed = [n for n, s in status.items() if s.startswith("failed")]
  study = commands.write_outputs(config, workdir, FLAGS.set, REPO_ROOT)
  missing = study["aggregate"]["missing"]
  failed = [n for n in failed if n in missing]  # one count: a run is finished or it is not
  print(f"study written to {os.path.join(workdir, 'study.md')} ({len(runs) - len(missing)}/"
        f"{len(runs)} runs finished; {time.monotonic() - start:.0f} s)")
  if failed:
    print(f"error: {len(failed)} runs failed: {', '.join(failed)}; their logs are in "
          f"{os.path.join(workdir, 'logs')}; rerun the same command to retry them.",
          file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
