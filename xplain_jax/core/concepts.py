"""Concept values y_i computed from a performer's features.

Two sources of visual concepts, as in the paper's two experiments:

* Case 1, interpretable filters inside the performer: concept i is filter i of
  an interpretable conv layer and its value is the filter's summed activation,
  ``y_i = Σ_{h,w} x[h, w, i]`` (`filter_concepts`).
* Case 2, concepts that share a feature with the target: one head predicts m
  outputs (e.g. the 40 CelebA attributes); one column is the target y and
  other columns are the concepts (``data.Spec.concept_indices``, read by
  ``train.featurizers.shared_feature_featurizer``).

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and
  Quantitatively", Sections 3.1-3.2; docs/method.md sections 1 and 3.
"""

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
