"""The "parts" evaluator: filters as object parts (paper Fig. 9, 10), Grad-CAM, part selectivity.

For the filter case the evaluation also needs what the interpretable layer's filters mean:

* **filter→part annotation**: ``config.evals.parts.annotation`` names a JSON file (written by hand
  for real data, format of ``parts.save_part_annotation``), or, when empty, it is suggested from
  the ground-truth part masks of the positive test images (``parts.assign_filters_to_parts``)
  and saved to ``workdir/parts.json`` to be read, corrected and passed back;
* **part contributions** per explainer variant: ``Σ_{i ∈ part} α_i y_i`` [N,P] (Fig. 9), added
  to ``eval/<variant>.npz`` as ``part_contrib``;
* **Grad-CAM** of the performer's top map (``inter["top_conv"]``) for the report images and the
  images' part masks (``eval/images.npz``: ``gradcam`` [K,h,w], ``part_mask`` [K,S,S] with −1 for
  background);
* **filter regions** (Fig. 10): for the filters with the largest mean contribution, the image
  crop around the unit where each fires most over the positive test images
  (``filter_regions`` [F,r,r,3], ``filter_region_names`` [F] str);
* **part metrics** under ``metrics.json["parts"]``: the mean part selectivity of the
  interpretable layer and, with ``config.parts.compare_ordinary``, of an ordinary top layer
  (the same network without mask and filter loss, trained by the stage ``performer_ordinary``
  of ``pipeline``), and the mean contribution of every part per variant.

``evaluate(ctx, cfg)`` (``cfg`` = ``config.evals.parts``) returns them as an ``EvalOutput``.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax.core import gradcam, parts
from xplain_jax.errors import ConfigError, DataError
from xplain_jax.evaluators import common
from xplain_jax.evaluators import explainer as explainer_eval

ANNOTATION_FILE = "parts.json"


def make_apply_fn(perf, target_index: int):
  """Jitted ``(variables, images) -> (y [B], top_conv [B,h,w,C], gradcam [B,h,w])``.

  ``gradcam`` is the Grad-CAM of ``inter["top_conv"]`` for the logit ``target_index``.
  """

  def fn(variables, images):
    logits, inter = perf.apply(variables, images, train=False)
    x = inter["top_conv"].astype(jnp.float32)
    head = lambda z: perf.apply(variables, z, method=perf.head)[0][:, target_index]
    return logits[:, target_index].astype(jnp.float32), x, gradcam.grad_cam(head, x)

  return jax.jit(fn)


def run_performer(apply_fn, variables, source, indices, *, target_index: int, batch_size: int):
  """``apply_fn`` (of ``make_apply_fn``) on ``source[indices]`` in chunks of ``batch_size``.

  The last chunk is padded, so ``apply_fn`` compiles once.

  Returns:
    dict of host arrays: ``y`` [N], ``top_conv`` [N,h,w,C], ``gradcam`` [N,h,w], ``labels`` [N]
    and, when the source has them, ``part_mask`` [N,S,S] int32.
  """
  out = {k: [] for k in ("y", "top_conv", "gradcam", "labels", "part_mask")}
  indices = np.asarray(indices, np.int64)
  for start in range(0, len(indices), batch_size):
    idx = indices[start:start + batch_size]
    batch = source.get_batch(idx)
    images = batch["image"]
    pad = batch_size - len(idx)
    if pad:
      images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    res = jax.device_get(apply_fn(variables, images))
    for k, v in zip(("y", "top_conv", "gradcam"), res):
      out[k].append(np.asarray(v)[:len(idx)])
    out["labels"].append(np.asarray(batch["labels"])[:, target_index])
    if "part_mask" in batch:
      out["part_mask"].append(np.asarray(batch["part_mask"], np.int32))
  return {k: np.concatenate(v) for k, v in out.items() if v}


def load_or_suggest_annotation(cfg, part_names, top_conv, part_masks, *, workdir: str):
  """The filter→part annotation: the user's file, or suggested from masks and saved.

  Args:
    cfg: ``config.evals.parts`` (``annotation``, ``threshold``, ``top_fraction``).
    part_names: the P ground-truth part names (mask label p + 1 = part p).
    top_conv: [N,h,w,C] maps of positive images; part_masks: [N,S,S] int (or None).

  Returns:
    ``(filter_to_part [C] int32, part_names, source)``; source is the file read or written.
  """
  p = cfg
  num_filters = top_conv.shape[-1]
  if p.annotation:
    f2p, names = parts.load_part_annotation(p.annotation)
    if len(f2p) != num_filters:
      raise ConfigError(f"part annotation {p.annotation} names {len(f2p)} filters; the top conv "
                       f"layer has {num_filters}: annotate every filter ('none' for no part).")
    return f2p, tuple(names), p.annotation
  if part_masks is None:
    raise DataError("the test data has no part masks to suggest a filter annotation from; "
                     "write one and set config.evals.parts.annotation=FILE.json.")
  f2p, _ = parts.assign_filters_to_parts(top_conv, part_masks, len(part_names),
                                         threshold=p.threshold, top_fraction=p.top_fraction)
  path = os.path.join(workdir, ANNOTATION_FILE)
  if jax.process_index() == 0:
    parts.save_part_annotation(path, f2p, part_names)
  return f2p, tuple(part_names), path


def selectivity_chance(part_masks: np.ndarray, num_parts: int) -> float:
  """The best part share of a filter firing at uniformly random object pixels.

  Mean over images of each part's share of the object's pixels, maximised over parts: the
  selectivity a filter that ignores parts would reach (a reference for ``part_selectivity``).
  """
  counts = np.stack([(part_masks == p + 1).sum(axis=(1, 2)) for p in range(num_parts)], 1)
  share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
  return float(share[counts.sum(1) > 0].mean(0).max()) if (counts.sum(1) > 0).any() else 0.0


def peak_cells(top_conv: np.ndarray, filters) -> np.ndarray:
  """Where each filter fires most over a set of maps.

  Args:
    top_conv: [N,h,w,C] float maps.
    filters: F filter indices.

  Returns:
    [F,3] int64 rows ``(image, row, col)`` of each filter's largest unit.
  """
  n, h, w, _ = top_conv.shape
  out = []
  for f in filters:
    k, cell = np.unravel_index(int(np.argmax(top_conv[..., f].reshape(n, -1))), (n, h * w))
    out.append((int(k),) + divmod(int(cell), w))
  return np.asarray(out, np.int64).reshape(-1, 3)


def crop_regions(images: np.ndarray, cells: np.ndarray, grid: tuple[int, int], *,
                 region_size: float) -> np.ndarray:
  """Square crops of ``images`` centred on feature cells (paper Fig. 10).

  Args:
    images: [F,S,S',3] one image per crop.
    cells: [F,2] int ``(row, col)`` on the ``grid`` = (h, w) feature map; cell (i, j) stands
      for the pixels around ((i + ½)·S/h, (j + ½)·S'/w) (``parts`` uses the same alignment).
    region_size: crop side as a fraction of S; crops are shifted to lie inside the image.

  Returns:
    [F,r,r,3] float32, r = round(region_size · S) clipped to [1, min(S, S')].
  """
  s, s2 = images.shape[1], images.shape[2]
  h, w = grid
  r = int(np.clip(round(region_size * s), 1, min(s, s2)))
  out = np.empty((len(cells), r, r, images.shape[-1]), np.float32)
  for n, (i, j) in enumerate(np.asarray(cells).reshape(-1, 2)):
    y0 = int(np.clip(round((i + 0.5) * s / h - r / 2), 0, s - r))
    x0 = int(np.clip(round((j + 0.5) * s2 / w - r / 2), 0, s2 - r))
    out[n] = images[n, y0:y0 + r, x0:x0 + r]
  return out


def _mean_by_part(part_contrib, contrib, filter_to_part, names, rows) -> dict:
  none = contrib[:, np.asarray(filter_to_part) < 0].sum(1)
  out = {name: float(part_contrib[rows, p].mean()) for p, name in enumerate(names)}
  out[parts.NONE] = float(none[rows].mean())
  return out


def evaluate(ctx: common.EvalContext, cfg) -> common.EvalOutput:
  """Everything the filter case adds to the evaluation (see the module docstring).

  Reads ``ctx.perf``/``ctx.perf_vars`` (the interpretable performer), ``ctx.test_src`` (images,
  labels, part masks), ``ctx.test`` (``y_i``, ``labels``), ``ctx.alpha``, ``ctx.images`` and
  ``ctx.ordinary`` (the ordinary performer, when ``config.parts.compare_ordinary``); its
  settings from ``cfg`` = ``config.evals.parts``.
  """
  spec, workdir, test = ctx.spec, ctx.workdir, ctx.test
  perf, perf_vars, test_src, images = ctx.perf, ctx.perf_vars, ctx.test_src, ctx.images
  p, t = cfg, spec.target_index
  bs = ctx.batch_size
  labels = np.asarray(test["labels"])[:, t]
  positives = np.flatnonzero(labels > 0.5)
  if p.max_images:
    positives = positives[:p.max_images]
  if not len(positives):
    raise DataError("the test split holds no positive image; the parts evaluation needs some.")
  apply_fn = make_apply_fn(perf, t)
  pos = run_performer(apply_fn, perf_vars, test_src, positives, target_index=t, batch_size=bs)
  masks = pos.get("part_mask")
  f2p, names, source = load_or_suggest_annotation(p, spec.part_names, pos["top_conv"],
                                                  masks, workdir=workdir)
  num_parts = len(names)
  num_filters = pos["top_conv"].shape[-1]

  # (b) part contributions per variant.
  variant_extras, contributions, contributions_pos, mean_contrib = {}, {}, {}, {}
  pos_rows = labels > 0.5
  for variant, alpha in ctx.alpha.items():
    contrib = alpha * np.asarray(test["y_i"])
    mean_contrib[variant] = contrib.mean(0)
    pc = np.asarray(parts.part_contributions(jnp.asarray(contrib), f2p, num_parts))
    variant_extras[variant] = {"part_contrib": pc}
    contributions[variant] = _mean_by_part(pc, contrib, f2p, names, slice(None))
    contributions_pos[variant] = _mean_by_part(pc, contrib, f2p, names, pos_rows)

  # (c) Grad-CAM and part masks of the report images.
  k = len(images)
  shown = run_performer(apply_fn, perf_vars, test_src, np.arange(k), target_index=t,
                        batch_size=bs)
  image_extras = {"gradcam": np.asarray(gradcam.normalize_maps(shown["gradcam"]))}
  if "part_mask" in shown:
    image_extras["part_mask"] = shown["part_mask"] - 1  # −1 = background, p = part p

  # (d) filter regions of the filters with the largest mean contribution.
  ranked = "prior" if "prior" in mean_contrib else next(iter(mean_contrib), None)
  if ranked is not None and p.num_regions > 0:
    chosen = np.argsort(-mean_contrib[ranked], kind="stable")[:p.num_regions]
    cells = peak_cells(pos["top_conv"], chosen)
    shown_imgs = explainer_eval.display_images(test_src.get_batch(positives[cells[:, 0]])["image"])
    part_of = lambda f: names[f2p[f]] if f2p[f] >= 0 else parts.NONE
    image_extras["filter_regions"] = crop_regions(shown_imgs, cells[:, 1:],
                                                  pos["top_conv"].shape[1:3],
                                                  region_size=p.region_size)
    image_extras["filter_region_names"] = np.asarray(
        [f"filter {f}: {part_of(f)}" for f in chosen], dtype=str)

  # (e) selectivity of the interpretable layer and of the ordinary one.
  fires = lambda tc: int((tc.reshape(len(tc), -1, tc.shape[-1]).max(1) > 0).any(0).sum())
  m = {"annotation": source, "part_names": list(names), "num_filters": int(num_filters),
       "num_positive_images": int(len(positives)),
       "filters_per_part": {n: int(np.sum(f2p == i)) for i, n in enumerate(names)}}
  m["filters_per_part"][parts.NONE] = int(np.sum(f2p < 0))
  if masks is not None:
    gt_parts = len(spec.part_names)
    sel = lambda tc: parts.mean_part_selectivity(tc, masks, gt_parts, top_fraction=p.top_fraction)
    m["selectivity_interpretable"] = sel(pos["top_conv"])
    m["firing_filters_interpretable"] = fires(pos["top_conv"])
    m["selectivity_chance"] = selectivity_chance(masks, gt_parts)
    if ctx.ordinary is not None:
      ord_perf, ord_vars = ctx.ordinary
      every = run_performer(make_apply_fn(ord_perf, t), ord_vars, test_src,
                            np.arange(len(labels)), target_index=t, batch_size=bs)
      m["selectivity_ordinary"] = sel(every["top_conv"][positives])
      m["firing_filters_ordinary"] = fires(every["top_conv"][positives])
      m["ordinary_performer_accuracy"] = 100.0 * float(np.mean((every["y"] > 0) == (labels > 0.5)))
  m["contributions"] = contributions
  m["contributions_positive"] = contributions_pos
  concept_names = [f"{names[f2p[i]] if f2p[i] >= 0 else parts.NONE} (filter {i})"
                   for i in range(num_filters)]
  arrays = dict(variant_extras)
  arrays["images"] = image_extras
  return common.EvalOutput(
      metrics={"parts": m}, arrays=arrays,
      meta={"part_names": list(names), "concept_names": concept_names})
