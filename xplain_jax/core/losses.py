"""Losses of the explainer: distillation, prior loss and its weight λ(t).

``Loss = distillation_loss(y, ŷ) + prior_weight(t, β) · prior_loss(α, w)``, plus, as this
project's addition to the paper, ``consistency_weight · consistency_loss(α ⊙ y_i, t)``.

Corners the paper leaves open, decided here (and tested):

* An image whose prior is all zero (‖w‖ = 0, e.g. every w_i clipped to 0)
  carries no information about α: it contributes nothing to the prior loss,
  and the batch mean is taken over the other images (0 if there are none).
* α = 0 (or ‖α‖ below the float range): α/‖α‖ is taken as 0 with a "double
  where" so that neither the value nor the gradient is NaN or Inf.
* log 0: q is clamped to ``eps`` before the log, so an α_i = 0 with p_i > 0
  costs ``-p_i log(eps)`` (finite) and passes no gradient through that term.
* Padded rows (a last partial batch) are excluded with ``mask`` [B] bool.

References:
  Chen et al. 2019, "Explaining Neural Networks Semantically and
  Quantitatively", Section 3 (loss, Eq. 2-3); docs/method.md section 2.
"""

from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.core import shapes

Array = jax.Array

PRIOR_KINDS = ("cross_entropy", "mse")


def distillation_loss(y: Array, y_hat: Array,
                      mask: Optional[Array] = None) -> Array:
  """Mean squared difference between the performer and the explainer.

  Args:
    y: [B] float, the performer's scores.
    y_hat: [B] float, the explainer's scores.
    mask: optional [B] bool, True for valid rows; padded rows are excluded
      from the mean. With no valid row the loss is 0.

  Returns:
    Scalar ``mean_{valid b} (y_b - ŷ_b)²``.

  Raises:
    ValueError: on mismatched or non-[B] shapes.

  Example:
    >>> import jax.numpy as jnp
    >>> float(distillation_loss(jnp.array([1., 2.]), jnp.array([0., 2.])))
    0.5

  References:
    Chen et al. 2019, Section 3 (distillation loss); docs/method.md section 2.
  """
  fn = "losses.distillation_loss"
  (batch,) = shapes.check_same_shape(fn, "y", y, "y_hat", y_hat, "[B]")
  shapes.check_optional_mask(fn, mask, batch)
  return masked_mean(jnp.square(y - y_hat), mask)


def prior_loss(alpha: Array, w: Array, kind: str = "cross_entropy",
               mask: Optional[Array] = None, eps: float = 1e-12) -> Array:
  """Prior loss between the explainer's weights α and the prior weights w.

  * ``kind="cross_entropy"`` (positive case, α ≥ 0 and w ≥ 0):
    ``-Σ_i p_i log q_i`` with ``p = w/‖w‖₁``, ``q = α/‖α‖₁``. It is minimised
    over α at ``α ∝ w``.
  * ``kind="mse"`` (signed case): ``‖α/‖α‖₂ - w/‖w‖₂‖²``, 0 at ``α = c·w``
    for any c > 0.

  Both are taken per image, then averaged over the images with ‖w‖ > 0 (and
  `mask` True); the loss is 0 when there are none. α = 0 gives a finite value
  and gradient (α/‖α‖ := 0); q is clamped to `eps` before the log.

  Args:
    alpha: [B, n] float, the explainer's weights α(I).
    w: [B, n] float, the prior weights (treated as constants: wrap them in
      ``jax.lax.stop_gradient`` if they come from a differentiated graph).
    kind: ``"cross_entropy"`` or ``"mse"``.
    mask: optional [B] bool, True for valid (non-padded) rows.
    eps: lower clamp of q before the log (cross-entropy only).

  Returns:
    Scalar loss.

  Raises:
    ValueError: on mismatched shapes, an unknown `kind`, or (cross-entropy,
      concrete arrays only) a negative α or w: the cross-entropy prior is
      defined for the positive case; use ``kind="mse"`` for signed weights or
      clip the prior (``priors.filter_prior(..., clip=True)``).

  Example:
    >>> import jax.numpy as jnp
    >>> w = jnp.array([[1., 3.]])
    >>> round(float(prior_loss(2 * w, w, kind="mse")), 6)
    0.0
    >>> round(float(prior_loss(w, w)), 4)         # entropy of (1/4, 3/4)
    0.5623

  References:
    Chen et al. 2019, Section 3 (prior loss); docs/method.md section 2.
  """
  fn = "losses.prior_loss"
  shapes.check_choice(fn, "kind", kind, PRIOR_KINDS)
  batch, _ = shapes.check_same_shape(fn, "alpha", alpha, "w", w, "[B, n]")
  shapes.check_optional_mask(fn, mask, batch)
  if kind == "cross_entropy":
    _check_non_negative(fn, alpha=alpha, w=w)
  order = 1 if kind == "cross_entropy" else 2
  w_unit, w_nonzero = _safe_normalise(w, order)
  a_unit, _ = _safe_normalise(alpha, order)
  if kind == "cross_entropy":
    q = jnp.maximum(a_unit, eps)
    per_row = -jnp.sum(w_unit * jnp.log(q), axis=-1)
  else:
    per_row = jnp.sum(jnp.square(a_unit - w_unit), axis=-1)
  valid = w_nonzero if mask is None else jnp.logical_and(w_nonzero, mask)
  return masked_mean(per_row, valid)


def consistency_loss(contrib: Array, target: Array,
                     mask: Optional[Array] = None) -> Array:
  """How far the explainer's contributions are from the performer's own per-concept effects.

  ``mean_{valid b} Σ_k (c_bk − t_bk)²`` with ``c_k = α_k y_k`` and ``t_k`` the performer's
  effect of concept k on the image (``train.features.effect_targets``: filter deletion or
  gradient × input). Summed over concepts, so it has the units of the distillation loss
  ``(y − ŷ)²``. An addition to the paper (``explainer.consistency_weight``; 0 = the paper).

  Args:
    contrib: [B, n] float, the explainer's contributions α_k y_k.
    target: [B, n] float, the effect targets (constants: no gradient flows into them).
    mask: optional [B] bool, True for valid (non-padded) rows.

  Returns:
    Scalar loss, 0 when every valid row's contributions equal its targets.

  Example:
    >>> import jax.numpy as jnp
    >>> float(consistency_loss(jnp.array([[1., 2.]]), jnp.array([[0., 2.]])))
    1.0
  """
  fn = "losses.consistency_loss"
  batch, _ = shapes.check_same_shape(fn, "contrib", contrib, "target", target, "[B, n]")
  shapes.check_optional_mask(fn, mask, batch)
  diff = contrib - jax.lax.stop_gradient(target)
  return masked_mean(jnp.sum(jnp.square(diff), axis=-1), mask)


def prior_weight(t: Union[int, float, Array],
                 beta: Union[float, Array]) -> Array:
  """Weight of the prior loss at epoch t: ``λ(t) = β / √t``.

  Args:
    t: epoch number starting at 1 (scalar or array; may be traced).
    beta: β ≥ 0 (Experiment 1 uses 10, Experiment 2 uses 0.2; set in the
      config). β = 0 gives the paper's baseline.

  Returns:
    λ(t), float, with the broadcast shape of `t` and `beta`.

  Raises:
    ValueError: if a concrete (non-traced) t < 1 or beta < 0. Traced values
      are not checked.

  Example:
    >>> float(prior_weight(4, 10.0))
    5.0

  References:
    Chen et al. 2019, Section 3 (λ = β/√t); docs/method.md section 2.
  """
  t_val, beta_val = _concrete_or_none(t), _concrete_or_none(beta)
  if t_val is not None and not np.all(t_val >= 1):
    raise ValueError(
        f"prior_weight: epoch t = {t_val} must be >= 1 (epochs count from 1).")
  if beta_val is not None and not np.all(beta_val >= 0):
    raise ValueError(
        f"prior_weight: beta = {beta_val} must be >= 0 (0 gives the baseline).")
  t = jnp.asarray(t)
  t = t.astype(jnp.result_type(t, float))
  return beta / jnp.sqrt(t)


def masked_mean(values: Array, mask: Optional[Array] = None) -> Array:
  """Mean of ``values`` [B,...] over the rows where ``mask`` [B] is True (0 when none).

  Padded rows are selected away (``where``), so whatever they hold, NaN included, never reaches
  the mean. ``mask=None`` is the plain mean.
  """
  if mask is None:
    return jnp.mean(values)
  mask = jnp.asarray(mask, bool)
  m = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (values.ndim - 1)), values.shape)
  total = jnp.sum(jnp.where(m, values, jnp.zeros_like(values)))
  return total / jnp.maximum(jnp.sum(m).astype(values.dtype), 1)


def _safe_normalise(v: Array, order: int):
  """Row-wise v/‖v‖ (L1 or L2) with 0 for zero rows; NaN-free gradients.

  Rows are first scaled by their max |v| (the direction is scale invariant),
  which avoids under/overflow of the norm; both divisions use the double-where
  trick so a zero row has a finite gradient.

  Returns:
    (unit [B, n], nonzero [B] bool).
  """
  amax = jnp.max(jnp.abs(v), axis=-1, keepdims=True)
  nonzero = amax > 0
  u = v / jnp.where(nonzero, amax, jnp.ones_like(amax))
  if order == 1:
    norm = jnp.sum(jnp.abs(u), axis=-1, keepdims=True)
  else:
    sq = jnp.sum(jnp.square(u), axis=-1, keepdims=True)
    norm = jnp.sqrt(jnp.where(nonzero, sq, jnp.ones_like(sq)))
  unit = u / jnp.where(nonzero, norm, jnp.ones_like(norm))
  return unit, nonzero[..., 0]


def _check_non_negative(fn: str, **arrays) -> None:
  """Raises ValueError if a concrete array has a negative entry (traced ones are skipped)."""
  for name, value in arrays.items():
    v = _concrete_or_none(value)
    if v is not None and v.size and np.min(v) < 0:
      raise ValueError(
          f"{fn}: kind='cross_entropy' needs {name} >= 0 everywhere, got a minimum of "
          f"{float(np.min(v)):.4g}; use kind='mse' for signed weights, a positive weight "
          "network (softplus α), or clip the prior at 0.")


def _concrete_or_none(x):
  """Returns x as a numpy array if it is concrete, None if traced."""
  try:
    return np.asarray(x)
  except (jax.errors.TracerArrayConversionError,
          jax.errors.ConcretizationTypeError):
    return None
