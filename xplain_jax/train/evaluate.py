"""The "explainer" evaluator: the performer and each explainer variant on the test split.

Metrics (``metrics.json``), per variant: ``entropy`` (mean contribution entropy, nats),
``accuracy`` (of ``ŷ > τ`` at the best τ, in %), ``threshold``, ``relative_deviation`` (mean),
``bias`` and, with ground truth, ``gt_rank_correlation``; ``performer.accuracy`` is that of
``y > 0`` in %; ``prior_weights`` holds the entropy (and ground-truth rank correlation) of the
prior weights w taken as α, a diagnostic of what the prior loss pulls the explainer towards.

Arrays, so that the report only reads: ``eval/<variant>.npz`` with α, y_i ("concepts"), y, ŷ,
labels, w ("prior_w"), the contributions α_i y_i ("contrib") and their normalised shares
("share", rows summing to 1), the per-image ``entropy``, the per-concept mean |α_i y_i|
("mean_abs_contrib") and, where known, the planted contributions ("gt_contrib",
"gt_mean_abs"); ``eval/images.npz`` with the report images and, per variant, the indices of
their top reasons (``top_index_<variant>`` [K,k], ``explain.explain``; ``top_index_gt`` for the
planted truth); ``eval/meta.json`` with the names.
"""

from __future__ import annotations

import os
import platform

import jax
import numpy as np

from xplain_jax import explain, metrics
from xplain_jax.train import evaluators


def _summary(alpha, y_i, b, y, labels, entropy, gt=None) -> tuple[dict, np.ndarray]:
  y_hat = np.asarray(explain.explainer_output(alpha, y_i, b))
  acc, tau = metrics.threshold_accuracy(y_hat, labels)
  out = {
      "entropy": float(np.mean(entropy)),
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


def normalised_shares(contrib: np.ndarray) -> np.ndarray:
  """``c_i = |α_i y_i| / Σ_j |α_j y_j|`` per row of ``contrib`` [N,n] (an all-zero row gives 0)."""
  a = np.abs(np.asarray(contrib, np.float32))
  total = a.sum(-1, keepdims=True)
  return a / np.where(total > 0, total, 1.0)


def top_indices(alpha: np.ndarray, y_i: np.ndarray, names, top_k: int) -> np.ndarray:
  """[K,k] indices of each row's top-k concepts by |α_i y_i| (``explain.explain``)."""
  rows = explain.explain(alpha, y_i, 0.0, names=list(names), top_k=top_k)
  k = min(int(top_k), alpha.shape[1])
  return np.asarray([r["indices"] for r in rows], np.int32).reshape(len(alpha), k)


def evaluate(ctx: evaluators.EvalContext) -> evaluators.EvalOutput:
  """The metrics and arrays described in the module docstring."""
  config, spec, test = ctx.config, ctx.spec, ctx.test
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
  k, top_k = len(ctx.images), int(config.eval.get("top_k", 5))
  names = list(ctx.concept_names)
  images = {"images": display_images(ctx.images)}
  arrays = {}
  for variant, alpha in ctx.alpha.items():
    b = ctx.bias[variant]
    entropy = metrics.contribution_entropy(alpha, y_i)  # [N]; its mean taken by jax
    summary, y_hat = _summary(alpha, y_i, b, y, labels, entropy, gt)
    result[variant] = summary
    contrib = np.asarray(explain.contributions(alpha, y_i), np.float32)
    arrays[variant] = dict(
        alpha=alpha, concepts=y_i, y=y, y_hat=y_hat, labels=labels, prior_w=w, contrib=contrib,
        share=normalised_shares(contrib),
        entropy=np.asarray(entropy, np.float32),
        mean_abs_contrib=np.asarray(metrics.mean_abs_contribution(alpha, y_i), np.float32))
    images[f"top_index_{variant}"] = top_indices(alpha[:k], y_i[:k], names, top_k)
    if gt is not None:
      arrays[variant].update(gt_contrib=gt, gt_mean_abs=np.mean(np.abs(gt), axis=0))
  if gt is not None:
    gt_k = np.asarray(gt[:k])  # planted contributions: ranked as α = 1, y_i = contribution
    images["top_index_gt"] = top_indices(np.ones_like(gt_k), gt_k, names, top_k)
  arrays["images"] = images
  meta = {
      "target_name": spec.target_name, "concept_names": names, "case": spec.case,
      "beta": float(config.explainer.beta), "num_epochs": int(config.explainer.num_epochs),
      "variants": list(ctx.alpha), "machine": _machine(),
  }
  if spec.part_names:
    meta["part_names"] = list(spec.part_names)
  result["meta"] = {"dataset": config.dataset.name, "target": spec.target_name,
                    "num_concepts": len(names), "machine": meta["machine"]}
  return evaluators.EvalOutput(metrics=result, arrays=arrays, meta=meta)


def evaluate_and_write(config, spec, *, workdir: str, test: dict, explainers: dict,
                       concept_names, images: np.ndarray) -> dict:
  """This evaluator alone on featurized arrays: computes α, writes the results, returns metrics.

  Args:
    test: featurized test split (host arrays), see ``evaluators.EvalContext.test``.
    explainers: variant -> ``(g, variables)``.
    concept_names: n names; images: [K,S,S,3] the first test images.
  """
  alpha, bias = evaluators.predict_alphas(explainers, test["feat"],
                                          batch_size=config.eval.batch_size)
  ctx = evaluators.EvalContext(config=config, spec=spec, workdir=workdir, mesh=None, test=test,
                               alpha=alpha, bias=bias, explainers=explainers,
                               concept_names=tuple(concept_names), images=images)
  return evaluators.write_outputs(workdir, evaluate(ctx))


def _machine() -> str:
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", dev.platform)
  return f"{jax.device_count()} x {kind} ({platform.machine()}, {os.cpu_count()} CPU cores)"
