"""The additive explainer as functions: ``ŷ = Σ_i α_i y_i + b``.

``α_i(I) · y_i(I)`` is the quantitative contribution of concept i to the
prediction on image I; b is what no concept explains. `explainer_output` and
`contributions` are jit/vmap/grad-able; `explain` turns them into plain
Python/numpy records for reports.

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and
  Quantitatively", Section 3 (Eq. 1); docs/method.md section 1.
"""

from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.core import shapes

Array = jax.Array


def contributions(alpha: Array, y_i: Array) -> Array:
  """Per-concept contributions ``α_i y_i``.

  Args:
    alpha: [B, n] float, the explainer's weights.
    y_i: [B, n] float, the concept values.

  Returns:
    [B, n] float, ``alpha * y_i``.

  Raises:
    ValueError: if the shapes differ or are not [B, n].

  Example:
    >>> import jax.numpy as jnp
    >>> contributions(jnp.array([[1., 2.]]), jnp.array([[3., -1.]])).tolist()
    [[3.0, -2.0]]

  References:
    Chen et al. 2019, Section 3 (Eq. 1); docs/method.md section 1.
  """
  shapes.check_same_shape("explain.contributions", "alpha", alpha, "y_i", y_i,
                          "[B, n]")
  return alpha * y_i


def explainer_output(alpha: Array, y_i: Array, b: Array) -> Array:
  """The explainer's score ``ŷ = Σ_i α_i y_i + b``.

  Args:
    alpha: [B, n] float, the explainer's weights.
    y_i: [B, n] float, the concept values.
    b: scalar (the learned bias) or [B] float.

  Returns:
    ŷ: [B] float.

  Raises:
    ValueError: on mismatched shapes, or if b is neither a scalar nor [B].

  Example:
    >>> import jax.numpy as jnp
    >>> explainer_output(jnp.array([[1., 2.]]), jnp.array([[3., -1.]]), 0.5)
    Array([1.5], dtype=float32)

  References:
    Chen et al. 2019, Section 3 (Eq. 1); docs/method.md section 1.
  """
  fn = "explain.explainer_output"
  batch, _ = shapes.check_same_shape(fn, "alpha", alpha, "y_i", y_i, "[B, n]")
  b_shape = shapes.shape_of(b)
  if b_shape not in ((), (batch,), (1,)):
    raise ValueError(
        f"{fn}: b has shape {b_shape}; expected a scalar () or ({batch},) "
        "= [B].")
  return jnp.sum(alpha * y_i, axis=-1) + b


def concept_label(name: str, value: float, negate_absent: bool = True,
                  absent: Optional[str] = "no {}") -> str:
  """Names a concept as a reason: "no <name>" when an attribute is absent.

  Args:
    name: the concept's name.
    value: the concept's value y_i on this image (a logit: negative = absent).
    negate_absent: Case 2 (attributes): a negative y_i is named with ``absent``,
      and a negated attribute such as CelebA's "No_Beard" reads "Beard". False
      (Case 1 filters): the plain name.
    absent: the pattern of an absent concept's name (``"{}"`` is the name);
      None keeps the plain name (its contribution keeps its sign).

  Example:
    >>> concept_label("Smiling", -1.2), concept_label("No_Beard", -0.3)
    ('no Smiling', 'Beard')
    >>> concept_label("Smiling", -1.2, absent="{} (absent)")
    'Smiling (absent)'
    >>> concept_label("Smiling", -1.2, absent=None)
    'Smiling'
  """
  name = str(name)
  if negate_absent and absent is not None and value < 0:
    return name[3:] if name.lower().startswith("no_") else absent.format(name)
  return name


def explain(alpha: Array, y_i: Array, b: Array,
            names: Optional[Sequence[str]] = None, top_k: int = 5,
            y: Optional[Array] = None,
            negate_absent: bool = False,
            absent: Optional[str] = "no {}") -> List[Dict[str, Any]]:
  """Per-image explanations with the top-k concepts by |contribution|.

  Args:
    alpha: [B, n] float, the explainer's weights.
    y_i: [B, n] float, the concept values.
    b: scalar or [B] float, the explainer's bias.
    names: n concept names; defaults to ``"concept_0"`` ... ``"concept_{n-1}"``.
    top_k: how many concepts to list per image (at most n; ties in
      |contribution| are broken by the lower index).
    y: optional [B] performer scores; adds ``"y"`` and ``"residual"`` (y - ŷ,
      what the explainer does not reproduce).
    negate_absent: name a concept with y_i < 0 with ``absent`` (Case 2
      attributes, as the report does; ``concept_label``).
    absent: the name pattern of an absent concept, ``"no {}"`` by default;
      None keeps the plain name.

  Returns:
    A list of B dicts with plain Python values:
      ``"top"``: list of (name, contribution) pairs, largest |contribution|
      first; ``"indices"``: their concept indices; ``"rest"``: the summed
      contributions of the concepts not listed; ``"bias"``: b, the part no
      concept explains; ``"y_hat"``: ŷ = Σ top + rest + bias; ``"y"`` and
      ``"residual"`` (y − ŷ, so Σ top + rest + bias + residual = y) when `y`
      is given.

  Raises:
    ValueError: on bad shapes, a wrong number of names, or top_k < 0.

  Example:
    >>> import jax.numpy as jnp
    >>> e = explain(jnp.array([[1., 2., 1.]]), jnp.array([[3., -1., .5]]), 0.5,
    ...             names=["beard", "makeup", "smile"], top_k=2)
    >>> e[0]["top"], e[0]["y_hat"], e[0]["bias"]
    ([('beard', 3.0), ('makeup', -2.0)], 2.0, 0.5)

  References:
    Chen et al. 2019, Section 3 and Fig. 3; docs/method.md sections 1 and 5.
  """
  fn = "explain.explain"
  y_hat = np.asarray(explainer_output(alpha, y_i, b), dtype=np.float64)
  contrib = np.asarray(contributions(alpha, y_i), dtype=np.float64)
  batch, n = contrib.shape
  if names is None:
    names = [f"concept_{i}" for i in range(n)]
  names = list(names)
  if len(names) != n:
    raise ValueError(
        f"{fn}: got {len(names)} names for n = {n} concepts; pass one name "
        "per column of alpha / y_i.")
  if int(top_k) < 0:
    raise ValueError(f"{fn}: top_k = {top_k} must be >= 0.")
  k = min(int(top_k), n)
  bias = np.broadcast_to(np.asarray(b, dtype=np.float64), (batch,))
  if y is not None:
    shapes.check_shape(fn, "y has", y, (batch,), "[B]")
    y_np = np.asarray(y, dtype=np.float64)
  out = []
  for r in range(batch):
    order = np.argsort(-np.abs(contrib[r]), kind="stable")[:k]
    rec = {
        "top": [(concept_label(names[i], float(np.asarray(y_i)[r, i]), negate_absent,
                               absent), float(contrib[r, i])) for i in order],
        "indices": [int(i) for i in order],
        "rest": float(contrib[r].sum() - contrib[r, order].sum()),
        "y_hat": float(y_hat[r]),
        "bias": float(bias[r]),
    }
    if y is not None:
      rec["y"] = float(y_np[r])
      rec["residual"] = float(y_np[r] - y_hat[r])
    out.append(rec)
  return out
