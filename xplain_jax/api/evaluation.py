"""The own-model API's evaluating half: score explainers on arrays, write a report.

The metrics are the pipeline evaluators' (``evaluators.explainer.evaluate_arrays``,
``evaluators.fidelity.add_fidelity``, ``evaluators.patches``), written by the same
``evaluators.write_outputs``. ``xplain_jax.api`` re-exports every public name.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np

from xplain_jax.api import guards
from xplain_jax.core import metrics as metrics_lib
from xplain_jax.spec import config_base
from xplain_jax.errors import ConfigError
from xplain_jax import evaluators
from xplain_jax.evaluators import explainer as evaluate_lib
from xplain_jax.train import featurizers

from xplain_jax.api.fit import Explainer

FEATURE_KEYS = featurizers.FEATURE_KEYS

# evaluate's fidelity settings: the pipeline's config.evals.fidelity defaults, and the API's own
# sources of the effects (none given: Case 1 deletes filters, Case 2 has no effects).
FIDELITY_DEFAULTS = dict(fidelity=True, effects=None, counterfactual=None, head=None, train=None,
                         **{k: config_base.EVALS["fidelity"][k] for k in (
                             "num_resamples", "sign_threshold", "deletion_steps", "ig_steps",
                             "seed")})

def evaluate(explainers: Mapping[str, Explainer], features: Mapping[str, np.ndarray], *,
             labels, names: Sequence[str] | None = None, gt_contrib=None,
             fidelity: bool = True, effects=None, counterfactual: Callable | None = None,
             head: Callable | None = None, train: Mapping[str, np.ndarray] | None = None,
             num_resamples: int = FIDELITY_DEFAULTS["num_resamples"],
             sign_threshold: float = FIDELITY_DEFAULTS["sign_threshold"],
             deletion_steps: int = FIDELITY_DEFAULTS["deletion_steps"],
             ig_steps: int = FIDELITY_DEFAULTS["ig_steps"],
             seed: int = FIDELITY_DEFAULTS["seed"]) -> dict:
  """The metrics the pipeline writes to ``metrics.json``, for explainers of one dataset.

  Args:
    explainers: variant name -> ``Explainer`` (e.g. ``{"baseline": ..., "prior": ...}``).
    features: featurized test images (``featurize_dataset``).
    labels: [N] booleans or 0/1, the true label of the explained output (for the accuracies).
    names: the n concept names (default ``filter <i>`` for Case 1, ``concept_<i>`` else).
    gt_contrib: optional [N,n] planted contributions (adds ``gt_rank_correlation``).
    fidelity: score each explainer against the performer's own effects Δ_k = y − y(without
      concept k), with the references and peers (``evaluators.fidelity.add_fidelity``) where Δ can
      be had: Case 1 by zeroing each filter (needs the head: ``featurize_dataset``'s arrays remember
      it, or pass ``head``), any case from ``effects`` or ``counterfactual``. False skips it.
    effects: optional [N,n] measured Δ.
    counterfactual: optional ``(indices [b], k) -> images`` with concept k toggled, scored
      by the featurizer's ``score``.
    head: Case 1: ``x [B,H,W,n] -> y [B]`` when ``features`` does not remember it.
    train: the training arrays (``featurize_dataset``); adds the least-squares peer (one α
      for every image, fitted on train's y_i and y).
    num_resamples, sign_threshold, deletion_steps, ig_steps, seed: the fidelity settings
      (bootstrap resamples, the sign-agreement threshold in units of y, deletion-curve points,
      integrated-gradients points, the references' seed).

  Returns:
    ``{"performer": {"accuracy" (at τ = 0), "accuracy_best_threshold", "best_threshold", ...},
    "prior_weights": {...}, <variant>: {"entropy", "accuracy", "threshold",
    "relative_deviation", "bias", ...}, "fidelity": {...}, "fidelity_reference": {...},
    "meta": {...}}``.
  """
  return _evaluate(explainers, features, labels=labels, names=names, gt_contrib=gt_contrib,
                   fidelity=dict(fidelity=fidelity, effects=effects,
                                 counterfactual=counterfactual, head=head, train=train,
                                 num_resamples=num_resamples, seed=seed,
                                 sign_threshold=sign_threshold, deletion_steps=deletion_steps,
                                 ig_steps=ig_steps)).metrics


def write_report(directory: str, explainers: Mapping[str, Explainer],
                 features: Mapping[str, np.ndarray], *, labels, names: Sequence[str] | None = None,
                 images=None, target_name: str = "y", gt_contrib=None, num_images: int = 6,
                 absent: str | None = "no {}", part_masks=None,
                 part_names: Sequence[str] | None = None, **fidelity_kwargs) -> str:
  """Evaluates and writes ``report.html``/``report.md`` (+ metrics, arrays) into ``directory``.

  Args:
    directory: created if missing; receives ``metrics.json``, ``eval/``, ``figures/`` and the
      report.
    explainers, features, labels, names, gt_contrib: as in ``evaluate``.
    images: optional [M,S,S,3] (or [M,S,S] grayscale) images of the first M rows of
      ``features``; the first ``num_images`` are shown with their reasons, and for Case 1 each
      of their top filters is shown by its most strongly activating patches among all M.
    target_name: the explained output's name (titles and captions).
    num_images: images shown.
    absent: name pattern of an absent Case-2 concept (None: the plain name, signed value).
    part_masks: optional [M,S,S] int part index per pixel (<0: none), for the part a filter
      fires on; part_names: the parts' names.
    **fidelity_kwargs: ``evaluate``'s fidelity arguments (``fidelity=False``, ``effects``, ...).

  Returns:
    The path of ``report.html``.
  """
  from xplain_jax import report  # pylint: disable=import-outside-toplevel
  from xplain_jax.evaluators import patches  # pylint: disable=import-outside-toplevel
  feats = guards.check_features(features)
  shown = None
  if images is not None:
    images = guards.check_report_images(images, "images", max_rows=len(feats["y"]))
    if images.shape[-1] == 1:  # grayscale: three equal channels, drawn grey by every figure
      images = np.repeat(images, 3, axis=-1)
    shown = images[:min(num_images, len(images))]
  unknown = sorted(set(fidelity_kwargs) - set(FIDELITY_DEFAULTS))
  if unknown:
    raise ConfigError(f"write_report got unknown arguments {unknown}; see api.evaluate.")
  fid = dict(FIDELITY_DEFAULTS, **fidelity_kwargs)
  out = _evaluate(explainers, feats, labels=labels, names=names, gt_contrib=gt_contrib,
                  images=shown, target_name=target_name, fidelity=fid)
  out.meta["absent"] = absent
  if part_masks is not None and (images is None or np.shape(part_masks) != images.shape[:3]):
    raise ConfigError(f"part_masks has shape {np.shape(part_masks)}; pass one int mask [M,S,S] "
                      "per report image (images [M,S,S,3]), or leave it out.")
  if images is not None and out.meta.get("case") == "filter":
    patches.add_top_patches(out, feats, images, part_masks=part_masks, part_names=part_names)
  os.makedirs(directory, exist_ok=True)
  evaluators.write_outputs(directory, out)
  return report.write_report(directory, num_images=num_images)


def _evaluate(explainers, features, *, labels, names=None, gt_contrib=None, images=None,
              target_name: str = "y", fidelity: dict | None = None) -> evaluators.EvalOutput:
  feats = guards.check_features(features)
  if not isinstance(explainers, Mapping) or not explainers:
    raise ConfigError("no explainers given; pass {name: Explainer} from fit_explainer.")
  n_img, n = feats["y_i"].shape
  cases = {getattr(e, "case", None) for e in explainers.values()}
  case = cases.pop() if len(cases) == 1 else "shared_feature"
  default = "filter {}" if case == "filter" else "concept_{}"
  names = [default.format(i) for i in range(n)] if names is None else [str(s) for s in names]
  if len(names) != n:
    raise ConfigError(f"got {len(names)} names for n = {n} concepts; pass one name per concept.")
  labels = guards.check_labels(labels, n_img)
  test = {k: feats[k] for k in FEATURE_KEYS}
  if gt_contrib is not None:
    test["gt_contrib"] = guards.check_contrib(gt_contrib, (n_img, n))
  alpha = {v: e.alpha(feats["feat"]) for v, e in explainers.items()}
  bias = {v: e.bias for v, e in explainers.items()}
  out = evaluate_lib.evaluate_arrays(alpha, bias, test, labels=labels, names=names,
                                     images=images, case=case, target_name=target_name)
  acc, tau = metrics_lib.threshold_accuracy(feats["y"], labels)
  out.metrics["performer"].update(threshold=0.0, accuracy_best_threshold=100.0 * float(acc),
                                  best_threshold=float(tau))
  out.meta["threshold_chosen_on"] = "the evaluated images' own labels"
  if fidelity and fidelity.get("fidelity", True):
    from xplain_jax.evaluators import (  # pylint: disable=import-outside-toplevel
        fidelity as fidelity_eval)
    fidelity_eval.add_fidelity(out, alpha, bias, feats, case=case, **{
        k: v for k, v in fidelity.items() if k != "fidelity"})
  return out
