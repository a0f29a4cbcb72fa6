"""The "fidelity" evaluator: each explainer and its peers against the performer's own effects.

For the first ``config.evals.fidelity.num_images`` test images (0: all) it measures the performer's
effect of each concept, ``Δ_k = y(I) − y(I with concept k toggled)``:

* Case 2 (``shared_feature``) by re-rendering the image with concept k toggled
  (``source.counterfactuals``; column k of y_i is the renderer's concept named
  ``concept_names[k]``, see ``fidelity.renderer_columns``); a dataset without counterfactuals
  (CelebA) gets a note instead of the effects;
* Case 1 (``filter``, any dataset) by zeroing filter k's map in ``top_conv`` and running the
  performer's head, plus deletion curves.

Then ``fidelity.compare.explanation_fidelity`` scores every variant, the references and the
peers (least squares fitted on the training features, α = w, Case 1 gradient × input
and integrated gradients, the planted rule where known), each with its cost.

Metrics: ``fidelity`` (per variant, ``prior_minus_baseline``, ``<variant>_minus_<peer>``),
``fidelity_reference`` (references, peers, ``delta``'s cost), ``performer.concept_accuracy``
(Case 2: the performer's accuracy per concept attribute).
Arrays: ``eval/<variant>.npz`` += ``delta`` [N,n], ``interventional_rank_correlation`` [N],
``deletion_curve`` [N,J] (Case 1), ``concept_labels`` [N,n] (Case 2, true presence); rows of
test images not scored (``num_images`` < N) are NaN. ``eval/fidelity_reference.npz`` holds, for
the B scored images (the first B of the test split), ``delta`` [B,n], each row's
``<name>_contrib`` [B,n], ``<name>_interventional_rank_correlation`` [B] and (Case 1)
``<name>_deletion_curve`` [B,J] with ``deletion_counts`` [J], and each least-squares peer's
``<name>_alpha`` [n] and ``<name>_bias`` [].

The own-model API (``api.evaluate``, ``api.write_report``) scores through the same
``compare.explanation_fidelity`` and files its results in the same layout with
``add_fidelity``: there Δ comes from the user's ``effects`` [N,n], a ``counterfactual(indices, k)
-> images`` function rated by the featurizer's ``score``, or (Case 1) zeroing each filter of the
map the featurizer's ``head`` reads; without any of them the metrics get a note (``NOTE``).
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax import data, fidelity
from xplain_jax.data import scenes
from xplain_jax.fidelity import compare
from xplain_jax.fidelity import sanity as fidelity_sanity
from xplain_jax.errors import ConfigError
from xplain_jax.evaluators import common
from xplain_jax.train import state as state_lib


def _batched(fn: Callable, x, batch_size: int, *rest) -> np.ndarray:
  """``fn(x[i:j], *[r[i:j]])`` over batches of rows, concatenated (host numpy)."""
  out = [np.asarray(fn(np.asarray(x[i:i + batch_size]), *[r[i:i + batch_size] for r in rest]))
         for i in range(0, len(x), batch_size)]
  return np.concatenate(out)


def _performer_fns(ctx):
  """(jitted ``y_fn``: images -> target logit [b]; ``head_fn``: top_conv -> target logit [b])."""
  perf, v, t = ctx.perf, ctx.perf_vars, ctx.spec.target_index
  y_fn = jax.jit(lambda im: perf.apply(v, im, train=False)[0][:, t])
  head_fn = lambda x: perf.apply(v, x, method=perf.head)[0][:, t]
  return y_fn, head_fn


def _top_conv(ctx, indices: np.ndarray, batch_size: int) -> np.ndarray:
  """``top_conv`` [B,H,W,n] of the scored test images (the cached map when g reads it)."""
  if ctx.config.explainer.feature == "top_conv":
    return np.asarray(ctx.test["feat"][:len(indices)], np.float32)  # indices = 0..B-1
  perf, v = ctx.perf, ctx.perf_vars
  fn = jax.jit(lambda im: perf.apply(v, im, train=False)[1]["top_conv"])
  images = ctx.test_src.get_batch(indices)["image"]
  return _batched(fn, images, batch_size).astype(np.float32)


def _padded(a: np.ndarray, n_rows: int) -> np.ndarray:
  """``a`` [B,...] as [N,...] float32, NaN in the rows of images not scored."""
  out = np.full((n_rows,) + a.shape[1:], np.nan, np.float32)
  out[:len(a)] = a
  return out


def _explainer_seconds(ctx, num: int, batch_size: int) -> dict:
  """Variant -> measured seconds per image of one pass of g in eval mode (the explainer's
  cost), on one batch of the scored images after compiling on the same batch."""
  rows = np.asarray(ctx.test["feat"][:min(num, batch_size)], np.float32)
  out = {}
  for v, explainer in ctx.explainers.items():
    g, var = explainer.g, explainer.variables
    variables = state_lib.merge_variables(var["params"]["g"], var.get("batch_stats"))
    fn = jax.jit(lambda w, x, g=g: g.apply(w, x, train=False)[0])
    jax.block_until_ready(fn(variables, rows))
    start = time.perf_counter()
    jax.block_until_ready(fn(variables, rows))
    out[v] = (time.perf_counter() - start) / len(rows)
  return out


def evaluate(ctx: common.EvalContext, cfg) -> common.EvalOutput:
  """The metrics and arrays described in the module docstring; ``cfg`` is
  ``config.evals.fidelity``."""
  spec = ctx.spec
  n_all = len(ctx.test["y"])
  num = n_all if int(cfg.num_images) <= 0 else min(int(cfg.num_images), n_all)
  idx = np.arange(num)
  bs = ctx.batch_size
  y_i = np.asarray(ctx.test["y_i"][:num], np.float32)
  gt = ctx.test.get("gt_contrib")
  gt = None if gt is None else np.asarray(gt[:num], np.float32)
  alphas = {v: np.asarray(a[:num], np.float32) for v, a in ctx.alpha.items()}
  out = common.EvalOutput()
  variant_arrays = {v: {} for v in alphas}
  if spec.case == "shared_feature":
    labels = np.asarray(ctx.test["labels"])[:, list(spec.concept_indices)]
    out.metrics["performer"] = {"concept_accuracy": fidelity_sanity.concept_accuracy(
        ctx.test["y_i"], labels, ctx.concept_names)}
    for v in alphas:
      variant_arrays[v]["concept_labels"] = labels.astype(np.float32)
  y_fn, head_fn = _performer_fns(ctx)
  cf = getattr(ctx.test_src, "counterfactuals", None)
  case_args = {}
  if spec.case == "filter":
    case_args = dict(head_fn=head_fn, x=_top_conv(ctx, idx, bs),
                     deletion_steps=int(cfg.deletion_steps))
    out.meta["fidelity_effects"] = "filter zeroing in top_conv"
  elif cf is not None:
    images = ctx.test_src.get_batch(idx)["image"]
    y_fact = _batched(y_fn, images, bs).astype(np.float32)
    columns = fidelity.renderer_columns(
        ctx.concept_names, data.renderer_concept_names(ctx.config, ctx.concept_names))
    start = time.perf_counter()
    delta = fidelity.rendering_effects(y_fn, scenes.toggled_once(ctx.test_src, idx, columns),
                                       idx, len(columns), y=y_fact, batch_size=bs,
                                       columns=columns)
    n = len(columns)
    case_args = dict(delta=delta, delta_cost={
        "forward_passes": n, "backward_passes": 0, "explainer_passes": 0, "renders": n,
        "seconds_per_image": (time.perf_counter() - start) / num})
    out.meta["fidelity_effects"] = "re-rendering with one concept toggled"
  else:
    note = (f"dataset {ctx.config.dataset.name} cannot redraw its images with one concept "
            "toggled: no interventional effects; fidelity metrics skipped.")
    out.meta["fidelity_note"] = note
    out.metrics["fidelity"] = {"note": note}
    out.arrays = variant_arrays
    return out
  if ctx.train is None:
    out.meta["fidelity_least_squares_note"] = (
        "no training features (EvalContext.train): the least-squares peer is left out.")
  fid, ref, arrays = compare.explanation_fidelity(
      alphas, ctx.bias, y_i, np.asarray(ctx.test["y"][:num], np.float32),
      np.asarray(ctx.test["w"][:num], np.float32),
      train_y_i=None if ctx.train is None else ctx.train["y_i"],
      train_y=None if ctx.train is None else ctx.train["y"],
      key=jax.random.PRNGKey(int(cfg.seed)), sign_threshold=float(cfg.sign_threshold),
      num_resamples=int(cfg.num_resamples), ig_steps=int(cfg.ig_steps), case=spec.case,
      gt_contrib=gt, batch_size=bs, explainer_seconds=_explainer_seconds(ctx, num, bs),
      **case_args)
  out.metrics["fidelity"], out.metrics["fidelity_reference"] = fid, ref
  per_variant, reference = compare.files(arrays, alphas, y_i)
  for v, saved in per_variant.items():
    variant_arrays[v].update({k: _padded(a, n_all) for k, a in saved.items()})
  out.arrays = {**variant_arrays, "fidelity_reference": reference}
  out.meta["fidelity_num_images"] = int(num)
  return out


# --- the own-model API's arrays ----------------------------------------------------------------

NOTE = ("no interventional effects: pass effects=[N,n], counterfactual=fn(indices, k) -> "
        "images, or (Case 1) the arrays of api.featurize_dataset or head=fn(x) -> y; "
        "fidelity=False silences this note.")


def _effects(feats, *, effects, counterfactual, batch_size):
  """``(delta [N,n], how)`` from ``effects`` or ``counterfactual``; ``(None, None)`` without."""
  n_img, n = feats["y_i"].shape
  featurizer = getattr(feats, "featurizer", None)
  if effects is not None:
    delta = np.asarray(effects, np.float32)
    if delta.shape != (n_img, n) or not np.all(np.isfinite(delta)):
      raise ConfigError(f"effects has shape {delta.shape} or non-finite values; pass the "
                        f"measured effects [N,n] = {(n_img, n)}, finite.")
    return delta, "given by the caller (effects=...)"
  if counterfactual is not None:
    score = getattr(featurizer, "score", None)
    if score is None:
      raise ConfigError("counterfactual needs the featurizer's score: pass the arrays of "
                        "api.featurize_dataset (not a copy), or measured effects=[N,n].")
    delta = fidelity.rendering_effects(jax.jit(score), counterfactual, np.arange(n_img), n,
                                           y=feats["y"], batch_size=batch_size)
    return delta, "counterfactual images, one concept toggled"
  return None, None


def add_fidelity(out, alpha: dict, bias: dict, feats, *, case: str, effects=None,
                 counterfactual=None, head=None, train=None, num_resamples: int, seed: int,
                 sign_threshold: float, deletion_steps: int, ig_steps: int,
                 batch_size: int = 64) -> None:
  """Adds ``metrics["fidelity"]``, ``["fidelity_reference"]`` and their arrays to ``out`` (an
  ``EvalOutput``): the explainers, references and peers (``fidelity.compare.
  explanation_fidelity``; the least-squares peers are fitted on ``train``'s y_i and y)."""
  n_img, n = feats["y_i"].shape
  y_i = feats["y_i"]
  head = head if head is not None else getattr(getattr(feats, "featurizer", None), "head", None)
  delta, how = _effects(feats, effects=effects, counterfactual=counterfactual,
                        batch_size=batch_size)
  case_args = {}
  if case == "filter" and head is not None:
    x = np.asarray(feats.get("x", feats["feat"]), np.float32)
    if x.shape[-1] != n:
      raise ConfigError(f"the filter map has {x.shape[-1]} filters for n = {n} concepts; pass "
                        "the arrays of a filter_featurizer (its 'x' key when g reads another "
                        "map).")
    case_args = dict(head_fn=lambda xb: jnp.reshape(head(xb), (-1,)), x=x,
                     deletion_steps=int(deletion_steps))
    how = how or "zeroing each filter of the map"
  elif case == "filter":
    delta = None  # Case 1 peers need the head: without it only a note
  if delta is None and not case_args:
    out.metrics["fidelity"] = {"note": NOTE}
    out.meta["fidelity_note"] = NOTE
    return
  fid, ref, arrays = compare.explanation_fidelity(
      alpha, bias, y_i, feats["y"], feats["w"],
      train_y_i=None if train is None else np.asarray(train["y_i"], np.float32),
      train_y=None if train is None else np.asarray(train["y"], np.float32),
      key=jax.random.PRNGKey(int(seed)), sign_threshold=float(sign_threshold),
      num_resamples=int(num_resamples), ig_steps=int(ig_steps), case=case, delta=delta,
      batch_size=batch_size, **case_args)
  out.metrics["fidelity"], out.metrics["fidelity_reference"] = fid, ref
  per_variant, reference = compare.files(arrays, alpha, y_i)
  for v, arrs in per_variant.items():
    out.arrays[v].update(arrs)
  out.arrays["fidelity_reference"] = reference
  out.meta.update(fidelity_effects=how, fidelity_num_images=int(n_img))
