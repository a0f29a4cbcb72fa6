"""The "sanity" evaluator: model randomisation (Adebayo et al. 2018) on the run's performer.

The stage ``sanity`` (``run.sanity.run_sanity``) re-initialises the performer's layers above
the explained feature (``config.evals.sanity.layers``, comma-separated; "" = those above
``fc6`` for Case 2, above ``top_conv`` for Case 1), featurizes the splits with that performer
into memory-mapped caches and trains the prior explainer on it with the run's settings and key
(checkpointed in ``workdir/sanity``, so it resumes after a kill and is restored when finished).
This evaluator reads that stage's product (``EvalContext.sanity``) and compares that explainer's
contributions on the test split with those of the run's prior explainer, image by image.

Metrics: ``sanity.randomized_performer_similarity`` (mean per-image Spearman of |contributions|
with its bootstrap interval over ``evals.sanity.num_resamples`` resamples and seed
``evals.sanity.seed``; a faithful method gives a low value), ``sanity.layers``,
``sanity.variant``. Arrays: ``eval/sanity.npz`` with ``alpha`` and ``contrib`` [N,n] of the
randomised performer's explainer and the per-image ``similarity`` [N].
"""

from __future__ import annotations

import numpy as np

from xplain_jax import fidelity
from xplain_jax.evaluators import common
from xplain_jax.fidelity import sanity as fidelity_sanity
from xplain_jax.errors import ConfigError


def evaluate(ctx: common.EvalContext, cfg) -> common.EvalOutput:
  """The metrics and arrays described in the module docstring; ``cfg`` is
  ``config.evals.sanity``."""
  result = ctx.sanity
  if result is None:
    raise ConfigError("the sanity evaluator needs the sanity stage's explainer; run it with "
                      "config.evals.sanity.enabled=True and 'evaluate' in config.stages.")
  variant = result.variant
  test = result.test
  alpha = result.explainer.alpha(test["feat"], batch_size=ctx.batch_size)
  contrib = (alpha * np.asarray(test["y_i"])).astype(np.float32)
  trained = np.asarray(ctx.alpha[variant] * ctx.test["y_i"], np.float32)
  similarity = np.asarray(fidelity_sanity.contribution_similarity(trained, contrib))
  summary = fidelity.mean_interval(similarity, num_resamples=int(cfg.num_resamples),
                                   seed=int(cfg.seed))
  layers = list(result.layers)
  return common.EvalOutput(
      metrics={"sanity": {"randomized_performer_similarity": summary, "layers": layers,
                          "variant": variant}},
      arrays={"sanity": {"alpha": alpha.astype(np.float32), "contrib": contrib,
                         "similarity": similarity.astype(np.float32)}},
      meta={"sanity_layers": layers})
