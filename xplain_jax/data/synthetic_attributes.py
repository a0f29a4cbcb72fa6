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
  their positions vary. (An attribute vector that leaves no cell free, probability about 6 %,
  is drawn again, so that any absent object can be added in a counterfactual.)
* 8 global attributes, each present with probability 1/2: ``bright_background``,
  ``horizontal_stripes``, ``vertical_stripes``, ``border`` (a white frame), ``speckles`` (dense
  small dots), ``dark_corner`` (a shaded corner), ``diagonal_line`` (a thin dark line corner to
  corner) and ``warm_tint`` (a reddish-yellow background tint).

Clutter that is *not* an attribute: one distractor object in yellow, magenta or cyan (any
shape), a random background tint jitter, and Gaussian pixel noise, so that a CNN has to learn
colour and shape jointly.

The planted rule. With ``s_k = 2 a_k - 1`` in {-1, +1} for concept attribute ``a_k``, target ``t``
has logit ``z_t = Σ_k c_{t,k}`` and label ``Bernoulli(sigmoid(temperature * z_t))`` (label
noise). Under the default rule (``rule="linear"``) the terms are ``c_{t,k} = v_{t,k} s_k`` with
the sparse signed weights ``TARGET_RULES`` (so the mean absolute contribution of concept ``k`` is
``|v_{t,k}|``; concepts with ``v = 0`` contribute nothing). The benchmark regimes
``"context"`` (context-dependent weights), ``"redundant"`` (concepts that always co-occur) and
``"shortcut"`` (a nuisance attribute correlated with the label) are defined, with their test
split and what a faithful explanation shows, in ``xplain_jax.data.synthetic_rules``. The
ground-truth contribution (``gt_contrib``) is the term ``c_{t,k}`` of the image.

Counterfactuals. Image ``i`` is rendered from a *scene*, ``scene(seed, i)``: every random draw
(placements of all twelve objects, present or not, the clutter, the corner, the line's direction,
the speckle dots, the pixel noise) is fixed per image and per element. ``render_toggled`` redraws
images with one concept toggled (a present object removed, leaving the background that was under
it; an absent one added in a free cell; a global attribute switched in place), so the two images
differ only in that concept's pixels: the performer's own effect of a concept,
``Δ_k = y(I) − y(I with k toggled)``, is measured by rendering (``xplain_jax.fidelity``).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from xplain_jax import utils
from xplain_jax.data import synthetic_rules as rules
from xplain_jax.data.scenes import SceneSource, shape_mask
from xplain_jax.data.synthetic_rules import (  # noqa: F401  (the vocabulary, re-exported)
    CONCEPT_NAMES, GLOBAL_ATTRIBUTES, GRID, RULES, SHAPES, TARGET_NAMES, TARGET_RULES,
    rule_weights)
from xplain_jax.errors import DataError

COLOURS = dict(zip(rules.COLOUR_NAMES, ((0.9, 0.15, 0.1), (0.1, 0.8, 0.2), (0.15, 0.3, 0.95))))
CLUTTER_COLOURS = ((0.95, 0.9, 0.1), (0.9, 0.1, 0.9), (0.1, 0.9, 0.9))
ATTRIBUTE_NAMES = CONCEPT_NAMES + TARGET_NAMES
MAX_CLUTTER = 1  # distractor objects per image
P_OBJECT = 0.4  # probability of each object attribute


@functools.lru_cache(maxsize=None)
def _grids(s: int) -> tuple[np.ndarray, np.ndarray]:
  return np.mgrid[0:s, 0:s]


def _draw_attributes(rng: np.random.Generator, rule: str) -> np.ndarray:
  """Concept attributes [n] bool: objects with ``P_OBJECT``, global ones with 1/2.

  ``rule="redundant"`` ties each pair's partner to its concept. Drawn again until the objects
  plus clutter leave at least one grid cell free (so any absent object can be added in a
  counterfactual); about 6 % of draws are repeated.
  """
  n_obj = len(COLOURS) * len(SHAPES)
  p = np.array([P_OBJECT] * n_obj + [0.5] * len(GLOBAL_ATTRIBUTES))
  while True:
    attrs = rules.tie_partners(rng.random(len(p)) < p, rule)
    if attrs[:n_obj].sum() + MAX_CLUTTER < GRID * GRID:
      return attrs


def draw_scene(rng: np.random.Generator, image_size: int, noise: float, rule: str = "linear",
               temperature: float = 2.0) -> dict:
  """The random draws of one image, fixed per element and independent of what is toggled later.

  Every object attribute has its own placement (cell, size, offset, flip, brightness) whether or
  not it is present: present objects and the clutter hold distinct cells; an absent object's cell
  is one left free, so adding it covers only background. Global attributes have their own draws
  (corner, line direction, speckle dots); the pixel noise is drawn once. ``rule`` (see
  ``synthetic_rules``) may tie or set attributes: ``"redundant"`` ties pairs, ``"shortcut"``
  sets the nuisance from the label drawn at ``temperature`` with one more draw at the end.

  Returns:
    A dict: ``"attrs"`` [n] bool (the factual concept attributes), ``"cell"`` [O+1] int (objects
    then clutter), ``"size"``, ``"dy"``, ``"dx"`` [O+1] int, ``"flip"`` [O+1] bool,
    ``"bright"`` [O+1] float, ``"clutter"`` (colour index, shape index), ``"jitter"`` [3],
    ``"corner"`` [2] int, ``"anti_diagonal"`` bool, ``"dots"`` [S,S] bool, ``"noise"`` [S,S,3],
    ``"label_u"`` [T] uniform draws of the targets' label noise.
  """
  s = image_size
  rules.check_rule(rule)
  attrs = _draw_attributes(rng, rule)
  n_obj = len(COLOURS) * len(SHAPES)
  cell = s // GRID
  perm = rng.permutation(GRID * GRID)
  present = np.flatnonzero(attrs[:n_obj])
  cells = np.empty(n_obj + MAX_CLUTTER, np.int64)
  used = len(present) + MAX_CLUTTER
  cells[n_obj:] = perm[:MAX_CLUTTER]
  cells[present] = perm[MAX_CLUTTER:used]
  free = perm[used:]
  absent = np.flatnonzero(~attrs[:n_obj])
  cells[absent] = free[rng.integers(0, len(free), size=len(absent))]
  size = rng.integers(int(cell * 0.6), int(cell * 0.95) + 1, size=n_obj + MAX_CLUTTER)
  u = rng.random((2, n_obj + MAX_CLUTTER))
  out = {
      "attrs": attrs, "cell": cells, "size": size,
      "dy": (u[0] * (cell - size + 1)).astype(np.int64),
      "dx": (u[1] * (cell - size + 1)).astype(np.int64),
      "flip": rng.random(n_obj + MAX_CLUTTER) < 0.5,
      "bright": rng.uniform(0.8, 1.1, size=n_obj + MAX_CLUTTER),
      "clutter": (int(rng.integers(len(CLUTTER_COLOURS))), int(rng.integers(len(SHAPES)))),
      "jitter": rng.uniform(-0.05, 0.05, size=3),
      "corner": rng.integers(0, 2, size=2) * (s - 1),
      "anti_diagonal": bool(rng.random() < 0.5),
      "dots": rng.random((s, s)) < 0.06,
      "noise": rng.normal(0.0, noise, size=(s, s, 3)).astype(np.float32),
      "label_u": rng.random(len(TARGET_NAMES)),
  }
  if rule == "shortcut":
    out["attrs"] = rules.set_shortcut(attrs, cells[:n_obj], out["label_u"], rng.random(),
                                      temperature)
  return out


def attribute_pattern(scene: dict, name: str, image_size: int) -> np.ndarray:
  """The pixels [S,S] bool a global attribute's own drawing touches (before objects cover it)."""
  s = image_size
  yy, xx = _grids(s)
  period = max(4, s // 8)
  if name in ("bright_background", "warm_tint"):
    return np.ones((s, s), bool)
  if name == "horizontal_stripes":
    return (yy // (period // 2)) % 2 == 0
  if name == "vertical_stripes":
    return (xx // (period // 2)) % 2 == 0
  if name == "dark_corner":
    cy, cx = scene["corner"]
    return np.sqrt((yy - cy)**2 + (xx - cx)**2) / s * 1.3 + 0.35 < 1.0
  if name == "speckles":
    return scene["dots"]
  if name == "diagonal_line":
    return np.abs(yy - ((s - 1 - xx) if scene["anti_diagonal"] else xx)) <= max(1, s // 64)
  if name == "border":
    w = max(2, s // 21)
    return (yy < w) | (yy >= s - w) | (xx < w) | (xx >= s - w)
  raise DataError(f"{name!r} is not a global attribute; choose one of {list(GLOBAL_ATTRIBUTES)}.")


def object_box(scene: dict, k: int, image_size: int) -> tuple[int, int, int]:
  """(top, left, size) of object ``k``'s box (k < 12: an object attribute; 12: the clutter)."""
  cell = image_size // GRID
  c = int(scene["cell"][k])
  return ((c // GRID) * cell + int(scene["dy"][k]), (c % GRID) * cell + int(scene["dx"][k]),
          int(scene["size"][k]))


def render_scene(scene: dict, attrs: np.ndarray, image_size: int) -> np.ndarray:
  """Draws the scene with concept attributes ``attrs`` [n] (not necessarily the factual ones).

  Returns:
    [S,S,3] float32 in [0,1].
  """
  return render_scene_variants(scene, np.asarray(attrs, bool)[None], image_size)[0]


def render_scene_variants(scene: dict, attrs: np.ndarray, image_size: int) -> np.ndarray:
  """Draws one scene under K attribute vectors at once (e.g. each with one concept toggled).

  The global attributes' drawing (the background before objects) is made once per distinct
  set of global attributes; a variant that differs from an earlier one with the same global
  attributes only in its objects is that image with the differing objects' boxes drawn again.
  Every step acts on each pixel alone, so redrawing a box computes the same float32 values as
  drawing the whole image: variant ``j`` equals a separate drawing of ``attrs[j]`` bit for bit.

  Args:
    scene: ``draw_scene``'s dict.
    attrs: [K,n] bool concept attributes, one row per variant.
    image_size: S.

  Returns:
    [K,S,S,3] float32 in [0,1].
  """
  s, n_obj = image_size, len(COLOURS) * len(SHAPES)
  attrs = np.asarray(attrs, bool)
  show = np.concatenate([attrs[:, :n_obj], np.ones((len(attrs), MAX_CLUTTER), bool)], axis=1)
  out = np.empty((len(attrs), s, s, 3), np.float32)
  backgrounds, drawn = {}, {}  # global attributes -> background; -> (show, image) drawn whole
  for j, row in enumerate(attrs):
    key = tuple(row[n_obj:])
    if key not in backgrounds:
      backgrounds[key] = _background(scene, dict(zip(CONCEPT_NAMES, row)), s)
    background = backgrounds[key]
    if key not in drawn:
      out[j] = _finish(scene, show[j], background, (0, 0, s, s), s)
      drawn[key] = (show[j], out[j])
      continue
    first_show, first = drawn[key]
    out[j] = first
    for k in np.flatnonzero(show[j] != first_show):
      y0, x0, size = object_box(scene, k, s)
      window = (y0, x0, y0 + size, x0 + size)
      out[j, y0:y0 + size, x0:x0 + size] = _finish(scene, show[j], background, window, s)
  return out


def _background(scene: dict, g: dict, s: int) -> np.ndarray:
  """The global attributes ``g`` (name -> bool) drawn, before any object: [S,S,3] float32."""
  img = np.empty((s, s, 3), np.float32)
  img[:] = (0.62 if g["bright_background"] else 0.22) + scene["jitter"]
  if g["warm_tint"]:
    img += np.asarray((0.12, 0.05, -0.1), np.float32)
  pattern = lambda name: attribute_pattern(scene, name, s)
  if g["horizontal_stripes"]:
    img[pattern("horizontal_stripes")] += 0.18
  if g["vertical_stripes"]:
    img[pattern("vertical_stripes")] -= 0.12
  if g["dark_corner"]:
    yy, xx = _grids(s)
    cy, cx = scene["corner"]
    dist = np.sqrt((yy - cy)**2 + (xx - cx)**2) / s
    img *= np.clip(0.35 + dist * 1.3, 0.35, 1.0)[..., None]
  if g["speckles"]:
    dots = scene["dots"]
    img[dots] = 1.0 - img[dots]
  if g["diagonal_line"]:
    img[pattern("diagonal_line")] = (0.05, 0.05, 0.05)
  if g["border"]:
    img[pattern("border")] = (0.95, 0.95, 0.95)
  return img


def _finish(scene: dict, show: np.ndarray, background: np.ndarray, window: tuple, s: int):
  """The pixels of ``window`` (top, left, bottom, right) of the finished image: the background,
  the shown objects (``show`` [O+1] bool: objects then clutter) in order, noise, clipping."""
  wy0, wx0, wy1, wx1 = window
  img = background[wy0:wy1, wx0:wx1].copy()
  objects = [(COLOURS[c], sh) for c in COLOURS for sh in SHAPES]
  colour, shape = scene["clutter"]
  objects.append((CLUTTER_COLOURS[colour], SHAPES[shape]))
  for k in np.flatnonzero(show):
    y0, x0, size = object_box(scene, k, s)
    top, left, bottom, right = max(y0, wy0), max(x0, wx0), min(y0 + size, wy1), min(x0 + size, wx1)
    if top >= bottom or left >= right:
      continue  # the object lies outside the window
    col, shape = objects[k]
    m = shape_mask(shape, size)
    if scene["flip"][k]:
      m = m[::-1]  # vertical flip: triangles point either way
    m = m[top - y0:bottom - y0, left - x0:right - x0]
    img[top - wy0:bottom - wy0, left - wx0:right - wx0][m] = np.clip(
        np.asarray(col) * scene["bright"][k], 0, 1)
  img += scene["noise"][wy0:wy1, wx0:wx1]
  return np.clip(img, 0.0, 1.0)


def _image_rng(seed: int, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, index])


def scene(seed: int, index: int, *, image_size: int = 64, noise: float = 0.06,
          rule: str = "linear", temperature: float = 2.0) -> dict:
  """The scene of image ``index`` of the dataset made with ``seed`` (see ``draw_scene``)."""
  return draw_scene(_image_rng(seed, index), image_size, noise, rule, temperature)


def render_toggled(seed: int, indices, concept: int, *, image_size: int = 64,
                   noise: float = 0.06, rule: str = "linear",
                   temperature: float = 2.0) -> np.ndarray:
  """Counterfactual images: images ``indices`` of the dataset with ``seed``, concept toggled.

  A present object is removed (the background under it shows), an absent one is added in a free
  cell; a global attribute is switched in place. Nothing else changes: same placements, noise,
  and the other concepts (a redundant partner stays; a shortcut's nuisance stays).

  Args:
    seed: the seed ``make_dataset`` was called with.
    indices: [b] int image indices.
    concept: index into ``CONCEPT_NAMES``.
    image_size, noise, rule, temperature: as given to ``make_dataset``.

  Returns:
    [b,S,S,3] float32 in [-1,1], as ``make_dataset``'s ``"image"``.
  """
  return render_toggles(seed, indices, [concept], image_size=image_size, noise=noise, rule=rule,
                        temperature=temperature)[:, 0]


def render_toggles(seed: int, indices, concepts, *, image_size: int = 64, noise: float = 0.06,
                   rule: str = "linear", temperature: float = 2.0) -> np.ndarray:
  """Many counterfactual images in one call: each image with each of ``concepts`` toggled.

  Each image's scene is drawn once for all its toggles, and its toggles are drawn together
  (``render_scene_variants``); image ``i`` with concept ``concepts[j]`` toggled equals
  ``render_toggled(seed, [i], concepts[j])`` bit for bit.

  Args:
    seed, image_size, noise, rule, temperature: as given to ``make_dataset``.
    indices: [b] int image indices.
    concepts: [K] indices into ``CONCEPT_NAMES``.

  Returns:
    [b,K,S,S,3] float32 in [-1,1], as ``make_dataset``'s ``"image"``.
  """
  concepts = np.asarray(concepts, np.int64).reshape(-1)
  bad = concepts[(concepts < 0) | (concepts >= len(CONCEPT_NAMES))]
  if bad.size:
    raise DataError(f"concept {int(bad[0])} is out of range; use 0..{len(CONCEPT_NAMES) - 1} "
                     "(an index into CONCEPT_NAMES).")
  indices = np.asarray(indices).reshape(-1)
  out = np.empty((len(indices), len(concepts), image_size, image_size, 3), np.float32)
  toggles = np.arange(len(concepts))
  for row, i in enumerate(indices):
    sc = scene(seed, int(i), image_size=image_size, noise=noise, rule=rule,
               temperature=temperature)
    attrs = np.repeat(sc["attrs"][None], len(concepts), axis=0)
    attrs[toggles, concepts] = ~attrs[toggles, concepts]
    variants = render_scene_variants(sc, attrs, image_size)
    np.multiply(variants, 2.0, out=out[row])
    out[row] -= 1.0
  return out


def make_dataset(num_images: int, *, image_size: int = 64, seed: int = 0,
                 noise: float = 0.06, temperature: float = 2.0,
                 rule: str = "linear") -> dict[str, np.ndarray]:
  """Generates the dataset deterministically from ``seed``.

  Image ``i`` is rendered from ``scene(seed, i, rule=rule)``, so ``render_toggled`` can redraw
  it with one concept toggled.

  Args:
    num_images: N.
    image_size: S, the images' side in pixels (at least 32).
    seed: random seed; the same seed gives the same arrays.
    noise: standard deviation of the Gaussian pixel noise.
    temperature: scale of the planted logits before the logistic (higher = less label noise).
    rule: the planted rule, one of ``RULES`` (``synthetic_rules``; "linear" is the default's).

  Returns:
    ``"image"`` [N,S,S,3] float32 in [-1,1]; ``"labels"`` [N,A] float32 in {0,1} for
    ``ATTRIBUTE_NAMES`` (concepts then targets; the concept columns are the true presence);
    ``"gt_contrib"`` [N,T,n] float32, the planted contribution ``c_{t,k}`` of each concept
    to each target (``v_{t,k} s_k`` under the linear rule).
  """
  rules.check_rule(rule)
  if image_size < 32:
    raise DataError(f"image_size {image_size} is too small for the synthetic attributes; "
                    "use >= 32.")
  if num_images <= 0:
    raise DataError(f"num_images must be positive, got {num_images}.")
  images = np.empty((num_images, image_size, image_size, 3), np.float32)
  attrs = np.empty((num_images, len(CONCEPT_NAMES)), np.float32)
  label_u = np.empty((num_images, len(TARGET_NAMES)))
  gt = np.empty((num_images, len(TARGET_NAMES), len(CONCEPT_NAMES)), np.float32)
  for i in range(num_images):
    sc = scene(seed, i, image_size=image_size, noise=noise, rule=rule, temperature=temperature)
    attrs[i], label_u[i] = sc["attrs"], sc["label_u"]
    gt[i] = rules.planted_terms(sc["attrs"], sc["cell"][:rules.NUM_OBJECTS], rule)
    images[i] = render_scene(sc, sc["attrs"], image_size)
  logits = gt.sum(-1)                                               # [N,T]
  p = rules.label_probability(logits, temperature)
  targets = (label_u < p).astype(np.float32)
  return {
      "image": (images * 2.0 - 1.0).astype(np.float32),
      "labels": np.concatenate([attrs, targets], axis=1),
      "gt_contrib": gt.astype(np.float32),
  }


_SPLIT_SEED_OFFSET = {"train": 0, "test": 1_000_003}


def load(split: str, *, num_examples: int, image_size: int = 64, seed: int = 0,
         cache_dir: str | None = None, rule: str = "linear") -> SceneSource:
  """The ``split`` ("train" or "test") as a random-access source; splits use disjoint seeds.

  Both splits follow the same ``rule`` (``synthetic_rules`` says why). When ``cache_dir`` is
  given, the generated arrays are cached there as ``.npz`` (written atomically; the file name
  holds the rule) and reused by later runs with the same arguments. The source's
  ``counterfactuals(indices, concept)`` redraws images with one concept toggled.
  """
  if split not in _SPLIT_SEED_OFFSET:
    raise DataError(f"unknown split {split!r} for synthetic_attributes; use 'train' or 'test'.")
  rules.check_rule(rule)
  split_seed = seed + _SPLIT_SEED_OFFSET[split]
  args = dict(num_images=num_examples, image_size=image_size, seed=split_seed, rule=rule)
  render = functools.partial(_render_toggled_indices, split_seed, image_size, rule)
  scene_source = functools.partial(
      SceneSource, render_fn=render, num_concepts=len(CONCEPT_NAMES),
      render_many_fn=functools.partial(_render_toggles_indices, split_seed, image_size, rule))
  if cache_dir is None:
    return scene_source(make_dataset(**args))
  os.makedirs(cache_dir, exist_ok=True)
  name = f"synthetic_attributes_v2_{rule}_{split}_{num_examples}_{image_size}_{seed}.npz"
  path = os.path.join(cache_dir, name)
  if os.path.exists(path):
    try:
      with np.load(path) as f:
        return scene_source({k: f[k] for k in f.files})
    except Exception:  # a damaged cache is regenerated, never trusted
      pass
  arrays = make_dataset(**args)
  # Every process writes its own temporary file (all of them read the cache back).
  utils.write_atomic(path, lambda f: np.savez(f, **arrays))
  return scene_source(arrays)


def _render_toggled_indices(seed, image_size, rule, indices, concept):
  return render_toggled(seed, indices, concept, image_size=image_size, rule=rule)


def _render_toggles_indices(seed, image_size, rule, indices, concepts):
  return render_toggles(seed, indices, concepts, image_size=image_size, rule=rule)
