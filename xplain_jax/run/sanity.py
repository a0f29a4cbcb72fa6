"""The sanity check's explainer as a stage: the prior explainer of a randomised performer.

Model randomisation (Adebayo et al. 2018): the performer's layers above the explained feature
(``config.evals.sanity.layers``; "" = ``fidelity.sanity.layers_above`` of the case's feature)
are re-initialised, and the prior explainer is trained on that performer with the run's
explainer settings and key. A faithful method explains the randomised performer differently.

The stage ``sanity`` (``stages.REGISTRY``; declared when ``config.evals.sanity.enabled``):

* featurizes the train and test splits with the randomised performer into memory-mapped caches
  ``workdir/sanity/features/{train,test}`` (``features.featurize_split``, recomputed unless
  they carry this stage's identity), so the train split is read by row batches, never held
  in memory;
* trains the explainer from the train cache with the one trainer (``loop.train_stage``),
  checkpointing in ``workdir/sanity/ckpt``: a run killed mid-training resumes from its last
  checkpoint and reaches the same weights (the batch of step k is a function of k);
* marks itself finished in ``workdir/sanity/done.json``; a finished stage is restored.

The ``sanity`` evaluator (``evaluators.sanity``) compares its contributions with the run's.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from xplain_jax import data, utils
from xplain_jax.infra import parallel
from xplain_jax.spec import stages
from xplain_jax.run import validate_evals
from xplain_jax.run import workdir as workdir_lib
from xplain_jax.errors import ConfigError
from xplain_jax.fidelity import sanity as fidelity_sanity
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import features as features_lib

STAGE = "sanity"
VARIANT = validate_evals.SANITY_VARIANT  # the explainer variant the check retrains


@dataclasses.dataclass(frozen=True)
class SanityResult:
  """The stage's product.

  Attributes:
    explainer: the prior explainer of the randomised performer.
    test: the randomised performer's featurized test split (memory-mapped columns ``feat``
      [N,H,W,C], ``y_i`` [N,n], ...).
    layers: the re-initialised layers.
    variant: the explainer variant it retrains (the run's α of that variant is its reference).
  """

  explainer: explainer_lib.Explainer
  test: dict
  layers: tuple[str, ...]
  variant: str = VARIANT


def sanity_layers(cfg, case: str) -> tuple[str, ...]:
  """The layers to re-initialise: ``cfg.layers`` (``config.evals.sanity``) or those above the
  explained feature of ``case``."""
  names = tuple(utils.split_list(cfg.layers))
  if names:
    return names
  return fidelity_sanity.layers_above("fc6" if case == "shared_feature" else "top_conv")


def run_sanity(config, spec, *, workdir: str, mesh, perf, perf_vars, train_src=None,
               test_src=None) -> SanityResult:
  """Trains (resumes, or restores when finished) the sanity check's explainer.

  Args:
    config: the run's config (``explainer``, ``evals.sanity``, ``evals.explainer.batch_size``).
    spec: the dataset's ``data.Spec``.
    workdir: the run's workdir (state under ``workdir/sanity``).
    mesh: the device mesh.
    perf, perf_vars: the trained performer's module and (replicated) variables.
    train_src, test_src: the split sources (default: ``data.get_source`` of the config).

  Raises:
    ConfigError: the run trains no ``prior`` explainer to compare with.
  """
  e = config.explainer
  if VARIANT not in stages.variants(config):
    raise ConfigError(f"the sanity check retrains the {VARIANT!r} explainer; add it to "
                      "config.explainer.variants or turn config.evals.sanity.enabled off.")
  identity = stages.stage_fingerprint(config, STAGE)
  layers = sanity_layers(config.evals.sanity, e.case)
  key = jax.random.PRNGKey(config.seed)
  variables = fidelity_sanity.randomize_layers(jax.device_get(perf_vars), layers,
                                               jax.random.fold_in(key, 7))
  variables = parallel.replicate(variables, mesh)
  featurize = features_lib.make_featurizer(perf, spec, prior_method=e.prior_method,
                                           clip_prior=e.clip_prior, feature=e.feature)
  bs = int(config.evals.explainer.batch_size)
  split = lambda name, src: features_lib.featurize_split(
      featurize, variables, src if src is not None else data.get_source(config, name,
                                                                          workdir=workdir),
      directory=os.path.join(workdir, STAGE, "features", name), batch_size=bs, mesh=mesh,
      identity=identity)
  train = split("train", train_src)
  loader = data.Loader(train, e.batch_size, seed=config.seed + 1, shuffle=True,
                       drop_remainder=True, process_index=jax.process_index(),
                       process_count=jax.process_count())
  sample = train.get_batch(np.arange(1))
  g = explainer_lib.build_weight_net(config, sample["y_i"].shape[-1])
  rng = explainer_lib.variant_key(key, VARIANT)
  alpha_scale, init_bias = explainer_lib.configured_start(config, g, loader, rng)  # as the run's
  explainer = explainer_lib.fit_weight_net(
      g, loader=loader, alpha_scale=alpha_scale, init_bias=init_bias,
      feat_shape=np.shape(sample["feat"]),
      beta=explainer_lib.variant_beta(config, VARIANT), prior_kind=e.prior_kind,
      num_epochs=e.num_epochs, optimizer_config=e.optimizer, rng=rng, stage=STAGE,
      workdir=workdir, mesh=mesh, checkpoint_every=config.checkpoint_every_steps,
      log_every=config.log_every_steps, case=e.case, meta={"variant": VARIANT},
      fingerprint=identity)
  if jax.process_index() == 0:
    workdir_lib.write_marker(workdir, STAGE, identity)
  test = split("test", test_src)
  return SanityResult(explainer=explainer, test=dict(test.columns), layers=layers)


def run_stage(ctx) -> dict:
  """The pipeline's runner of the stage (``run.pipeline.RUNNERS``): ``ctx`` is its
  ``RunContext`` (the performer's product, the train source); returns ``{"sanity": result}``."""
  perf, perf_vars, _, _ = ctx.products["performer"]
  return {STAGE: run_sanity(ctx.config, ctx.spec, workdir=ctx.workdir, mesh=ctx.mesh, perf=perf,
                            perf_vars=perf_vars, train_src=ctx.train_src)}
