"""The runner: every stage of a run, prepared once, in the registry's order.

``train_and_evaluate(config, workdir)`` is what ``launch/run.py`` calls. It prepares the run
once (``prepare``: the config check, the workdir, the stages' inputs, the multi-host start, the
mesh, the lock and the recorded identities), then runs the stages of ``config.stages``. What each
stage needs and produces, and what decides its result, is written in ``xplain_jax.spec.stages``
(``REGISTRY``, the one table of each stage's group, needs, products, identity and folders);
``RUNNERS`` here says only how each one runs.

A stage runs when its group is asked for, or when a stage that runs needs what it produces; a
training stage whose group is not asked for must have finished before (its ``done.json``) and
is then only restored. A finished training stage is restored, a cut-off one resumes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import numpy as np

from xplain_jax import data, evaluators
from xplain_jax.infra import parallel
from xplain_jax.spec import stages
from xplain_jax.run import validate
from xplain_jax.run import workdir as workdir_lib
from xplain_jax.errors import CheckpointError, ConfigError, NonFiniteError
from xplain_jax.train import features as features_lib
from xplain_jax.train import logger
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import performer as performer_lib
from xplain_jax.run import sanity as sanity_lib

ORDINARY_STAGE = "performer_ordinary"


@dataclasses.dataclass(frozen=True)
class RunnableStage:
  """A stage of this run: its registry entry (``stages.Stage``, named for this run) and how it
  runs (``run(ctx)`` returns the products as a dict, name -> value)."""

  spec: stages.Stage
  run: Callable

  name = property(lambda self: self.spec.name)
  group = property(lambda self: self.spec.group)
  needs = property(lambda self: self.spec.needs)
  produces = property(lambda self: self.spec.produces)
  trained = property(lambda self: self.spec.marked)


@dataclasses.dataclass
class RunContext:
  """The run's fixed facts and the products of the stages run so far."""

  config: object
  workdir: str
  mesh: object
  spec: object
  rng: jax.Array
  train_src: object
  products: dict = dataclasses.field(default_factory=dict)


def _loader(source, config, batch_size: int, *, seed_offset: int = 0):
  return data.Loader(source, batch_size, seed=config.seed + seed_offset, shuffle=True,
                     drop_remainder=True, process_index=jax.process_index(),
                     process_count=jax.process_count())


def _use_cache(config) -> bool:
  return bool(config.explainer.cache_features) and jax.process_count() == 1


def _performer(ctx: RunContext) -> dict:
  perf, perf_vars = performer_lib.train_performer(
      ctx.config, ctx.spec, workdir=ctx.workdir, mesh=ctx.mesh,
      train_loader=_loader(ctx.train_src, ctx.config, ctx.config.performer.batch_size),
      rng=jax.random.fold_in(ctx.rng, 1))
  perf_vars = parallel.replicate(perf_vars, ctx.mesh)
  e = ctx.config.explainer
  featurize = features_lib.make_featurizer(perf, ctx.spec, prior_method=e.prior_method,
                                            clip_prior=e.clip_prior, feature=e.feature,
                                            target=explainer_lib.consistency_target(ctx.config),
                                            shapley_permutations=e.shapley_permutations)
  size = ctx.config.dataset.image_size
  sample = jax.eval_shape(featurize, perf_vars,
                          jax.ShapeDtypeStruct((1, size, size, 3), np.float32))
  _check_outputs_finite(ctx, featurize, perf_vars)
  return {"performer": (perf, perf_vars, featurize, sample)}


def _check_outputs_finite(ctx: RunContext, featurize, perf_vars) -> None:
  """Raises ``NonFiniteError`` in the performer stage (before it is marked finished) when the
  trained performer's outputs on a batch of training images hold NaN or Inf: finite but huge
  parameters pass the trainer's guard and would fail only in a later stage."""
  k = min(ctx.mesh.devices.size, len(ctx.train_src))  # one image per device
  images = ctx.train_src.get_batch(np.arange(k))["image"]
  out = jax.device_get(jax.jit(featurize)(perf_vars, images))
  bad = [name for name, v in sorted(out.items()) if not np.all(np.isfinite(np.asarray(v)))]
  if bad:
    raise NonFiniteError(
        f"stage 'performer': the trained performer's outputs ({', '.join(bad)}) on training "
        "images hold NaN or Inf although its parameters are finite (they grew too large); "
        "lower performer.optimizer.learning_rate or set performer.optimizer.grad_clip, and run "
        "in a new --workdir.")


def _ordinary(ctx: RunContext) -> dict:
  """The ordinary comparison layer: the performer without mask and filter loss, same data/key."""
  c = performer_lib.ordinary_config(ctx.config)
  return {"ordinary": performer_lib.train_performer(
      c, ctx.spec, workdir=ctx.workdir, mesh=ctx.mesh,
      train_loader=_loader(ctx.train_src, c, c.performer.batch_size),
      rng=jax.random.fold_in(ctx.rng, 1), stage=ORDINARY_STAGE,
      fingerprint=stages.stage_fingerprint(ctx.config, ORDINARY_STAGE))}


def _features_id(config) -> str:
  """What the feature cache of ``config`` holds (its stage identity)."""
  return stages.stage_fingerprint(config, "features")


def _features(ctx: RunContext) -> dict:
  config, e = ctx.config, ctx.config.explainer
  perf, perf_vars, featurize, _ = ctx.products["performer"]
  target = explainer_lib.consistency_target(config)
  if target in features_lib.SOURCE_TARGETS and not _use_cache(config):
    raise ConfigError(f"explainer.consistency_target={target!r} is written into the feature "
                      "cache, which is off (explainer.cache_features=False, or several "
                      "processes); set explainer.cache_features=True and run on one host.")
  if _use_cache(config):
    bs = config.evals.explainer.batch_size
    extra = None   # targets from the scene source, added while the cache is written
    if target in features_lib.SOURCE_TARGETS:
      names = data.renderer_concept_names(config, ctx.spec.concept_names)
      extra = features_lib.rendered_targets(perf, perf_vars, ctx.spec, ctx.train_src, names,
                                            batch_size=bs)
    feats = features_lib.featurize_split(featurize, perf_vars, ctx.train_src,
                                         directory=os.path.join(ctx.workdir, "features", "train"),
                                         batch_size=bs, mesh=ctx.mesh,
                                         identity=_features_id(config), source_targets=extra)
    return {"train_features": (_loader(feats, config, e.batch_size, seed_offset=1 + e.seed), None)}
  return {"train_features": (_loader(ctx.train_src, config, e.batch_size, seed_offset=1 + e.seed),
                             featurize)}


def _explainer(variant: str) -> Callable:
  def run(ctx: RunContext) -> dict:
    _, perf_vars, _, sample = ctx.products["performer"]
    loader, fz = ctx.products["train_features"]
    return {f"explainer:{variant}": explainer_lib.train_explainer(
        ctx.config, variant, workdir=ctx.workdir, mesh=ctx.mesh, loader=loader,
        feat_shape=sample["feat"].shape, num_concepts=sample["y_i"].shape[-1],
        rng=explainer_lib.variant_key(jax.random.fold_in(ctx.rng, ctx.config.explainer.seed),
                                      variant),
        featurize=fz, perf_variables=perf_vars)}
  return run


def _evaluate(ctx: RunContext) -> dict:
  config, spec = ctx.config, ctx.spec
  perf, perf_vars, featurize, sample = ctx.products["performer"]
  test_src = data.get_source(config, "test", workdir=ctx.workdir)
  cached = features_lib.featurize_split(featurize, perf_vars, test_src,
                                        directory=os.path.join(ctx.workdir, "features", "test"),
                                        batch_size=config.evals.explainer.batch_size,
                                        mesh=ctx.mesh, identity=_features_id(config))
  # Every per-image array in memory but the feature maps, read batch by batch (predict_alphas).
  test = {k: v if k == "feat" else np.asarray(v) for k, v in cached.columns.items()}
  explainers = {v: ctx.products[f"explainer:{v}"] for v in stages.variants(config)}
  alpha, bias = evaluators.predict_alphas(explainers, test["feat"],
                                          batch_size=config.evals.explainer.batch_size)
  n = sample["y_i"].shape[-1]
  k = min(config.evals.explainer.num_report_images, len(test_src))
  train = _train_concepts(ctx, featurize, perf_vars)   # the least-squares peer's rows
  ectx = evaluators.EvalContext(
      config=config, spec=spec, workdir=ctx.workdir, mesh=ctx.mesh, test=test, alpha=alpha,
      bias=bias, explainers=explainers,
      concept_names=tuple(spec.concept_names or (f"filter_{i}" for i in range(n))),
      images=test_src.get_batch(np.arange(k))["image"], perf=perf, perf_vars=perf_vars,
      featurize=featurize, test_src=test_src, ordinary=ctx.products.get("ordinary"),
      train=train, sanity=ctx.products.get(sanity_lib.STAGE))
  out = evaluators.run_evaluators(evaluators.enabled(config), ectx)
  return {"metrics": evaluators.write_outputs(ctx.workdir, out)}


def _train_concepts(ctx: RunContext, featurize, perf_vars) -> dict:
  """The training split's ``y_i`` [M,n] and ``y`` [M] for the least-squares peer: the feature
  cache's columns when it is on, else featurized here (one pass, only these two kept), so the
  evaluate stage's results do not depend on ``explainer.cache_features`` (a run-only field).
  A cache found damaged or changed is written again."""
  config = ctx.config
  bs = config.evals.explainer.batch_size
  if _use_cache(config):
    return features_lib.featurize_split(
        featurize, perf_vars, ctx.train_src, batch_size=bs, mesh=ctx.mesh,
        directory=os.path.join(ctx.workdir, "features", "train"),
        identity=_features_id(config)).columns
  parts = [{k: out[k] for k in ("y_i", "y")} for out in features_lib.featurize_source(
      featurize, perf_vars, ctx.train_src, batch_size=bs, mesh=ctx.mesh, keep=())]
  return {k: np.concatenate([p[k] for p in parts]) for k in ("y_i", "y")}


def _report(ctx: RunContext) -> dict:
  if jax.process_index() == 0:
    from xplain_jax import report
    path = report.write_report(ctx.workdir, num_images=ctx.config.evals.explainer.num_report_images)
    print(f"report written to {path}", flush=True)
  return {}


# How each stage of the registry runs (``explainer`` stands for every explainer_<variant>).
RUNNERS = {"performer": _performer, ORDINARY_STAGE: _ordinary, "features": _features,
           "explainer": _explainer, "sanity": sanity_lib.run_stage, "evaluate": _evaluate,
           "report": _report}


def declare_stages(config) -> tuple[RunnableStage, ...]:
  """The concrete stages of ``config``, in running order (``stages.concrete``)."""
  out = []
  for spec in stages.concrete(config):
    kind = stages.lookup(spec.name).name
    if kind not in RUNNERS:
      raise NotImplementedError(f"the stage {kind!r} of xplain_jax.spec.stages.REGISTRY has no "
                                "runner in run/pipeline.RUNNERS.")
    run = RUNNERS[kind]
    out.append(RunnableStage(spec, run(spec.name.split("_", 1)[1]) if kind == "explainer"
                             else run))
  return tuple(out)


def prepare(config, workdir: str):
  """Every check before compute, once; returns ``(mesh, lock)`` (keep the lock referenced).

  Order: the config whole (nothing touched yet); the workdir's place; the stages' inputs; the
  multi-host start (bounded) and the devices; on process 0 the lock and, compared before the
  lock file is written and again under it, the recorded config and identities; only then
  ``config.json`` is written.
  """
  validate.check_config(config)
  validate.check_workdir(workdir)
  workdir_lib.check_stage_inputs(config, workdir)
  evaluators.enabled(config)
  d = config.distributed
  parallel.initialize_distributed(d.coordinator_address, d.num_processes, d.process_id,
                                  timeout_s=d.initialization_timeout)
  mesh = parallel.make_mesh(config.num_devices)
  for block in ("performer", "explainer", "evals.explainer"):
    parallel.check_batch_size(config[block].batch_size, mesh, f"config.{block}.batch_size")
  held = None
  if jax.process_index() == 0:
    for locked in (False, True):
      held = workdir_lib.lock(workdir) if locked else None
      validate.check_same_experiment(config, workdir, write=locked)
      workdir_lib.check_recorded_identities(config, workdir)
  return mesh, held


def train_and_evaluate(config, workdir: str, *,
                       command: tuple[str, dict] | None = None) -> dict | None:
  """Prepares the run once, then runs the stages of ``config.stages`` in ``workdir``.

  Args:
    command: ``(config argument, {field: value text})`` of the command line (``launch/run.py``),
      recorded in ``workdir/command.json``: unfinished before the first stage, finished after
      the last.

  Returns:
    The metrics when the evaluate stage ran, else None.
  """
  mesh, held = prepare(config, workdir)
  try:
    if command is not None:
      workdir_lib.record_command(workdir, *command, finished=False)
    metrics = _run(config, workdir, mesh)
    if command is not None:
      workdir_lib.record_command(workdir, *command, finished=True)
    return metrics
  finally:
    if held is not None:
      held.close()  # releases the lock


def _run(config, workdir: str, mesh) -> dict | None:
  groups = set(stages.parse_groups(config.stages))
  todo = stages.plan(declare_stages(config), groups)
  logger.check_log_folders(workdir, [s.name for s in todo if s.trained])  # before any training
  ctx = RunContext(config=config, workdir=workdir, mesh=mesh, spec=data.get_spec(config),
                   rng=jax.random.PRNGKey(config.seed), train_src=None)
  if any(s.name != "report" for s in todo):
    ctx.train_src = data.get_source(config, "train", workdir=workdir)
  for stage in todo:
    identity = stages.stage_fingerprint(config, stage.name) if stage.trained else None
    if (stage.trained and stage.group not in groups
        and not workdir_lib.stage_done(workdir, stage.name, identity)):
      raise CheckpointError(f"the {stage.name} stage has not finished in {workdir}; add "
                            f"'{stage.group}' to config.stages.")
    ctx.products.update(stage.run(ctx))
    if stage.trained:
      workdir_lib.write_marker(workdir, stage.name, identity)
    if stage.name == "evaluate":  # the run identity of metrics.json and eval/
      workdir_lib.write_marker(workdir, workdir_lib.EVALUATE_MARKER,
                               stages.stage_fingerprint(config, "evaluate"))
  return ctx.products.get("metrics")
