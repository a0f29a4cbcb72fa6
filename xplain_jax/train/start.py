"""The explainer's fitted starts and its scaled bias: α(I) = α₀ + g(I), g's output starting at 0.

Additions to the paper (``explainer.start``; the paper's start is ``"paper"``), chosen per
variant by the variant table (``stages.VARIANTS``). Two fitted starts (``begin``):

* ``"least_squares"``: (α₀, b₀) the ridge-regularised least-squares fit of y on (y_i, 1) over
  the training features (``ridge_fit``: standardised columns, the strength chosen on held-out
  training rows; with positive α the non-negative solution). The plain fit
  (``least_squares_fit``, ``ridge=False``) can start at large cancelling contributions when
  concepts are correlated (docs/own_model.md);
* ``"target"``: α₀ each concept's own least-squares fit of its consistency target t_k
  (``target_fit``) and b₀ the performer's score with every concept removed, y(∅), where the
  featurizer gives it (``"y0"``), else the intercept of that fit.

How α is formed from g's output (``compose_alpha``):

* signed α (Case 2, signed Case 1): ``α = α₀ + s·g(feat)``;
* positive α (Case 1, softplus): ``α = softplus(softplus⁻¹(α₀) + g(feat))``, g built without
  its own softplus. A concept the fit sets to 0 starts at ``α = max(α₀)·ε_float32``
  (softplus⁻¹ of 0 is −∞); the multiplicative form makes such a concept slow to revive.

g's last layer (``head``) starts at zero. A scaled bias (``bias_variables``) is
``b = b₀ + std(y)·b_raw`` with b_raw trained from 0, so b moves at y's scale
(``compose_bias``). The offsets are kept in the explainer's non-trained variables
(``batch_stats["linear_start"]``, ``["linear_start_softplus"]``, ``["bias_offset"]``,
``["bias_scale"]``), so they are saved in every checkpoint and restored with it, and the
variables alone say how α and b are formed; the weight network itself never reads them.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

START_KEY = "linear_start"                  # α = offset + s·g
SOFTPLUS_START_KEY = "linear_start_softplus"  # α = softplus(offset + g)
BIAS_OFFSET_KEY, BIAS_SCALE_KEY = "bias_offset", "bias_scale"   # b = offset + scale·b_raw
# "paper": g as initialised; "least_squares": the ridge-regularised global fit of y on
# (y_i, 1); "target": each concept's own fit of its consistency target t_k (needs "t").
STARTS = ("paper", "least_squares", "target")
# Ridge strengths tried by ``ridge_fit``, relative to the standardised columns' scale (N).
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
# Every HOLDOUT_EVERY-th training row is held out to choose the ridge strength.
HOLDOUT_EVERY = 5


def inverse_softplus(a: np.ndarray) -> np.ndarray:
  """``softplus⁻¹(a) = a + log(1 − e^{−a})`` for a > 0 (float64, stable), [n] -> [n]."""
  a = np.asarray(a, np.float64)
  return a + np.log(-np.expm1(-a))


def start_variables(alpha_ls: np.ndarray, *, positive: bool) -> dict:
  """``{key: offset [n] float32}`` that makes α start at ``alpha_ls`` [n] (see the module doc);
  merged into the explainer's ``batch_stats``."""
  alpha_ls = np.asarray(alpha_ls, np.float64)
  if not positive:
    return {START_KEY: alpha_ls.astype(np.float32)}
  floor = max(float(np.max(alpha_ls)), 1.0) * float(np.finfo(np.float32).eps)
  return {SOFTPLUS_START_KEY: inverse_softplus(np.maximum(alpha_ls, floor)).astype(np.float32)}


def compose_alpha(raw, batch_stats, *, alpha_scale: float = 1.0):
  """α [B,n] float32 from g's output ``raw`` [B,n] and the start kept in ``batch_stats``.

  Without a start (the paper's) ``α = alpha_scale · raw``; with ``linear_start``
  ``α = offset + alpha_scale · raw``; with ``linear_start_softplus``
  ``α = softplus(offset + alpha_scale · raw)``.
  """
  raw = jnp.asarray(raw, jnp.float32) * alpha_scale
  stats = batch_stats if hasattr(batch_stats, "get") else {}
  if stats.get(START_KEY) is not None:
    return jnp.asarray(stats[START_KEY], jnp.float32) + raw
  if stats.get(SOFTPLUS_START_KEY) is not None:
    return jax.nn.softplus(jnp.asarray(stats[SOFTPLUS_START_KEY], jnp.float32) + raw)
  return raw


def compose_bias(b_raw, batch_stats):
  """b (scalar float32) from the trained parameter ``b_raw`` and the bias start kept in
  ``batch_stats``: ``offset + scale · b_raw`` with a scaled bias (``bias_variables``), else
  ``b_raw`` itself (the paper's plain scalar)."""
  stats = batch_stats if hasattr(batch_stats, "get") else {}
  b_raw = jnp.asarray(b_raw, jnp.float32)
  if stats.get(BIAS_SCALE_KEY) is None:
    return b_raw
  return (jnp.asarray(stats[BIAS_OFFSET_KEY], jnp.float32)
          + jnp.asarray(stats[BIAS_SCALE_KEY], jnp.float32) * b_raw)


def bias_variables(offset: float, y: np.ndarray) -> dict:
  """``{bias_offset, bias_scale}`` that make b start at ``offset`` and move in units of y's
  spread (``scale = std(y)``, 1 where y is constant), merged into the explainer's
  ``batch_stats``: an optimiser step of size η on the trained parameter moves b by η·std(y),
  so b can travel the range of y within a run whatever y's units."""
  spread = float(np.std(np.asarray(y, np.float64)))
  scale = spread if np.isfinite(spread) and spread > 0 else 1.0
  return {BIAS_OFFSET_KEY: np.float32(offset), BIAS_SCALE_KEY: np.float32(scale)}


def training_concepts(source, *, featurize: Callable | None = None, perf_variables=None,
                      batch_size: int = 256, keys=("y_i", "y")) -> tuple:
  """The columns ``keys`` (float32, default ``(y_i [N,n], y [N])``) of every record of a
  training ``source``, in the order of ``keys``; a key the source lacks gives None.

  A cached source (``ShardedSource``/``ArraySource``) gives its columns directly (the feature
  maps are not read); a source of images is featurized ``batch_size`` images at a time.
  """
  columns = getattr(source, "columns", None) or getattr(source, "arrays", None)
  if featurize is None and columns is not None and "y" in columns:
    return tuple(np.asarray(columns[k], np.float32) if k in columns else None for k in keys)
  fn = jax.jit(featurize)
  parts = {k: [] for k in keys}
  for lo in range(0, len(source), batch_size):
    images = source.get_batch(np.arange(lo, min(lo + batch_size, len(source))))["image"]
    out = jax.device_get(fn(perf_variables, np.asarray(images)))
    for k in keys:
      if k in out:
        parts[k].append(np.asarray(out[k], np.float32))
  return tuple(np.concatenate(parts[k]) if parts[k] else None for k in keys)


def least_squares_fit(y_i: np.ndarray, y: np.ndarray, *, positive: bool) -> tuple[np.ndarray,
                                                                                 float]:
  """``(alpha_ls [n] float32, b_ls)``: the global least-squares fit of y on (y_i, 1).

  ``positive``: the non-negative solution (α ≥ 0, the paper's Case 1).
  """
  from xplain_jax.fidelity import peers  # pylint: disable=import-outside-toplevel
  alpha, b = peers.least_squares_alpha(np.asarray(y_i, np.float32), np.asarray(y, np.float32),
                                       nonnegative=positive)
  return np.asarray(alpha, np.float32), float(b)


def _standardised(y_i: np.ndarray, y: np.ndarray):
  """Centred, unit-variance columns of y_i, their means and scales, and centred y (float64)."""
  x = np.asarray(y_i, np.float64)
  t = np.asarray(y, np.float64)
  mean_x, mean_y = x.mean(axis=0), t.mean()
  scale = x.std(axis=0)
  scale = np.where(scale > 1e-12 * max(float(scale.max(initial=0.0)), 1e-30), scale, np.inf)
  return (x - mean_x) / scale, t - mean_y, mean_x, mean_y, scale


def _ridge_solve(xs: np.ndarray, yc: np.ndarray, lam: float, positive: bool) -> np.ndarray:
  """argmin ‖xs β − yc‖² + lam‖β‖² (β ≥ 0 with ``positive``), float64 [n]."""
  n = xs.shape[1]
  if not positive:
    return np.linalg.solve(xs.T @ xs + lam * np.eye(n), xs.T @ yc)
  from scipy import optimize  # pylint: disable=import-outside-toplevel
  design = np.concatenate([xs, np.sqrt(lam) * np.eye(n)])
  target = np.concatenate([yc, np.zeros(n)])
  return np.maximum(optimize.lsq_linear(design, target, bounds=(0.0, np.inf)).x, 0.0)


def ridge_fit(y_i: np.ndarray, y: np.ndarray, *, positive: bool,
              grid=RIDGE_GRID) -> tuple[np.ndarray, float, float]:
  """``(alpha [n] float32, b, strength)``: the ridge-regularised global fit of y on (y_i, 1).

  Columns are standardised (a constant column gets α = 0) and the penalty ``λ‖β‖²`` acts on
  the standardised coefficients. The plain least-squares fit of y on correlated concepts can
  start at contributions orders of magnitude above y that cancel each other (docs/own_model.md),
  and it may also predict held-out rows best, so the held-out error alone does not rule them
  out: a strength is admitted only if no concept's contribution α_k·y_k spreads more than y
  itself (std(α_k y_k) ≤ std(y), which a contribution can only exceed by cancelling others).
  λ = ``strength``·N is the admitted grid value with the least squared error on every
  ``HOLDOUT_EVERY``-th training row, the fit made on the others (the strongest grid value if
  none is admitted); the returned fit is refitted on every row with that λ.

  Args:
    y_i: [N,n] training concept values.
    y: [N] the performer's scores.
    positive: α ≥ 0 (Case 1 with softplus α).
    grid: the relative strengths tried (all > 0).
  """
  y_i, y = np.asarray(y_i, np.float64), np.asarray(y, np.float64)
  rows = np.arange(len(y))
  held = rows % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
  best, strength = np.inf, float(max(grid))
  if held.sum() >= 1 and (~held).sum() >= 2:
    xs, yc, mx, my, sc = _standardised(y_i[~held], y[~held])
    for g in sorted(grid):
      beta = _ridge_solve(xs, yc, float(g) * len(yc), positive)
      if np.max(np.abs(beta), initial=0.0) > np.std(yc):   # some contribution spreads beyond y
        continue
      pred = ((y_i[held] - mx) / sc) @ beta + my
      err = float(np.mean(np.square(pred - y[held])))
      if err < best:
        best, strength = err, float(g)
  xs, yc, mx, my, sc = _standardised(y_i, y)
  beta = _ridge_solve(xs, yc, strength * len(yc), positive)
  alpha = beta / sc
  return alpha.astype(np.float32), float(my - mx @ alpha), strength


def target_fit(y_i: np.ndarray, t: np.ndarray) -> np.ndarray:
  """α [n] float32 with each concept's own least-squares fit of its consistency target:
  ``α_k = Σ_i t_ik y_ik / Σ_i y_ik²`` (0 for a concept that is 0 on every image), so that the
  start's contributions α_k y_k are as close to the targets t_k as one α per concept allows."""
  y_i, t = np.asarray(y_i, np.float64), np.asarray(t, np.float64)
  if y_i.shape != t.shape or y_i.ndim != 2:
    raise ValueError(f"target_fit: y_i {y_i.shape} and t {t.shape} must both be [N, n].")
  den = np.sum(y_i * y_i, axis=0)
  return np.where(den > 0, np.sum(t * y_i, axis=0) / np.where(den > 0, den, 1.0),
                  0.0).astype(np.float32)


def begin(kind: str, y_i: np.ndarray, y: np.ndarray, *, positive: bool, t=None,
          empty_score=None, ridge: bool = True) -> tuple[np.ndarray, float]:
  """``(alpha0 [n] float32, b0)``: where a start of ``kind`` puts α and b.

  ``"least_squares"``: the ridge fit (``ridge_fit``) and its intercept (``ridge=False``: the
  plain least-squares fit, ``least_squares_fit``, as before the ridge); ``"target"``: each
  concept's own fit of the targets ``t`` [N,n] (``target_fit``; with ``positive`` negative
  values go to the floor of ``start_variables``) and b at ``empty_score``, the performer's
  score with every concept removed (Case 1: y(∅), the head on a zeroed map), or, when that is
  not known, the intercept ``mean(y − Σ_k α_k y_k)``.
  """
  if kind == "least_squares":
    if not ridge:
      return least_squares_fit(y_i, y, positive=positive)
    alpha, b, _ = ridge_fit(y_i, y, positive=positive)
    return alpha, b
  if kind != "target":
    raise ValueError(f"start {kind!r} has no fitted start; use one of {list(STARTS[1:])}.")
  if t is None:
    raise ValueError("the 'target' start needs the consistency targets t [N, n].")
  alpha = target_fit(y_i, t)
  if positive:
    alpha = np.maximum(alpha, 0.0)
  if empty_score is not None and np.all(np.isfinite(empty_score)):
    return alpha, float(np.mean(empty_score))
  return alpha, float(np.mean(np.asarray(y, np.float64)
                              - np.asarray(y_i, np.float64) @ alpha.astype(np.float64)))


def zero_head(g_params: dict) -> dict:
  """g's params with its last Dense (``head``) set to 0, so g's output starts at 0."""
  if "head" not in g_params:
    raise ValueError("the weight network has no last Dense named 'head' to start at zero.")
  out = dict(g_params)
  out["head"] = jax.tree.map(jnp.zeros_like, g_params["head"])
  return out
