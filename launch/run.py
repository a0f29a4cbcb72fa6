r"""The one entry point: every stage a config asks for, in a workdir that makes it resumable.

  python launch/run.py --config=configs/synthetic.py --workdir=runs/synthetic \
      [--config.explainer.beta=0.5] [--config.stages=evaluate,report]

Mistakes (bad config values, missing data, unreadable checkpoints, NaN losses) end the run with
one line on stderr, ``error: ...``, saying what was wrong and what to do: exit status 2 for a
config or usage error, 1 for anything found while running.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, metrics and the report.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if len(argv) > 1:
    _exit(f"unexpected arguments {argv[1:]}; pass settings as --config.FIELD=VALUE.", 2)
  from xplain_jax import errors
  try:
    from xplain_jax.train import pipeline
    pipeline.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except errors.USER_ERRORS as e:
    _exit(errors.one_line(e), errors.exit_code(e))


def _exit(message: str, code: int) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


if __name__ == "__main__":
  app.run(main)
