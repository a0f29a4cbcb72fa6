"""What every evaluator reads and returns, and the one place their results are written.

``EvalContext`` holds everything computed once for all evaluators (the featurized test split,
α and b of every explainer variant, the performer's callables, the report images); an
evaluator returns an ``EvalOutput``; ``write_outputs`` writes the merged outputs once:
``metrics.json`` (the union of their metrics), ``eval/<file>.npz`` (per-file union of their
arrays) and ``eval/meta.json``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from xplain_jax.infra import checkpoint
from xplain_jax.spec import stages


@dataclasses.dataclass
class EvalContext:
  """What every evaluator may read (host numpy arrays unless said otherwise).

  An evaluator's own settings come from its block ``config.evals.<name>`` (passed to it); from
  ``config`` it reads only facts of the run (dataset name, the explainer's settings).

  Attributes:
    config, spec, workdir, mesh: the run's.
    test: the featurized test split: ``feat`` [N,H,W,C], ``y`` [N], ``y_i`` [N,n], ``w`` [N,n],
      ``labels`` [N,A] and, where known, ``gt_contrib`` [N,n], ``part_mask``.
    alpha: variant -> α [N,n] (computed once, in eval mode).
    bias: variant -> b (float).
    explainers: variant -> ``train.explainer.Explainer``.
    concept_names: the n concept names.
    images: [K,S,S,3] the first K test images (the report's).
    perf, perf_vars, featurize: the performer module, its (replicated) variables and
      ``featurize(perf_vars, images) -> dict`` (``featurize.make_featurizer``).
    test_src: the test source (random access to images, labels, part masks).
    ordinary: ``(module, variables)`` of the ordinary comparison performer, or None.
    train: the featurized train split's columns (memory-mapped ``features/train`` cache, read
      by row batches: ``y`` [M], ``y_i`` [M,n], ...), or None when it is not cached.
    sanity: the sanity stage's product (``run.sanity.SanityResult``: ``explainer``, ``test``,
      ``layers``, ``variant``), or None when the stage is off.
  """

  config: Any
  spec: Any
  workdir: str
  mesh: Any
  test: dict
  alpha: dict
  bias: dict
  explainers: dict
  concept_names: tuple
  images: np.ndarray
  perf: Any = None
  perf_vars: Any = None
  featurize: Callable | None = None
  test_src: Any = None
  ordinary: tuple | None = None
  train: dict | None = None
  sanity: Any = None

  @property
  def batch_size(self) -> int:
    """Rows per batch of the evaluators' passes: those the test split was featurized with
    (``config.evals.explainer.batch_size``)."""
    return int(self.config.evals.explainer.batch_size)


@dataclasses.dataclass
class EvalOutput:
  """An evaluator's results.

  Attributes:
    metrics: entries of ``metrics.json`` (top-level keys; dicts are merged one level deep).
    arrays: file stem -> arrays for ``eval/<stem>.npz`` (e.g. "prior", "images").
    meta: entries of ``eval/meta.json``.
  """

  metrics: dict = dataclasses.field(default_factory=dict)
  arrays: dict = dataclasses.field(default_factory=dict)
  meta: dict = dataclasses.field(default_factory=dict)


def merge(outputs) -> EvalOutput:
  """One ``EvalOutput`` of several: metrics merged one level deep, arrays per file, meta
  unioned (later ones win)."""
  merged = EvalOutput()
  for out in outputs:
    for k, v in out.metrics.items():
      if isinstance(v, dict) and isinstance(merged.metrics.get(k), dict):
        merged.metrics[k] = {**merged.metrics[k], **v}
      else:
        merged.metrics[k] = v
    for stem, arrays in out.arrays.items():
      merged.arrays.setdefault(stem, {}).update(arrays)
    merged.meta.update(out.meta)
  return merged


def predict_alphas(explainers: dict, feat, *, batch_size: int) -> tuple[dict, dict]:
  """``(alpha, bias)``: variant -> α [N,n] in eval mode (feat [N,H,W,C]), variant -> b."""
  alpha, bias = {}, {}
  for variant, explainer in explainers.items():
    alpha[variant] = explainer.alpha(feat, batch_size=batch_size)
    bias[variant] = explainer.bias
  return alpha, bias


def write_outputs(workdir: str, out: EvalOutput) -> dict:
  """Writes ``eval/*.npz``, ``eval/meta.json`` and, last, ``metrics.json``; returns the metrics."""
  eval_dir = os.path.join(workdir, "eval")
  for stem, arrays in out.arrays.items():
    checkpoint.save_npz_atomic(os.path.join(eval_dir, f"{stem}.npz"), **arrays)
  checkpoint.write_json_atomic(os.path.join(eval_dir, "meta.json"), out.meta)
  checkpoint.write_json_atomic(os.path.join(workdir, stages.METRICS_FILE), out.metrics)
  return out.metrics
