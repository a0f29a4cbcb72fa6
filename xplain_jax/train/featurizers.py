"""Turn any model's callables into a featurizer: what the explainer learns from.

A featurizer maps a batch of images to the four arrays the explainer needs,

    {"feat": [B,H,W,C]  the map the weight network g reads,
     "y":    [B]        the performer's score to explain,
     "y_i":  [B,n]      the concept values,
     "w":    [B,n]      the prior weights},

y, y_i and w in float32, feat in the model's dtype (bfloat16 stays bfloat16), all free of
gradients into the model. Two constructors, one per case of the method
(docs/method.md section 3); the model reaches them only through callables, so any Flax (or plain
JAX) model works, and the built-in performers use the same path (``train.features``).

Example (Case 2, a model with a shared feature ``h`` and a logit head)::

    def features(images):
      logits, inter = model.apply(variables, images, train=False)
      return inter["top_conv"], inter["fc6"]
    head = lambda h: model.apply(variables, h, method=model.from_fc6)
    featurize = featurizers.shared_feature_featurizer(features, head, target=3,
                                                      concepts=[0, 1, 2, 4])
    arrays = featurize(images)
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.core import concepts as concepts_lib
from xplain_jax import fidelity
from xplain_jax.core import priors
from xplain_jax.errors import ConfigError

Featurizer = Callable[[jax.Array], dict]
# What every featurizer gives (module docstring); the consistency targets add "t" (and "y0").
FEATURE_KEYS = ("feat", "y", "y_i", "w")
# The consistency targets t each case offers (``explainer.consistency_target``; computed by the
# built-in performers' featurizer, ``train.features.make_featurizer``, or, for those in
# ``SOURCE_TARGETS``, from the data source while the feature cache is written).
CONSISTENCY_TARGETS = {"filter": ("deletion", "gradient_x_input", "shapley"),
                       "shared_feature": ("gradient_x_input", "rendered")}
# Targets that need the source's counterfactual renders, not only the image
# (``train.features.rendered_targets``): written into the feature cache only.
SOURCE_TARGETS = ("rendered",)


def filter_targets(head: Callable, x, target: str, *, shapley_permutations: int = 64) -> dict:
  """The consistency targets of a Case-1 map x [B,H,W,n]: ``{"t": [B,n], "y0": [B]}``, the
  performer's own per-filter effects and y(∅), its score on the zeroed map (where the
  ``"target"`` start puts b). ``target``: ``"deletion"`` (Δ_k, n + 1 head passes),
  ``"gradient_x_input"`` (one backward pass) or ``"shapley"`` (sampled Shapley values,
  ``shapley_permutations · (n + 1)`` passes); ``fidelity`` has each."""
  if target not in CONSISTENCY_TARGETS["filter"]:
    raise ConfigError(f"consistency target {target!r}; Case 1 offers "
                      f"{list(CONSISTENCY_TARGETS['filter'])}.")
  x = jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
  if target == "deletion":
    t = fidelity.filter_deletion_effects(head, x)
  elif target == "shapley":
    t = fidelity.filter_shapley_effects(head, x, num_permutations=shapley_permutations)
  else:
    t = fidelity.gradient_x_input(head, x)
  y0 = _scalar_score(head(jnp.zeros_like(x)), "head(x)", x.shape[0])
  return {"t": jax.lax.stop_gradient(t), "y0": jax.lax.stop_gradient(y0)}


def filter_featurizer(features: Callable, head: Callable, *, clip_prior: bool = True,
                      weight_net_input: Callable | None = None, target: str = "",
                      shapley_permutations: int = 64) -> Featurizer:
  """Case 1: concepts are the filters of a feature map x that the head reads.

  Args:
    features: ``images [B,S,S,3] -> x [B,H,W,n]``, the (interpretable) feature map.
    head: ``x [B,H,W,n] -> y [B]``, the part of the model above x, down to the score explained.
    clip_prior: clip ``w_i`` at 0 (the paper's Experiment 1; needed by the cross-entropy prior).
    weight_net_input: ``images -> [B,H',W',C]``, the map g reads; default x itself.
    target: "" or a consistency target (``filter_targets``): adds ``"t"`` and ``"y0"``, which
      the ``faithful`` variant trains on.
    shapley_permutations: the ``"shapley"`` target's sampled orders.

  Returns:
    ``featurize(images) -> {"feat", "y", "y_i", "w"}``: y_i = Σ_hw x, w = Σ_hw ∂y/∂x (plus
    ``"x"``, the filter map, when g reads another map). Its attributes ``case``, ``head``,
    ``filter_map`` (= ``features``) and ``score`` (images -> y [B]) let ``api.evaluate`` delete
    filters and ``api.write_report`` find each filter's top-activating patches.
  """

  def featurize(images):
    x = jnp.asarray(features(images), jnp.float32)
    if x.ndim != 4:
      raise ConfigError(f"features(images) returned shape {x.shape}; a Case-1 featurizer needs "
                        "the filter map [B,H,W,n].")
    y = _scalar_score(head(x), "head(x)", x.shape[0])
    w = priors.filter_prior(lambda v: _scalar_score(head(v), "head(x)", v.shape[0]), x,
                            clip=clip_prior)
    feat = x if weight_net_input is None else weight_net_input(images)
    out = _outputs(feat, y, concepts_lib.filter_concepts(x), w)
    if weight_net_input is not None:  # the filter map itself, for filter deletion and patches
      out["x"] = jax.lax.stop_gradient(x)
    if target:
      out.update(filter_targets(head, x, target, shapley_permutations=shapley_permutations))
    return out

  featurize.case, featurize.head, featurize.filter_map = "filter", head, features
  featurize.score = lambda images: _scalar_score(head(features(images)), "head(x)",
                                                 np.shape(images)[0])
  return featurize


def shared_feature_featurizer(features: Callable, head: Callable, *, target: int,
                              concepts: Sequence[int], method: str = "jvp") -> Featurizer:
  """Case 2: target and concepts are outputs of one head on a shared feature h.

  Args:
    features: ``images -> (map [B,H,W,C] for g, h [B,D])``.
    head: ``h [B,D] -> logits [B,K]``.
    target: index of the explained logit in ``K``.
    concepts: indices of the concept logits (n of them, without ``target``).
    method: ``"jvp"`` or ``"jacrev"`` (``priors.shared_feature_prior``).

  Returns:
    ``featurize(images) -> {"feat", "y", "y_i", "w"}`` with
    ``w_i = (∂y/∂h·∂y_i/∂h)/‖∂y_i/∂h‖²``; its attribute ``score`` (images -> y [B]) lets
    ``api.evaluate`` score counterfactual images.
  """
  idx = np.asarray(list(concepts), np.int32)
  if idx.ndim != 1 or idx.size == 0:
    raise ConfigError("concepts must be a non-empty list of logit indices.")
  if int(target) in set(idx.tolist()):
    raise ConfigError(f"target index {target} is also listed in concepts; a concept cannot "
                      "explain itself, drop it from concepts.")
  if len(set(idx.tolist())) != idx.size:
    raise ConfigError(f"concepts {idx.tolist()} repeat an index; list each concept once.")

  def featurize(images):
    feat, h = features(images)
    h = jnp.asarray(h, jnp.float32)
    if h.ndim != 2:
      raise ConfigError(f"features(images) returned h of shape {h.shape}; a Case-2 featurizer "
                        "needs the shared feature [B,D] as its second output.")
    logits = jnp.asarray(head(h), jnp.float32)
    k = logits.shape[-1]
    if logits.ndim != 2 or int(target) >= k or int(idx.max()) >= k or int(idx.min()) < 0:
      raise ConfigError(f"head(h) returned shape {logits.shape}; target {target} and concepts "
                        f"{idx.tolist()} must index its last axis.")
    head32 = lambda v: jnp.asarray(head(v), jnp.float32)
    w = priors.shared_feature_prior(lambda v: head32(v)[:, target], lambda v: head32(v)[:, idx],
                                    h, method=method)
    return _outputs(feat, logits[:, target], logits[:, idx], w)

  featurize.case, featurize.head, featurize.filter_map = "shared_feature", head, None
  featurize.score = lambda images: jnp.asarray(head(features(images)[1]), jnp.float32)[:, target]
  return featurize


def prior_varies(w: np.ndarray, *, rtol: float = 1e-4) -> bool:
  """Whether the prior weights differ between the images of a batch.

  A Case-2 feature taken right below a linear output layer gives every image the same w (the
  Jacobians do not depend on h), so the prior carries no per-image information; callers warn.

  Args:
    w: [B,n] prior weights of at least two images.
    rtol: differences up to ``rtol · max|w|`` (inclusive) count as equal.
  """
  w = np.asarray(w, np.float64)
  if w.shape[0] < 2:
    return True
  scale = max(float(np.max(np.abs(w))), 1e-12)
  return bool(np.max(np.abs(w - w[:1])) > rtol * scale)


def _outputs(feat, y, y_i, w) -> dict:
  out = {"feat": jnp.asarray(feat), "y": y, "y_i": y_i, "w": w}
  out.update({k: jnp.asarray(out[k], jnp.float32) for k in ("y", "y_i", "w")})
  return jax.tree.map(jax.lax.stop_gradient, out)


def _scalar_score(y, what: str, batch: int):
  y = jnp.asarray(y, jnp.float32)
  if y.shape == (batch, 1):
    y = y[:, 0]
  if y.shape != (batch,):
    raise ConfigError(f"{what} returned shape {y.shape}; it must return the explained score "
                      f"[B] = ({batch},), e.g. logits[:, target].")
  return y
