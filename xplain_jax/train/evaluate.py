"""Stage 3: evaluate the performer and each explainer variant on the test split.

Writes ``eval/<variant>.npz`` (α, y_i, y, ŷ, labels, w and, where known, the planted
contributions), ``eval/images.npz`` (a few images for the report), ``eval/meta.json`` and
``metrics.json`` with, per variant, ``entropy`` (mean contribution entropy, nats),
``accuracy`` (of ``ŷ > τ`` at the best τ, in %), ``threshold``, ``relative_deviation`` (mean) and,
with ground truth, ``gt_rank_correlation``; ``performer.accuracy`` is that of ``y > 0`` in %;
``prior_weights`` holds the entropy (and ground-truth rank correlation) of the prior weights w
taken as α, a diagnostic of what the prior loss pulls the explainer towards.
"""

from __future__ import annotations

import os
import platform

import jax
import numpy as np

from xplain_jax import checkpoint, explain, metrics
from xplain_jax.train import explainer as explainer_lib


def _summary(alpha, y_i, b, y, labels, gt=None) -> tuple[dict, np.ndarray]:
  y_hat = np.asarray(explain.explainer_output(alpha, y_i, b))
  acc, tau = metrics.threshold_accuracy(y_hat, labels)
  out = {
      "entropy": float(np.mean(metrics.contribution_entropy(alpha, y_i))),
      "accuracy": 100.0 * float(acc),
      "threshold": float(tau),
      "relative_deviation": float(np.mean(metrics.relative_deviation(y, y_hat))),
      "bias": float(b),
  }
  if gt is not None:
    out["gt_rank_correlation"] = float(metrics.rank_correlation(
        metrics.mean_abs_contribution(alpha, y_i), np.mean(np.abs(gt), axis=0)))
  return out, y_hat


def display_images(images: np.ndarray) -> np.ndarray:
  """Images [K,H,W,3] (any normalisation) min-max scaled per image to [0,1] for figures."""
  lo = images.min(axis=(1, 2, 3), keepdims=True)
  hi = images.max(axis=(1, 2, 3), keepdims=True)
  return ((images - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)


def evaluate(config, spec, *, workdir: str, test: dict, explainers: dict, concept_names,
             images: np.ndarray, image_extras: dict | None = None, extra_meta: dict | None = None,
             variant_extras: dict | None = None) -> dict:
  """Computes and writes the metrics.

  Args:
    test: featurized test split (host arrays): ``y`` [N], ``y_i`` [N,n], ``w`` [N,n], ``feat``,
      ``labels`` [N,A] and optionally ``gt_contrib`` [N,n].
    explainers: variant -> ``(g, variables)``.
    concept_names: n names.
    images: [K,S,S,3] the first test images (for the report).
    image_extras: more per-image arrays for ``eval/images.npz`` (e.g. Grad-CAM maps).
    variant_extras: variant -> more arrays for ``eval/<variant>.npz`` (e.g. ``part_contrib``).

  Returns:
    The metrics dict written to ``metrics.json``.
  """
  y, y_i, w = test["y"], test["y_i"], test["w"]
  labels = test["labels"][:, spec.target_index]
  gt = test.get("gt_contrib")
  result = {"performer": {"accuracy": 100.0 * float(np.mean((y > 0) == (labels > 0.5)))}}
  result["performer"]["num_test"] = int(len(y))
  if test["labels"].shape[1] > 1 and "logits" in test:
    result["performer"]["mean_attribute_accuracy"] = 100.0 * float(
        np.mean((test["logits"] > 0) == (test["labels"] > 0.5)))
  # The prior weights themselves taken as α: how spread and how close to the truth the prior is.
  prior_as_alpha = {"entropy": float(np.mean(metrics.contribution_entropy(w, y_i)))}
  if gt is not None:
    prior_as_alpha["gt_rank_correlation"] = float(metrics.rank_correlation(
        metrics.mean_abs_contribution(w, y_i), np.mean(np.abs(gt), axis=0)))
  result["prior_weights"] = prior_as_alpha
  eval_dir = os.path.join(workdir, "eval")
  for variant, (g, variables) in explainers.items():
    alpha = explainer_lib.predict_alpha(g, variables, test["feat"],
                                        batch_size=config.eval.batch_size)
    b = float(jax.device_get(variables["params"]["b"]))
    summary, y_hat = _summary(alpha, y_i, b, y, labels, gt)
    result[variant] = summary
    arrays = dict(alpha=alpha, concepts=y_i, y=y, y_hat=y_hat, labels=labels, prior_w=w)
    if gt is not None:
      arrays["gt_contrib"] = gt
    arrays.update((variant_extras or {}).get(variant, {}))
    checkpoint.save_npz_atomic(os.path.join(eval_dir, f"{variant}.npz"), **arrays)
  checkpoint.save_npz_atomic(os.path.join(eval_dir, "images.npz"), images=display_images(images),
                             **(image_extras or {}))
  meta = {
      "target_name": spec.target_name, "concept_names": list(concept_names), "case": spec.case,
      "beta": float(config.explainer.beta), "num_epochs": int(config.explainer.num_epochs),
      "variants": list(explainers), "machine": _machine(),
  }
  if spec.part_names:
    meta["part_names"] = list(spec.part_names)
  meta.update(extra_meta or {})
  checkpoint.write_json_atomic(os.path.join(eval_dir, "meta.json"), meta)
  result["meta"] = {"dataset": config.dataset.name, "target": spec.target_name,
                    "num_concepts": len(concept_names), "machine": meta["machine"]}
  checkpoint.write_json_atomic(os.path.join(workdir, "metrics.json"), result)
  return result


def _machine() -> str:
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", dev.platform)
  return f"{jax.device_count()} x {kind} ({platform.machine()}, {os.cpu_count()} CPU cores)"
