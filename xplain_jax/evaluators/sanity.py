"""The "sanity" evaluator: model randomisation (Adebayo et al. 2018) on the run's performer.

Re-initialises the performer's layers above the explained feature (``config.evals.sanity.layers``,
comma-separated; "" = ``fidelity_sanity.layers_above("fc6")`` for Case 2,
``layers_above("top_conv")`` for Case 1), featurizes the train split with that performer,
trains the prior explainer on it with the run's settings and key
(``train.explainer.fit_weight_net``, nothing kept on disk), and compares its contributions on
the test split with those of the run's prior explainer, image by image.

Metrics: ``sanity.randomized_performer_similarity`` (mean per-image Spearman of |contributions|
with its bootstrap interval; a faithful method gives a low value), ``sanity.layers``,
``sanity.variant``. Arrays: ``eval/sanity.npz`` with ``alpha`` and ``contrib`` [N,n] of the
randomised performer's explainer and the per-image ``similarity`` [N].
"""

from __future__ import annotations

import jax
import numpy as np

from xplain_jax import data, fidelity, parallel, utils
from xplain_jax.fidelity import sanity as fidelity_sanity
from xplain_jax.errors import ConfigError
from xplain_jax.train import features as features_lib
from xplain_jax.evaluators import common
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import features as features_lib

VARIANT = "prior"


def sanity_layers(cfg, case: str) -> tuple[str, ...]:
  """The layers to re-initialise: ``cfg.layers`` (``config.evals.sanity``) or those above the
  explained feature of ``case``."""
  names = tuple(utils.split_list(cfg.layers))
  if names:
    return names
  return fidelity_sanity.layers_above(
      "fc6" if case == "shared_feature" else "top_conv")


def _stack(featurize, variables, source, *, batch_size: int, mesh) -> dict:
  """Featurized ``source`` in memory: name -> [N,...] host arrays."""
  parts = list(features_lib.featurize_source(featurize, variables, source, batch_size=batch_size,
                                          mesh=mesh, keep=()))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def evaluate(ctx: common.EvalContext, cfg) -> common.EvalOutput:
  """The metrics and arrays described in the module docstring; ``cfg`` is
  ``config.evals.sanity``."""
  config, e = ctx.config, ctx.config.explainer
  if VARIANT not in ctx.explainers:
    raise ConfigError(f"the sanity check retrains the {VARIANT!r} explainer; add it to "
                      "config.explainer.variants or turn config.evals.sanity.enabled off.")
  layers = sanity_layers(cfg, e.case)
  key = jax.random.PRNGKey(config.seed)
  variables = fidelity_sanity.randomize_layers(jax.device_get(ctx.perf_vars), layers,
                                               jax.random.fold_in(key, 7))
  variables = parallel.replicate(variables, ctx.mesh)
  featurize = features_lib.make_featurizer(ctx.perf, ctx.spec, prior_method=e.prior_method,
                                            clip_prior=e.clip_prior, feature=e.feature)
  bs = ctx.batch_size
  train = _stack(featurize, variables, data.get_source(config, "train", workdir=ctx.workdir),
                 batch_size=bs, mesh=ctx.mesh)
  loader = data.Loader(data.ArraySource(train), e.batch_size, seed=config.seed + 1, shuffle=True,
                       drop_remainder=True, process_index=jax.process_index(),
                       process_count=jax.process_count())
  n = train["y_i"].shape[-1]
  g = explainer_lib.build_weight_net(config, n)
  rng = explainer_lib.variant_key(key, VARIANT)
  alpha_scale, init_bias = explainer_lib.configured_start(config, g, loader, rng)  # as the run's
  explainer = explainer_lib.fit_weight_net(
      g, loader=loader, alpha_scale=alpha_scale, init_bias=init_bias,
      feat_shape=(1,) + train["feat"].shape[1:],
      beta=explainer_lib.variant_beta(config, VARIANT), prior_kind=e.prior_kind,
      num_epochs=e.num_epochs, optimizer_config=e.optimizer,
      rng=rng, stage="sanity_explainer", workdir=None,
      mesh=ctx.mesh, log_every=config.log_every_steps, case=e.case)
  test = _stack(featurize, variables, ctx.test_src, batch_size=bs, mesh=ctx.mesh)
  alpha = explainer.alpha(test["feat"], batch_size=bs)
  contrib = (alpha * test["y_i"]).astype(np.float32)
  trained = np.asarray(ctx.alpha[VARIANT] * ctx.test["y_i"], np.float32)
  similarity = np.asarray(fidelity_sanity.contribution_similarity(trained, contrib))
  summary = fidelity.mean_interval(similarity, num_resamples=int(cfg.num_resamples),
                                   seed=int(cfg.seed))
  return common.EvalOutput(
      metrics={"sanity": {"randomized_performer_similarity": summary, "layers": list(layers),
                          "variant": VARIANT}},
      arrays={"sanity": {"alpha": alpha.astype(np.float32), "contrib": contrib,
                         "similarity": similarity.astype(np.float32)}},
      meta={"sanity_layers": list(layers)})
