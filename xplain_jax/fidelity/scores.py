"""Per-image scores of contributions against interventional effects, and their intervals.

* `interventional_rank_correlation`: per image, Spearman over concepts of ``|c_k|`` vs ``|Δ_k|``;
* `sign_agreement`: share of (image, concept) pairs with a real effect whose signs agree;
* `gt_rank_correlation_per_image`: the same rank correlation against planted contributions;
* `mean_interval` / `paired_difference_interval`: a mean over images and its bootstrap interval;
* `summarize`: all of them for one explanation (the explainer's or a peer's alike).

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and Quantitatively", Section 4;
  Efron & Tibshirani 1993 (percentile bootstrap).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.core import metrics, shapes
from xplain_jax.errors import DataError

Array = jax.Array
# Indices drawn at once by the bootstrap: 2**21 of them (int64) and their values (float64)
# take 32 MiB, whatever the number of images B.
_RESAMPLE_BLOCK = 2 ** 21


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


def mean_interval(values: np.ndarray, *, num_resamples: int, level: float = 0.95,
                  seed: int = 0) -> dict:
  """Mean over images and its percentile bootstrap interval (resampling images).

  Args:
    values: [B] per-image values (NaNs are an error: fix them upstream).
    num_resamples: bootstrap resamples (drawn in blocks: memory stays bounded as B grows).
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
  # Resamples drawn a block of rows at a time: one generator drawing row after row gives the
  # stream a single [num_resamples, B] draw would, so the means (and the interval) are the same.
  rows = max(1, _RESAMPLE_BLOCK // values.size)
  means = np.concatenate([
      values[rng.integers(0, values.size, size=(min(rows, num_resamples - start), values.size))
             ].mean(axis=1) for start in range(0, num_resamples, rows)])
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
              num_resamples: int, seed: int = 0, gt_contrib: np.ndarray | None = None,
              y: np.ndarray | None = None, y_hat: np.ndarray | None = None) -> dict:
  """The fidelity metrics of one explanation: an explainer variant's or a peer's alike.

  Args:
    contrib: [B,n] contributions; delta: [B,n] interventional effects.
    sign_threshold: ``sign_agreement``'s threshold.
    num_resamples: bootstrap resamples of the intervals.
    seed: bootstrap seed.
    gt_contrib: [B,n] planted contributions, when known.
    y: [B] the performer's scores and y_hat: [B] the explanation's prediction of them, when it
      predicts y (both or neither).

  Returns:
    ``interventional_rank_correlation`` (mean, low, high, num_images), ``sign_agreement``,
    ``sign_pairs``, ``sign_threshold``; with ground truth ``gt_rank_correlation_per_image``
    (mean, low, high, num_images); with y and y_hat ``relative_deviation`` (mean, low, high,
    num_images; ``metrics.relative_deviation`` per image, y's range over these B images).
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
  if (y is None) != (y_hat is None):
    raise DataError("summarize: pass both y and y_hat (the explanation's prediction of y), or "
                    "neither.")
  if y is not None:
    dev = np.asarray(metrics.relative_deviation(jnp.asarray(y, jnp.float32).reshape(-1),
                                                jnp.asarray(y_hat, jnp.float32).reshape(-1)))
    out["relative_deviation"] = mean_interval(dev, num_resamples=num_resamples, seed=seed)
  return out
