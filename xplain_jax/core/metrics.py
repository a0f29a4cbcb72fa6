"""Evaluation metrics of an explainer.

* `contribution_entropy`: entropy (nats) of the contribution distribution
  ``c_i = |α_i y_i| / Σ_j |α_j y_j|``; low = bias-interpreting.
* `relative_deviation`: ``|y - ŷ| / (max y - min y)`` over the evaluated set.
* `threshold_accuracy`: accuracy of ``ŷ > τ`` at the best τ (the explainer
  never sees labels, so τ is fitted afterwards).
* `rank_correlation`: Spearman correlation, e.g. of mean |contributions| with
  the ground-truth importance of synthetic data (``gt_rank_correlation``).
* `mean_abs_contribution`: ``mean_I |α_i y_i|``, per concept.

All are pure jnp functions (jit-able). Corners are decided as documented in
each function: they never return NaN for finite inputs.

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and
  Quantitatively", Section 4 (evaluation metrics); docs/method.md section 5.
"""

from typing import Tuple

import jax
import jax.numpy as jnp

from xplain_jax.core import shapes

Array = jax.Array


def contribution_entropy(alpha: Array, y_i: Array) -> Array:
  """Entropy of each image's contribution distribution, in nats.

  ``c_i = |α_i y_i| / Σ_j |α_j y_j|``, ``H = -Σ_i c_i ln c_i`` with
  ``0 ln 0 = 0``. An image whose contributions are all zero has H = 0 (no
  concept is used). H ≤ ln n.

  Args:
    alpha: [B, n] float.
    y_i: [B, n] float.

  Returns:
    [B] float, entropy in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> y_i = jnp.array([[1., -1., 1., -1.]])
    >>> h = contribution_entropy(jnp.ones((1, 4)), y_i)
    >>> round(float(h[0]), 4)                     # ln 4
    1.3863

  References:
    Chen et al. 2019, Section 4 (entropy); docs/method.md section 5.
  """
  shapes.check_same_shape("metrics.contribution_entropy", "alpha", alpha,
                          "y_i", y_i, "[B, n]")
  a = jnp.abs(alpha * y_i)
  total = jnp.sum(a, axis=-1, keepdims=True)
  c = a / jnp.where(total > 0, total, jnp.ones_like(total))
  pos = c > 0
  log_c = jnp.log(jnp.where(pos, c, jnp.ones_like(c)))
  return -jnp.sum(jnp.where(pos, c * log_c, jnp.zeros_like(c)), axis=-1)


def relative_deviation(y: Array, y_hat: Array) -> Array:
  """Per-image deviation ``|y - ŷ| / (max y - min y)``.

  The max and min are over the given y, so pass the whole evaluated set (not
  one batch at a time). If all y are equal the range is taken as 1 (the
  result is then the absolute deviation), so the result is never NaN.

  Args:
    y: [N] float, the performer's scores.
    y_hat: [N] float, the explainer's scores.

  Returns:
    [N] float.

  Example:
    >>> import jax.numpy as jnp
    >>> y, y_hat = jnp.array([0., 2., 4.]), jnp.array([1., 2., 3.])
    >>> relative_deviation(y, y_hat).tolist()
    [0.25, 0.0, 0.25]

  References:
    Chen et al. 2019, Section 4 (relative deviation); docs/method.md section 5.
  """
  shapes.check_same_shape("metrics.relative_deviation", "y", y, "y_hat", y_hat,
                          "[N]")
  span = jnp.max(y) - jnp.min(y)
  span = jnp.where(span > 0, span, jnp.ones_like(span))
  return jnp.abs(y - y_hat) / span


def threshold_accuracy(scores: Array, labels: Array) -> Tuple[Array, Array]:
  """Best accuracy of ``scores > τ`` over τ, and that τ.

  Exact search: the candidate thresholds are one value below the minimum (all
  positive), the midpoints between consecutive distinct sorted scores, and
  one value above the maximum (all negative); tied scores are never split.
  O(N log N). Among equally good thresholds the lowest is returned.

  Args:
    scores: [N] float, finite.
    labels: [N] in {0, 1} (bool, int or float).

  Returns:
    (acc, tau): scalar float accuracy in [0, 1] and scalar threshold.

  Example:
    >>> import jax.numpy as jnp
    >>> acc, tau = threshold_accuracy(jnp.array([0.1, 0.4, 0.35, 0.8]),
    ...                               jnp.array([0, 0, 1, 1]))
    >>> float(acc), round(float(tau), 3)
    (0.75, 0.225)

  References:
    Chen et al. 2019, Section 4 (classification accuracy); docs/method.md
    section 5.
  """
  fn = "metrics.threshold_accuracy"
  (n,) = shapes.check_same_shape(fn, "scores", scores, "labels", labels, "[N]")
  if n == 0:
    raise ValueError(f"{fn}: scores is empty; expected [N] with N >= 1.")
  order = jnp.argsort(scores)
  s = scores[order]
  pos = jnp.asarray(labels)[order] > 0.5
  dtype = jnp.result_type(s.dtype, float)
  zero = jnp.zeros((1,), jnp.int32)
  # k = 0..N: the k lowest scores predicted negative, the rest positive.
  neg_below = jnp.concatenate([zero, jnp.cumsum(~pos, dtype=jnp.int32)])
  pos_below = jnp.concatenate([zero, jnp.cumsum(pos, dtype=jnp.int32)])
  correct = neg_below + (pos_below[-1] - pos_below)
  inner_ok = s[:-1] < s[1:]  # a cut between k-1 and k must not split ties
  ok = jnp.concatenate([jnp.array([True]), inner_ok, jnp.array([True])])
  correct = jnp.where(ok, correct, -1)
  k = jnp.argmax(correct)
  s = s.astype(dtype)
  below = jnp.minimum(s[0] - 1, jnp.nextafter(s[0], jnp.array(-jnp.inf, dtype)))
  above = s[-1] + 1
  mid = s[:-1] + (s[1:] - s[:-1]) / 2
  mid = jnp.where(mid < s[1:], mid, s[:-1])  # rounding must stay below s[k]
  taus = jnp.concatenate([below[None], mid, above[None]])
  return correct[k].astype(dtype) / n, taus[k]


def rank_correlation(a: Array, b: Array) -> Array:
  """Spearman rank correlation of two vectors (average ranks for ties).

  Pearson correlation of the average ranks. If either vector is constant the
  correlation is undefined; 0 is returned (no rank agreement), not NaN.

  Args:
    a: [n] float.
    b: [n] float.

  Returns:
    Scalar in [-1, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> a, b = jnp.array([1., 2., 3.]), jnp.array([10., 20., 15.])
    >>> float(rank_correlation(a, b))
    0.5

  References:
    Spearman 1904; used for ``gt_rank_correlation`` in the evaluation of
    Chen et al. 2019; docs/method.md section 5.
  """
  fn = "metrics.rank_correlation"
  (n,) = shapes.check_same_shape(fn, "a", a, "b", b, "[n]")
  if n < 2:
    raise ValueError(
        f"{fn}: vectors have length {n}; expected [n] with n >= 2.")
  ra, rb = _average_ranks(a), _average_ranks(b)
  ra, rb = ra - jnp.mean(ra), rb - jnp.mean(rb)
  den_sq = jnp.sum(ra * ra) * jnp.sum(rb * rb)
  ok = den_sq > 0
  den = jnp.sqrt(jnp.where(ok, den_sq, jnp.ones_like(den_sq)))
  return jnp.where(ok, jnp.sum(ra * rb) / den, jnp.zeros_like(den))


def mean_abs_contribution(alpha: Array, y_i: Array) -> Array:
  """Mean over images of ``|α_i y_i|``, per concept.

  Args:
    alpha: [B, n] float.
    y_i: [B, n] float.

  Returns:
    [n] float.

  Example:
    >>> import jax.numpy as jnp
    >>> mean_abs_contribution(jnp.array([[1., 2.], [1., 0.]]),
    ...                       jnp.array([[-3., 1.], [1., 5.]])).tolist()
    [2.0, 1.0]

  References:
    Chen et al. 2019, Fig. 4 (distribution of contributions); docs/method.md
    section 5.
  """
  shapes.check_same_shape("metrics.mean_abs_contribution", "alpha", alpha,
                          "y_i", y_i, "[B, n]")
  return jnp.mean(jnp.abs(alpha * y_i), axis=0)


def _average_ranks(v: Array) -> Array:
  """1-based ranks of v with ties given their average rank (as scipy)."""
  s = jnp.sort(v)
  lo = jnp.searchsorted(s, v, side="left")
  hi = jnp.searchsorted(s, v, side="right")
  return (lo + hi + 1).astype(jnp.result_type(v.dtype, float)) / 2
