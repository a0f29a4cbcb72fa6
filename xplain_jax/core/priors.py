"""Prior weights w from the performer's Jacobians.

The prior loss pulls the explainer's weights α towards rough weights w that
say how much the target y moves with each concept y_i:

* Case 1, interpretable filters (`filter_prior`): x [B, H, W, n] is the
  interpretable layer's feature map, ``y_i = Σ_{h,w} x[h, w, i]`` and
  ``w_i = Σ_{h,w} ∂y/∂x[h, w, i]`` (the paper's constant Z cancels in the
  normalised prior loss). One reverse pass gives every w_i.
* Case 2, concepts sharing a feature with the target (`shared_feature_prior`):
  x [B, D] is a middle-layer feature read by both the target and the concept
  heads; ``w_i = (∂y/∂x · ∂y_i/∂x) / ‖∂y_i/∂x‖²``, the change of y per unit
  change of y_i when x moves along ∂y_i/∂x.

The model reaches this module only through callables (closures over params):
``head_fn``/``target_fn``/``concepts_fn`` map a batch of features to a batch of
outputs. Examples must be independent (no batch statistics: call the model in
inference mode), because the per-example gradients are taken as the gradient
of the batch sum.

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and
  Quantitatively", Sections 3.1-3.2; docs/method.md section 3.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from xplain_jax.core import shapes

Array = jax.Array

SHARED_FEATURE_METHODS = ("jvp", "jacrev")


def filter_prior(head_fn: Callable[[Array], Array], x: Array,
                 clip: bool = False) -> Array:
  """Case 1 prior weights: ``w_i = Σ_{h,w} ∂y/∂x[h, w, i]`` per image.

  One VJP of `head_fn` with a cotangent of ones gives ∂(Σ_b y_b)/∂x, which
  equals the per-example gradients because examples are independent.

  Args:
    head_fn: the part of the performer above x, [B, H, W, n] -> [B] (the
      target score, e.g. a logit). Must treat examples independently.
    x: [B, H, W, n] float, the interpretable layer's feature map.
    clip: if True return ``max(w, 0)``, as in Experiment 1 with the
      cross-entropy prior.

  Returns:
    w: [B, n], same dtype as the gradient of `head_fn`.

  Raises:
    ValueError: if `x` is not of rank 4 or `head_fn` does not return [B].

  Example:
    >>> import jax.numpy as jnp
    >>> v = jnp.arange(3.)                       # y = Σ_hw Σ_c v_c x[h, w, c]
    >>> head = lambda x: jnp.einsum("bhwc,c->b", x, v)
    >>> filter_prior(head, jnp.ones((2, 4, 4, 3)))[0].tolist()
    [0.0, 16.0, 32.0]

  References:
    Chen et al. 2019, Section 3.1; docs/method.md section 3, Case 1.
  """
  fn = "priors.filter_prior"
  shape = shapes.check_rank(fn, "x", x, "[B, H, W, n]")
  y, vjp_fn = jax.vjp(head_fn, x)
  shapes.check_shape(
      fn, "head_fn returned", y, shape[:1], "[B]",
      hint="head_fn must map [B, H, W, n] to one score per image.")
  (grad_x,) = vjp_fn(jnp.ones_like(y))
  w = jnp.sum(grad_x, axis=(1, 2))
  return jnp.maximum(w, 0) if clip else w


def shared_feature_prior(target_fn: Callable[[Array], Array],
                         concepts_fn: Callable[[Array], Array], x: Array,
                         method: str = "jvp") -> Array:
  """Case 2 prior weights: ``w_i = (∂y/∂x · ∂y_i/∂x) / ‖∂y_i/∂x‖²``.

  ``g = ∂y/∂x`` comes from one VJP of `target_fn`. With ``method="jvp"`` the
  numerators for all i come from one JVP of `concepts_fn` at x along g, and
  the denominators from the rows of ``jax.jacrev`` of the batch-summed concept
  head (n reverse passes). With ``method="jacrev"`` the numerators are also
  taken from that Jacobian (the reference route; same result).

  A concept whose gradient is exactly zero (``‖∂y_i/∂x‖² = 0``, e.g. a dead
  ReLU path) gets ``w_i = 0``, with no NaN in value or gradient. Very small
  but non-zero norms are not regularised and may give large w_i.

  Args:
    target_fn: [B, D] -> [B], the target score from the shared feature.
    concepts_fn: [B, D] -> [B, n], the concept scores from the same feature.
    x: [B, D] float, the shared feature (e.g. VGG-16 fc6, D = 4096).
    method: ``"jvp"`` (default) or ``"jacrev"``.

  Returns:
    w: [B, n].

  Raises:
    ValueError: if `x` is not [B, D], a callable returns the wrong shape, or
      `method` is unknown.

  Example:
    >>> import jax.numpy as jnp
    >>> a = jnp.array([1., 2.])
    >>> c = jnp.array([[1., 0.], [2., 2.]])      # y_i = c_i · x
    >>> w = shared_feature_prior(lambda x: x @ a, lambda x: x @ c.T,
    ...                          jnp.ones((1, 2)))
    >>> w[0].tolist()                              # (c a)_i / ‖c_i‖²
    [1.0, 0.75]

  References:
    Chen et al. 2019, Section 3.2; docs/method.md section 3, Case 2.
  """
  fn = "priors.shared_feature_prior"
  shapes.check_choice(fn, "method", method, SHARED_FEATURE_METHODS)
  shape = shapes.check_rank(fn, "x", x, "[B, D]")
  batch = shape[0]
  c_shape = shapes.shape_of(jax.eval_shape(concepts_fn, x))
  if len(c_shape) != 2 or c_shape[0] != batch:
    raise ValueError(
        f"{fn}: concepts_fn returned shape {c_shape}; expected ({batch}, n) = "
        "[B, n], one row of n concept scores per image.")
  y, vjp_fn = jax.vjp(target_fn, x)
  shapes.check_shape(fn, "target_fn returned", y, (batch,), "[B]",
                     hint="target_fn must map [B, D] to one score per image.")
  (g,) = vjp_fn(jnp.ones_like(y))

  # jac[i, b, :] = ∂y_i[b]/∂x[b] (examples independent): [n, B, D].
  jac = jax.jacrev(lambda z: jnp.sum(concepts_fn(z), axis=0))(x)
  denom = jnp.sum(jnp.square(jac), axis=-1).T  # [B, n]
  if method == "jvp":
    _, num = jax.jvp(concepts_fn, (x,), (g,))  # [B, n]
  else:
    num = jnp.einsum("nbd,bd->bn", jac, g)
  nonzero = denom > 0
  safe_denom = jnp.where(nonzero, denom, jnp.ones_like(denom))
  return jnp.where(nonzero, num / safe_denom, jnp.zeros_like(num))
