"""Stage 2: distil the frozen performer into the additive explainer ŷ = Σ α_i(I) y_i + b.

Loss = (y − ŷ)² + λ(t) · L_prior(α, w) with λ(t) = β/√t, t the epoch starting at 1; the
baseline variant is the same with λ ≡ 0 (β = 0). The weight network g (a ResNet on the
performer's feature map) predicts α; b is a learned scalar. The stage supplies its loss
(``make_loss``) and initial variables (``init_params``) to the one trainer
(``loop.train_stage``); a variant's key is derived from its name (``variant_key``), so a variant
trains the same whatever other variants the config lists.

Beside the paper's two variants, this project adds (``stages.VARIANTS``, the table of what each
variant reads; ``variant_settings`` resolves it): fitted starts and a scaled bias
(``train.start``) and a consistency term that pulls the contributions α_k y_k toward the
performer's own per-concept effects (``losses.consistency_loss``, targets ``"t"`` from
``train.features``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.core import explain, losses, metrics
from xplain_jax.train import featurizers
from xplain_jax.spec import stages
from xplain_jax.errors import ConfigError
from xplain_jax.train import loop
from xplain_jax.train import start as start_lib
from xplain_jax.train import state as state_lib
# g's construction, initial variables and its α in eval mode live in train/weight_net.py.
from xplain_jax.train.weight_net import (  # noqa: F401  pylint: disable=g-import-not-at-top
    alpha_batch, build_weight_net, init_params, predict_alpha)

# The variants and their settings live in train/variants.py; re-exported here for callers.
from xplain_jax.train.variants import (  # noqa: E402,F401  pylint: disable=g-import-not-at-top
    VARIANTS, VariantSettings, consistency_target, variant_beta, variant_key, variant_settings)


def stage_name(variant: str) -> str:
  return stages.variant_stage(variant)


@dataclasses.dataclass(frozen=True)
class Explainer:
  """A trained explainer ``ŷ = Σ_i α_i y_i + b`` with ``α = alpha_scale · g(feat)``.

  Attributes:
    g: the weight network (an unbound linen module, ``g.apply(v, feat, train=False)``).
    variables: ``{"params": {"g": ..., "b": scalar}, "batch_stats": ...}``.
    alpha_scale: constant factor on g's output, chosen at fit time so that Σ α_i y_i starts
      at y's scale (1.0: none); contributions α_i y_i keep their meaning.
    case: ``"filter"`` (Case 1) or ``"shared_feature"`` (Case 2); names absent concepts.
  A fitted start and a scaled bias (``train.start``) live in ``variables["batch_stats"]``.
  """

  g: Any
  variables: Any
  alpha_scale: float = 1.0
  case: str = "shared_feature"

  @property
  def bias(self) -> float:
    """b: the trained scalar, or ``offset + scale · b_raw`` with a scaled bias
    (``start.compose_bias``)."""
    return float(jax.device_get(start_lib.compose_bias(self.variables["params"]["b"],
                                                       self.variables["batch_stats"])))

  def alpha(self, feat, *, batch_size: int = 256) -> np.ndarray:
    """α [N,n] for feature maps [N,H,W,C], in eval mode, batch by batch (numpy out)."""
    return predict_alpha(self.g, self.variables, feat, batch_size=batch_size,
                         alpha_scale=self.alpha_scale)

  def contributions(self, feat, y_i, *, batch_size: int = 256) -> np.ndarray:
    """α_i y_i [N,n]."""
    return self.alpha(feat, batch_size=batch_size) * np.asarray(y_i, np.float32)

  def explain(self, feat, y_i, *, names: Sequence[str] | None = None, top_k: int = 5,
              y=None, absent: str | None = "no {}") -> list:
    """Per image, the top-k reasons by |α_i y_i| (``explain.explain``) with the rest, the bias
    and, given the performer's ``y`` [N], the residual y − ŷ, so that they add up to y. For
    Case 2 an absent concept (y_i < 0) is named ``absent.format(name)`` ("no <name>"; None
    keeps the name and the signed value); ``names`` may name Case-1 filters (e.g. by part)."""
    if names is None and self.case == "filter":
      names = [f"filter {i}" for i in range(np.shape(y_i)[-1])]
    return explain.explain(self.alpha(feat), np.asarray(y_i, np.float32), self.bias,
                           names=None if names is None else list(names), top_k=top_k,
                           y=None if y is None else np.asarray(y, np.float32),
                           negate_absent=self.case == "shared_feature", absent=absent)


def explainer_loss(params, batch_stats, g, feats, mask, lam, *, prior_kind: str,
                   alpha_scale: float = 1.0, consistency_weight: float = 0.0):
  """The explainer's loss on a batch of featurized images.

  Args:
    params: ``{"g": weight-net params, "b": scalar}``.
    feats: ``"feat"`` [B,H,W,C], ``"y"`` [B], ``"y_i"`` [B,n], ``"w"`` [B,n] (and ``"t"``
      [B,n], the consistency targets, when ``consistency_weight`` > 0).
    mask: [B] bool, valid rows.
    lam: λ(t), scalar.
    alpha_scale: α = alpha_scale · g(feat) (see ``Explainer``).
    consistency_weight: weight of ``losses.consistency_loss(α ⊙ y_i, t)`` (0: the paper).

  Returns:
    ``(loss, (new_batch_stats, metrics))``.
  """
  variables = state_lib.merge_variables(params["g"], batch_stats)
  (raw, _), updates = g.apply(variables, feats["feat"], train=True, mutable=["batch_stats"])
  alpha = start_lib.compose_alpha(raw, batch_stats, alpha_scale=alpha_scale)
  y_hat = explain.explainer_output(alpha, feats["y_i"],
                                   start_lib.compose_bias(params["b"], batch_stats))
  distill = losses.distillation_loss(feats["y"], y_hat, mask=mask)
  prior = losses.prior_loss(alpha, feats["w"], kind=prior_kind, mask=mask)
  consistency = (losses.consistency_loss(alpha * feats["y_i"], feats["t"], mask=mask)
                 if consistency_weight > 0 else jnp.zeros((), jnp.float32))
  loss = distill + lam * prior + consistency_weight * consistency
  y = feats["y"]
  spread = jnp.maximum(
      jnp.max(jnp.where(mask, y, -jnp.inf)) - jnp.min(jnp.where(mask, y, jnp.inf)), 1e-6)
  m = {
      "loss": loss, "distill_loss": distill, "prior_loss": prior, "lambda": lam,
      "consistency_loss": consistency,
      "entropy": losses.masked_mean(metrics.contribution_entropy(alpha, feats["y_i"]), mask),
      "deviation": losses.masked_mean(jnp.abs(y - y_hat) / spread, mask),
  }
  return loss, (updates.get("batch_stats", batch_stats), m)


def make_loss(g, *, beta: float, steps_per_epoch: int, prior_kind: str, featurize=None,
              alpha_scale: float = 1.0, consistency_weight: float = 0.0):
  """The trainer's loss ``(params, batch_stats, batch, rng, step, perf_variables)``.

  λ = β/√t with t = ``step // steps_per_epoch + 1`` (the epoch, from 1). With ``featurize``
  (uncached mode) the batch holds images and the performer runs inside the loss (its outputs
  carry no gradient); without it (cached mode) the batch already holds ``feat, y, y_i, w``.
  Every batch carries ``mask`` [B] bool (False on padded rows); with ``consistency_weight``
  > 0 the features also hold the targets ``"t"``.
  """
  keys = featurizers.FEATURE_KEYS + (("t",) if consistency_weight > 0 else ())
  needed = ("image", "mask") if featurize is not None else keys + ("mask",)

  def loss_fn(params, batch_stats, batch, rng, step, perf_variables):
    del rng  # the explainer's loss is deterministic
    missing = [k for k in needed if k not in batch]
    if missing:
      hint = (" The consistency term's targets 't' come from a featurizer built with a "
              "consistency target (train.features.make_featurizer(..., target=...))."
              if "t" in missing else "")
      raise ConfigError(f"the explainer's batches lack {missing}; a batch needs {list(needed)} "
                        f"(data.Loader adds 'mask'; featurize_dataset gives the rest).{hint}")
    feats = featurize(perf_variables, batch["image"]) if featurize is not None else batch
    if consistency_weight > 0 and "t" not in feats:
      raise ConfigError("the consistency term needs the targets 't' in the features; build "
                        "the featurizer with a consistency target (train.features."
                        "make_featurizer(..., target=...)).")
    lam = losses.prior_weight(step // steps_per_epoch + 1, beta)
    return explainer_loss(params, batch_stats, g, feats, batch["mask"], lam,
                          prior_kind=prior_kind, alpha_scale=alpha_scale,
                          consistency_weight=consistency_weight)

  return loss_fn


def make_train_step(g, optimizer, *, beta: float, steps_per_epoch: int, prior_kind: str,
                    featurize=None, alpha_scale: float = 1.0, **kwargs):
  """``step(state, batch, rng, perf_variables) -> (state, metrics)`` of ``make_loss``
  (``kwargs``: its ``consistency_weight``)."""
  return loop.make_train_step(make_loss(g, beta=beta, steps_per_epoch=steps_per_epoch,
                                        prior_kind=prior_kind, featurize=featurize,
                                        alpha_scale=alpha_scale, **kwargs), optimizer)


def fit_weight_net(g, *, loader, feat_shape: tuple, beta: float, prior_kind: str,
                   num_epochs: int, optimizer_config, rng: jax.Array, stage: str,
                   workdir: str | None, mesh, alpha_scale: float = 1.0,
                   featurize: Callable | None = None, perf_variables=None,
                   checkpoint_every: int = 1000, log_every: int = 50, case: str = "shared_feature",
                   meta: dict | None = None, init_bias: float = 0.0,
                   fingerprint: str | None = None, consistency_weight: float = 0.0,
                   start: dict | None = None, bias: dict | None = None) -> Explainer:
  """Trains (resumes, or restores) g and b with the one trainer; the pipeline and
  ``xplain_jax.api.fit_explainer`` both call this.

  Args:
    g: the weight network.
    loader: a ``data.Loader`` over cached features (``feat, y, y_i, w``) or, with
      ``featurize``, over images.
    feat_shape: ``(B,H,W,C)`` of the map g reads.
    beta: β of λ(t) = β/√t (0: the baseline).
    prior_kind: ``"cross_entropy"`` or ``"mse"``.
    optimizer_config: an ``optimizer`` block (``optim.make_optimizer``).
    rng: this explainer's key (init from ``fold_in(rng, 0)``, steps from ``fold_in(rng, 1)``).
    stage: the stage name (checkpoints, logs).
    workdir: where checkpoints and logs go; None keeps nothing on disk.
    alpha_scale: see ``Explainer``.
    init_bias: b's initial value.
    fingerprint: the stage's run identity, checked against its checkpoints (``loop.fit``).
    consistency_weight: weight of the consistency term (0: the paper); the loader's features
      (or ``featurize``) must give the targets ``"t"``.
    start: a fitted start (``start.start_variables``): g's last layer starts at 0 and α at
      the fitted α (None: the paper's start).
    bias: a scaled bias (``start.bias_variables``): b = offset + scale·b_raw, b_raw from 0
      (``init_bias`` is then unused); None: b is the trained scalar, from ``init_bias``.
  """
  params, batch_stats = init_params(g, feat_shape, jax.random.fold_in(rng, 0))
  params["b"] = jnp.asarray(0.0 if bias is not None else init_bias, jnp.float32)
  if start is not None:
    params["g"] = start_lib.zero_head(params["g"])
  for extra in (start, bias):
    if extra is not None:
      batch_stats = dict(batch_stats,
                         **{k: jnp.asarray(v, jnp.float32) for k, v in extra.items()})
  loss_fn = make_loss(g, beta=beta, steps_per_epoch=loader.steps_per_epoch,
                      prior_kind=prior_kind, featurize=featurize, alpha_scale=alpha_scale,
                      consistency_weight=consistency_weight)
  state = loop.train_stage(
      stage=stage, workdir=workdir, mesh=mesh, loss_fn=loss_fn, params=params,
      batch_stats=batch_stats, optimizer_config=optimizer_config, loader=loader,
      num_epochs=num_epochs, rng=jax.random.fold_in(rng, 1),
      checkpoint_every=checkpoint_every, log_every=log_every, meta=meta,
      consts=(perf_variables if featurize is not None else {},), fingerprint=fingerprint)
  return Explainer(g, {"params": state["params"], "batch_stats": state["batch_stats"]},
                   alpha_scale=float(alpha_scale), case=case)


def train_explainer(config, variant: str, *, workdir: str, mesh, loader, feat_shape: tuple,
                    num_concepts: int, rng, featurize=None, perf_variables=None) -> Explainer:
  """Trains (resumes, or restores) one explainer variant of the run's config.

  Args:
    loader: a ``Loader`` over images (uncached, with ``featurize``) or over cached features.
    feat_shape: shape of the feature map fed to g, ``(B,H,W,C)``.
    rng: the variant's key (``variant_key``).

  With ``explainer.auto_scale`` α = c·g(feat) and b starts at y's mean, c chosen on the first
  256 training records so that Σ α_i y_i starts with y's spread (``configured_start``;
  recomputed, to the same value, when a finished explainer is restored). A variant with the
  fitted start (``train.start.begin``: the ridge least-squares fit, or each concept's own fit
  of its consistency target) begins there: α = α₀ + c·g(feat) (c as above; c = 1 inside the
  softplus for positive α), b from b₀. A variant with a scaled bias moves b in units of y's
  spread (``train.start.bias_variables``).
  """
  e = config.explainer
  settings = variant_settings(config, variant)
  g = build_weight_net(config, num_concepts, start=settings.start, positive=settings.positive)
  alpha_scale, init_bias = configured_start(config, g, loader, rng, featurize=featurize,
                                            perf_variables=perf_variables)
  start = bias = None
  if settings.start != "paper" or settings.scaled_bias:
    y_i, y, t, y0 = start_lib.training_concepts(
        loader.source, featurize=featurize, perf_variables=perf_variables,
        batch_size=config.evals.explainer.batch_size, keys=("y_i", "y", "t", "y0"))
    if settings.start != "paper":
      alpha0, init_bias = start_lib.begin(settings.start, y_i, y, positive=settings.positive,
                                          t=t, empty_score=y0)
      start = start_lib.start_variables(alpha0, positive=settings.positive)
      alpha_scale = 1.0 if settings.positive else alpha_scale
    if settings.scaled_bias:
      bias = start_lib.bias_variables(init_bias, y)
  return fit_weight_net(
      g, loader=loader, feat_shape=feat_shape, alpha_scale=alpha_scale, init_bias=init_bias,
      consistency_weight=settings.consistency_weight, start=start, bias=bias,
      beta=settings.beta, prior_kind=settings.prior_kind, num_epochs=e.num_epochs,
      optimizer_config=e.optimizer, rng=rng, stage=stage_name(variant), workdir=workdir,
      mesh=mesh, featurize=featurize, perf_variables=perf_variables,
      checkpoint_every=config.checkpoint_every_steps, log_every=config.log_every_steps,
      case=e.case, meta={"variant": variant},
      fingerprint=stages.stage_fingerprint(config, stage_name(variant)))


def initial_sum(g, feat, y_i, rng: jax.Array) -> np.ndarray:
  """Σ_i α⁰_i y_i [m] for features ``feat`` [m,H,W,C] and concepts ``y_i`` [m,n], at the
  initial weights α⁰ that ``fit_weight_net`` starts from with ``rng`` (its ``fold_in(rng, 0)``)."""
  params, batch_stats = init_params(g, np.shape(feat), rng)
  alpha0 = predict_alpha(g, {"params": params, "batch_stats": batch_stats}, feat)
  return np.sum(alpha0 * np.asarray(y_i, np.float32), axis=1)


def auto_alpha_scale(start: np.ndarray, y: np.ndarray) -> float:
  """``std(y) / std(Σ α⁰_i y_i)``: g's initial output brought to y's spread (1.0 if degenerate)."""
  scale, target = float(np.std(start)), float(np.std(y))
  if not (np.isfinite(scale) and scale > 0 and np.isfinite(target) and target > 0):
    return 1.0
  return target / scale


def auto_start(g, sample: dict, rng: jax.Array) -> tuple[float, float]:
  """``(alpha_scale, init_bias)`` that start ``Σ α_i y_i + b`` at y's spread and mean.

  Args:
    sample: ``feat`` [m,H,W,C], ``y_i`` [m,n], ``y`` [m] of some training images.
    rng: the key ``fit_weight_net`` gets (g starts from ``fold_in(rng, 0)``).
  """
  start = initial_sum(g, sample["feat"], sample["y_i"], jax.random.fold_in(rng, 0))
  y = np.asarray(sample["y"], np.float32)
  scale = auto_alpha_scale(start, y)
  return scale, float(np.mean(y) - np.mean(start) * scale)


def configured_start(config, g, loader, rng: jax.Array, *, featurize=None,
                     perf_variables=None) -> tuple[float, float]:
  """``(alpha_scale, init_bias)`` of the run's explainers: ``auto_start`` on the first 256
  records of ``loader``'s source with ``explainer.auto_scale``, else the paper's ``(1, 0)``
  (α = g(feat), b from 0). With ``featurize`` the loader reads images, featurised here."""
  if not config.explainer.auto_scale:
    return 1.0, 0.0
  batch = loader.source.get_batch(np.arange(min(256, len(loader.source))))
  if featurize is not None:
    batch = jax.device_get(jax.jit(featurize)(perf_variables, np.asarray(batch["image"])))
  return auto_start(g, {k: np.asarray(batch[k]) for k in ("feat", "y_i", "y")}, rng)
