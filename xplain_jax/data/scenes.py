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

  def counterfactuals(self, indices, concept: int) -> np.ndarray:
    """Images ``indices`` [b] with concept ``concept`` toggled: [b,S,S,3] float32."""
    indices = np.asarray(indices).reshape(-1)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
      raise DataError(f"counterfactual indices must lie in [0, {len(self)}); got "
                       f"{indices.min()}..{indices.max()}.")
    if not 0 <= int(concept) < self.num_concepts:
      raise DataError(f"concept {concept} is out of range; use 0..{self.num_concepts - 1}.")
    return self.render_fn(indices, int(concept))


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
