r"""Runs a study: every grid point of configs/studies/FILE.py as an ordinary launch/run.py run
in its own sub-workdir (finished ones skipped, cut-off ones resumed), then aggregates them into
WORKDIR/study.json, study.md, study.html and figures/.

  python launch/study.py --config=configs/studies/beta_sweep.py --workdir=studies/beta
      [--jobs=N [--devices=0,1,2,3]]   N worker processes, each on its share of the devices
      [--aggregate-only]               only aggregate what has finished (missing runs marked)
      [--emit=slurm]                   write an sbatch job array + dependent aggregation job
      [--set=FIELD=VALUE ...]          an override for every run, e.g. --set=dataset.data_dir=/d
      [--config.FIELD=VALUE ...]       override a study field, e.g. --config.base=...:tiny
"""

import os
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
flags.mark_flags_as_required(["config", "workdir"])

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def parse_flags(argv):
  """Parses the command line; a mistake becomes one ``error:`` line and exit status 2."""
  try:
    rest = FLAGS(argv)
    FLAGS.config.keys()  # raises OSError when the study config failed to load
    return rest
  except flags.Error as e:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    _fail(f"{lines[-1] if lines else e}; usage: python launch/study.py "
          "--config=configs/studies/FILE.py[:ARG] --workdir=DIR [--jobs=N] [--emit=slurm] "
          "[--aggregate-only] [--set=FIELD=VALUE]")
  except (AttributeError, KeyError) as e:
    _fail(f"unknown study field in a --config.FIELD override ({e}); check the spelling against "
          "the study config file.")
  except OSError as e:
    _fail(f"cannot load the study config: {' '.join(str(e).split())}; pass "
          "--config=configs/studies/FILE.py with a file that exists.")


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; pass study settings as --config.FIELD=VALUE.")
  from xplain_jax.study import core
  config, workdir = FLAGS.config, FLAGS.workdir
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    _fail(f"--workdir={workdir} is a file; choose a directory.")
  try:
    runs = core.runs_of(config, FLAGS.set)
  except ValueError as e:
    _fail(str(e))
  if FLAGS["seed-run"].value:
    try:
      seeded = core.seed_one(config, workdir, FLAGS["seed-run"].value, FLAGS.set)
    except ValueError as e:
      _fail(str(e))
    print(f"seeded {', '.join(seeded)}" if seeded else "nothing to seed")
    return
  if FLAGS.emit == "slurm":
    study_args = [a for a in sys.argv[1:] if a.startswith(("--config", "--set"))]
    for path in core.emit_slurm(config, workdir, study_args=study_args, sets=FLAGS.set):
      print(f"wrote {path}")
    print(f"{len(runs)} grid points; submit from the repository root with "
          f"bash {os.path.join(workdir, 'submit.sh')}")
    return
  failed, start = [], time.monotonic()
  if not FLAGS["aggregate-only"].value:
    devices = FLAGS.devices
    if devices is None:
      devices = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d]
    try:
      status = core.run(config, workdir, jobs=FLAGS.jobs, devices=devices, repo_root=REPO_ROOT,
                        sets=FLAGS.set)
    except ValueError as e:
      _fail(str(e))
    failed = [n for n, s in status.items() if s.startswith("failed")]
  study = core.write_outputs(config, workdir, FLAGS.set)
  missing = study["aggregate"]["missing"]
  print(f"study written to {os.path.join(workdir, 'study.md')} ({len(runs) - len(missing)}/"
        f"{len(runs)} runs finished; {time.monotonic() - start:.0f} s)")
  if failed:
    print(f"error: {len(failed)} runs failed: {', '.join(failed)}; their logs are in "
          f"{os.path.join(workdir, 'logs')}; rerun the same command to retry them.",
          file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
