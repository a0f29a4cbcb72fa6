"""Drawing one image of the synthetic attributes: its random draws and its pixels.

``draw_scene`` fixes every random draw of one image (placements of all twelve objects, present
or not, the clutter, the global attributes' draws, the pixel noise); ``render_scene`` and
``render_scene_variants`` draw it under any concept attribute vectors, so a counterfactual
differs from the factual image only in the toggled concept's pixels. The dataset built from
these scenes (its seeds, labels, splits, cache and counterfactual sources) is
``xplain_jax.data.synthetic_attributes``, whose docstring describes the attributes.
"""

from __future__ import annotations

import functools

import numpy as np

from xplain_jax.data import synthetic_rules as rules
from xplain_jax.data.scenes import shape_mask
from xplain_jax.data.synthetic_rules import (
    CONCEPT_NAMES, GLOBAL_ATTRIBUTES, GRID, SHAPES, TARGET_NAMES)
from xplain_jax.errors import DataError

COLOURS = dict(zip(rules.COLOUR_NAMES, ((0.9, 0.15, 0.1), (0.1, 0.8, 0.2), (0.15, 0.3, 0.95))))
CLUTTER_COLOURS = ((0.95, 0.9, 0.1), (0.9, 0.1, 0.9), (0.1, 0.9, 0.9))
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
