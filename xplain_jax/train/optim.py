"""Optimisers and the computation dtype from the config (below the training code, so the
config check can dry-build them without importing training modules)."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from xplain_jax.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")


def learning_rate_schedule(cfg, *, total_steps: int) -> optax.Schedule:
  """Step -> learning rate of an ``optimizer`` block (``schedule``, ``warmup_steps``).

  Every field is read from the block as ``config_base.OPTIMIZER`` defines it (no defaults here).
  """
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, max(1, min(cfg.warmup_steps, total_steps - 1)),
        max(2, total_steps))
  if cfg.warmup_steps:
    return optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
  return optax.constant_schedule(cfg.learning_rate)


def make_optimizer(cfg, *, total_steps: int) -> optax.GradientTransformation:
  """An optax optimiser from an ``optimizer`` config block.

  Fields: ``name`` (adam | adamw | sgd), ``learning_rate``, ``weight_decay``, ``momentum`` (sgd),
  ``schedule`` ("constant" or "cosine"), ``warmup_steps``, ``grad_clip`` (global norm, 0 = off).
  """
  if cfg.name not in OPTIMIZERS:
    raise ConfigError(f"unknown optimizer {cfg.name!r}; choose one of {list(OPTIMIZERS)}.")
  lr = learning_rate_schedule(cfg, total_steps=total_steps)
  if cfg.name == "adam":
    opt = optax.adam(lr)
    if cfg.weight_decay:
      opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), opt)
  elif cfg.name == "adamw":
    opt = optax.adamw(lr, weight_decay=cfg.weight_decay)
  else:
    opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                      optax.sgd(lr, momentum=cfg.momentum))
  if cfg.grad_clip:
    opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
  return opt


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str):
  """The jnp dtype of ``config.dtype`` (computation dtype; parameters stay float32)."""
  if name not in COMPUTE_DTYPES:
    raise ConfigError(f"unknown dtype {name!r}; choose one of {list(COMPUTE_DTYPES)}.")
  return COMPUTE_DTYPES[name]
