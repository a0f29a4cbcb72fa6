"""Synthetic "animals" with ground-truth part masks: the built-in data of Experiment 1.

A stand-in for Pascal-Part that runs on a CPU in seconds. A *positive* image shows one animal
built from four parts (``PART_NAMES``), each with its own shape, colour and texture:

* ``head``: a tan ellipse with a dark eye;
* ``torso``: an orange-brown ellipse with stripes across the body axis;
* ``legs``: four dark-brown bars under the torso, swinging by a random angle (walking pose);
* ``tail``: a light, banded bar leaving the rear of the torso at a random angle.

The animal varies in position, scale (body length 50-80 % of the image side), orientation
(horizontal flip, whole-body rotation of up to ±15°) and pose (head raised or lowered, leg swing,
tail angle), and is drawn over *clutter*: a tinted background with a brightness gradient, 2-5
random distractor shapes (discs, boxes, triangles in random colours) and Gaussian pixel noise.

A *negative* image has the same clutter (one more distractor) and no animal. With probability
``stray_part_prob`` it also shows one **isolated part** (a lone head, torso, set of legs or
tail, drawn exactly like an animal's part, with its own random pose), so a classifier has to see
the configuration of parts, not any single part.

Ground truth: ``part_mask[k]`` [H,W] int32 with 0 = background and ``p + 1`` for
``PART_NAMES[p]``; later-drawn parts cover earlier ones (order torso, legs, tail, head). In a
positive image it marks the animal's parts. In a negative image it marks the stray part, if any
(that is where the part-like pixels are; the label 0 says there is no animal), and is all zero
otherwise; ``stray_part`` [N] int32 holds that part's id (0: none; always 0 for positives).

Counterfactuals. Image ``i`` is rendered from a *scene* whose random draws (background and
distractors, colours, placement, pose, pixel noise) come from the image's own stream
``default_rng([*seed, i])``; ``render_without`` redraws it with one part removed, so the two
images differ only inside that part's pixels (what the part covered shows: background, or a part
drawn under it).
"""

from __future__ import annotations

import functools

import numpy as np

from xplain_jax.data.scenes import SceneSource
from xplain_jax.errors import DataError

PART_NAMES = ("head", "torso", "legs", "tail")
_DRAW_ORDER = ("torso", "legs", "tail", "head")
_PART_COLOURS = {"head": (0.93, 0.78, 0.5), "torso": (0.8, 0.45, 0.15),
                 "legs": (0.3, 0.17, 0.08), "tail": (0.9, 0.9, 0.85)}
_EYE_COLOUR = (0.05, 0.05, 0.05)
_SPLITS = ("train", "test")


def _along_across(u, v, u0, v0, angle):
  """Coordinates along / across a ray from (u0, v0) at ``angle`` (radians, v points down)."""
  du, dv = u - u0, v - v0
  c, s = np.cos(angle), np.sin(angle)
  return du * c + dv * s, -du * s + dv * c


def _bar(u, v, u0, v0, angle, length, half_width):
  along, across = _along_across(u, v, u0, v0, angle)
  return (along >= 0) & (along <= length) & (np.abs(across) <= half_width)


def _random_pose(rng: np.random.Generator) -> dict:
  """Per-animal pose parameters, in units of the body length."""
  return {
      "neck": rng.uniform(-0.45, 0.45),            # head raised (<0) or lowered (>0)
      "swing": rng.uniform(-0.35, 0.35),           # leg swing angle
      "tail": np.pi + rng.uniform(-0.9, 0.6),      # tail direction (pointing backwards)
      "torso_a": rng.uniform(0.38, 0.44), "torso_b": rng.uniform(0.17, 0.22),
      "stripe": rng.uniform(0.0, 2 * np.pi),
  }


def _part_shapes(u, v, pose: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Boolean masks and brightness textures of the four parts in canonical body coordinates.

  The body faces +u, v points down, the torso is centred at the origin, and lengths are in
  units of the body length.
  """
  a, b = pose["torso_a"], pose["torso_b"]
  torso = (u / a) ** 2 + (v / b) ** 2 <= 1.0
  torso_tex = 1.0 + 0.18 * np.sign(np.sin(u * 2 * np.pi * 6 + pose["stripe"]))
  shoulder = (a - 0.08, -0.08)
  neck = -0.6 + pose["neck"]
  hu, hv = shoulder[0] + 0.27 * np.cos(neck), shoulder[1] + 0.27 * np.sin(neck)
  head = ((u - hu) / 0.16) ** 2 + ((v - hv) / 0.12) ** 2 <= 1.0
  eye = ((u - hu - 0.06) ** 2 + (v - hv + 0.03) ** 2) <= 0.03 ** 2
  legs = np.zeros_like(torso)
  for k, u0 in enumerate((-0.27, -0.17, 0.17, 0.27)):
    swing = pose["swing"] * (1 if k % 2 == 0 else -1)
    legs |= _bar(u, v, u0, b * 0.6, np.pi / 2 + swing, 0.36, 0.045)
  tail_base = (-a + 0.05, -0.04)
  tail = _bar(u, v, tail_base[0], tail_base[1], pose["tail"], 0.38, 0.04)
  along, _ = _along_across(u, v, tail_base[0], tail_base[1], pose["tail"])
  tail_tex = 1.0 - 0.35 * (np.floor(along / 0.08) % 2)
  ones = np.ones_like(u)
  return {"torso": (torso, torso_tex), "legs": (legs, ones), "tail": (tail, tail_tex),
          "head": (head, np.where(eye, 0.0, 1.0)), "_eye": (eye & head, ones)}


def _canonical_coords(s: int, body: dict):
  """Pixel grid mapped into the frame of the placed, scaled, rotated, flipped body ``body``."""
  yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
  dx, dy = xx - body["cx"], yy - body["cy"]
  c, si = np.cos(body["theta"]), np.sin(body["theta"])
  u = body["flip"] * (dx * c + dy * si) / body["length"]
  v = (-dx * si + dy * c) / body["length"]
  return u, v


def _random_body(s: int, rng: np.random.Generator, length_range=(0.5, 0.8)) -> dict:
  """Placement, scale, rotation and flip of a body."""
  length = rng.uniform(*length_range) * s
  margin = 0.45 * length
  cy, cx = rng.uniform(margin, s - margin, size=2)
  return {"length": length, "cy": cy, "cx": cx, "theta": rng.uniform(-np.pi / 12, np.pi / 12),
          "flip": 1.0 if rng.random() < 0.5 else -1.0}


def _random_background(s: int, rng: np.random.Generator, num_distractors: int) -> dict:
  distractors = []
  for _ in range(num_distractors):
    d = {"size": rng.uniform(0.1, 0.3) * s, "centre": rng.uniform(0, s, size=2),
         "kind": int(rng.integers(3))}
    if d["kind"] == 1:
      d["half"] = (rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.5))
    d["colour"] = rng.uniform(0, 1, size=3)
    distractors.append(d)
  return {"tint": rng.uniform(0.2, 0.8, size=3), "direction": rng.normal(size=2),
          "distractors": distractors}


def _background(s: int, bg: dict) -> np.ndarray:
  yy, xx = np.mgrid[0:s, 0:s] / s
  direction = bg["direction"]
  grad = 0.25 * ((yy - 0.5) * direction[0] + (xx - 0.5) * direction[1])
  img = np.clip(bg["tint"][None, None] + grad[..., None], 0, 1).astype(np.float32)
  for d in bg["distractors"]:
    cy, cx = d["centre"]
    dy, dx = (np.mgrid[0:s, 0:s] + 0.5 - np.array([cy, cx])[:, None, None]) / d["size"]
    if d["kind"] == 0:
      m = dx ** 2 + dy ** 2 <= 0.25
    elif d["kind"] == 1:
      m = (np.abs(dx) <= d["half"][0]) & (np.abs(dy) <= d["half"][1])
    else:
      m = (dy <= 0.4) & (np.abs(dx) <= (dy + 0.5) * 0.5) & (dy >= -0.5)
    img[m] = d["colour"]
  return img


def _draw(img, part_mask, shapes, parts, colours):
  for name in _DRAW_ORDER:
    if name not in parts:
      continue
    m, tex = shapes[name]
    col = np.asarray(colours[name], np.float32)
    img[m] = np.clip(col[None] * tex[m][:, None], 0, 1)
    part_mask[m] = PART_NAMES.index(name) + 1
  if "head" in parts:
    img[shapes["_eye"][0]] = _EYE_COLOUR


def draw_scene(rng: np.random.Generator, s: int, positive: bool, stray_part_prob: float,
               noise: float) -> dict:
  """The random draws of one image, fixed per element (background, colours, body, pose, noise).

  Returns:
    A dict: ``"parts"`` (the part names shown: all four for a positive, the stray part or none
    for a negative), ``"background"``, ``"colours"``, ``"body"``, ``"pose"`` and ``"noise"``
    [S,S,3].
  """
  background = _random_background(s, rng, int(rng.integers(2, 6)) + (0 if positive else 1))
  colours = {k: np.clip(np.asarray(c) + rng.uniform(-0.07, 0.07, 3), 0, 1)
             for k, c in _PART_COLOURS.items()}
  stray = rng.random() < stray_part_prob
  name = PART_NAMES[rng.integers(len(PART_NAMES))]
  parts = PART_NAMES if positive else ((name,) if stray else ())
  return {"parts": tuple(parts), "background": background, "colours": colours,
          "body": _random_body(s, rng), "pose": _random_pose(rng),
          "noise": rng.normal(0.0, noise, size=(s, s, 3)).astype(np.float32)}


def render_scene(scene: dict, s: int, parts=None):
  """Draws ``scene`` showing ``parts`` (default: the scene's own).

  Returns:
    the image [S,S,3] float32 in [0,1] and its part mask [S,S] int32.
  """
  parts = scene["parts"] if parts is None else tuple(parts)
  img = _background(s, scene["background"])
  part_mask = np.zeros((s, s), np.int32)
  if parts:
    u, v = _canonical_coords(s, scene["body"])
    _draw(img, part_mask, _part_shapes(u, v, scene["pose"]), parts, scene["colours"])
  return np.clip(img + scene["noise"], 0.0, 1.0), part_mask


def render_without(seed, indices, part: int, *, num_images: int, image_size: int = 64,
                   positive_fraction: float = 0.5, stray_part_prob: float = 0.3,
                   noise: float = 0.04) -> np.ndarray:
  """Counterfactual images: images ``indices`` of ``make_parts_dataset(num_images, seed=seed,
  ...)`` with part ``PART_NAMES[part]`` removed (what was under it shows; an image without that
  part is returned unchanged).

  Returns:
    [b,S,S,3] float32 in [-1,1], as the dataset's ``"image"``.
  """
  if not 0 <= part < len(PART_NAMES):
    raise DataError(f"part {part} is out of range; use 0..{len(PART_NAMES) - 1} "
                     "(an index into PART_NAMES).")
  labels = _labels(seed, num_images, positive_fraction)
  out = np.empty((len(indices), image_size, image_size, 3), np.float32)
  for row, i in enumerate(np.asarray(indices).reshape(-1)):
    sc = _scene(seed, int(i), image_size, labels[i] > 0, stray_part_prob, noise)
    keep = [p for p in sc["parts"] if p != PART_NAMES[part]]
    out[row] = render_scene(sc, image_size, keep)[0] * 2.0 - 1.0
  return out


def _seed_list(seed) -> list:
  return list(np.atleast_1d(np.asarray(seed, dtype=np.int64)))


def _labels(seed, num_images: int, positive_fraction: float) -> np.ndarray:
  rng = np.random.default_rng(_seed_list(seed) + [2**31 - 1])
  labels = np.zeros(num_images, np.float32)
  labels[rng.permutation(num_images)[:int(round(num_images * positive_fraction))]] = 1.0
  return labels


def _scene(seed, index, s, positive, stray_part_prob, noise):
  rng = np.random.default_rng(_seed_list(seed) + [int(index)])
  return draw_scene(rng, s, positive, stray_part_prob, noise)


def make_parts_dataset(num_images: int, *, image_size: int = 64, seed=0,
                       positive_fraction: float = 0.5, stray_part_prob: float = 0.3,
                       noise: float = 0.04) -> dict[str, np.ndarray]:
  """Generates the dataset deterministically from ``seed``.

  Args:
    num_images: N.
    image_size: S, the side of the square images in pixels (at least 32).
    seed: an int or a sequence of ints for ``np.random.default_rng``; equal seeds give equal
      arrays.
    positive_fraction: share of positive images; exactly ``round(N * positive_fraction)`` are
      positive, in a random order.
    stray_part_prob: probability that a negative image shows one isolated part.
    noise: standard deviation of the Gaussian pixel noise (on the [0, 1] scale).

  Returns:
    ``"image"`` [N,S,S,3] float32 in [-1, 1] (pixels p in [0, 1] stored as 2p − 1);
    ``"label"`` [N] float32 in {0, 1} (1: an animal is present);
    ``"part_mask"`` [N,S,S] int32, 0 = background, p + 1 = ``PART_NAMES[p]`` (see module doc);
    ``"stray_part"`` [N] int32, the part id of a negative's isolated part (0: none).
  """
  if image_size < 32:
    raise DataError(f"image_size {image_size} is too small for the synthetic parts; use >= 32.")
  if num_images <= 0:
    raise DataError(f"num_images must be positive, got {num_images}.")
  if not 0.0 <= positive_fraction <= 1.0:
    raise DataError(f"positive_fraction {positive_fraction} must lie in [0, 1].")
  labels = _labels(seed, num_images, positive_fraction)
  images = np.empty((num_images, image_size, image_size, 3), np.float32)
  masks = np.empty((num_images, image_size, image_size), np.int32)
  stray = np.zeros(num_images, np.int32)
  for k in range(num_images):
    sc = _scene(seed, k, image_size, labels[k] > 0, stray_part_prob, noise)
    img, masks[k] = render_scene(sc, image_size)
    if labels[k] == 0 and (masks[k] > 0).any():
      stray[k] = PART_NAMES.index(sc["parts"][0]) + 1
    images[k] = img * 2.0 - 1.0
  return {"image": images, "label": labels, "part_mask": masks, "stray_part": stray}


def load(split: str, *, num_examples: int, image_size: int = 64, seed: int = 0,
         positive_fraction: float = 0.5, stray_part_prob: float = 0.3) -> SceneSource:
  """The ``split`` ("train" or "test") as an in-memory random-access source.

  The splits come from disjoint random streams: seeds ``(seed, 0)`` for train and
  ``(seed, 1)`` for test.

  Returns:
    a ``SceneSource`` over the arrays of ``make_parts_dataset``; its
    ``counterfactuals(indices, part)`` redraws images with part ``PART_NAMES[part]`` removed.
  """
  if split not in _SPLITS:
    raise DataError(f"unknown split {split!r} for synthetic_parts; use 'train' or 'test'.")
  split_seed = (seed, _SPLITS.index(split))
  kwargs = dict(image_size=image_size, positive_fraction=positive_fraction,
                stray_part_prob=stray_part_prob)
  render = functools.partial(render_without, split_seed, num_images=num_examples, **kwargs)
  return SceneSource(make_parts_dataset(num_examples, seed=split_seed, **kwargs), render,
                     len(PART_NAMES))
