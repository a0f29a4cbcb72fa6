"""What a filter means: its most strongly activating image patches (Network-Dissection style).

For Case 1 a reason is a filter k of the map x [N,H,W,n]. Over the evaluated images, the images
where filter k peaks highest (``max_hw x[., h, w, k]``) are ranked, and around each peak the
image region under a window of ``patch_cells`` × ``patch_cells`` map cells is cropped: cell
(h, w) covers the pixels ``[h·S/H, (h+1)·S/H)`` of an S-pixel image, so the crop is the part of
the image the peak's neighbourhood is computed from nearest (a deep filter's full receptive field
can be larger). Where part masks exist, the part under the peak cell of each top image is
counted, and the filter is said to fire on the most frequent one.

``top_patches`` computes, ``add_top_patches`` files the result in ``eval/images.npz``
(``patch_filters``, ``patches``, ``patch_rows``, ``patch_activation``, ``patch_boxes``) and
``eval/meta.json`` (``patch_parts``); ``report.patches.section`` draws it, reading only.

Reference: Bau et al. 2017, "Network Dissection: Quantifying Interpretability of Deep Visual
Representations", Section 3.
"""

from __future__ import annotations

import numpy as np

from xplain_jax.evaluators import explainer as evaluate_lib


def top_patches(x: np.ndarray, images: np.ndarray, filters, *, num_patches: int = 4,
                patch_cells: int = 3) -> dict:
  """The ``num_patches`` strongest activations of each filter and the image crops around them.

  Args:
    x: [M,H,W,n] the filter map of the M images.
    images: [M,S,S',C] the images (any scale; crops keep it).
    filters: [F] filter indices.
    num_patches: patches per filter (at most M).
    patch_cells: crop side in map cells around the peak.

  Returns:
    ``rows`` [F,p] image indices (strongest first), ``activation`` [F,p] the peaks,
    ``cells`` [F,p,2] the peak cells (h, w), ``boxes`` [F,p,4] pixel boxes (top, left, bottom,
    right) and ``patches`` [F,p,ph,pw,C] the crops, zero-padded at the image border.
  """
  x = np.asarray(x, np.float32)
  images = np.asarray(images)
  m, h, w, _ = x.shape
  s_h, s_w = images.shape[1] / h, images.shape[2] / w
  p = min(int(num_patches), m)
  ph, pw = int(np.ceil(patch_cells * s_h)), int(np.ceil(patch_cells * s_w))
  out = {k: [] for k in ("rows", "activation", "cells", "boxes", "patches")}
  for k in np.asarray(filters, np.int64).ravel():
    flat = x[..., k].reshape(m, -1)
    peak = flat.max(axis=1)
    rows = np.argsort(-peak, kind="stable")[:p]
    cells = np.stack(np.unravel_index(flat[rows].argmax(axis=1), (h, w)), axis=1)
    boxes, crops = [], []
    for r, (ch, cw) in zip(rows, cells):
      top = int(round((ch + 0.5) * s_h - ph / 2))
      left = int(round((cw + 0.5) * s_w - pw / 2))
      boxes.append((top, left, top + ph, left + pw))
      crops.append(_crop(images[r], top, left, ph, pw))
    out["rows"].append(rows)
    out["activation"].append(peak[rows])
    out["cells"].append(cells)
    out["boxes"].append(boxes)
    out["patches"].append(crops)
  return {k: np.asarray(v) for k, v in out.items()}


def _crop(image: np.ndarray, top: int, left: int, ph: int, pw: int) -> np.ndarray:
  out = np.zeros((ph, pw) + image.shape[2:], np.float32)
  t0, l0 = max(top, 0), max(left, 0)
  t1, l1 = min(top + ph, image.shape[0]), min(left + pw, image.shape[1])
  if t1 > t0 and l1 > l0:
    out[t0 - top:t1 - top, l0 - left:l1 - left] = image[t0:t1, l0:l1]
  return out


def fires_on(part_masks: np.ndarray, rows: np.ndarray, cells: np.ndarray, map_hw: tuple,
             part_names) -> str:
  """The part under the peak cells of one filter's top images: "head (3 of 4)", or ""."""
  h, w = map_hw
  votes = []
  for r, (ch, cw) in zip(rows, cells):
    mask = np.asarray(part_masks[r])
    s_h, s_w = mask.shape[0] / h, mask.shape[1] / w
    block = mask[int(ch * s_h):int(np.ceil((ch + 1) * s_h)),
                 int(cw * s_w):int(np.ceil((cw + 1) * s_w))].ravel()
    block = block[(block >= 0) & (block < len(part_names))]
    if block.size:
      votes.append(int(np.bincount(block.astype(np.int64)).argmax()))
  if not votes:
    return ""
  best = int(np.bincount(votes).argmax())
  return f"{part_names[best]} ({votes.count(best)} of {len(rows)})"


def add_top_patches(out, feats, images, *, part_masks=None, part_names=None,
                    num_patches: int = 4, patch_cells: int = 3) -> None:
  """Files the top patches of the filters among the report images' top reasons into ``out``
  (an ``EvalOutput`` of ``evaluators.explainer.evaluate_arrays``)."""
  imgs = out.arrays["images"]
  tops = [np.ravel(v) for k, v in imgs.items()
          if k.startswith("top_index_") and k != "top_index_gt"]
  if not tops or not np.concatenate(tops).size:
    return
  filters = np.unique(np.concatenate(tops))
  m = len(images)
  x = np.asarray(feats.get("x", feats["feat"]), np.float32)[:m]
  found = top_patches(x, evaluate_lib.display_images(np.asarray(images, np.float32)), filters,
                      num_patches=num_patches, patch_cells=patch_cells)
  imgs.update(patch_filters=filters.astype(np.int32), patches=found["patches"],
              patch_rows=found["rows"].astype(np.int32), patch_activation=found["activation"],
              patch_boxes=found["boxes"].astype(np.int32))
  if part_masks is not None:
    masks = np.asarray(part_masks)
    names = list(part_names) if part_names is not None else [
        f"part {i}" for i in range(int(masks.max()) + 1)]
    out.meta["patch_parts"] = [fires_on(masks, r, c, x.shape[1:3], names)
                               for r, c in zip(found["rows"], found["cells"])]
