"""Fidelity in the own-model API: each explainer scored against the performer's own effects.

``api.evaluate`` and ``api.write_report`` call ``add_fidelity`` by default. The effects
``Δ_k = y − y(without concept k)`` come from

* Case 1, any model: zeroing filter k of the map the head reads (``fidelity.
  filter_deletion_effects``), with deletion curves; the head is the featurizer's (remembered by
  ``api.featurize_dataset``'s arrays) or the ``head`` argument;
* any case: the user's measured ``effects`` [N,n], or a ``counterfactual(indices, k) ->
  images`` function whose images the featurizer's ``score`` rates.

Without any of them the metrics get a note saying what to pass. The scores, references and
peers (least squares fitted on the ``train`` arrays when given, α = w, and for Case 1 gradient
× input and integrated gradients) are ``fidelity.compare.explanation_fidelity``'s; this module
only finds Δ and files the results where the report reads them (the layout of the pipeline's
fidelity evaluator).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax import fidelity as fidelity_lib
from xplain_jax.errors import ConfigError
from xplain_jax.fidelity import compare

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
    delta = fidelity_lib.rendering_effects(jax.jit(score), counterfactual, np.arange(n_img), n,
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
