"""Every fidelity figure of a run from arrays and callables: what a fidelity evaluator returns.

``evaluate_fidelity`` takes the explainers' contributions, the prior weights, the concepts and
the performer's measured effects ``delta`` (from ``fidelity.rendering_effects`` or
``fidelity.filter_deletion_effects``) and returns the ``metrics.json`` blocks
``"fidelity"`` (per variant, plus ``prior_minus_baseline``) and ``"fidelity_reference"``, and
the arrays to save. References:

* ``random``: each image's contributions ``α_k y_k`` permuted over concepts, the chance floor
  (its mean interventional rank correlation is 0 in expectation);
* ``shuffled_alpha``: α permuted over concepts, times the true ``y_k``: what the concept values
  alone explain whatever the weights (above 0 when ``|y_k|`` varies with the effects);
* ``prior_weights``: α = w, the prior weights alone.
For Case 1, ``deletion_fn(order) -> [N,J]`` adds deletion curves and their areas for the
explainers' orders, a random order and the prior weights' order.

No training, data or config code is imported: the caller (the pipeline's evaluator, or a
user's script) supplies arrays, callables and the hyper-parameters.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax import fidelity
from xplain_jax.errors import DataError


def _check(name: str, a, shape) -> np.ndarray:
  a = np.asarray(a, np.float32)
  if a.shape != shape:
    raise DataError(f"evaluate_fidelity: {name} has shape {a.shape}; expected {shape} "
                    "(one row per test image, one column per concept).")
  return a


def evaluate_fidelity(alphas: Mapping[str, np.ndarray], y_i: np.ndarray, w: np.ndarray,
                      delta: np.ndarray, *, key: jax.Array, sign_threshold: float,
                      num_resamples: int, gt_contrib: np.ndarray | None = None,
                      deletion_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                      deletion_counts: np.ndarray | None = None) -> tuple[dict, dict, dict]:
  """Fidelity metrics of each explainer and of the two references.

  Args:
    alphas: variant ("baseline", "prior", ...) -> α [N,n].
    y_i: [N,n] concept values; w: [N,n] prior weights; delta: [N,n] measured effects.
    key: PRNG key of the random reference and the random deletion order.
    sign_threshold: effects at or below it do not count in ``sign_agreement``.
    num_resamples: bootstrap resamples of every interval.
    gt_contrib: [N,n] planted contributions, when known.
    deletion_fn: Case 1: ``order [N,n] int -> y after deletions [N,J]``, e.g.
      ``lambda o: fidelity.deletion_curve(head_fn, x, o, counts)``.
    deletion_counts: [J] the deletion counts of ``deletion_fn``'s columns.

  Returns:
    ``(fidelity, fidelity_reference, arrays)``: the two ``metrics.json`` blocks, and
    ``arrays``: name -> array to save (``"<variant>/deletion_curve"`` [N,J],
    ``"reference/<name>/contrib"`` [N,n], ``"deletion_counts"`` [J], ...).
  """
  if not alphas:
    raise DataError("evaluate_fidelity: no explainer variants given; pass alphas={variant: α}.")
  n_img, n = np.shape(y_i)
  y_i = _check("y_i", y_i, (n_img, n))
  w, delta = _check("w", w, (n_img, n)), _check("delta", delta, (n_img, n))
  alphas = {v: _check(f"alpha of {v}", a, (n_img, n)) for v, a in alphas.items()}
  gt = None if gt_contrib is None else _check("gt_contrib", gt_contrib, (n_img, n))
  k_random, k_shuffle, k_order = jax.random.split(key, 3)
  first = jnp.asarray(alphas["prior"] if "prior" in alphas else next(iter(alphas.values())))
  ref_contribs = {  # reference name -> contributions [N,n]
      "random": np.asarray(fidelity.shuffled_alpha(k_random, first * y_i)),
      "shuffled_alpha": np.asarray(fidelity.shuffled_alpha(k_shuffle, first)) * y_i,
      "prior_weights": w * y_i}
  summary = lambda c: fidelity.summarize(c, delta, sign_threshold=sign_threshold,
                                         num_resamples=num_resamples, gt_contrib=gt)
  fid = {v: summary(a * y_i) for v, a in alphas.items()}
  ref = {r: summary(c) for r, c in ref_contribs.items()}
  arrays = {f"reference/{r}/contrib": c for r, c in ref_contribs.items()}
  if "baseline" in alphas and "prior" in alphas:
    per_image = {v: np.asarray(fidelity.interventional_rank_correlation(alphas[v] * y_i, delta))
                 for v in ("prior", "baseline")}
    fid["prior_minus_baseline"] = fidelity.paired_difference_interval(
        per_image["prior"], per_image["baseline"], num_resamples=num_resamples)
  if deletion_fn is not None:
    counts = np.arange(n + 1) if deletion_counts is None else np.asarray(deletion_counts)
    arrays["deletion_counts"] = counts
    orders = {v: fidelity.order_by(jnp.asarray(a * y_i)) for v, a in alphas.items()}
    orders["prior_weights"] = fidelity.order_by(jnp.asarray(ref_contribs["prior_weights"]))
    orders["random"] = fidelity.random_order(k_order, n_img, n)
    for name, order in orders.items():
      curves = np.asarray(deletion_fn(np.asarray(order)), np.float32)
      block = fid[name] if name in fid else ref[name]
      block["deletion_area"] = fidelity.deletion_area(curves, counts)
      arrays[f"{name}/deletion_curve" if name in fid else f"reference/{name}/deletion_curve"] = curves
  return fid, ref, arrays
