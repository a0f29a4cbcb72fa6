"""The one training loop both stages share: resume, step, log, NaN-guard, checkpoint."""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax import checkpoint, parallel
from xplain_jax.train.logger import (MetricLogger, NonFiniteError, first_non_finite,
                                     non_finite_message)


def jit_step(step_fn: Callable, mesh, *, num_consts: int = 0) -> Callable:
  """Jits ``step_fn(state, batch, rng, *consts) -> (state, metrics)`` for data parallelism.

  State, rng and the ``num_consts`` constant arguments (e.g. frozen performer variables) are
  replicated on ``mesh``, the batch is split along its first axis, and the old state's buffers
  are donated to the new one.
  """
  rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
  return jax.jit(step_fn, in_shardings=(rep, dat, rep) + (rep,) * num_consts,
                 out_shardings=(rep, rep), donate_argnums=(0,))


def train(*, stage: str, workdir: str, state: Any, step_fn: Callable, loader, mesh,
          total_steps: int, rng: jax.Array, checkpoint_every: int, log_every: int,
          meta: dict | None = None, batch_fn: Callable | None = None,
          consts: tuple = ()) -> Any:
  """Runs ``step_fn`` from the last checkpoint of ``stage`` (or step 0) to ``total_steps``.

  Args:
    stage: stage name; checkpoints go to ``workdir/<stage>/ckpt``, logs to
      ``workdir/logs/<stage>.jsonl``.
    state: freshly initialised, replicated train state (the restore target).
    step_fn: jitted ``(state, batch, rng) -> (state, metrics)``.
    loader: ``xplain_jax.data.Loader``; batch ``k`` is ``loader.batch(k)``, so the data position
      is the step itself and resumes exactly.
    total_steps: steps to reach.
    rng: base key; step ``k`` uses ``fold_in(rng, k)``.
    checkpoint_every, log_every: intervals in steps (the last step is always logged and saved).
    meta: JSON-able facts saved with each checkpoint.
    batch_fn: optional host-side transformation of each loaded batch before it is sharded.
    consts: replicated constant arguments passed after the rng (see ``jit_step``).

  Returns:
    The final state. Raises ``NonFiniteError`` (keeping the last good checkpoint) on NaN/Inf.
  """
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, stage, "ckpt"))
  restored = ckpt.restore(state)
  start = 0
  if restored is not None:
    state, _, start = restored
    print(f"[{stage}] resumed from the checkpoint at step {start}", flush=True)
  logger = MetricLogger(workdir, stage, total_steps, start_step=start)
  pending: list[dict] = []
  for step in range(start, total_steps):
    batch = loader.batch(step)
    if batch_fn is not None:
      batch = batch_fn(batch)
    batch = parallel.to_global(batch, mesh)
    state, metrics = step_fn(state, batch, jax.random.fold_in(rng, step), *consts)
    pending.append(metrics)
    done = step + 1
    is_last = done == total_steps
    save_now = is_last or done % checkpoint_every == 0
    if save_now or done % log_every == 0:
      host = jax.device_get(pending)
      pending = []
      for i, m in enumerate(host):  # every step's metrics, before a bad state can be saved
        _raise_if_non_finite(stage, done - len(host) + 1 + i, first_non_finite(m), ckpt)
      mean = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
      mean["epoch"] = float(done / loader.steps_per_epoch)
      logger.log(done, mean)
    if save_now:
      _raise_if_non_finite(stage, done, _first_non_finite_leaf(state), ckpt)
      ckpt.save(done, state, meta)
  ckpt.close()
  return state


@jax.jit
def _finite_leaves(leaves: list) -> list:
  return [jnp.all(jnp.isfinite(x)) for x in leaves]


def _first_non_finite_leaf(state: Any) -> tuple[str, float] | None:
  """``("parameter <path>", nan)`` for the first float leaf of ``state`` holding NaN/Inf."""
  flat = [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(state)
          if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
  if not flat:
    return None
  ok = jax.device_get(_finite_leaves([x for _, x in flat]))
  for (path, _), good in zip(flat, ok):
    if not good:
      return f"the train state {path}", float("nan")
  return None


def _raise_if_non_finite(stage: str, step: int, bad, ckpt) -> None:
  if bad is None:
    return
  last = ckpt.latest_step()
  kept = (f"nothing was saved for it and the last good checkpoint (step {last}) is kept in "
          f"{ckpt.directory}" if last is not None else "no checkpoint of this stage was saved yet")
  raise NonFiniteError(non_finite_message(stage, step, *bad, kept=kept))


__all__ = ["train", "jit_step", "NonFiniteError"]
