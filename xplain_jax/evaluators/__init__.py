"""Evaluators chosen by name (big_vision's pattern), and the one place their results are written.

An evaluator is a module of ``xplain_jax.train`` with ``evaluate(ctx: EvalContext) ->
EvalOutput``; ``config.evals`` (comma-separated names of ``EVALUATORS``) chooses them. The
context holds everything computed once for all of them: the featurized test split, α and b of
every explainer variant, the performer's callables, the report images. Their outputs are merged
and written once by ``write_outputs``: ``metrics.json`` (the union of their metrics),
``eval/<file>.npz`` (per-file union of their arrays) and ``eval/meta.json``.

A new metric family (e.g. fidelity) plugs in as a module with ``evaluate(ctx)`` and a name here.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
from typing import Any, Callable

import numpy as np

from xplain_jax import checkpoint
from xplain_jax.errors import ConfigError

# name -> module of xplain_jax.train holding ``evaluate(ctx)``.
EVALUATORS = {"explainer": "evaluate", "parts": "parts_eval", "fidelity": "fidelity_evaluator",
              "sanity": "sanity_evaluator"}


@dataclasses.dataclass
class EvalContext:
  """What every evaluator may read (host numpy arrays unless said otherwise).

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


def default_evals(config) -> str:
  """``config.evals`` when set, else "explainer", plus "parts" for configs with a parts block,
  "fidelity" when ``config.fidelity.enabled`` and "sanity" when ``config.sanity.enabled``."""
  names = ["explainer"] + (["parts"] if "parts" in config else [])
  names += [n for n in ("fidelity", "sanity") if _enabled(config, n)]
  return config.get("evals", ",".join(names))


def _enabled(config, block: str) -> bool:
  return block in config and bool(config[block].get("enabled", False))


def parse_evals(evals: str, config=None) -> tuple[str, ...]:
  """The evaluator names of ``evals``; with ``config``, checks it has what they read."""
  names = tuple(s.strip() for s in evals.split(",") if s.strip())
  bad = [s for s in names if s not in EVALUATORS]
  if bad or not names:
    raise ConfigError(f"config.evals={evals!r} names unknown evaluators {bad}; use a "
                      f"comma-separated subset of {','.join(EVALUATORS)}.")
  if config is not None and "parts" in names and "parts" not in config:
    raise ConfigError("config.evals names 'parts' but the config has no parts block; use a "
                      "parts config (configs/parts.py, configs/pascal_part.py) or drop 'parts'.")
  return names


def predict_alphas(explainers: dict, feat: np.ndarray, *, batch_size: int) -> tuple[dict, dict]:
  """``(alpha, bias)``: variant -> α [N,n] in eval mode, variant -> b."""
  alpha, bias = {}, {}
  for variant, explainer in explainers.items():
    alpha[variant] = explainer.alpha(feat, batch_size=batch_size)
    bias[variant] = explainer.bias
  return alpha, bias


def run_evaluators(names, ctx: EvalContext) -> EvalOutput:
  """Runs the named evaluators in order and merges their outputs; ``meta["evaluator_seconds"]``
  holds each one's wall time."""
  merged = EvalOutput()
  seconds = {}
  for name in names:
    module = importlib.import_module(f"xplain_jax.train.{EVALUATORS[name]}")
    start = time.perf_counter()
    out = module.evaluate(ctx)
    seconds[name] = round(time.perf_counter() - start, 2)
    for k, v in out.metrics.items():
      if isinstance(v, dict) and isinstance(merged.metrics.get(k), dict):
        merged.metrics[k] = {**merged.metrics[k], **v}
      else:
        merged.metrics[k] = v
    for stem, arrays in out.arrays.items():
      merged.arrays.setdefault(stem, {}).update(arrays)
    merged.meta.update(out.meta)
  merged.meta["evaluator_seconds"] = seconds
  return merged


def write_outputs(workdir: str, out: EvalOutput) -> dict:
  """Writes ``eval/*.npz``, ``eval/meta.json`` and, last, ``metrics.json``; returns the metrics."""
  eval_dir = os.path.join(workdir, "eval")
  for stem, arrays in out.arrays.items():
    checkpoint.save_npz_atomic(os.path.join(eval_dir, f"{stem}.npz"), **arrays)
  checkpoint.write_json_atomic(os.path.join(eval_dir, "meta.json"), out.meta)
  checkpoint.write_json_atomic(os.path.join(workdir, "metrics.json"), out.metrics)
  return out.metrics
