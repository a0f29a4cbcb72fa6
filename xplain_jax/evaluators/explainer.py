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

from xplain_jax.core import explain, metrics
from xplain_jax.evaluators import common


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


def evaluate(ctx: common.EvalContext, cfg) -> common.EvalOutput:
  """The metrics and arrays described in the module docstring; ``cfg`` is
  ``config.evals.explainer`` (``top_k``: reasons kept per report image)."""
  config, spec = ctx.config, ctx.spec
  out = evaluate_arrays(
      ctx.alpha, ctx.bias, ctx.test, labels=ctx.test["labels"][:, spec.target_index],
      names=ctx.concept_names, images=ctx.images, top_k=int(cfg.top_k),
      case=spec.case, target_name=spec.target_name)
  out.meta.update(beta=float(config.explainer.beta),
                  num_epochs=int(config.explainer.num_epochs))
  if spec.part_names:
    out.meta["part_names"] = list(spec.part_names)
  out.metrics["meta"]["dataset"] = config.dataset.name
  if ctx.test["labels"].shape[1] > 1 and "logits" in ctx.test:
    out.metrics["performer"]["mean_attribute_accuracy"] = 100.0 * float(
        np.mean((ctx.test["logits"] > 0) == (ctx.test["labels"] > 0.5)))
  return out


def evaluate_arrays(alpha: dict, bias: dict, test: dict, *, labels, names, images=None,
                    top_k: int = 5, case: str = "shared_feature",
                    target_name: str = "y") -> common.EvalOutput:
  """The explainer evaluator on arrays alone (no config, no workdir).

  Args:
    alpha: variant -> α [N,n]; bias: variant -> b.
    test: ``y`` [N], ``y_i`` [N,n], ``w`` [N,n] and optionally ``gt_contrib`` [N,n].
    labels: [N] in {0,1}, the explained label (for the accuracies).
    names: the n concept names.
    images: optional [K,S,S,3] images shown in the report (their top reasons are saved).
    top_k: reasons kept per report image.
    case: ``"filter"`` or ``"shared_feature"``.
    target_name: the explained output's name.

  Returns:
    ``EvalOutput`` with the metrics, arrays and meta described in the module docstring.
  """
  y, y_i, w = (np.asarray(test[k], np.float32) for k in ("y", "y_i", "w"))
  labels = np.asarray(labels)
  gt = test.get("gt_contrib")
  result = {"performer": {"accuracy": 100.0 * float(np.mean((y > 0) == (labels > 0.5))),
                          "num_test": int(len(y))}}
  # The prior weights themselves taken as α: how spread and how close to the truth the prior is.
  prior_as_alpha = {"entropy": float(np.mean(metrics.contribution_entropy(w, y_i)))}
  if gt is not None:
    prior_as_alpha["gt_rank_correlation"] = float(metrics.rank_correlation(
        metrics.mean_abs_contribution(w, y_i), np.mean(np.abs(gt), axis=0)))
  result["prior_weights"] = prior_as_alpha
  images = np.zeros((0, 1, 1, 3), np.float32) if images is None else np.asarray(images)
  k, names = len(images), list(names)
  image_arrays = {"images": display_images(images)}
  arrays = {}
  for variant, a in alpha.items():
    a = np.asarray(a, np.float32)
    b = bias[variant]
    entropy = metrics.contribution_entropy(a, y_i)  # [N]; its mean taken by jax
    summary, y_hat = _summary(a, y_i, b, y, labels, entropy, gt)
    result[variant] = summary
    contrib = np.asarray(explain.contributions(a, y_i), np.float32)
    arrays[variant] = dict(
        alpha=a, concepts=y_i, y=y, y_hat=y_hat, labels=labels, prior_w=w, contrib=contrib,
        share=normalised_shares(contrib),
        entropy=np.asarray(entropy, np.float32),
        mean_abs_contrib=np.asarray(metrics.mean_abs_contribution(a, y_i), np.float32))
    image_arrays[f"top_index_{variant}"] = top_indices(a[:k], y_i[:k], names, top_k)
    if gt is not None:
      arrays[variant].update(gt_contrib=gt, gt_mean_abs=np.mean(np.abs(gt), axis=0))
  if gt is not None:
    gt_k = np.asarray(gt[:k])  # planted contributions: ranked as α = 1, y_i = contribution
    image_arrays["top_index_gt"] = top_indices(np.ones_like(gt_k), gt_k, names, top_k)
  arrays["images"] = image_arrays
  meta = {"target_name": target_name, "concept_names": names, "case": case,
          "variants": list(alpha), "machine": _machine()}
  result["meta"] = {"target": target_name, "num_concepts": len(names),
                    "machine": meta["machine"]}
  return common.EvalOutput(metrics=result, arrays=arrays, meta=meta)


def _machine() -> str:
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", dev.platform)
  return f"{jax.device_count()} x {kind} ({platform.machine()}, {os.cpu_count()} CPU cores)"
