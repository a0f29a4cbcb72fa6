"""Scene-based synthetic data: a source that can redraw its images with one concept changed.

Both synthetic generators render every image from a *scene*, the image's random draws fixed per
image and per element; redrawing the scene with one concept toggled gives the counterfactual
image, identical except for that concept's pixels. ``SceneSource`` carries that redraw.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np

from xplain_jax.data.input_pipeline import ArraySource
from xplain_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class SceneSource(ArraySource):
  """An ``ArraySource`` that can also redraw its images with one concept toggled.

  Attributes:
    arrays: as ``ArraySource``.
    render_fn: ``(indices [b] int, concept int) -> images [b,S,S,3] float32``, the
      counterfactual images (same normalisation as ``arrays["image"]``).
    num_concepts: how many concepts ``render_fn`` can toggle.
  """

  render_fn: Callable[[np.ndarray, int], np.ndarray] | None = None
  num_concepts: int = 0
  render_many_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

  def _check(self, indices, concepts) -> tuple[np.ndarray, np.ndarray]:
    indices = np.asarray(indices).reshape(-1)
    concepts = np.asarray(concepts, np.int64).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
      raise DataError(f"counterfactual indices must lie in [0, {len(self)}); got "
                       f"{indices.min()}..{indices.max()}.")
    bad = concepts[(concepts < 0) | (concepts >= self.num_concepts)]
    if bad.size:
      raise DataError(f"concept {int(bad[0])} is out of range; use 0..{self.num_concepts - 1}.")
    return indices, concepts

  def counterfactuals(self, indices, concept: int) -> np.ndarray:
    """Images ``indices`` [b] with concept ``concept`` toggled: [b,S,S,3] float32."""
    indices, _ = self._check(indices, [int(concept)])
    return self.render_fn(indices, int(concept))

  def toggles(self, indices, concepts) -> np.ndarray:
    """Images ``indices`` [b], each with each of ``concepts`` [K] toggled, in one call:
    [b,K,S,S,3] float32 (``render_many_fn``'s, else ``counterfactuals`` stacked)."""
    indices, concepts = self._check(indices, concepts)
    if self.render_many_fn is not None:
      return self.render_many_fn(indices, concepts)
    return np.stack([self.render_fn(indices, int(k)) for k in concepts], axis=1)


def toggled_once(source, indices, concepts, *,
                 max_bytes: int = 2 ** 28) -> Callable[[np.ndarray, int], np.ndarray]:
  """``counterfactuals(idx, concept)`` over the images ``indices``, from few ``toggles`` calls.

  For callers that ask concept by concept (``fidelity.rendering_effects``): the toggles of all
  ``indices`` are rendered a group of concepts at a time (as many as fit ``max_bytes``) and
  kept until a concept of another group is asked, so each image's scene is drawn once per group
  instead of once per concept. The images are those ``source.counterfactuals`` gives.

  Args:
    source: a source with ``counterfactuals`` (a ``SceneSource`` or one wrapping it); its
      ``toggles`` when it has them, else its ``counterfactuals`` one concept at a time.
    indices: [B] the images the caller will ask for (any subset, in any order, per call).
    concepts: [n] the concepts it will toggle, in the order it asks for them.
    max_bytes: memory for one group's images ``[B,k,S,S,3]`` float32.

  Returns:
    ``(idx [b] ⊆ indices, concept) -> [b,S,S,3] float32``.
  """
  indices = np.asarray(indices).reshape(-1)
  concepts = np.asarray(concepts, np.int64).reshape(-1)
  toggles = getattr(source, "toggles", None) or (lambda idx, ks: np.stack(
      [source.counterfactuals(idx, int(k)) for k in ks], axis=1))
  row_of = {int(i): r for r, i in reversed(list(enumerate(indices)))}
  image_bytes = max(1, source.get_batch(indices[:1])["image"].nbytes) if len(indices) else 1
  per_group = max(1, max_bytes // (image_bytes * max(1, len(indices))))
  groups = [concepts[g:g + per_group] for g in range(0, len(concepts), per_group)]
  held = {"group": None, "images": None}

  def counterfactuals(idx, concept: int) -> np.ndarray:
    g = next((g for g, members in enumerate(groups) if int(concept) in members), None)
    if g is None:
      raise DataError(f"concept {concept} is not among those prepared ({concepts.tolist()}).")
    if held["group"] != g:
      held["group"], held["images"] = g, None  # the last group's images go first
      held["images"] = toggles(indices, groups[g])
    idx = np.asarray(idx).reshape(-1)
    missing = [int(i) for i in idx if int(i) not in row_of]
    if missing:
      raise DataError(f"images {missing[:8]} are not among those prepared; pass them in indices.")
    rows = [row_of[int(i)] for i in idx]
    column = int(np.flatnonzero(groups[g] == int(concept))[0])
    return held["images"][rows, column]

  return counterfactuals


@functools.lru_cache(maxsize=None)
def shape_mask(shape: str, size: int) -> np.ndarray:
  """A boolean [size,size] mask of ``shape`` centred in its box (cached: do not modify it)."""
  r = (size - 1) / 2.0
  yy, xx = np.mgrid[0:size, 0:size]
  dy, dx = (yy - r) / r, (xx - r) / r
  if shape == "circle":
    return dx**2 + dy**2 <= 1.0
  if shape == "square":
    return (np.abs(dx) <= 0.8) & (np.abs(dy) <= 0.8)
  if shape == "triangle":
    return (dy >= -0.9) & (dy <= 0.9) & (np.abs(dx) <= (dy + 0.9) / 1.8)
  if shape == "cross":
    return (np.abs(dx) <= 0.3) | (np.abs(dy) <= 0.3)
  if shape == "ring":
    d = dx**2 + dy**2
    return (d <= 1.0) & (d >= 0.4)
  if shape == "diamond":
    return np.abs(dx) + np.abs(dy) <= 1.0
  raise DataError(f"unknown shape {shape!r}")
