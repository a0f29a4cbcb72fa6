"""Peers of the explainer: other ways to split y into per-concept contributions.

Each peer gives contributions ``c`` [B,n] that ``scores.summarize`` scores exactly as it scores
the explainer's ``α_k y_k``:

* `least_squares_alpha`: ONE α for every image, least squares of y on ``(y_i, 1)`` over the
  training features (optionally α ≥ 0, the paper's sign constraint); contributions ``α_k y_k``;
* α = w (the prior weights), contributions ``w_k y_k`` (built by the caller);
* `gradient_x_input` (Case 1): ``Σ_hw x_k ∂y/∂x_k`` per filter, one forward and one backward pass;
* `integrated_gradients` (Case 1): the path integral of ``∂y/∂x`` from a baseline (x = 0) to x,
  times ``x − baseline``, summed per filter; it sums over filters to ``y(x) − y(baseline)``;
* `shuffled_alpha`: each image's α permuted over concepts (a chance floor).

References:
  Shrikumar et al. 2016 (gradient × input); Sundararajan et al. 2017, "Axiomatic Attribution for
  Deep Networks" (integrated gradients, completeness); Lawson & Hanson 1974 (bounded-variable
  least squares).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.core import shapes
from xplain_jax.errors import ConfigError, DataError
from xplain_jax.fidelity import effects

Array = jax.Array


def _qr_rows(y_i, y, rows_per_batch: int) -> np.ndarray:
  """R of the QR factorisation of ``[y_i, 1, y]`` [N,n+2], accumulated over row batches
  (float64, TSQR), so a memory-mapped split is read batch by batch, never copied whole."""
  r = None
  for lo in range(0, y_i.shape[0], rows_per_batch):
    block = np.asarray(y_i[lo:lo + rows_per_batch], np.float64)
    target = np.asarray(y[lo:lo + rows_per_batch], np.float64).reshape(-1, 1)
    rows = np.concatenate([block, np.ones_like(target), target], axis=1)
    r = np.linalg.qr(rows if r is None else np.concatenate([r, rows]), mode="r")
  return r


def least_squares_alpha(y_i, y, *, nonnegative: bool = False,
                        rows_per_batch: int = 65536) -> tuple[np.ndarray, float]:
  """One α for every image: least squares of ``y ≈ y_i α + b`` over the given (training) rows.

  Args:
    y_i: [N,n] concept values (a numpy array or a memory-mapped cache column).
    y: [N] the performer's scores.
    nonnegative: α ≥ 0 with a free intercept b (bounded-variable least squares).
    rows_per_batch: rows read at a time (memory only; the result does not depend on it beyond
      rounding).

  Returns:
    ``(alpha [n] float32, b float)``. Without the bound, the minimum-norm solution where the
    columns are collinear (as ``numpy.linalg.lstsq``).

  Example:
    >>> y_i = np.array([[1., 0.], [0., 1.], [1., 1.], [2., 1.]])
    >>> a, b = least_squares_alpha(y_i, y_i @ np.array([2., -1.]) + 0.5)
    >>> np.round(a, 4).tolist(), round(b, 4)
    ([2.0, -1.0], 0.5)
  """
  if np.ndim(y_i) != 2 or np.shape(y)[:1] != np.shape(y_i)[:1] or np.ndim(y) != 1:
    raise DataError(f"least_squares_alpha: y_i has shape {np.shape(y_i)} and y {np.shape(y)}; "
                    "pass y_i [N, n] and y [N] for the same N rows.")
  if np.shape(y_i)[0] == 0 or rows_per_batch < 1:
    raise DataError(f"least_squares_alpha: {np.shape(y_i)[0]} rows, rows_per_batch="
                    f"{rows_per_batch}; pass at least one row and a positive batch.")
  n = np.shape(y_i)[1]
  r = _qr_rows(y_i, y, rows_per_batch)
  design, target = r[:, :n + 1], r[:, n + 1]   # ‖[y_i,1]θ − y‖² = ‖design θ − target‖² + const
  if not np.all(np.isfinite(r)):
    raise DataError("least_squares_alpha: y_i or y holds NaN or inf; fix the features first.")
  if nonnegative:
    from scipy import optimize  # pylint: disable=import-outside-toplevel
    lower = np.r_[np.zeros(n), -np.inf]
    theta = optimize.lsq_linear(design, target, bounds=(lower, np.inf), method="bvls").x
    theta[:n] = np.maximum(theta[:n], 0.0)
  else:
    theta = np.linalg.lstsq(design, target, rcond=None)[0]
  return theta[:n].astype(np.float32), float(theta[n])


def gradient_x_input(head_fn: Callable[[Array], Array], x: Array) -> Array:
  """Case 1 gradient × input per filter: ``Σ_hw x[..., k] ∂y/∂x[..., k]``.

  Args:
    head_fn: the part of the performer above x, ``[B,H,W,n] -> [B]`` (examples independent).
    x: [B,H,W,n] the feature map the head reads.

  Returns:
    [B,n] float32 (one forward and one backward pass of the head).

  Example:
    >>> head = lambda x: jnp.sum(x * 3.0, axis=(1, 2, 3))
    >>> gradient_x_input(head, jnp.ones((1, 2, 2, 2))).tolist()
    [[12.0, 12.0]]
  """
  shapes.check_rank("fidelity.gradient_x_input", "x", x, "[B, H, W, n]")
  grad = jax.grad(lambda z: jnp.sum(head_fn(z)))(x)
  return jnp.sum(x * grad, axis=(1, 2)).astype(jnp.float32)


def integrated_gradients(head_fn: Callable[[Array], Array], x: Array, *, steps: int,
                         baseline: Array | None = None) -> Array:
  """Case 1 integrated gradients per filter, from ``baseline`` (default x = 0) to x.

  ``IG_k = Σ_hw (x − x0)[..., k] · mean_s ∂y/∂x(x0 + t_s (x − x0))[..., k]`` with the midpoint
  rule ``t_s = (s + ½) / steps``; ``Σ_k IG_k → y(x) − y(x0)`` as steps grow (completeness).

  Args:
    head_fn: ``[B,H,W,n] -> [B]`` (examples independent).
    x: [B,H,W,n].
    steps: points on the path (``steps`` forward and backward passes of the head).
    baseline: [B,H,W,n] or broadcastable; None: zeros.

  Returns:
    [B,n] float32.
  """
  shapes.check_rank("fidelity.integrated_gradients", "x", x, "[B, H, W, n]")
  if steps < 1:
    raise ConfigError(f"integrated gradients steps={steps}; use at least 1 "
                      "(config field evals.fidelity.ig_steps).")
  x0 = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(baseline, x.shape)
  grad = jax.grad(lambda z: jnp.sum(head_fn(z)))

  def add(total, s):
    t = (s.astype(x.dtype) + 0.5) / steps
    return total + grad(x0 + t * (x - x0)), None

  total, _ = jax.lax.scan(add, jnp.zeros_like(x), jnp.arange(steps))
  return jnp.sum((x - x0) * total / steps, axis=(1, 2)).astype(jnp.float32)


def shuffled_alpha(key: Array, alpha: Array) -> Array:
  """The random reference: each image's α permuted over concepts, [B,n] -> [B,n]."""
  order = effects.random_order(key, alpha.shape[0], alpha.shape[1])
  return jnp.take_along_axis(alpha, order, axis=-1)
