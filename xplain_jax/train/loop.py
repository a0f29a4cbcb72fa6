"""The one trainer every trained network uses: a loss function and initial variables in, a state
out.

A stage supplies only ``loss_fn(params, batch_stats, batch, rng, step, *consts) ->
(loss, (new_batch_stats, metrics))`` and its initial ``(params, batch_stats)``;
``train_stage`` builds the optimiser and the replicated state, ``make_train_step`` the pure step
(the step's key is ``fold_in(rng, state["step"])``, folded in inside the step) and ``fit`` runs it
with resume, logs, the NaN guard and checkpoints, taking its batches from
``data.prefetch.prefetch_to_mesh``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xplain_jax.infra import checkpoint, parallel
from xplain_jax.train import optim
from xplain_jax.errors import ConfigError
from xplain_jax.data.prefetch import prefetch_to_mesh
from xplain_jax.train import preemption
from xplain_jax.train import state as state_lib
from xplain_jax.train.logger import (NonFiniteError, first_non_finite, make_writer,
                                     non_finite_message)


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
  """``step(state, batch, rng, *consts) -> (state, metrics)`` for a stage's loss, pure.

  Args:
    loss_fn: ``(params, batch_stats, batch, rng, step, *consts) -> (loss, (batch_stats,
      metrics))``; ``rng`` is the step's own key and ``step`` the state's step counter (int32
      scalar, 0 for the first step); gradients are taken w.r.t. ``params`` only.
    optimizer: the optax transformation.

  Returns:
    The step function; its metrics are the loss's plus ``grad_norm``.
  """

  def step(state, batch, rng, *consts):
    _check_state(state)
    key = jax.random.fold_in(rng, state["step"])
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (batch_stats, metrics)), grads = grad_fn(state["params"], state["batch_stats"], batch,
                                                 key, state["step"], *consts)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
    return state_lib.apply_gradients(state, grads, batch_stats, optimizer), metrics

  return step


def jit_step(step_fn: Callable, mesh, *, num_consts: int = 0) -> Callable:
  """Jits ``step_fn(state, batch, rng, *consts) -> (state, metrics)`` for data parallelism.

  State, rng and the ``num_consts`` constant arguments (e.g. frozen performer variables) are
  replicated on ``mesh``, the batch is split along its first axis, and the old state's buffers
  are donated to the new one.
  """
  rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
  return jax.jit(step_fn, in_shardings=(rep, dat, rep) + (rep,) * num_consts,
                 out_shardings=(rep, rep), donate_argnums=(0,))


def train_stage(*, stage: str, workdir: str | None, mesh, loss_fn: Callable, params: Any,
                batch_stats: Any, optimizer_config, loader, num_epochs: int, rng: jax.Array,
                checkpoint_every: int, log_every: int, meta: dict | None = None,
                consts: tuple = (), fingerprint: str | None = None) -> dict:
  """Trains (resumes, or restores when finished) one network; returns the final state.

  Args:
    stage: the stage's name (checkpoints in ``workdir/<stage>/ckpt``, log ``logs/<stage>``).
    loss_fn: see ``make_train_step``.
    params, batch_stats: the initial variables.
    optimizer_config: an ``optimizer`` config block (``optim.make_optimizer``).
    loader: ``data.Loader``; ``num_epochs`` of its steps are run.
    rng: the stage's base key.
    consts: replicated constant arguments of ``loss_fn`` after ``step``.

  Returns:
    The train state ``{"step", "params", "batch_stats", "opt_state"}``.
  """
  total = num_epochs * loader.steps_per_epoch
  optimizer = optim.make_optimizer(optimizer_config, total_steps=total)
  state = parallel.replicate(state_lib.create_state(params, batch_stats, optimizer), mesh)
  step = jit_step(make_train_step(loss_fn, optimizer), mesh, num_consts=len(consts))
  return fit(stage=stage, workdir=workdir, state=state, step_fn=step, loader=loader, mesh=mesh,
             total_steps=total, rng=rng, checkpoint_every=checkpoint_every,
             log_every=log_every, meta=meta, consts=consts, fingerprint=fingerprint,
             learning_rate=optim.learning_rate_schedule(optimizer_config, total_steps=total))


def fit(*, stage: str, workdir: str | None, state: Any, step_fn: Callable, loader, mesh,
        total_steps: int, rng: jax.Array, checkpoint_every: int, log_every: int,
        meta: dict | None = None, consts: tuple = (), fingerprint: str | None = None,
        learning_rate: Callable | None = None) -> Any:
  """Runs ``step_fn`` from the last checkpoint of ``stage`` (or step 0) to ``total_steps``.

  Args:
    stage: stage name; checkpoints go to ``workdir/<stage>/ckpt``, logs to
      ``workdir/logs/<stage>.jsonl`` (and the console). With ``workdir=None`` nothing is
      written to disk (no checkpoints, no resume; the console only).
    state: freshly initialised, replicated train state (the restore target).
    step_fn: jitted ``(state, batch, rng, *consts) -> (state, metrics)``; it folds the step
      into ``rng`` itself.
    loader: ``xplain_jax.data.Loader``; batch ``k`` is ``loader.batch(k)``, so the data position
      is the step itself and resumes exactly.
    total_steps: steps to reach.
    rng: the stage's base key, the same for every step.
    checkpoint_every, log_every: intervals in steps (the last step is always logged and saved).
    meta: JSON-able facts saved with each checkpoint.
    consts: replicated constant arguments passed after the rng (see ``jit_step``).
    fingerprint: the stage's run identity (``stages.stage_fingerprint``), saved with every
      checkpoint; a checkpoint with another identity is refused instead of resumed.
    learning_rate: the optimiser's schedule (step -> rate); when given, each log line also
      holds ``learning_rate``, the rate of its last step.

  Returns:
    The final state. Raises ``NonFiniteError`` (keeping the last good checkpoint) on NaN/Inf.
  """
  ckpt = (checkpoint.Checkpointer(os.path.join(workdir, stage, "ckpt"), fingerprint=fingerprint)
          if workdir is not None else _NoCheckpoints())
  restored = ckpt.restore(state)
  start = 0
  if restored is not None:
    state, _, start = restored
    print(f"[{stage}] resumed from the checkpoint at step {start}", flush=True)
  writer = make_writer(workdir, stage, total_steps, start_step=start)
  pending: list[dict] = []
  batches = prefetch_to_mesh(loader, mesh, start_step=start, num_steps=total_steps - start)
  # A failing step stops the prefetch threads at once; SIGTERM saves after the step under way.
  with contextlib.closing(batches), preemption.Preemption() as preempted:
    for step, batch in batches:
      state, metrics = step_fn(state, batch, rng, *consts)
      pending.append(metrics)
      done = step + 1
      stopping = preempted.reached(done)
      save_now = done == total_steps or done % checkpoint_every == 0 or stopping
      if save_now or done % log_every == 0:
        host = jax.device_get(pending)
        pending = []
        for i, m in enumerate(host):  # every step's metrics, before a bad state can be saved
          _raise_if_non_finite(stage, done - len(host) + 1 + i, first_non_finite(m), ckpt)
        mean = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
        mean["epoch"] = float(done / loader.steps_per_epoch)
        if learning_rate is not None:
          mean["learning_rate"] = float(learning_rate(done - 1))
        writer.write_scalars(done, mean)
      if save_now:
        _raise_if_non_finite(stage, done, _first_non_finite_leaf(state), ckpt)
        ckpt.save(done, state, meta)
      if stopping:
        writer.close()
        ckpt.close()
        preemption.stop()
  writer.close()
  ckpt.close()
  return state


class _NoCheckpoints:
  """The checkpointer of a run that keeps nothing on disk (``workdir=None``)."""

  directory = None

  def restore(self, state):
    del state
    return None

  def latest_step(self):
    return None

  def save(self, step, state, meta):
    del step, state, meta

  def close(self):
    pass


STATE_KEYS = ("step", "params", "batch_stats", "opt_state")


def _check_state(state: Any) -> None:
  """One line instead of a KeyError deep in the step when ``state`` is not a train state."""
  if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
    got = sorted(state) if isinstance(state, dict) else type(state).__name__
    raise ConfigError(f"expected a train state with keys {list(STATE_KEYS)} "
                      f"(state.create_state(params, batch_stats, optimizer)), got {got}; pass "
                      "the state, not the params.")


@jax.jit
def _finite_leaves(leaves: list) -> list:
  return [jnp.all(jnp.isfinite(x)) for x in leaves]


def _first_non_finite_leaf(state: Any) -> tuple[str, float] | None:
  """``("the train state <path>", nan)`` for the first float leaf of ``state`` with NaN/Inf."""
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
  message = non_finite_message(stage, step, *bad, kept=kept)
  if "explainer" in stage:
    message += (" In an explainer a large prior weight or output scale blows up as often: "
                "lower explainer.beta (λ = β/√t; the API's beta) or the α scale "
                "(explainer.auto_scale; the API's alpha_scale) before the learning rate.")
  raise NonFiniteError(message)


__all__ = ["make_train_step", "jit_step", "train_stage", "fit", "NonFiniteError"]
