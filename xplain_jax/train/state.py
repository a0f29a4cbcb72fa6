"""Train state as a plain pytree and jitted-step plumbing (optimisers:
``xplain_jax.train.optim``)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax


def create_state(params: Any, batch_stats: Any, optimizer: optax.GradientTransformation) -> dict:
  """The train state: ``{"step", "params", "batch_stats", "opt_state"}`` (a plain pytree)."""
  return {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "batch_stats": batch_stats,
      "opt_state": optimizer.init(params),
  }


def split_variables(variables: dict) -> tuple[Any, Any]:
  """``(params, batch_stats)`` of Flax variables (batch_stats ``{}`` when the model has none)."""
  return variables["params"], variables.get("batch_stats", {})


def merge_variables(params: Any, batch_stats: Any) -> dict:
  """Flax variables from params and (possibly empty) batch statistics."""
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def apply_gradients(state: dict, grads: Any, batch_stats: Any,
                    optimizer: optax.GradientTransformation) -> dict:
  """One optimiser update of ``state``."""
  updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
  return {
      "step": state["step"] + 1,
      "params": optax.apply_updates(state["params"], updates),
      "batch_stats": batch_stats,
      "opt_state": opt_state,
  }
