"""Concept values y_i computed from a performer's features.

Two sources of visual concepts, as in the paper's two experiments:

* Case 1, interpretable filters inside the performer: concept i is filter i of
  an interpretable conv layer and its value is the filter's summed activation,
  ``y_i = Σ_{h,w} x[h, w, i]`` (`filter_concepts`).
* Case 2, concepts that share a feature with the target: one head predicts m
  outputs (e.g. the 40 CelebA attributes); one column is the target y and the
  other m - 1 columns are the concepts (`select_concepts`).

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and
  Quantitatively", Sections 3.1-3.2; docs/method.md sections 1 and 3.
"""

import operator
from typing import List, Tuple

import jax
import jax.numpy as jnp

from xplain_jax.core import shapes


def filter_concepts(x: jax.Array) -> jax.Array:
  """Case 1 concept values: each filter's activation summed over positions.

  Args:
    x: [B, H, W, n] float, the feature map of the interpretable conv layer
      (after its mask, if any); examples are independent.

  Returns:
    y_i: [B, n], ``y_i[b, i] = Σ_{h,w} x[b, h, w, i]``.

  Raises:
    ValueError: if `x` is not of rank 4.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.ones((2, 3, 3, 4))
    >>> filter_concepts(x).shape
    (2, 4)
    >>> float(filter_concepts(x)[0, 0])
    9.0

  References:
    Chen et al. 2019, Section 3.1 (Case 1); docs/method.md section 3.
  """
  shapes.check_rank("filter_concepts", "x", x, "[B, H, W, n]")
  return jnp.sum(x, axis=(1, 2))


def other_indices(num_outputs: int, target_index: int) -> List[int]:
  """Column indices of the concepts when column `target_index` is the target.

  Args:
    num_outputs: m, the number of columns of the head's output.
    target_index: the target column, ``-m <= target_index < m``.

  Returns:
    The m - 1 other column indices in increasing order; concept j of
    `select_concepts` is column ``other_indices(m, t)[j]``, which is how to
    look up its name.

  Example:
    >>> other_indices(4, 1)
    [0, 2, 3]

  References:
    Chen et al. 2019, Section 4.2 (Experiment 2); docs/method.md section 6.
  """
  t = _normalise_index("other_indices", num_outputs, target_index)
  return [j for j in range(num_outputs) if j != t]


def select_concepts(outputs: jax.Array,
                    target_index: int) -> Tuple[jax.Array, jax.Array]:
  """Case 2: splits a multi-output head into the target and the concepts.

  Args:
    outputs: [B, m] float, the head's outputs (logits before any sigmoid).
    target_index: static Python int, the target column,
      ``-m <= target_index < m``.

  Returns:
    A pair ``(y, y_i)``: y [B] is column `target_index`; y_i [B, m - 1] holds
    the other columns in their original order (see `other_indices`).

  Raises:
    ValueError: if `outputs` is not [B, m] with m >= 2, or `target_index` is
      not an int in range.

  Example:
    >>> import jax.numpy as jnp
    >>> outputs = jnp.array([[0., 1., 2., 3.]])
    >>> y, y_i = select_concepts(outputs, 1)
    >>> y.tolist(), y_i.tolist()
    ([1.0], [[0.0, 2.0, 3.0]])

  References:
    Chen et al. 2019, Section 3.2 (Case 2); docs/method.md sections 3 and 6.
  """
  shape = shapes.check_rank("select_concepts", "outputs", outputs, "[B, m]")
  m = shape[1]
  if m < 2:
    raise ValueError(
        f"select_concepts: outputs has shape {shape}; expected [B, m] with "
        "m >= 2 (one target column and at least one concept column).")
  t = _normalise_index("select_concepts", m, target_index)
  y = outputs[:, t]
  y_i = jnp.concatenate([outputs[:, :t], outputs[:, t + 1:]], axis=1)
  return y, y_i


def _normalise_index(fn: str, m: int, target_index: int) -> int:
  """Checks a static column index against m columns; returns it in [0, m)."""
  try:
    t = operator.index(target_index)
  except TypeError:
    raise ValueError(
        f"{fn}: target_index must be a static Python int, got "
        f"{type(target_index).__name__}; pass it as a static argument "
        "under jit.") from None
  if not -m <= t < m:
    raise ValueError(
        f"{fn}: target_index {t} is out of range for m = {m} columns; "
        f"expected {-m} <= target_index < {m}.")
  return t % m
