"""All stages of a run: performer -> features -> explainers -> evaluation -> report.

``train_and_evaluate(config, workdir)`` is what ``launch/run.py`` calls. Each stage is skipped
when its result is already in the workdir and resumes from its last checkpoint when it was cut
off; ``config.stages`` selects stages (a stage that needs an earlier one's result restores it
from the workdir).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from xplain_jax import checkpoint, data, parallel, validate
from xplain_jax.train import cache as cache_lib
from xplain_jax.train import evaluate as evaluate_lib
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import featurize as featurize_lib
from xplain_jax.train import performer as performer_lib

STAGES = ("performer", "explainer", "evaluate", "report")


def parse_stages(stages: str) -> tuple[str, ...]:
  names = tuple(s.strip() for s in stages.split(",") if s.strip())
  bad = [s for s in names if s not in STAGES]
  if bad or not names:
    raise ValueError(f"config.stages={stages!r} names unknown stages {bad}; use a comma-separated "
                     f"subset of {','.join(STAGES)}.")
  return names


def _loader(source, config, batch_size: int, *, seed_offset: int = 0):
  return data.Loader(source, batch_size, seed=config.seed + seed_offset, shuffle=True,
                     drop_remainder=True, process_index=jax.process_index(),
                     process_count=jax.process_count())


def _use_cache(config) -> bool:
  return bool(config.explainer.cache_features) and jax.process_count() == 1


def train_and_evaluate(config, workdir: str) -> dict | None:
  """Runs the stages of ``config.stages`` in ``workdir``; returns metrics when evaluated."""
  validate.check_config(config)
  validate.check_workdir(workdir)
  stages = parse_stages(config.stages)
  parallel.initialize_distributed(config.distributed.coordinator_address,
                                  config.distributed.num_processes,
                                  config.distributed.process_id)
  mesh = parallel.make_mesh(config.num_devices)
  for block in ("performer", "explainer", "eval"):
    try:
      parallel.check_batch_size(config[block].batch_size, mesh, f"config.{block}.batch_size")
    except ValueError as e:
      raise validate.ConfigError(str(e)) from None
  spec = data.get_spec(config)
  if jax.process_index() == 0:
    validate.check_same_experiment(config, workdir)
  rng = jax.random.PRNGKey(config.seed)
  want = set(stages)

  # Stage 1: performer (trained, resumed, or restored when already complete).
  train_src = data.get_source(config, "train", workdir=workdir)
  if "performer" not in want and not _stage_done(workdir, "performer"):
    raise FileNotFoundError(f"the performer stage has not finished in {workdir}; add 'performer' "
                            "to config.stages.")
  perf, perf_vars = performer_lib.train_performer(
      config, spec, workdir=workdir, mesh=mesh,
      train_loader=_loader(train_src, config, config.performer.batch_size),
      rng=jax.random.fold_in(rng, 1))
  _mark_done(workdir, "performer")
  perf_vars = parallel.replicate(perf_vars, mesh)

  e = config.explainer
  featurize = featurize_lib.make_featurizer(perf, spec, prior_method=e.prior_method,
                                            clip_prior=e.clip_prior, feature=e.feature)
  test_src = data.get_source(config, "test", workdir=workdir)
  sample = jax.eval_shape(featurize, perf_vars, jax.ShapeDtypeStruct(
      (1, config.dataset.image_size, config.dataset.image_size, 3), np.float32))
  num_concepts = sample["y_i"].shape[-1]
  concept_names = spec.concept_names or tuple(f"filter_{i}" for i in range(num_concepts))

  # Stage 2: explainers.
  variants = tuple(v.strip() for v in e.variants.split(",") if v.strip())
  explainers = {}
  if "explainer" in want or "evaluate" in want:
    if _use_cache(config):
      feats = cache_lib.featurize_split(featurize, perf_vars, train_src,
                                        directory=os.path.join(workdir, "features", "train"),
                                        batch_size=config.eval.batch_size, mesh=mesh)
      loader, fz = _loader(feats, config, e.batch_size, seed_offset=1), None
    else:
      loader, fz = _loader(train_src, config, e.batch_size, seed_offset=1), featurize
    for i, variant in enumerate(variants):
      stage = explainer_lib.stage_name(variant)
      if "explainer" not in want and not _stage_done(workdir, stage):
        raise FileNotFoundError(f"the {stage} stage has not finished in {workdir}; add "
                                "'explainer' to config.stages.")
      explainers[variant] = explainer_lib.train_explainer(
          config, variant, workdir=workdir, mesh=mesh, loader=loader,
          feat_shape=sample["feat"].shape, num_concepts=num_concepts,
          rng=jax.random.fold_in(rng, 10 + i), featurize=fz, perf_variables=perf_vars)
      _mark_done(workdir, stage)

  # Stage 3: evaluation.
  result = None
  if "evaluate" in want:
    test = cache_lib.featurize_split(featurize, perf_vars, test_src,
                                     directory=os.path.join(workdir, "features", "test"),
                                     batch_size=config.eval.batch_size, mesh=mesh)
    k = min(config.eval.num_report_images, len(test_src))
    images = test_src.get_batch(np.arange(k))["image"]
    extras = None
    if spec.case == "filter" and "parts" in config:  # filters as object parts (parts_eval.py)
      from xplain_jax.train import parts_eval
      extras = parts_eval.evaluate_parts(
          config, spec, workdir=workdir, mesh=mesh, perf=perf, perf_vars=perf_vars,
          test_src=test_src, test=test.arrays, explainers=explainers, images=images,
          train_src=train_src, rng=jax.random.fold_in(rng, 1))
    result = evaluate_lib.evaluate(
        config, spec, workdir=workdir, test=test.arrays, explainers=explainers,
        concept_names=concept_names, images=images,
        **({} if extras is None else dict(image_extras=extras.image_extras,
                                         variant_extras=extras.variant_extras,
                                         extra_meta=extras.extra_meta)))
    if extras is not None:
      result = parts_eval.add_part_metrics(workdir, result, extras.metrics)
  # Stage 4: report.
  if "report" in want and jax.process_index() == 0:
    from xplain_jax import report
    path = report.write_report(workdir, num_images=config.eval.num_report_images)
    print(f"report written to {path}", flush=True)
  return result


def _stage_done(workdir: str, stage: str) -> bool:
  return os.path.exists(os.path.join(workdir, stage, "done.json"))


def _mark_done(workdir: str, stage: str) -> None:
  checkpoint.write_json_atomic(os.path.join(workdir, stage, "done.json"), {"stage": stage})
