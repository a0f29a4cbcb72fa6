"""The features stage: what the frozen performer gives the explainer (feature map, y, concepts
y_i, priors w), computed once per image into the feature cache.

``make_featurizer`` returns a pure function ``featurize(perf_variables, images) -> dict`` for
the experiment's case; it is jitted inside the explainer step (uncached mode) or run once per
image by ``featurize_split`` to fill the feature cache (format: ``data/feature_cache.py``). The
cache records the stage's identity (``stages.stage_fingerprint(config, "features")``: the
performer's fields and the featurizer's); a cache written under another one is recomputed.

With ``target`` it also gives ``"t"`` [B,n], the performer's own per-concept effects that the
explainer's consistency term pulls the contributions α_k y_k toward (an addition to the paper,
``explainer.consistency_target``):

* Case 1 ``"deletion"``: ``t_k = Δ_k = y(x) − y(x with filter k zeroed)``, n passes of the head
  (``fidelity.filter_deletion_effects``);
* Case 1 ``"gradient_x_input"``: ``t_k = Σ_hw x_k ∂y/∂x_k``, one backward pass
  (``fidelity.gradient_x_input``); equals Δ_k for a head linear in x;
* Case 2 ``"gradient_x_input"``: gradient × input in the concepts' coordinates. With
  ``J = ∂y_i/∂h`` [n,D] and ``∇y = ∂y/∂h`` [D] at the shared feature h, ``c`` is the
  minimum-norm least-squares solution of ``Σ_k c_k ∂y_k/∂h ≈ ∂y/∂h`` (``c = pinv(Jᵀ) ∇y``:
  ∇y projected onto the span of the concepts' gradients, in their basis) and
  ``t_k = c_k · y_k``. So c_k is ∂y/∂y_k as if y depended on h only through the concepts, and
  t_k is the gradient × input of y with respect to y_k. With orthogonal concept gradients
  ``c = w``, the paper's prior (t = w ⊙ y_i). For linear heads whose ∇y lies in that span,
  ``y = Σ_k t_k + const`` exactly, so an explainer with α = c and a constant b reproduces y
  with these contributions.

Case 2 on synthetic data could also take the rendered Δ_k (``fidelity.effects
.rendering_effects``); it is not offered as a target: it needs the scene source's latent
attributes rather than the image, and 2n renders plus n performer passes per training image.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax import featurizers, fidelity, parallel
from xplain_jax.data import feature_cache
from xplain_jax.data.input_pipeline import Loader
from xplain_jax.errors import ConfigError

PASSTHROUGH_KEYS = ("labels", "gt_contrib", "part_mask")

# Consistency targets each case offers ("" = none).
TARGETS = featurizers.CONSISTENCY_TARGETS


def concept_gradient_x_input(target_fn: Callable, concepts_fn: Callable,
                             h: jax.Array) -> jax.Array:
  """Case 2 gradient × input in the concepts' coordinates (see the module docstring).

  Args:
    target_fn: ``h [B,D] -> y [B]``.
    concepts_fn: ``h [B,D] -> y_i [B,n]``.
    h: [B,D] float32, the shared feature.

  Returns:
    ``t`` [B,n] float32 with ``t_k = c_k y_k``, ``c = pinv(Jᵀ) ∂y/∂h`` per image.
  """
  grad_y = jax.grad(lambda v: jnp.sum(target_fn(v)))(h)                        # [B,D]
  jac = jax.vmap(jax.jacrev(lambda v: concepts_fn(v[None])[0]))(h)             # [B,n,D]
  coeff = jnp.einsum("bnd,bd->bn", jnp.linalg.pinv(jnp.swapaxes(jac, 1, 2)), grad_y)
  return (coeff * concepts_fn(h)).astype(jnp.float32)


def make_featurizer(perf_module, spec, *, prior_method: str = "jvp",
                    clip_prior: bool = False, feature: str = "top_conv",
                    target: str = "") -> Callable:
  """The featurizer of ``spec.case``.

  Args:
    perf_module: a performer (``models.get_performer``) with ``head`` and ``from_fc6``.
    spec: the experiment's ``xplain_jax.data.Spec``.
    prior_method: Case 2 route, "jvp" or "jacrev" (``priors.shared_feature_prior``).
    clip_prior: Case 1: clip ``w_i`` at 0 (Experiment 1).
    feature: the performer intermediate fed to the weight network g (its input map).
    target: the consistency targets to add as ``"t"`` (``TARGETS`` of the case); "" adds none.

  Returns:
    ``featurize(perf_variables, images [B,S,S,3]) -> {"feat": [B,H,W,C], "y": [B],
    "y_i": [B,n], "w": [B,n]}`` (+ ``"t": [B,n]`` with ``target``), all float32 and free of
    gradients into the performer.
  """
  if target and target not in TARGETS.get(spec.case, ()):
    raise ConfigError(f"explainer.consistency_target={target!r} is not offered for case "
                      f"{spec.case!r}; use one of {list(TARGETS.get(spec.case, ()))}.")
  t = spec.target_index
  if spec.case == "shared_feature":

    def featurize(variables, images):
      def features(im):
        _, inter = perf_module.apply(variables, im, train=False)
        return inter[feature], inter["fc6"]
      head = lambda h: perf_module.apply(variables, h, method=perf_module.from_fc6)
      out = featurizers.shared_feature_featurizer(
          features, head, target=t, concepts=spec.concept_indices, method=prior_method)(images)
      if target:
        h = jnp.asarray(features(images)[1], jnp.float32)
        head32 = lambda v: jnp.asarray(head(v), jnp.float32)
        idx = jnp.asarray(spec.concept_indices, jnp.int32)
        out["t"] = jax.lax.stop_gradient(concept_gradient_x_input(
            lambda v: head32(v)[:, t], lambda v: head32(v)[:, idx], h))
      return out

  elif spec.case == "filter":

    def featurize(variables, images):
      _, inter = perf_module.apply(variables, images, train=False)
      head = lambda x: jnp.asarray(
          perf_module.apply(variables, x, method=perf_module.head)[0][:, t], jnp.float32)
      out = featurizers.filter_featurizer(
          lambda _: inter["top_conv"], head, clip_prior=clip_prior,
          weight_net_input=lambda _: inter[feature])(images)
      if target:
        x = jnp.asarray(inter["top_conv"], jnp.float32)
        out["t"] = (fidelity.filter_deletion_effects(head, x) if target == "deletion"
                    else fidelity.gradient_x_input(head, x))
        out["t"] = jax.lax.stop_gradient(out["t"])
      return out

  else:
    raise ConfigError(f"unknown explainer case {spec.case!r}; use 'shared_feature' or 'filter'.")
  return featurize


# --- the feature cache -------------------------------------------------------------------------


def featurize_source(featurize: Callable, perf_variables, source, *, batch_size: int, mesh,
                     keep: tuple[str, ...] = PASSTHROUGH_KEYS, extra: Callable | None = None):
  """Yields host dicts of featurized batches of ``source`` in order, padding rows removed.

  Args:
    featurize: ``(perf_variables, images) -> dict`` (``make_featurizer``).
    source: random-access source with "image" (and optionally the ``keep`` keys).
    batch_size: global batch size, divisible by the device count.
    keep: source keys copied through to the output.
    extra: optional ``(perf_variables, images) -> dict`` of more per-image outputs.
  """
  parallel.check_batch_size(batch_size, mesh, "eval batch size")
  loader = Loader(source, batch_size, shuffle=False, drop_remainder=False,
                  process_index=jax.process_index(), process_count=jax.process_count())
  rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
  fn = (lambda v, x: {**featurize(v, x), **extra(v, x)}) if extra else featurize
  fn = jax.jit(fn, in_shardings=(rep, dat), out_shardings=dat)
  for batch in loader.epoch(0):
    images = parallel.to_global(batch["image"], mesh)
    out = parallel.to_host(fn(perf_variables, images))
    mask = parallel.to_host(parallel.to_global(batch["mask"], mesh))
    out = {k: np.asarray(v)[mask] for k, v in out.items()}
    for k in keep:
      if k in batch:
        out[k] = parallel.to_host(parallel.to_global(batch[k], mesh))[mask]
    yield out


def _gives_no_new_keys(cached: feature_cache.ShardedSource, featurize: Callable, perf_variables,
                       source) -> bool:
  """Whether the cache holds every key ``featurize`` gives (a cache written before the
  explainer asked for its consistency targets ``"t"`` lacks them and is recomputed)."""
  if not len(source):
    return True
  image = source.get_batch(np.arange(1))["image"]
  shapes = jax.eval_shape(featurize, perf_variables, jax.ShapeDtypeStruct(np.shape(image),
                                                                          np.float32))
  return set(shapes) <= set(cached.columns)


def featurize_split(featurize: Callable, perf_variables, source, *, directory: str,
                    batch_size: int, mesh, shard_size: int = 1024,
                    identity: str = "") -> feature_cache.ShardedSource:
  """Featurizes ``source`` once into ``directory`` (or maps an existing complete cache).

  Args:
    identity: what ``featurize`` computes (in a run: ``stages.stage_fingerprint(config,
      "features")``); a cache recorded under another identity (or none) is recomputed.

  At most ``shard_size`` rows (plus one batch) are held in memory while writing.
  """
  cached = feature_cache.load_cache(directory, identity)
  if (cached is not None and len(cached) == len(source)
      and _gives_no_new_keys(cached, featurize, perf_variables, source)):
    return cached
  writer = feature_cache.CacheWriter(directory, shard_size=shard_size, identity=identity)
  for out in featurize_source(featurize, perf_variables, source, batch_size=batch_size, mesh=mesh):
    writer.add(out)
  writer.close()
  parallel.sync_processes("featurize_split:" + directory)  # process 0 wrote; all read
  result = feature_cache.load_cache(directory, identity)
  assert result is not None
  return result
