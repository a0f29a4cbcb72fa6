"""One process of a multi-host run on this machine, started by tests/end_to_end/test_multihost.py.

  python tests/end_to_end/_multihost_worker.py WORKDIR STAGES

runs ``pipeline.train_and_evaluate`` with a shrunken ``configs/synthetic.py:tiny`` (``STAGES``,
e.g. "performer,explainer") in WORKDIR. The multi-host start is the pipeline's own: it calls
``parallel.initialize_distributed``, which reads ``XPLAIN_COORDINATOR``,
``XPLAIN_NUM_PROCESSES`` and ``XPLAIN_PROCESS_ID``; without them the same script is the
single-process reference run. The worker then writes ``WORKDIR/run_info-<process>.json`` with
what its process saw (process and device counts, the rows of global batch 0 it loaded), so the
test can check that the run really was split over processes.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def small_config(stages: str, *, num_train: int = 128, num_test: int = 32, batch_size: int = 32,
                 num_epochs: int = 2, variants: str = "prior"):
  """``configs/synthetic.py:tiny`` cut down further so three runs fit a test's time budget.

  Args:
    stages: ``config.stages``.
    num_train, num_test: synthetic split sizes.
    batch_size: global batch of every stage (divisible by the process count).
    num_epochs: epochs of the performer and of the explainer (2, so λ(t) changes).
    variants: explainer variants.

  The feature cache is off so that the one- and two-process runs take the same (uncached)
  explainer path (a multi-process run never uses it), and the synthetic data are generated in
  memory by every process (``dataset.cache=False``).
  """
  from configs import synthetic
  c = synthetic.get_config("tiny")
  c.stages = stages
  c.dataset.num_train, c.dataset.num_test, c.dataset.cache = num_train, num_test, False
  c.performer.batch_size = c.explainer.batch_size = c.evals.explainer.batch_size = batch_size
  c.performer.num_epochs = c.explainer.num_epochs = num_epochs
  c.explainer.variants = variants
  c.explainer.cache_features = False
  steps = num_epochs * num_train // batch_size
  c.checkpoint_every_steps, c.log_every_steps = steps // 2, 1
  return c


def main(workdir: str, stages: str) -> None:
  import jax
  from xplain_jax import data
  from xplain_jax.run import pipeline

  config = small_config(stages)
  pipeline.train_and_evaluate(config, workdir)
  # The loader the performer stage used (same helper, same process split).
  loader = pipeline._loader(data.get_source(config, "train", workdir=workdir), config,
                            config.performer.batch_size)
  info = {"process_index": jax.process_index(), "process_count": jax.process_count(),
          "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
          "rows_per_batch": int(len(loader.batch(0)["mask"])),
          "rows_of_batch_0": loader.indices(0)[0].tolist()}
  with open(os.path.join(workdir, f"run_info-{jax.process_index()}.json"), "w") as f:
    json.dump(info, f)


if __name__ == "__main__":
  if len(sys.argv) != 3:
    raise SystemExit("usage: python tests/end_to_end/_multihost_worker.py WORKDIR STAGES")
  main(sys.argv[1], sys.argv[2])
