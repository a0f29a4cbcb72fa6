"""Interventional effects of concepts on the performer, and deletion curves.

The explainer says concept k contributed ``c_k = α_k y_k`` to the performer's score y of an
image. This module measures what the performer actually does when concept k is taken away, its
*interventional effect* ``Δ_k = y(I) − y(I with concept k toggled)``:

* `filter_deletion_effects` (Case 1, any model): zero filter k's map in the feature the head
  reads, ``x[..., k] = 0``;
* `rendering_effects` (synthetic data): re-render the image with concept k toggled
  (``SceneSource.counterfactuals``) and run the performer;
* `deletion_curve` / `deletion_area` (Case 1): delete filters in a given order (the explainer's,
  the prior weights', a random one) and watch y fall.

The model reaches this module only through callables (closures over params).

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and Quantitatively", Section 4;
  Petsiuk et al. 2018 (RISE: deletion curves); Hooker et al. 2019 (ROAR).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.core import shapes
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


def filter_shapley_effects(head_fn: Callable[[Array], Array], x: Array, *,
                           num_permutations: int, seed: int = 0) -> Array:
  """Case 1 sampled Shapley values of the filters: ``φ_k`` = the mean over
  ``num_permutations`` random orders of y(filters before k and k) − y(filters before k),
  starting from the empty map (every filter zeroed). Σ_k φ_k = y(x) − y(0) exactly for every
  sample; ``num_permutations · (n + 1)`` passes of the head per image.

  Args:
    head_fn: ``[B,H,W,n] -> [B]`` (examples independent).
    x: [B,H,W,n] the feature map the head reads.
    num_permutations: M ≥ 1 random orders (the same M orders for every image).
    seed: the orders' key.

  Returns:
    [B,n] float32.

  Example:
    >>> head = lambda x: jnp.sum(x * 2.0, axis=(1, 2, 3))   # additive: φ = Δ
    >>> filter_shapley_effects(head, jnp.ones((1, 2, 2, 3)), num_permutations=2).tolist()
    [[8.0, 8.0, 8.0]]
  """
  shapes.check_rank("fidelity.filter_shapley_effects", "x", x, "[B, H, W, n]")
  if int(num_permutations) < 1:
    raise ConfigError(f"num_permutations={num_permutations}; sampled Shapley values need at "
                      "least one permutation.")
  b, n = x.shape[0], x.shape[-1]
  orders = jax.vmap(lambda k: jax.random.permutation(k, n))(
      jax.random.split(jax.random.PRNGKey(seed), int(num_permutations)))       # [M,n]
  empty = head_fn(jnp.zeros_like(x))

  def one_order(order):
    def add(carry, k):
      keep, before = carry
      keep = keep.at[k].set(1.0)
      after = head_fn(x * keep.astype(x.dtype))
      return (keep, after), after - before
    _, gains = jax.lax.scan(add, (jnp.zeros((n,), jnp.float32), empty), order)   # [n,B]
    return jnp.zeros((b, n), jnp.float32).at[:, order].set(gains.T.astype(jnp.float32))

  return jax.lax.map(one_order, orders).mean(axis=0)


def renderer_columns(concept_names: Sequence[str], renderer_names: Sequence[str]) -> np.ndarray:
  """For each column k of y_i, the renderer's index of the concept of the same name: [n] int.

  Raises:
    DataError: a concept the renderer cannot toggle.
  """
  renderer_names = list(renderer_names)
  missing = [c for c in concept_names if c not in renderer_names]
  if missing:
    raise DataError(f"the renderer cannot toggle concepts {missing}; its concepts are "
                    f"{renderer_names}. Skip rendering effects for this dataset.")
  return np.asarray([renderer_names.index(c) for c in concept_names], np.int64)


def rendering_effects(y_fn: Callable[[np.ndarray], np.ndarray],
                      counterfactuals: Callable[[np.ndarray, int], np.ndarray],
                      indices: np.ndarray, num_concepts: int, *, y: np.ndarray,
                      batch_size: int = 256,
                      columns: Sequence[int] | None = None) -> np.ndarray:
  """Interventional effects by re-rendering: ``Δ_k = y(I) − y(render(I with k toggled))``.

  Args:
    y_fn: the performer's explained score, ``images [b,S,S,3] -> [b]``.
    counterfactuals: ``(indices [b], concept) -> images [b,S,S,3]``, e.g.
      ``SceneSource.counterfactuals``.
    indices: [B] the images' indices in the source.
    num_concepts: n, the concepts toggled.
    y: [B] the performer's scores of the factual images (already computed by the caller; the
      factual images are not re-rendered here).
    batch_size: images per call of ``y_fn``.
    columns: [n] the renderer's concept toggled for column k (``renderer_columns``); None:
      column k toggles the renderer's concept k.

  Returns:
    [B,n] float32.
  """
  indices = np.asarray(indices).reshape(-1)
  y = np.asarray(y, np.float32).reshape(-1)
  if y.shape[0] != indices.shape[0]:
    raise DataError(f"rendering_effects: y has {y.shape[0]} scores for {len(indices)} indices; "
                    "pass one score per image.")
  columns = np.arange(num_concepts) if columns is None else np.asarray(columns).reshape(-1)
  if len(columns) != num_concepts:
    raise DataError(f"rendering_effects: {len(columns)} renderer columns for {num_concepts} "
                    "concepts; pass one per concept.")
  delta = np.empty((len(indices), num_concepts), np.float32)
  for k in range(num_concepts):
    for lo in range(0, len(indices), batch_size):
      rows = slice(lo, lo + batch_size)
      images = counterfactuals(indices[rows], int(columns[k]))
      delta[rows, k] = y[rows] - np.asarray(y_fn(images)).reshape(-1)
  return delta


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
