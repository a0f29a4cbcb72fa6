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
* Case 1 ``"shapley"``: sampled Shapley values of the filters, M·(n + 1) passes
  (``fidelity.filter_shapley_effects``, M = ``explainer.shapley_permutations``);
* Case 2 ``"gradient_x_input"``: gradient × input in the concepts' coordinates. With
  ``J = ∂y_i/∂h`` [n,D] and ``∇y = ∂y/∂h`` [D] at the shared feature h, ``c`` is the
  minimum-norm least-squares solution of ``Σ_k c_k ∂y_k/∂h ≈ ∂y/∂h`` (``c = pinv(Jᵀ) ∇y``:
  ∇y projected onto the span of the concepts' gradients, in their basis) and
  ``t_k = c_k · y_k``. So c_k is ∂y/∂y_k as if y depended on h only through the concepts, and
  t_k is the gradient × input of y with respect to y_k. With orthogonal concept gradients
  ``c = w``, the paper's prior (t = w ⊙ y_i). For linear heads whose ∇y lies in that span,
  ``y = Σ_k t_k + const`` exactly, so an explainer with α = c and a constant b reproduces y
  with these contributions.

* Case 2 ``"rendered"`` (synthetic data only): ``t_k = Δ_k = y(I) − y(I re-rendered with
  concept k toggled)``, the same effect the fidelity evaluator scores on the test images
  (``fidelity.rendering_effects``). It needs the scene behind the image, not only the image, so
  ``make_featurizer`` leaves it out and ``featurize_split`` adds it from the source while it
  writes the training cache (``rendered_targets``: n renders and n performer passes per
  training image); the test cache does not carry it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.train import featurizers
from xplain_jax import fidelity
from xplain_jax.infra import parallel
from xplain_jax.data import feature_cache, scenes
from xplain_jax.data.input_pipeline import Loader
from xplain_jax.errors import ConfigError, DataError

PASSTHROUGH_KEYS = ("labels", "gt_contrib", "part_mask")

# Consistency targets each case offers ("" = none).
TARGETS = featurizers.CONSISTENCY_TARGETS
# Of those, the targets added from the data source while the cache is written.
SOURCE_TARGETS = featurizers.SOURCE_TARGETS


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
                    target: str = "", shapley_permutations: int = 64) -> Callable:
  """The featurizer of ``spec.case``.

  Args:
    perf_module: a performer (``models.get_performer``) with ``head`` and ``from_fc6``.
    spec: the experiment's ``xplain_jax.data.Spec``.
    prior_method: Case 2 route, "jvp" or "jacrev" (``priors.shared_feature_prior``).
    clip_prior: Case 1: clip ``w_i`` at 0 (Experiment 1).
    feature: the performer intermediate fed to the weight network g (its input map).
    target: the consistency targets to add as ``"t"`` (``TARGETS`` of the case; Case 1 also
      adds ``"y0"``, y on the zeroed map, ``featurizers.filter_targets``); "" adds none, nor
      does a target of ``featurizers.SOURCE_TARGETS`` (see ``rendered_targets``).
    shapley_permutations: sampled orders of the Case-1 ``"shapley"`` target.

  Returns:
    ``featurize(perf_variables, images [B,S,S,3]) -> {"feat": [B,H,W,C], "y": [B],
    "y_i": [B,n], "w": [B,n]}`` (+ ``"t": [B,n]`` with ``target``), all float32 and free of
    gradients into the performer.
  """
  if target and target not in TARGETS.get(spec.case, ()):
    raise ConfigError(f"explainer.consistency_target={target!r} is not offered for case "
                      f"{spec.case!r}; use one of {list(TARGETS.get(spec.case, ()))}.")
  if target in SOURCE_TARGETS:
    target = ""   # added from the source by featurize_split (rendered_targets)
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
      return featurizers.filter_featurizer(
          lambda _: inter["top_conv"], head, clip_prior=clip_prior,
          weight_net_input=lambda _: inter[feature], target=target,
          shapley_permutations=shapley_permutations)(images)

  else:
    raise ConfigError(f"unknown explainer case {spec.case!r}; use 'shared_feature' or 'filter'.")
  return featurize


def rendered_targets(perf_module, perf_variables, spec, source, renderer_names, *,
                     batch_size: int) -> Callable[[np.ndarray, dict], dict]:
  """Case 2 ``"rendered"`` consistency targets, from the source's counterfactual renders.

  Args:
    perf_module, perf_variables: the trained performer.
    spec: the experiment's ``Spec`` (Case 2: its ``concept_names`` name the y_i columns).
    source: the featurized split; it must redraw its images (``counterfactuals(indices,
      concept)``, e.g. ``data.scenes.SceneSource``).
    renderer_names: the names of the concepts ``counterfactuals`` indexes
      (``data.renderer_concept_names``).
    batch_size: images per performer call.

  Returns:
    ``targets(indices [b], out) -> {"t": [b,n] float32}`` with ``t_k = out["y"] − y(image with
    concept k toggled)``, for ``featurize_split``'s ``source_targets``.

  Raises:
    ConfigError: the source cannot redraw its images, or a concept it cannot toggle.
  """
  cf = getattr(source, "counterfactuals", None)
  if spec.case != "shared_feature" or cf is None:
    raise ConfigError("explainer.consistency_target='rendered' needs a Case 2 dataset that "
                      "redraws its images with one concept toggled (synthetic_attributes); "
                      "use consistency_target='gradient_x_input'.")
  try:
    columns = fidelity.renderer_columns(spec.concept_names, renderer_names)
  except DataError as e:
    raise ConfigError(f"explainer.consistency_target='rendered': {e}") from None
  t = spec.target_index
  y_fn = jax.jit(lambda im: perf_module.apply(perf_variables, im, train=False)[0][:, t])

  def targets(indices: np.ndarray, out: dict) -> dict:
    # each image's scene drawn once for all its toggles (data.scenes.toggled_once)
    toggled = scenes.toggled_once(source, indices, columns)
    return {"t": fidelity.rendering_effects(y_fn, toggled, indices, len(columns), y=out["y"],
                                            batch_size=batch_size, columns=columns)}
  return targets


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
                       source, also: tuple[str, ...] = ()) -> bool:
  """Whether the cache holds every key ``featurize`` gives and the keys ``also`` (a cache
  written before the explainer asked for its consistency targets ``"t"`` lacks them and is
  recomputed)."""
  if not len(source):
    return True
  image = source.get_batch(np.arange(1))["image"]
  shapes = jax.eval_shape(featurize, perf_variables, jax.ShapeDtypeStruct(np.shape(image),
                                                                          np.float32))
  return (set(shapes) | set(also)) <= set(cached.columns)


def featurize_split(featurize: Callable, perf_variables, source, *, directory: str,
                    batch_size: int, mesh, shard_size: int = 1024,
                    identity: str = "",
                    source_targets: Callable[[np.ndarray, dict], dict] | None = None
                    ) -> feature_cache.ShardedSource:
  """Featurizes ``source`` once into ``directory`` (or maps an existing complete cache).

  Args:
    identity: what ``featurize`` computes (in a run: ``stages.stage_fingerprint(config,
      "features")``); a cache recorded under another identity (or none) is recomputed.
    source_targets: optional ``(indices [b], featurized rows) -> {"t": [b,n]}`` computed on
      the host from the source (``rendered_targets``), added to each batch's rows.

  At most ``shard_size`` rows (plus one batch) are held in memory while writing.
  """
  if source_targets is not None and jax.process_count() > 1:
    raise ConfigError("consistency targets from the source (explainer.consistency_target="
                      "'rendered') are written by one process; run on one host.")
  cached = feature_cache.load_cache(directory, identity)
  also = ("t",) if source_targets is not None else ()
  if (cached is not None and len(cached) == len(source)
      and _gives_no_new_keys(cached, featurize, perf_variables, source, also)):
    return cached
  writer = feature_cache.CacheWriter(directory, shard_size=shard_size, identity=identity)
  start = 0
  for out in featurize_source(featurize, perf_variables, source, batch_size=batch_size, mesh=mesh):
    rows = len(out["y"])
    if source_targets is not None:
      out.update(source_targets(np.arange(start, start + rows), out))
    start += rows
    writer.add(out)
  writer.close()
  parallel.sync_processes("featurize_split:" + directory)  # process 0 wrote; all read
  result = feature_cache.load_cache(directory, identity)
  assert result is not None
  return result
