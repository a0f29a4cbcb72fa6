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
from xplain_jax.data.attribute_drawing import (  # noqa: F401  (the drawing, re-exported)
    CLUTTER_COLOURS, COLOURS, MAX_CLUTTER, P_OBJECT, attribute_pattern, draw_scene, object_box,
    render_scene, render_scene_variants)
from xplain_jax.data.scenes import SceneSource, shape_mask  # noqa: F401  (shape_mask re-exported)
from xplain_jax.data.synthetic_rules import (  # noqa: F401  (the vocabulary, re-exported)
    CONCEPT_NAMES, GLOBAL_ATTRIBUTES, GRID, RULES, SHAPES, TARGET_NAMES, TARGET_RULES,
    rule_weights)
from xplain_jax.errors import DataError

ATTRIBUTE_NAMES = CONCEPT_NAMES + TARGET_NAMES


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
