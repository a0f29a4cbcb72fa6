"""Fidelity of an explanation to the performer itself: interventional effects and their scores.

The explainer says concept k contributed ``c_k = α_k y_k`` to the performer's score y of an
image. This module measures what the performer actually does when concept k is taken away, its
*interventional effect* ``Δ_k = y(I) − y(I with concept k toggled)``, and scores the
contributions against it, per image:

* `filter_deletion_effects` (Case 1, any model): zero filter k's map in the feature the head
  reads, ``x[..., k] = 0``;
* `rendering_effects` (synthetic data): re-render the image with concept k toggled
  (``SceneSource.counterfactuals``) and run the performer;
* `interventional_rank_correlation`: per image, Spearman over concepts of ``|c_k|`` vs ``|Δ_k|``;
  `sign_agreement`; `gt_rank_correlation_per_image` against the planted contributions;
* `deletion_curve` / `deletion_area` (Case 1): delete filters in a given order (the explainer's,
  the prior weights', a random one) and watch y fall;
* references: `shuffled_alpha` (α permuted over concepts, a chance floor) and α = w;
* `mean_interval` / `paired_difference_interval`: a mean over images and its bootstrap interval.

The model reaches this module only through callables (closures over params). Model
randomisation and the performer's per-concept accuracy are in ``fidelity_sanity``.

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and Quantitatively", Section 4;
  Petsiuk et al. 2018 (RISE: deletion curves); Hooker et al. 2019 (ROAR);
  Adebayo et al. 2018 ("Sanity Checks for Saliency Maps").
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax import metrics, shapes
from xplain_jax.errors import ConfigError, DataError

Array = jax.Array


def filter_deletion_effects(head_fn: Callable[[Array], Array], x: Array, *,
                            batch_size: int | None = None) -> Array:
  """Case 1 interventional effects: ``Δ_k = y(x) − y(x with x[..., k] = 0)``.

  Args:
    head_fn: the part of the performer above x, ``[B,H,W,n] -> [B]`` (examples independent).
    x: [B,H,W,n] the feature map the head reads.
    batch_size: how many filters to delete in parallel (``jax.lax.map``'s batch size); None
      runs them one after another (least memory).

  Returns:
    [B,n] float32.

  Example:
    >>> head = lambda x: jnp.sum(x * 2.0, axis=(1, 2, 3))
    >>> filter_deletion_effects(head, jnp.ones((1, 2, 2, 3))).tolist()
    [[8.0, 8.0, 8.0]]
  """
  shapes.check_rank("fidelity.filter_deletion_effects", "x", x, "[B, H, W, n]")
  n = x.shape[-1]
  y = head_fn(x)

  def without(k):
    return head_fn(x * (jnp.arange(n) != k).astype(x.dtype))

  ys = jax.lax.map(without, jnp.arange(n), batch_size=batch_size)   # [n,B]
  return (y[:, None] - ys.T).astype(jnp.float32)


def rendering_effects(y_fn: Callable[[np.ndarray], np.ndarray],
                      counterfactuals: Callable[[np.ndarray, int], np.ndarray],
                      indices: np.ndarray, num_concepts: int, *, y: np.ndarray,
                      batch_size: int = 256) -> np.ndarray:
  """Interventional effects by re-rendering: ``Δ_k = y(I) − y(render(I with k toggled))``.

  Args:
    y_fn: the performer's explained score, ``images [b,S,S,3] -> [b]``.
    counterfactuals: ``(indices [b], k) -> images [b,S,S,3]``, e.g.
      ``SceneSource.counterfactuals``.
    indices: [B] the images' indices in the source.
    num_concepts: n, the concepts toggled (0..n-1).
    y: [B] the performer's scores of the factual images (already computed by the caller; the
      factual images are not re-rendered here).
    batch_size: images per call of ``y_fn``.

  Returns:
    [B,n] float32.
  """
  indices = np.asarray(indices).reshape(-1)
  y = np.asarray(y, np.float32).reshape(-1)
  if y.shape[0] != indices.shape[0]:
    raise DataError(f"rendering_effects: y has {y.shape[0]} scores for {len(indices)} indices; "
                    "pass one score per image.")
  delta = np.empty((len(indices), num_concepts), np.float32)
  for k in range(num_concepts):
    for lo in range(0, len(indices), batch_size):
      rows = slice(lo, lo + batch_size)
      delta[rows, k] = y[rows] - np.asarray(y_fn(counterfactuals(indices[rows], k))).reshape(-1)
  return delta


def _per_image_spearman(a: Array, b: Array) -> Array:
  return jax.vmap(metrics.rank_correlation)(a, b)


def interventional_rank_correlation(contrib: Array, delta: Array) -> Array:
  """Per image, Spearman over concepts between ``|contrib_k|`` and ``|Δ_k|``.

  Args:
    contrib: [B,n] contributions ``α_k y_k``.
    delta: [B,n] interventional effects.

  Returns:
    [B] in [-1,1] (0 for an image whose contributions or effects are all equal).
  """
  shapes.check_same_shape("fidelity.interventional_rank_correlation", "contrib", contrib,
                          "delta", delta, "[B, n]")
  return _per_image_spearman(jnp.abs(contrib), jnp.abs(delta))


def gt_rank_correlation_per_image(contrib: Array, gt_contrib: Array) -> Array:
  """Per image, Spearman over concepts between ``|contrib_k|`` and the planted ``|v_k s_k|``.

  Args:
    contrib: [B,n]; gt_contrib: [B,n] planted contributions.

  Returns:
    [B] in [-1,1].
  """
  shapes.check_same_shape("fidelity.gt_rank_correlation_per_image", "contrib", contrib,
                          "gt_contrib", gt_contrib, "[B, n]")
  return _per_image_spearman(jnp.abs(contrib), jnp.abs(gt_contrib))


def sign_agreement(contrib: Array, delta: Array, threshold: float) -> tuple[float, int]:
  """Share of (image, concept) pairs with ``|Δ_k| > threshold`` where the signs agree.

  Args:
    contrib: [B,n]; delta: [B,n].
    threshold: effects at or below it (in units of y) count as no effect and are skipped.

  Returns:
    (share in [0,1], NaN when no pair passes the threshold; the number of pairs counted).
  """
  shapes.check_same_shape("fidelity.sign_agreement", "contrib", contrib, "delta", delta,
                          "[B, n]")
  contrib, delta = np.asarray(contrib), np.asarray(delta)
  counted = np.abs(delta) > threshold
  num = int(counted.sum())
  if num == 0:
    return float("nan"), 0
  agree = np.sign(contrib[counted]) == np.sign(delta[counted])
  return float(agree.mean()), num


def order_by(scores: Array) -> Array:
  """Per image, concept indices by descending score: [B,n] -> [B,n] int32."""
  return jnp.argsort(-scores, axis=-1).astype(jnp.int32)


def random_order(key: Array, batch: int, n: int) -> Array:
  """An independent random permutation of the n concepts per image: [B,n] int32."""
  keys = jax.random.split(key, batch)
  return jax.vmap(lambda k: jax.random.permutation(k, n))(keys).astype(jnp.int32)


def deletion_counts(n: int, num_steps: int) -> np.ndarray:
  """The numbers of deleted filters at which a deletion curve is sampled: 0..n, at most
  ``num_steps + 1`` distinct values, always 0 and n."""
  if num_steps < 1:
    raise ConfigError(f"deletion curve num_steps={num_steps}; use at least 1.")
  return np.unique(np.round(np.linspace(0, n, min(num_steps, n) + 1)).astype(np.int32))


def deletion_curve(head_fn: Callable[[Array], Array], x: Array, order: Array,
                   counts: np.ndarray | None = None) -> Array:
  """Case 1: y after deleting filters ``order[:, :j]`` (zeroing their maps), for j in counts.

  Args:
    head_fn: ``[B,H,W,n] -> [B]``.
    x: [B,H,W,n].
    order: [B,n] int, per image a permutation of the filters (first deleted first).
    counts: [J] int deletion counts (default 0..n; see ``deletion_counts``).

  Returns:
    [B,J] float32; column 0 is y(x) when counts starts at 0.
  """
  fn = "fidelity.deletion_curve"
  _, _, _, n = shapes.check_rank(fn, "x", x, "[B, H, W, n]")
  if tuple(order.shape) != (x.shape[0], n):
    raise ValueError(f"{fn}: order has shape {tuple(order.shape)}; expected [B, n] = "
                     f"({x.shape[0]}, {n}), a permutation of the filters per image.")
  counts = jnp.asarray(np.arange(n + 1) if counts is None else counts, jnp.int32)
  rank = jnp.argsort(order, axis=-1)             # rank[b, k] = position of filter k in order
  def after(j):
    keep = (rank >= j).astype(x.dtype)           # [B,n]
    return head_fn(x * keep[:, None, None, :])
  return jax.lax.map(after, counts).T.astype(jnp.float32)


def deletion_area(curves: np.ndarray, counts: np.ndarray | None = None, *,
                  scale: float | None = None) -> float:
  """Normalised area of the mean deletion curve: the mean change of y along the deletion path,
  in units of y's range (lower: the order finds what y rests on sooner).

  With ``m_j`` the mean curve over images, the area is the trapezoid integral over the deleted
  fraction in [0,1] of ``(m_j − m_0) / scale``. Contributions are signed, so an order that
  deletes the largest positive contributions first can take y below its value with everything
  deleted; hence no normalisation by the end point.

  Args:
    curves: [B,J] from ``deletion_curve``, column 0 before any deletion.
    counts: [J] the deletion counts of the columns (default 0..J-1).
    scale: y's spread; default ``max − min`` of column 0 over the images (as
      ``metrics.relative_deviation``).

  Returns:
    The area (in [-1, 1] when no deletion leaves y's range); NaN when the scale is 0.
  """
  curves = np.asarray(curves, np.float64)
  m = curves.mean(axis=0)
  counts = np.arange(len(m)) if counts is None else np.asarray(counts, np.float64)
  if scale is None:
    scale = float(curves[:, 0].max() - curves[:, 0].min())
  if not scale > 0:
    return float("nan")
  frac = (counts - counts[0]) / max(counts[-1] - counts[0], 1)
  h = (m - m[0]) / scale
  return float(np.sum((h[1:] + h[:-1]) / 2 * np.diff(frac)))


def shuffled_alpha(key: Array, alpha: Array) -> Array:
  """The random reference: each image's α permuted over concepts, [B,n] -> [B,n]."""
  order = random_order(key, alpha.shape[0], alpha.shape[1])
  return jnp.take_along_axis(alpha, order, axis=-1)


def mean_interval(values: np.ndarray, *, num_resamples: int, level: float = 0.95,
                  seed: int = 0) -> dict:
  """Mean over images and its percentile bootstrap interval (resampling images).

  Args:
    values: [B] per-image values (NaNs are an error: fix them upstream).
    num_resamples: bootstrap resamples.
    level: coverage of the interval.
    seed: resampling seed.

  Returns:
    ``{"mean", "low", "high", "num_images"}``.
  """
  values = np.asarray(values, np.float64).reshape(-1)
  if values.size == 0 or not np.all(np.isfinite(values)):
    raise DataError(f"mean_interval: {values.size} values, "
                    f"{int(np.sum(~np.isfinite(values)))} not finite; pass finite per-image "
                    "values for at least one image.")
  rng = np.random.default_rng(seed)
  means = values[rng.integers(0, values.size, size=(num_resamples, values.size))].mean(axis=1)
  tail = (1.0 - level) / 2 * 100
  low, high = np.percentile(means, [tail, 100 - tail])
  return {"mean": float(values.mean()), "low": float(low), "high": float(high),
          "num_images": int(values.size)}


def paired_difference_interval(a: np.ndarray, b: np.ndarray, **kwargs) -> dict:
  """``mean(a − b)`` over the same images with its bootstrap interval (see ``mean_interval``);
  ``"significant"`` is True when the interval excludes 0."""
  a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
  if a.shape != b.shape:
    raise DataError(f"paired_difference_interval: {a.size} vs {b.size} values; pass one value "
                    "per image for the same images.")
  out = mean_interval(a - b, **kwargs)
  out["significant"] = bool(out["low"] > 0 or out["high"] < 0)
  return out


def summarize(contrib: np.ndarray, delta: np.ndarray, *, sign_threshold: float,
              num_resamples: int, seed: int = 0, gt_contrib: np.ndarray | None = None) -> dict:
  """The fidelity metrics of one explanation (``metrics.json["fidelity"]`` of a variant).

  Args:
    contrib: [B,n] contributions; delta: [B,n] interventional effects.
    sign_threshold: ``sign_agreement``'s threshold.
    num_resamples: bootstrap resamples of the intervals.
    seed: bootstrap seed.
    gt_contrib: [B,n] planted contributions, when known.

  Returns:
    ``interventional_rank_correlation`` (mean, low, high, num_images), ``sign_agreement``,
    ``sign_pairs``, ``sign_threshold`` and, with ground truth, ``gt_rank_correlation_per_image``
    (mean, low, high, num_images).
  """
  per_image = np.asarray(interventional_rank_correlation(contrib, delta))
  share, pairs = sign_agreement(contrib, delta, sign_threshold)
  out = {"interventional_rank_correlation": mean_interval(per_image, num_resamples=num_resamples,
                                                          seed=seed),
         "sign_agreement": share, "sign_pairs": pairs, "sign_threshold": float(sign_threshold)}
  if gt_contrib is not None:
    gt = np.asarray(gt_rank_correlation_per_image(contrib, gt_contrib))
    out["gt_rank_correlation_per_image"] = mean_interval(gt, num_resamples=num_resamples,
                                                         seed=seed)
  return out
