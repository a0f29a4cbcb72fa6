"""The weight network g of the explainer: built from the config, its initial variables, and α in
evaluation mode, compiled once per (g, α scale, batch shape).

``train.explainer`` trains g; the evaluators, the API and the report's callers read α through
``predict_alpha``. A fitted start kept in ``batch_stats`` (``train.start``) is applied to g's
output here, as in training.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax import models
from xplain_jax.train import optim
from xplain_jax.train import start as start_lib
from xplain_jax.train import state as state_lib


def build_weight_net(config, num_concepts: int, *, start: str = "paper",
                     positive: bool | None = None):
  """g of the config (``positive``: the variant's sign constraint, default
  ``explainer.positive``); with a fitted start and positive α, g has no softplus of its own
  (the explainer applies it after the offset, ``start.compose_alpha``)."""
  e = config.explainer
  positive = (e.positive if positive is None else positive) and start == "paper"
  return models.get_weight_net(e.depth, num_outputs=num_concepts, positive=positive,
                               width=e.width, stem=e.get("stem", "paper"),
                               coords=bool(e.get("coord_channels", False)),
                               dtype=optim.compute_dtype(config.dtype))


def init_params(g, feat_shape: tuple, rng: jax.Array) -> tuple:
  """``(params, batch_stats)``: params ``{"g": ..., "b": scalar}``."""
  dummy = jnp.zeros((1,) + tuple(feat_shape[1:]), jnp.float32)
  variables = jax.jit(lambda r: g.init(r, dummy, train=False))(rng)
  params, batch_stats = state_lib.split_variables(variables)
  return {"g": params, "b": jnp.zeros((), jnp.float32)}, batch_stats


@functools.partial(jax.jit, static_argnames=("g", "alpha_scale"))
def alpha_batch(variables, x, *, g, alpha_scale: float = 1.0):
  """α [B,n] float32 of g in eval mode on a batch ``x`` [B,H,W,C], jitted once per (g,
  alpha_scale, shapes): g (a linen module, hashed by its fields) and alpha_scale are static,
  so repeated calls reuse one compiled function (``alpha_batch._cache_size()`` counts them)."""
  raw = g.apply(state_lib.merge_variables(variables["params"]["g"], variables["batch_stats"]), x,
                train=False)[0]
  return start_lib.compose_alpha(raw, variables["batch_stats"], alpha_scale=alpha_scale)


def predict_alpha(g, variables, feat, *, batch_size: int = 256, alpha_scale: float = 1.0):
  """α [N,n] for a feature map [N,H,W,C] in eval mode (host numpy in, numpy out), batch by
  batch with ``alpha_batch`` (compiled once per batch shape, not per call); a least-squares
  start in ``variables["batch_stats"]`` is applied (``start.compose_alpha``)."""
  out = [np.asarray(alpha_batch(variables, np.asarray(feat[i:i + batch_size]), g=g,
                                alpha_scale=float(alpha_scale)), np.float32)
         for i in range(0, len(feat), batch_size)]
  return np.concatenate(out)
