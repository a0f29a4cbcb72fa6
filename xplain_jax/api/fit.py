"""The own-model API's fitting half: featurize a dataset, fit an explainer on its arrays.

``xplain_jax.api`` re-exports every public name; see its docstring for a complete example.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from xplain_jax.api import guards
from xplain_jax import data as data_lib
from xplain_jax.infra import compile_cache, parallel
from xplain_jax import models
from xplain_jax.spec import config_base
from xplain_jax.spec import stages as stages_lib
from xplain_jax.errors import ConfigError
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import featurizers
from xplain_jax.train import start as start_lib
from xplain_jax.train import variants as variants_lib

Explainer = explainer_lib.Explainer
# Per case, (prior form, α > 0, β): the paper's, as the pipeline's configs have them.
CASES = {case: (d["prior_kind"], d["positive"], d["beta"])
         for case, d in config_base.CASE_EXPLAINER.items()}
FEATURE_KEYS = featurizers.FEATURE_KEYS
# A pipeline variant's settings for the API (the variant table on the default explainer block).
variant_settings = variants_lib.default_settings
# (largest H·W of the map, depth, width) of the default weight network g: a small map gets a
# small network (the first row that fits is used; larger maps get the last).
WEIGHT_NET_SIZES = ((256, 10, 32), (None, 18, 32))


class Features(dict):
  """``featurize_dataset``'s arrays (a plain dict of them) that remember their featurizer
  (``.featurizer``), so that ``evaluate`` can delete filters and score counterfactuals."""

  featurizer = None


def featurize_dataset(featurize: Callable, images, *, batch_size: int = 64) -> Features:
  """Runs a featurizer (``xplain_jax.train.featurizers``) over images, batch by batch.

  Args:
    featurize: ``images [B,S,S,3] -> {"feat", "y", "y_i", "w"}``.
    images: [N,S,S,3] array (any array-like with ``len`` and slicing); NaN or Inf pixels are
      refused (a jitted model would turn them into finite features silently).
    batch_size: images per call (the last batch may be smaller).

  Returns:
    ``Features``: host numpy arrays ``{"feat": [N,H,W,C], "y": [N], "y_i": [N,n], "w": [N,n]}``
    (plus the featurizer's extra keys, e.g. ``"x"``).
  """
  compile_cache.enable()
  if images is None or len(images) == 0:
    raise ConfigError("featurize_dataset got no images; pass an array [N,S,S,3] with N > 0.")
  if int(batch_size) < 1:
    raise ConfigError(f"batch_size={batch_size}; use at least 1.")
  fn = jax.jit(featurize)
  parts = []
  for i in range(0, len(images), batch_size):
    batch = np.asarray(images[i:i + batch_size])
    guards.check_input_batch(batch, i)
    parts.append(jax.device_get(fn(batch)))
  out = Features({k: np.concatenate([np.asarray(p[k], np.float32) for p in parts])
                  for k in parts[0]})
  out.featurizer = featurize
  return guards.check_features(out)


def default_weight_net(feat_shape: Sequence[int]) -> tuple[int, int]:
  """``(depth, width)`` of the default g for a map [N,H,W,C] (``WEIGHT_NET_SIZES``)."""
  cells = int(feat_shape[1]) * int(feat_shape[2])
  for limit, depth, width in WEIGHT_NET_SIZES:
    if limit is None or cells <= limit:
      return depth, width
  raise AssertionError("WEIGHT_NET_SIZES must end with a row without limit")


def fit_explainer(features: Mapping[str, np.ndarray], *, case: str = "shared_feature",
                  beta: float | None = None, prior_kind: str | None = None,
                  positive: bool | None = None, depth: int | None = None,
                  width: int | None = None, stem: str = "paper", epochs: int = 50,
                  batch_size: int = 64, optimizer: str = "adam", learning_rate: float = 1e-3,
                  schedule: str = "constant", grad_clip: float = 0.0,
                  weight_decay: float = 0.0, alpha_scale: float | str = "auto",
                  seed: int = 0, workdir: str | None = None, name: str = "explainer",
                  log_every: int = 100, variant: str | None = None,
                  start: str | None = None, consistency_weight: float | None = None,
                  scaled_bias: bool | None = None, coords: bool = False,
                  ridge: bool = True) -> Explainer:
  """Fits ``ŷ = Σ α_i y_i + b`` to featurized arrays by distillation with the prior loss.

  Args:
    features: ``{"feat": [N,H,W,C], "y": [N], "y_i": [N,n], "w": [N,n]}`` (host arrays,
      e.g. from ``featurize_dataset``).
    case: ``"filter"`` (Case 1: cross-entropy prior, softplus α, β = 10 by default) or
      ``"shared_feature"`` (Case 2: MSE prior, signed α, β = 0.2), as in the paper.
    beta: β of λ(t) = β/√t; 0 trains the paper's baseline.
    prior_kind, positive: override the case's prior form and α's sign constraint.
    depth, width, stem: the ResNet weight network g (``models.get_weight_net``); depth and
      width default to a size fitted to the map (``default_weight_net``: ResNet-10 of width 32
      for maps of at most 16×16 cells, ResNet-18 above); stem "paper" (7x7/2) or "small"
      (3x3/1).
    epochs, batch_size, optimizer, learning_rate, schedule, grad_clip, weight_decay: training.
    alpha_scale: ``"auto"`` scales g's output so that Σ α_i y_i starts with y's spread (Case-1
      filter sums can be in the hundreds, Case-2 logits of a fresh model vary by 0.01); a
      finite number > 0 fixes it (1.0: none, the paper's form and the pipeline's). The prior
      losses and the entropy do not depend on this scale.
    seed: the key of g's initialisation (b starts at mean(y) − mean(Σ α⁰_i y_i), so ŷ starts
      centred on y).
    workdir: where checkpoints, logs and the trained explainer go, in ``workdir/name``; a
      rerun of the same fit (same arrays and settings) resumes it, or loads it when finished;
      a different fit there is refused (pass another workdir or name). None: nothing on disk.
    name: the stage name used for logs and checkpoints.
    log_every: steps between console log lines.
    variant: one of the pipeline's explainer variants (``stages.VARIANTS``: ``"baseline"``,
      ``"prior"``, ``"ls_start"``, ``"faithful"``), taking that variant's settings (β, start,
      consistency weight, scaled bias; ``faithful`` also its signed α and MSE prior form) as
      the pipeline does with its default config; the arguments below, when given, override
      them. None: the ``"prior"`` variant.
    start: ``"paper"`` (g's own start), ``"least_squares"`` (α = α_ls + g(feat) with g's
      last layer at 0 and b from b_ls, the ridge-regularised fit of y on (y_i, 1), α ≥ 0 with
      positive α) or ``"target"`` (each concept's own fit of ``features["t"]``, b at
      ``features["y0"]`` when given, else the intercept); ``train.start``. Additions to the
      paper.
    consistency_weight: weight of the consistency term Σ_k (α_k y_k − t_k)², pulling the
      contributions toward the model's own effects ``features["t"]`` [N,n] (e.g. a Case-1
      featurizer built with ``target="deletion"``); 0 (the paper) needs no ``"t"``. An addition
      to the paper.
    scaled_bias: b = b₀ + std(y)·b_raw, so b moves at y's scale (``train.start.bias_variables``);
      False: the paper's plain scalar.
    coords: append two coordinate channels to g's input (``models.WeightNet.coords``).
    ridge: the ``"least_squares"`` start is ridge-regularised (False: the plain fit, which can
      start at large cancelling contributions; docs/own_model.md).

  Returns:
    An ``Explainer`` with ``alpha``, ``bias``, ``contributions`` (ŷ is their sum plus the
    bias) and ``explain``.
  """
  compile_cache.enable()
  if case not in CASES:
    raise ConfigError(f"case={case!r}; use 'filter' (Case 1) or 'shared_feature' (Case 2).")
  default_kind, default_positive, default_beta = CASES[case]
  chosen = variant_settings(variant or "prior", beta=default_beta)
  beta = chosen.beta if beta is None else beta    # checked by check_settings below
  start = chosen.start if start is None else start
  consistency_weight = (chosen.consistency_weight if consistency_weight is None
                        else consistency_weight)
  scaled_bias = chosen.scaled_bias if scaled_bias is None else bool(scaled_bias)
  if start not in start_lib.STARTS:
    raise ConfigError(f"start={start!r}; use one of {list(start_lib.STARTS)}.")
  if not isinstance(consistency_weight, (int, float)) or not np.isfinite(
      consistency_weight) or consistency_weight < 0:
    raise ConfigError(f"consistency_weight={consistency_weight}; use a finite weight >= 0 "
                      "(0: the paper's loss).")
  wants_t = consistency_weight > 0 or start == "target"
  if wants_t and (not isinstance(features, Mapping) or "t" not in features
                  or np.shape(features["t"]) != np.shape(features["y_i"])
                  or not np.all(np.isfinite(np.asarray(features["t"], float)))):
    why = f"variant={variant!r}" if variant else (
        "start='target'" if start == "target" else "consistency_weight > 0")
    raise ConfigError(f"{why} needs finite features['t'] [N,n], the model's own per-concept "
                      "effects, beside y_i: featurize with a consistency target (e.g. "
                      "featurizers.filter_featurizer(..., target='deletion')).")
  if variant is not None:   # the variant's own sign and prior form where it sets them
    default_kind = chosen.prior_kind if not stages_lib.is_field(
        stages_lib.VARIANTS[variant].prior_kind) else default_kind
    default_positive = chosen.positive if not stages_lib.is_field(
        stages_lib.VARIANTS[variant].positive) else default_positive
  prior_kind = default_kind if prior_kind is None else prior_kind
  positive = default_positive if positive is None else bool(positive)
  alpha_scale = guards.check_alpha_scale(alpha_scale)
  feats = guards.check_features(features)
  n_images = len(feats["y"])
  guards.check_settings(feats, prior_kind=prior_kind, positive=positive, beta=beta,
                        batch_size=batch_size, epochs=epochs, case=case,
                        learning_rate=learning_rate, grad_clip=grad_clip,
                        weight_decay=weight_decay, seed=seed, log_every=log_every,
                        optimizer=optimizer, schedule=schedule)
  beta = float(beta)
  auto_depth, auto_width = default_weight_net(feats["feat"].shape)
  net = dict(depth=int(depth or auto_depth), width=int(width or auto_width), stem=stem,
             positive=positive and start == "paper", num_outputs=int(feats["y_i"].shape[1]),
             **({"coords": True} if coords else {}))
  ident = None
  if workdir is not None:
    settings = dict(net, case=case, beta=beta, prior_kind=prior_kind, epochs=epochs,
                    batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate,
                    schedule=schedule, grad_clip=grad_clip, weight_decay=weight_decay,
                    alpha_scale=alpha_scale, seed=seed,
                    **({"start": start} if start != "paper" else {}),
                    **({"consistency_weight": float(consistency_weight)}
                       if consistency_weight else {}),
                    **({"scaled_bias": True} if scaled_bias else {}),
                    **({"ridge": False} if not ridge and start == "least_squares" else {}))
    ident = guards.identity(feats, settings)
    done = guards.check_fit_workdir(workdir, name, ident)
    if done is not None:
      return done
    guards.record_identity(workdir, name, ident, net)
  g = models.get_weight_net(net["depth"], num_outputs=net["num_outputs"],
                            positive=net["positive"], width=net["width"], stem=stem,
                            coords=bool(coords))
  rng = jax.random.PRNGKey(seed)
  idx = np.arange(min(256, n_images))  # Σ α⁰_i y_i on a sample
  initial = explainer_lib.initial_sum(g, feats["feat"][idx], feats["y_i"][idx],
                                      jax.random.fold_in(rng, 0))
  if alpha_scale == "auto":
    alpha_scale = explainer_lib.auto_alpha_scale(initial, feats["y"])
  init_bias = float(np.mean(feats["y"]) - np.mean(initial) * float(alpha_scale))
  begin = bias = None
  if start != "paper":  # α = α₀ + g, g's last layer at 0
    t = np.asarray(features["t"], np.float32) if start == "target" else None
    y0 = features.get("y0") if start == "target" and hasattr(features, "get") else None
    alpha0, init_bias = start_lib.begin(start, feats["y_i"], feats["y"], positive=positive,
                                        t=t, empty_score=None if y0 is None else np.asarray(y0),
                                        ridge=bool(ridge))
    begin = start_lib.start_variables(alpha0, positive=positive)
    alpha_scale = 1.0 if positive else alpha_scale
  if scaled_bias:
    bias = start_lib.bias_variables(init_bias, feats["y"])
  keys = FEATURE_KEYS + (("t",) if consistency_weight > 0 else ())
  if consistency_weight > 0:
    feats["t"] = np.asarray(features["t"], np.float32)
  loader = data_lib.Loader(data_lib.ArraySource({k: feats[k] for k in keys}),
                           min(batch_size, n_images), seed=seed, shuffle=True,
                           drop_remainder=True)
  opt = ml_collections.ConfigDict(dict(
      name=optimizer, learning_rate=float(learning_rate), schedule=schedule,
      grad_clip=float(grad_clip), weight_decay=float(weight_decay), warmup_steps=0,
      momentum=0.9))
  explainer = explainer_lib.fit_weight_net(
      g, loader=loader, feat_shape=feats["feat"].shape, beta=beta, prior_kind=prior_kind,
      num_epochs=epochs, optimizer_config=opt, rng=rng, stage=name, workdir=workdir,
      mesh=parallel.make_mesh(1), alpha_scale=float(alpha_scale), checkpoint_every=10 ** 9,
      log_every=log_every, case=case, init_bias=init_bias, fingerprint=ident,
      consistency_weight=float(consistency_weight), start=begin, bias=bias)
  if workdir is not None:
    guards.save_explainer(workdir, name, explainer)
  return explainer
