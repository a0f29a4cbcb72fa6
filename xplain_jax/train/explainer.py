"""Stage 2: distil the frozen performer into the additive explainer ŷ = Σ α_i(I) y_i + b.

Loss = (y − ŷ)² + λ(t) · L_prior(α, w) with λ(t) = β/√t, t the epoch starting at 1; the
baseline variant is the same with λ ≡ 0 (β = 0). The weight network g (a ResNet on the
performer's feature map) predicts α; b is a learned scalar. The stage supplies its loss
(``make_loss``) and initial variables (``init_params``) to the one trainer
(``loop.train_stage``); a variant's key is derived from its name (``variant_key``), so a variant
trains the same whatever other variants the config lists.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax import explain, losses, metrics, models
from xplain_jax.errors import ConfigError
from xplain_jax.train import loop
from xplain_jax.train import state as state_lib

VARIANTS = ("baseline", "prior")


def stage_name(variant: str) -> str:
  return f"explainer_{variant}"


def variant_key(rng: jax.Array, variant: str) -> jax.Array:
  """The key of a variant, ``fold_in(rng, crc32(variant))``: from its name, not its position."""
  return jax.random.fold_in(rng, zlib.crc32(variant.encode("utf-8")))


def variant_beta(config, variant: str) -> float:
  """β of a variant: 0 for the baseline (λ ≡ 0), ``config.explainer.beta`` for the prior."""
  if variant not in VARIANTS:
    raise ConfigError(f"unknown explainer variant {variant!r}; choose from {list(VARIANTS)}.")
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
  return loss, (updates.get("batch_stats", batch_stats), m)


def make_loss(g, *, beta: float, steps_per_epoch: int, prior_kind: str, featurize=None):
  """The trainer's loss ``(params, batch_stats, batch, rng, step, perf_variables)``.

  λ = β/√t with t = ``step // steps_per_epoch + 1`` (the epoch, from 1). With ``featurize``
  (uncached mode) the batch holds images and the performer runs inside the loss (its outputs
  carry no gradient); without it (cached mode) the batch already holds ``feat, y, y_i, w``.
  """

  def loss_fn(params, batch_stats, batch, rng, step, perf_variables):
    del rng  # the explainer's loss is deterministic
    feats = featurize(perf_variables, batch["image"]) if featurize is not None else batch
    lam = losses.prior_weight(step // steps_per_epoch + 1, beta)
    return explainer_loss(params, batch_stats, g, feats, batch["mask"], lam,
                          prior_kind=prior_kind)

  return loss_fn


def make_train_step(g, optimizer, *, beta: float, steps_per_epoch: int, prior_kind: str,
                    featurize=None):
  """``step(state, batch, rng, perf_variables) -> (state, metrics)`` of ``make_loss``."""
  return loop.make_train_step(make_loss(g, beta=beta, steps_per_epoch=steps_per_epoch,
                                        prior_kind=prior_kind, featurize=featurize), optimizer)


def train_explainer(config, variant: str, *, workdir: str, mesh, loader, feat_shape: tuple,
                    num_concepts: int, rng, featurize=None, perf_variables=None):
  """Trains (resumes, or restores) one explainer variant; returns ``(g, variables)``.

  Args:
    loader: a ``Loader`` over images (uncached, with ``featurize``) or over cached features.
    feat_shape: shape of the feature map fed to g, ``(B,H,W,C)``.
    rng: the variant's key (``variant_key``).
  """
  e = config.explainer
  g = build_weight_net(config, num_concepts)
  params, batch_stats = init_params(g, feat_shape, jax.random.fold_in(rng, 0))
  loss_fn = make_loss(g, beta=variant_beta(config, variant),
                      steps_per_epoch=loader.steps_per_epoch, prior_kind=e.prior_kind,
                      featurize=featurize)
  state = loop.train_stage(
      stage=stage_name(variant), workdir=workdir, mesh=mesh, loss_fn=loss_fn, params=params,
      batch_stats=batch_stats, optimizer_config=e.optimizer, loader=loader,
      num_epochs=e.num_epochs, rng=jax.random.fold_in(rng, 1),
      checkpoint_every=config.checkpoint_every_steps, log_every=config.log_every_steps,
      meta={"variant": variant}, consts=(perf_variables if featurize is not None else {},))
  return g, {"params": state["params"], "batch_stats": state["batch_stats"]}


def predict_alpha(g, variables, feat, *, batch_size: int = 256):
  """α [N,n] for a feature map [N,H,W,C] in eval mode (host numpy in, numpy out)."""
  fn = jax.jit(lambda v, x: g.apply(
      state_lib.merge_variables(v["params"]["g"], v["batch_stats"]), x, train=False)[0])
  out = [np.asarray(fn(variables, feat[i:i + batch_size]), np.float32)
         for i in range(0, len(feat), batch_size)]
  return np.concatenate(out)
