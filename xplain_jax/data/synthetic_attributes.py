"""Synthetic attribute data with a planted, known explanation (Experiment 2's analogue).

Every 64x64 (configurable) RGB image carries 20 binary *concept attributes* that are visible in
the pixels, plus *target attributes* whose labels follow a documented, planted rule over the
concepts. Because the rule is known, the explainer's contributions can be checked against the
ground truth (``gt_rank_correlation``), which no real dataset offers.

Concept attributes:

* 12 object attributes, ``"<colour>_<shape>"`` for colour in {red, green, blue} and shape in
  {circle, square, triangle, cross}, each present with probability ``P_OBJECT`` = 0.4: that
  object is drawn somewhere. Objects sit in distinct cells of a 3x3 grid with random jitter,
  size (60-95 % of a cell), brightness and vertical flip, so they never occlude each other but
  their positions vary. (An attribute vector with more objects than free cells, probability
  about 1 %, is drawn again.)
* 8 global attributes, each present with probability 1/2: ``bright_background``,
  ``horizontal_stripes``, ``vertical_stripes``, ``border`` (a white frame), ``speckles`` (dense
  small dots), ``dark_corner`` (a shaded corner), ``diagonal_line`` (a thin dark line corner to
  corner) and ``warm_tint`` (a reddish-yellow background tint).

Clutter that is *not* an attribute: one distractor object in yellow, magenta or cyan (any
shape), a random background tint jitter, and Gaussian pixel noise, so that a CNN has to learn
colour and shape jointly.

The planted rule. With ``s_k = 2 a_k - 1`` in {-1, +1} for concept attribute ``a_k``, target ``t``
has logit ``z_t = Σ_k v_{t,k} s_k`` and label ``Bernoulli(sigmoid(temperature * z_t))`` (label
noise), with the sparse signed weights ``TARGET_RULES``. The ground-truth contribution of concept
``k`` to target ``t`` on an image is ``v_{t,k} s_k`` (so its mean absolute value is ``|v_{t,k}|``);
concepts with ``v = 0`` contribute nothing.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from xplain_jax.data.pipeline import ArraySource

COLOURS = {"red": (0.9, 0.15, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.3, 0.95)}
CLUTTER_COLOURS = ((0.95, 0.9, 0.1), (0.9, 0.1, 0.9), (0.1, 0.9, 0.9))
SHAPES = ("circle", "square", "triangle", "cross")
GLOBAL_ATTRIBUTES = ("bright_background", "horizontal_stripes", "vertical_stripes", "border",
                     "speckles", "dark_corner", "diagonal_line", "warm_tint")
CONCEPT_NAMES = tuple(f"{c}_{s}" for c in COLOURS for s in SHAPES) + GLOBAL_ATTRIBUTES

# Sparse signed weights v_{t,k} of the planted rule (concept name -> weight; others are 0).
TARGET_RULES = {
    "target_a": {"red_circle": 2.0, "green_square": -1.6, "horizontal_stripes": -1.3,
                 "blue_triangle": 1.1, "border": 0.9, "red_cross": 0.7, "warm_tint": -0.5},
    "target_b": {"blue_circle": -2.0, "red_square": 1.6, "speckles": 1.3,
                 "green_triangle": -1.0, "vertical_stripes": 0.7, "diagonal_line": 0.5},
}
TARGET_NAMES = tuple(TARGET_RULES)
ATTRIBUTE_NAMES = CONCEPT_NAMES + TARGET_NAMES
GRID = 3  # objects occupy distinct cells of a GRID x GRID layout
MAX_CLUTTER = 1  # distractor objects per image
P_OBJECT = 0.4  # probability of each object attribute


def rule_weights(target: str) -> np.ndarray:
  """The planted weights ``v_t`` of a target over ``CONCEPT_NAMES``: [n] float32."""
  if target not in TARGET_RULES:
    raise ValueError(f"unknown synthetic target {target!r}; choose one of {list(TARGET_NAMES)}.")
  v = np.zeros(len(CONCEPT_NAMES), np.float32)
  for name, weight in TARGET_RULES[target].items():
    v[CONCEPT_NAMES.index(name)] = weight
  return v


def _shape_mask(shape: str, size: int) -> np.ndarray:
  """A boolean [size,size] mask of ``shape`` centred in its box."""
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
  raise ValueError(f"unknown shape {shape!r}")


def _render(rng: np.random.Generator, attrs: np.ndarray, image_size: int, noise: float):
  """Draws one image [S,S,3] float32 in [0,1] for the concept attributes ``attrs`` [n]."""
  s = image_size
  g = dict(zip(CONCEPT_NAMES, attrs))
  base = 0.62 if g["bright_background"] else 0.22
  img = np.empty((s, s, 3), np.float32)
  img[:] = base + rng.uniform(-0.05, 0.05, size=3)
  if g["warm_tint"]:
    img += np.asarray((0.12, 0.05, -0.1), np.float32)
  yy, xx = np.mgrid[0:s, 0:s]
  period = max(4, s // 8)
  if g["horizontal_stripes"]:
    img[(yy // (period // 2)) % 2 == 0] += 0.18
  if g["vertical_stripes"]:
    img[(xx // (period // 2)) % 2 == 0] -= 0.12
  if g["dark_corner"]:
    cy, cx = rng.integers(0, 2, size=2) * (s - 1)
    dist = np.sqrt((yy - cy)**2 + (xx - cx)**2) / s
    img *= np.clip(0.35 + dist * 1.3, 0.35, 1.0)[..., None]
  if g["speckles"]:
    dots = rng.random((s, s)) < 0.06
    img[dots] = 1.0 - img[dots]
  if g["diagonal_line"]:
    line = np.abs(yy - (xx if rng.random() < 0.5 else s - 1 - xx)) <= max(1, s // 64)
    img[line] = (0.05, 0.05, 0.05)
  if g["border"]:
    w = max(2, s // 21)
    frame = np.zeros((s, s), bool)
    frame[:w], frame[-w:], frame[:, :w], frame[:, -w:] = True, True, True, True
    img[frame] = (0.95, 0.95, 0.95)
  objects = [(COLOURS[c], shape) for k, (c, shape) in enumerate(
      (c, sh) for c in COLOURS for sh in SHAPES) if attrs[k]]
  for _ in range(MAX_CLUTTER):
    objects.append((CLUTTER_COLOURS[rng.integers(len(CLUTTER_COLOURS))],
                    SHAPES[rng.integers(len(SHAPES))]))
  cell = s // GRID
  cells = rng.permutation(GRID * GRID)[:len(objects)]
  for (colour, shape), c in zip(objects, cells):
    size = int(rng.integers(int(cell * 0.6), int(cell * 0.95) + 1))
    y0 = (c // GRID) * cell + int(rng.integers(0, cell - size + 1))
    x0 = (c % GRID) * cell + int(rng.integers(0, cell - size + 1))
    m = _shape_mask(shape, size)
    if rng.random() < 0.5:
      m = m[::-1]  # vertical flip: triangles point either way
    col = np.clip(np.asarray(colour) * rng.uniform(0.8, 1.1), 0, 1)
    img[y0:y0 + size, x0:x0 + size][m] = col
  img += rng.normal(0.0, noise, size=img.shape).astype(np.float32)
  return np.clip(img, 0.0, 1.0)


def _draw_attributes(rng: np.random.Generator, num: int) -> np.ndarray:
  """Concept attributes [num, n] float32: objects with ``P_OBJECT``, global ones with 1/2."""
  n_obj = len(COLOURS) * len(SHAPES)
  p = np.array([P_OBJECT] * n_obj + [0.5] * len(GLOBAL_ATTRIBUTES))
  attrs = rng.random((num, len(p))) < p
  while True:  # objects plus clutter must fit the grid's cells
    over = attrs[:, :n_obj].sum(1) + MAX_CLUTTER > GRID * GRID
    if not over.any():
      return attrs.astype(np.float32)
    attrs[over] = rng.random((int(over.sum()), len(p))) < p


def make_dataset(num_images: int, *, image_size: int = 64, seed: int = 0,
                 noise: float = 0.06, temperature: float = 2.0) -> dict[str, np.ndarray]:
  """Generates the dataset deterministically from ``seed``.

  Args:
    num_images: N.
    image_size: S, the images' side in pixels (at least 32).
    seed: random seed; the same seed gives the same arrays.
    noise: standard deviation of the Gaussian pixel noise.
    temperature: scale of the planted logits before the logistic (higher = less label noise).

  Returns:
    ``"image"`` [N,S,S,3] float32 in [-1,1]; ``"labels"`` [N,A] float32 in {0,1} for
    ``ATTRIBUTE_NAMES`` (concepts then targets); ``"gt_contrib"`` [N,T,n] float32, the planted
    contribution ``v_{t,k} s_k`` of each concept to each target.
  """
  if image_size < 32:
    raise ValueError(f"image_size {image_size} is too small for the synthetic attributes; use >= 32.")
  if num_images <= 0:
    raise ValueError(f"num_images must be positive, got {num_images}.")
  rng = np.random.default_rng(seed)
  n = len(CONCEPT_NAMES)
  attrs = _draw_attributes(rng, num_images)
  images = np.stack([_render(rng, a, image_size, noise) for a in attrs])
  signs = 2.0 * attrs - 1.0
  v = np.stack([rule_weights(t) for t in TARGET_NAMES])            # [T,n]
  gt = signs[:, None, :] * v[None]                                  # [N,T,n]
  logits = gt.sum(-1)                                               # [N,T]
  p = 1.0 / (1.0 + np.exp(-temperature * logits))
  targets = (rng.random(p.shape) < p).astype(np.float32)
  return {
      "image": (images * 2.0 - 1.0).astype(np.float32),
      "labels": np.concatenate([attrs, targets], axis=1),
      "gt_contrib": gt.astype(np.float32),
  }


_SPLIT_SEED_OFFSET = {"train": 0, "test": 1_000_003}


def load(split: str, *, num_examples: int, image_size: int = 64, seed: int = 0,
         cache_dir: str | None = None) -> ArraySource:
  """The ``split`` ("train" or "test") as a random-access source; splits use disjoint seeds.

  When ``cache_dir`` is given, the generated arrays are cached there as ``.npz`` (written
  atomically) and reused by later runs with the same arguments.
  """
  if split not in _SPLIT_SEED_OFFSET:
    raise ValueError(f"unknown split {split!r} for synthetic_attributes; use 'train' or 'test'.")
  args = dict(num_images=num_examples, image_size=image_size,
              seed=seed + _SPLIT_SEED_OFFSET[split])
  if cache_dir is None:
    return ArraySource(make_dataset(**args))
  os.makedirs(cache_dir, exist_ok=True)
  path = os.path.join(cache_dir, f"synthetic_attributes_{split}_{num_examples}_{image_size}_{seed}.npz")
  if os.path.exists(path):
    try:
      with np.load(path) as f:
        return ArraySource({k: f[k] for k in f.files})
    except Exception:  # a damaged cache is regenerated, never trusted
      pass
  arrays = make_dataset(**args)
  fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp.npz")  # unique per process
  with os.fdopen(fd, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)
  return ArraySource(arrays)
