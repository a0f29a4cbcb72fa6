"""The vectorised counterfactual renderer equals the per-image, per-toggle one bit for bit."""

import hashlib

import numpy as np
import pytest

from xplain_jax.data import synthetic_attributes as sa
from xplain_jax.errors import DataError

S = 48


def _render_one(scene, attrs, s):
  """The renderer as it was: one image under one attribute vector, step by step."""
  g = dict(zip(sa.CONCEPT_NAMES, np.asarray(attrs, bool)))
  img = np.empty((s, s, 3), np.float32)
  img[:] = (0.62 if g["bright_background"] else 0.22) + scene["jitter"]
  if g["warm_tint"]:
    img += np.asarray((0.12, 0.05, -0.1), np.float32)
  pattern = lambda name: sa.attribute_pattern(scene, name, s)
  if g["horizontal_stripes"]:
    img[pattern("horizontal_stripes")] += 0.18
  if g["vertical_stripes"]:
    img[pattern("vertical_stripes")] -= 0.12
  if g["dark_corner"]:
    yy, xx = np.mgrid[0:s, 0:s]
    cy, cx = scene["corner"]
    img *= np.clip(0.35 + np.sqrt((yy - cy)**2 + (xx - cx)**2) / s * 1.3, 0.35, 1.0)[..., None]
  if g["speckles"]:
    img[scene["dots"]] = 1.0 - img[scene["dots"]]
  if g["diagonal_line"]:
    img[pattern("diagonal_line")] = (0.05, 0.05, 0.05)
  if g["border"]:
    img[pattern("border")] = (0.95, 0.95, 0.95)
  objects = [(sa.COLOURS[c], sh) for c in sa.COLOURS for sh in sa.SHAPES]
  colour, shape = scene["clutter"]
  objects.append((sa.CLUTTER_COLOURS[colour], sa.SHAPES[shape]))
  show = list(np.asarray(attrs[:len(objects) - 1], bool)) + [True]
  for k, ((col, shape), on) in enumerate(zip(objects, show)):
    if on:
      y0, x0, size = sa.object_box(scene, k, s)
      m = sa.shape_mask(shape, size)
      m = m[::-1] if scene["flip"][k] else m
      img[y0:y0 + size, x0:x0 + size][m] = np.clip(np.asarray(col) * scene["bright"][k], 0, 1)
  img += scene["noise"]
  return np.clip(img, 0.0, 1.0)


def _per_image(seed, indices, concept, rule):
  out = []
  for i in indices:
    sc = sa.scene(seed, int(i), image_size=S, rule=rule)
    attrs = sc["attrs"].copy()
    attrs[concept] = ~attrs[concept]
    out.append(_render_one(sc, attrs, S) * 2.0 - 1.0)
  return np.stack(out)


@pytest.mark.parametrize("rule", sa.RULES)
def test_every_toggle_of_every_image_equals_the_per_image_render(rule):
  indices = np.array([0, 5, 3, 11, 7])
  concepts = np.arange(len(sa.CONCEPT_NAMES))
  many = sa.render_toggles(9, indices, concepts, image_size=S, rule=rule)
  assert many.shape == (len(indices), len(concepts), S, S, 3) and many.dtype == np.float32
  for j, k in enumerate(concepts):
    expected = _per_image(9, indices, k, rule)
    assert many[:, j].tobytes() == expected.tobytes(), (rule, sa.CONCEPT_NAMES[k])
    assert sa.render_toggled(9, indices, int(k), image_size=S, rule=rule).tobytes() == (
        expected.tobytes())


def test_factual_variants_equal_the_dataset_images():
  data = sa.make_dataset(6, image_size=S, seed=4)
  for i in range(6):
    sc = sa.scene(4, i, image_size=S)
    variants = sa.render_scene_variants(sc, np.stack([sc["attrs"]] * 3), S)
    for v in variants:
      assert (v * 2.0 - 1.0).tobytes() == data["image"][i].tobytes()
    assert _render_one(sc, sc["attrs"], S).tobytes() == sa.render_scene(sc, sc["attrs"],
                                                                         S).tobytes()


def test_repeated_and_unordered_concepts():
  many = sa.render_toggles(2, [1, 0], [7, 3, 7], image_size=S)
  np.testing.assert_array_equal(many[:, 0], many[:, 2])
  assert many[:, 1].tobytes() == _per_image(2, [1, 0], 3, "linear").tobytes()


def test_the_pinned_checksum_holds():
  # As pinned in test_synthetic_attributes (render_toggled before the vectorised renderer).
  toggled = sa.render_toggles(1_000_003, np.arange(6), [3])[:, 0]
  assert hashlib.sha256(toggled.tobytes()).hexdigest() == (
      "66c555cb558e4b8bdb1285df2cf1d99dc7448cb9fa6ea8d2d82cc4b29e494eee")


def test_a_concept_out_of_range_is_refused():
  with pytest.raises(DataError, match="out of range"):
    sa.render_toggles(0, [0], [0, len(sa.CONCEPT_NAMES)])
  with pytest.raises(DataError, match="out of range"):
    sa.render_toggled(0, [0], -1)
