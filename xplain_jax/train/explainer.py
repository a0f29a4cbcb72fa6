"""Stage 2: distil the frozen performer into the additive explainer ŷ = Σ α_i(I) y_i + b.

Loss = (y − ŷ)² + λ(t) · L_prior(α, w) with λ(t) = β/√t, t the epoch starting at 1; the
baseline variant is the same with λ ≡ 0 (β = 0). The weight network g (a ResNet on the
performer's feature map) predicts α; b is a learned scalar.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xplain_jax import explain, losses, metrics, models, parallel
from xplain_jax.train import loop
from xplain_jax.train import state as state_lib

VARIANTS = ("baseline", "prior")


def stage_name(variant: str) -> str:
  return f"explainer_{variant}"


def variant_beta(config, variant: str) -> float:
  """β of a variant: 0 for the baseline (λ ≡ 0), ``config.explainer.beta`` for the prior."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown explainer variant {variant!r}; choose from {list(VARIANTS)}.")
  return 0.0 if variant == "baseline" else float(config.explainer.beta)


def build_weight_net(config, num_concepts: int):
  e = config.explainer
  return models.get_weight_net(e.depth, num_outputs=num_concepts, positive=e.positive,
                               width=e.width, dtype=state_lib.compute_dtype(config.dtype))


def init_params(g, feat_shape: tuple, rng: jax.Array) -> tuple:
  """``(params, batch_stats)``: params ``{"g": ..., "b": scalar}``."""
  dummy = jnp.zeros((1,) + tuple(feat_shape[1:]), jnp.float32)
  variables = jax.jit(lambda r: g.init(r, dummy, train=False))(rng)
  params, batch_stats = state_lib.split_variables(variables)
  return {"g": params, "b": jnp.zeros((), jnp.float32)}, batch_stats


def explainer_loss(params, batch_stats, g, feats, mask, lam, *, prior_kind: str):
  """The explainer's loss on a batch of featurized images.

  Args:
    params: ``{"g": weight-net params, "b": scalar}``.
    feats: ``"feat"`` [B,H,W,C], ``"y"`` [B], ``"y_i"`` [B,n], ``"w"`` [B,n].
    mask: [B] bool, valid rows.
    lam: λ(t), scalar.

  Returns:
    ``(loss, (new_batch_stats, metrics))``.
  """
  variables = state_lib.merge_variables(params["g"], batch_stats)
  (alpha, _), updates = g.apply(variables, feats["feat"], train=True, mutable=["batch_stats"])
  alpha = alpha.astype(jnp.float32)
  y_hat = explain.explainer_output(alpha, feats["y_i"], params["b"])
  distill = losses.distillation_loss(feats["y"], y_hat, mask=mask)
  prior = losses.prior_loss(alpha, feats["w"], kind=prior_kind, mask=mask)
  loss = distill + lam * prior
  y = feats["y"]
  spread = jnp.maximum(jnp.max(jnp.where(mask, y, -jnp.inf)) - jnp.min(jnp.where(mask, y, jnp.inf)), 1e-6)
  m = {
      "loss": loss, "distill_loss": distill, "prior_loss": prior, "lambda": lam,
      "entropy": state_lib.masked_mean(metrics.contribution_entropy(alpha, feats["y_i"]), mask),
      "deviation": state_lib.masked_mean(jnp.abs(y - y_hat) / spread, mask),
  }
  return loss, (updates["batch_stats"], m)


def make_train_step(g, optimizer, *, beta: float, steps_per_epoch: int, prior_kind: str,
                    featurize=None):
  """``step(state, batch, rng, perf_variables) -> (state, metrics)``.

  With ``featurize`` (uncached mode) the batch holds images and the performer runs inside the
  step; without it (cached mode) the batch already holds ``feat, y, y_i, w``.
  """

  def step(state, batch, rng, perf_variables):
    del rng  # the explainer step is deterministic
    feats = featurize(perf_variables, batch["image"]) if featurize is not None else batch
    epoch = state["step"] // steps_per_epoch + 1
    lam = losses.prior_weight(epoch, beta)
    grad_fn = jax.value_and_grad(
        functools.partial(explainer_loss, g=g, prior_kind=prior_kind), has_aux=True)
    (_, (batch_stats, m)), grads = grad_fn(state["params"], state["batch_stats"], feats=feats,
                                           mask=batch["mask"], lam=lam)
    m["grad_norm"] = optax.tree.norm(grads)
    return state_lib.apply_gradients(state, grads, batch_stats, optimizer), m

  return step


def train_explainer(config, variant: str, *, workdir: str, mesh, loader, feat_shape: tuple,
                    num_concepts: int, rng, featurize=None, perf_variables=None):
  """Trains (resumes, or restores) one explainer variant; returns ``(g, variables)``.

  Args:
    loader: a ``Loader`` over images (uncached, with ``featurize``) or over cached features.
    feat_shape: shape of the feature map fed to g, ``(B,H,W,C)``.
  """
  e = config.explainer
  g = build_weight_net(config, num_concepts)
  params, batch_stats = init_params(g, feat_shape, jax.random.fold_in(rng, 0))
  total = e.num_epochs * loader.steps_per_epoch
  optimizer = state_lib.make_optimizer(e.optimizer, total_steps=total)
  state = parallel.replicate(state_lib.create_state(params, batch_stats, optimizer), mesh)
  step = loop.jit_step(make_train_step(
      g, optimizer, beta=variant_beta(config, variant), steps_per_epoch=loader.steps_per_epoch,
      prior_kind=e.prior_kind, featurize=featurize), mesh, num_consts=1)
  state = loop.train(stage=stage_name(variant), workdir=workdir, state=state, step_fn=step,
                     loader=loader, mesh=mesh, total_steps=total, rng=jax.random.fold_in(rng, 1),
                     checkpoint_every=config.checkpoint_every_steps,
                     log_every=config.log_every_steps, meta={"variant": variant},
                     consts=(perf_variables if featurize is not None else {},))
  return g, {"params": state["params"], "batch_stats": state["batch_stats"]}


def predict_alpha(g, variables, feat, *, batch_size: int = 256):
  """α [N,n] for a feature map [N,H,W,C] in eval mode (host numpy in, numpy out)."""
  fn = jax.jit(lambda v, x: g.apply(
      state_lib.merge_variables(v["params"]["g"], v["batch_stats"]), x, train=False)[0])
  out = [np.asarray(fn(variables, feat[i:i + batch_size]), np.float32)
         for i in range(0, len(feat), batch_size)]
  return np.concatenate(out)
