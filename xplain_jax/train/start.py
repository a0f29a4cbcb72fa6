"""The explainer's least-squares start: α(I) = α_ls + g(I), g's output starting at 0.

An addition to the paper (``explainer.start = "least_squares"``; the paper's start is
``"paper"``). α_ls and b_ls are the least-squares fit of y on (y_i, 1) over the training
features (``fidelity.peers.least_squares_alpha``; with positive α, the non-negative solution),
so the explainer starts exactly at that global linear fit and its training-set deviation at
step 0 equals the fit's:

* signed α (Case 2, signed Case 1): ``α = α_ls + s·g(feat)``;
* positive α (Case 1, softplus): ``α = softplus(softplus⁻¹(α_ls) + g(feat))``, g built without
  its own softplus. A filter the non-negative fit sets to 0 starts at
  ``α = max(α_ls)·ε_float32`` (softplus⁻¹ of 0 is −∞); the multiplicative form makes such a
  filter slow to revive.

g's last layer (``head``) starts at zero, b at b_ls. The offset is kept in the explainer's
non-trained variables, ``batch_stats["linear_start"]`` (α_ls, signed) or
``batch_stats["linear_start_softplus"]`` (softplus⁻¹(α_ls), positive), so it is saved in every
checkpoint and restored with it, and the variables alone say how α is formed; the weight
network itself never reads it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

START_KEY = "linear_start"                  # α = offset + s·g
SOFTPLUS_START_KEY = "linear_start_softplus"  # α = softplus(offset + g)
STARTS = ("paper", "least_squares")


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


def training_concepts(source, *, featurize: Callable | None = None, perf_variables=None,
                      batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
  """``(y_i [N,n], y [N])`` float32 of every record of a training ``source``.

  A cached source (``ShardedSource``/``ArraySource``) gives its columns directly (the feature
  maps are not read); a source of images is featurized ``batch_size`` images at a time.
  """
  columns = getattr(source, "columns", None) or getattr(source, "arrays", None)
  if featurize is None and columns is not None and "y" in columns:
    return (np.asarray(columns["y_i"], np.float32), np.asarray(columns["y"], np.float32))
  fn = jax.jit(featurize)
  y_i, y = [], []
  for lo in range(0, len(source), batch_size):
    images = source.get_batch(np.arange(lo, min(lo + batch_size, len(source))))["image"]
    out = jax.device_get(fn(perf_variables, np.asarray(images)))
    y_i.append(np.asarray(out["y_i"], np.float32))
    y.append(np.asarray(out["y"], np.float32))
  return np.concatenate(y_i), np.concatenate(y)


def least_squares_fit(y_i: np.ndarray, y: np.ndarray, *, positive: bool) -> tuple[np.ndarray,
                                                                                 float]:
  """``(alpha_ls [n] float32, b_ls)``: the global least-squares fit of y on (y_i, 1).

  ``positive``: the non-negative solution (α ≥ 0, the paper's Case 1).
  """
  from xplain_jax.fidelity import peers  # pylint: disable=import-outside-toplevel
  alpha, b = peers.least_squares_alpha(np.asarray(y_i, np.float32), np.asarray(y, np.float32),
                                       nonnegative=positive)
  return np.asarray(alpha, np.float32), float(b)


def zero_head(g_params: dict) -> dict:
  """g's params with its last Dense (``head``) set to 0, so g's output starts at 0."""
  if "head" not in g_params:
    raise ValueError("the weight network has no last Dense named 'head' to start at zero.")
  out = dict(g_params)
  out["head"] = jax.tree.map(jnp.zeros_like, g_params["head"])
  return out
