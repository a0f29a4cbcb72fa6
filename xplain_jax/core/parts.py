"""Part-level analysis of interpretable filters: which part each filter sees, per-part
contributions.

Chen et al. annotate every filter of the interpretable top conv layer once with the object part
it represents and sum the contributions ``α_i y_i`` of a part's filters (paper Fig. 9). With
ground-truth part masks (Pascal-Part, the synthetic parts data) the annotation can be computed:

* ``assign_filters_to_parts``: where does each filter fire? For every image, its peak position
  on the feature map (the μ̂ of the interpretable mask layer) is looked up in the part mask,
  brought to the feature grid (``part_occupancy``); the share of the filter's strongest peaks
  that land on each part (``part_scores``) is its score for that part, and its part is the
  best-scoring one, or "none" (−1) when no part reaches ``threshold``;
* ``part_selectivity``: the best share per filter; its mean over filters says how part-selective
  the layer is (1: every strong peak on one part; the share of object area a part covers is the
  chance level);
* ``part_contributions``: ``Σ_{i ∈ part} α_i y_i`` per image and part;
* ``save_part_annotation`` / ``load_part_annotation``: the annotation as JSON,
  ``{"part_names": [...], "filters": {"0": "head", "1": "none", ...}}``.

Feature-grid alignment: cell ``(i, j)`` of an ``h×w`` map stands for the image pixels with
``floor(r·h/H) = i`` and ``floor(c·w/W) = j``, the usual approximation that receptive-field
centres of a padded conv net are spread evenly over the image.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from xplain_jax import utils
from xplain_jax.errors import ConfigError

NONE = "none"  # the name of "no part" in annotation files


def part_occupancy(part_masks: np.ndarray, grid: tuple[int, int], num_parts: int) -> np.ndarray:
  """Share of each feature cell covered by each part.

  Args:
    part_masks: [N,H,W] int, 0 = background, p = part p (1..num_parts).
    grid: (h, w), the feature map's size.
    num_parts: P.

  Returns:
    [N,h,w,P] float32; entry ``[n,i,j,p-1]`` is the fraction of cell (i, j)'s pixels in part p.
  """
  part_masks = np.asarray(part_masks)
  if part_masks.ndim != 3:
    raise ValueError(f"part_masks has shape {part_masks.shape}; expected [N,H,W] int labels.")
  n, hh, ww = part_masks.shape
  h, w = grid
  if h > hh or w > ww:
    raise ValueError(f"feature grid {grid} is finer than the masks ({hh}, {ww}); "
                     "pass masks at least as large as the feature map.")
  rows = np.eye(h, dtype=np.float32)[(np.arange(hh) * h) // hh].T  # [h,H]
  cols = np.eye(w, dtype=np.float32)[(np.arange(ww) * w) // ww].T  # [w,W]
  area = rows.sum(1)[:, None] * cols.sum(1)[None, :]
  occ = np.empty((n, h, w, num_parts), np.float32)
  for p in range(num_parts):
    hit = (part_masks == p + 1).astype(np.float32)
    occ[..., p] = np.einsum("ih,nhw,jw->nij", rows, hit, cols) / area
  return occ


def _check_inputs(top_conv, part_masks, num_parts):
  top_conv = np.asarray(top_conv, np.float32)
  part_masks = np.asarray(part_masks)
  if top_conv.ndim != 4:
    raise ValueError(f"top_conv has shape {top_conv.shape}; expected [N,h,w,C].")
  if part_masks.ndim != 3 or part_masks.shape[0] != top_conv.shape[0]:
    raise ValueError(f"part_masks has shape {part_masks.shape}; expected [N,H,W] with "
                     f"N = {top_conv.shape[0]} (one mask per feature map).")
  if num_parts <= 0:
    raise ValueError(f"num_parts must be positive, got {num_parts}.")
  if part_masks.min(initial=0) < 0 or part_masks.max(initial=0) > num_parts:
    raise ValueError(f"part_masks holds labels outside 0..{num_parts}; 0 is background and "
                     "1..num_parts the parts.")
  return top_conv, part_masks


def part_scores(top_conv: np.ndarray, part_masks: np.ndarray, num_parts: int, *,
                top_fraction: float = 0.5) -> np.ndarray:
  """Share of each filter's strongest peaks that fall on each part.

  Args:
    top_conv: [N,h,w,C] float, the filters' maps on N images (positive images, which show the
      parts).
    part_masks: [N,H,W] int part labels of the same images (0 = background).
    num_parts: P.
    top_fraction: share of the images used per filter: those where the filter's peak is among
      its ``ceil(top_fraction · N_c)`` highest, N_c the images where it fires at all (peak > 0).

  A peak counts for the parts that cover its feature cell, split in proportion to the pixels
  each part covers there (a cell showing only a thin tail and background counts fully for the
  tail); a peak on a cell without any part counts for none (background).

  Returns:
    [C,P] float32 scores in [0, 1]; a row sums to the share of peaks on the object (the rest
    fell on background); a filter that never fires scores 0 everywhere.
  """
  if not 0.0 < top_fraction <= 1.0:
    raise ValueError(f"top_fraction {top_fraction} must lie in (0, 1].")
  top_conv, part_masks = _check_inputs(top_conv, part_masks, num_parts)
  n, h, w, c = top_conv.shape
  occ = part_occupancy(part_masks, (h, w), num_parts).reshape(n, h * w, num_parts)
  flat = top_conv.reshape(n, h * w, c)
  peak_pos = np.argmax(flat, axis=1)                                   # [N,C]
  peak_val = np.take_along_axis(flat, peak_pos[:, None, :], axis=1)[:, 0]  # [N,C]
  fires = peak_val > 0
  k = np.ceil(top_fraction * fires.sum(0)).astype(np.int64)           # [C]
  rank = np.argsort(np.argsort(np.where(fires, -peak_val, np.inf), axis=0, kind="stable"),
                    axis=0, kind="stable")
  chosen = fires & (rank < k[None, :])                                 # [N,C]
  at_peak = occ[np.arange(n)[:, None], peak_pos]                       # [N,C,P]
  on_object = at_peak.sum(-1, keepdims=True)
  at_peak = np.where(on_object > 0, at_peak / np.maximum(on_object, 1e-12), 0.0)
  total = np.einsum("nc,ncp->cp", chosen.astype(np.float32), at_peak)
  return (total / np.maximum(chosen.sum(0), 1)[:, None]).astype(np.float32)


def assign_filters_to_parts(top_conv: np.ndarray, part_masks: np.ndarray, num_parts: int, *,
                            threshold: float = 0.25,
                            top_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """The part each filter represents, from where its strongest peaks land.

  Args:
    top_conv: [N,h,w,C] float feature maps of positive images (e.g. ``inter["top_conv"]``).
    part_masks: [N,H,W] int part labels (0 = background, 1..P parts).
    num_parts: P.
    threshold: a filter whose best share is below this is assigned no part (−1). The default
      0.25 asks that at least a quarter of its strong peaks land on one part.
    top_fraction: see ``part_scores``.

  Returns:
    ``(filter_to_part [C] int32 in {−1, 0..P−1}, scores [C,P] float32)``; part index ``p``
    is mask label ``p + 1``.
  """
  scores = part_scores(top_conv, part_masks, num_parts, top_fraction=top_fraction)
  best = np.argmax(scores, axis=1).astype(np.int32)
  return np.where(scores.max(axis=1) >= threshold, best, -1).astype(np.int32), scores


def part_selectivity(top_conv: np.ndarray, part_masks: np.ndarray, num_parts: int, *,
                     top_fraction: float = 0.5) -> np.ndarray:
  """How part-selective each filter is: its best part share, [C] float32 in [0, 1].

  ``part_selectivity(...).mean()`` is the layer's score ("how part-selective the filters are");
  see ``mean_part_selectivity``.
  """
  return part_scores(top_conv, part_masks, num_parts, top_fraction=top_fraction).max(axis=1)


def mean_part_selectivity(top_conv: np.ndarray, part_masks: np.ndarray, num_parts: int, *,
                          top_fraction: float = 0.5) -> float:
  """Mean of ``part_selectivity`` over filters."""
  return float(np.mean(part_selectivity(top_conv, part_masks, num_parts,
                                        top_fraction=top_fraction)))


def part_contributions(contribs: jnp.ndarray, filter_to_part, num_parts: int) -> jnp.ndarray:
  """Contribution of each part: the sum of ``α_i y_i`` over the filters of the part.

  Args:
    contribs: [B,C] float, ``α_i y_i`` per image and filter.
    filter_to_part: [C] int in {−1, 0..P−1}; filters with −1 ("none") are left out.
    num_parts: P.

  Returns:
    [B,P] float, ``out[b, p] = Σ_{i: filter_to_part[i] = p} contribs[b, i]``.
  """
  f2p = np.asarray(filter_to_part)
  if f2p.ndim != 1 or contribs.shape[-1] != f2p.shape[0]:
    raise ValueError(f"filter_to_part has shape {f2p.shape} and contribs {contribs.shape}; "
                     "expected [C] and [B,C] with the same C.")
  if f2p.size and (f2p.min() < -1 or f2p.max() >= num_parts):
    raise ValueError(f"filter_to_part holds values outside -1..{num_parts - 1}; use -1 for "
                     "'none' and 0..num_parts-1 for parts.")
  onehot = jax.nn.one_hot(jnp.asarray(f2p), num_parts, dtype=contribs.dtype)  # −1 -> zeros
  return contribs @ onehot


def save_part_annotation(path: str | os.PathLike, filter_to_part, part_names) -> None:
  """Writes the filter annotation as JSON (atomically).

  Args:
    path: output file.
    filter_to_part: [C] int in {−1, 0..P−1}.
    part_names: the P part names (``"none"`` is reserved for −1).
  """
  names = [str(n) for n in part_names]
  if len(set(names)) != len(names) or NONE in names:
    raise ValueError(f"part_names {names} must be distinct and must not contain {NONE!r}.")
  f2p = [int(v) for v in np.asarray(filter_to_part).reshape(-1)]
  bad = [v for v in f2p if not -1 <= v < len(names)]
  if bad:
    raise ValueError(f"filter_to_part holds {bad[0]}, outside -1..{len(names) - 1}.")
  doc = {"part_names": names,
         "filters": {str(i): (names[v] if v >= 0 else NONE) for i, v in enumerate(f2p)}}
  utils.write_atomic(path, lambda f: json.dump(doc, f, indent=1), binary=False)


def load_part_annotation(path: str | os.PathLike) -> tuple[np.ndarray, tuple[str, ...]]:
  """Reads a file written by ``save_part_annotation`` (or by hand in the same format).

  Returns:
    ``(filter_to_part [C] int32, part_names)``.

  Raises:
    ConfigError: the file is missing, not JSON, or not of the documented format (the message
      names the problem).
  """
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except FileNotFoundError:
    raise ConfigError(f"part annotation {path} does not exist; write it with "
                      "save_part_annotation or by hand.") from None
  except json.JSONDecodeError as e:
    raise ConfigError(f"part annotation {path} is not valid JSON ({e}).") from None
  if (not isinstance(doc, dict) or not isinstance(doc.get("part_names"), list)
      or not isinstance(doc.get("filters"), dict)):
    raise ConfigError(f"part annotation {path} must be an object with a list 'part_names' and "
                      "an object 'filters' ({\"0\": \"head\", ...}).")
  names = tuple(str(n) for n in doc["part_names"])
  if len(set(names)) != len(names) or NONE in names:
    raise ConfigError(f"part annotation {path}: part_names {list(names)} must be distinct and "
                      f"must not contain {NONE!r}.")
  filters = doc["filters"]
  want = {str(i) for i in range(len(filters))}
  if set(filters) != want:
    extra = sorted(set(filters) - want)[:3]
    raise ConfigError(f"part annotation {path}: filter keys must be '0'..'{len(filters) - 1}', "
                      f"each once; found unexpected keys {extra}.")
  lookup = {n: i for i, n in enumerate(names)}
  lookup[NONE] = -1
  f2p = np.empty(len(filters), np.int32)
  for key, name in filters.items():
    if name not in lookup:
      raise ConfigError(f"part annotation {path}: filter {key} is annotated {name!r}, which is "
                        f"not in part_names {list(names)} nor {NONE!r}.")
    f2p[int(key)] = lookup[name]
  return f2p, names
