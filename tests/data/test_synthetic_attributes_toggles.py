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


def test_the_source_renders_many_toggles_as_its_counterfactuals():
  source = sa.load("test", num_examples=7, image_size=S)
  idx, concepts = np.array([6, 0, 2]), np.array([4, 0, 19])
  many = source.toggles(idx, concepts)
  for j, k in enumerate(concepts):
    assert many[:, j].tobytes() == source.counterfactuals(idx, int(k)).tobytes()
  with pytest.raises(DataError, match="out of range"):
    source.toggles(idx, [20])
  with pytest.raises(DataError, match="must lie in"):
    source.toggles([7], [0])


@pytest.mark.parametrize("max_bytes", [1, 3 * 5 * S * S * 3 * 4, 2 ** 28])  # groups of 1, 5, all
def test_rendering_effects_from_prepared_toggles_are_unchanged(monkeypatch, max_bytes):
  from xplain_jax import fidelity  # pylint: disable=import-outside-toplevel
  from xplain_jax.data import scenes  # pylint: disable=import-outside-toplevel
  source = sa.load("train", num_examples=9, image_size=S)
  indices, columns = np.array([8, 1, 4]), np.array([2, 19, 0, 7, 11, 3])
  y_fn = lambda images: np.asarray(images).reshape(len(images), -1).mean(axis=1) ** 2
  y = y_fn(source.get_batch(indices)["image"])
  expected = fidelity.rendering_effects(y_fn, source.counterfactuals, indices, len(columns),
                                        y=y, batch_size=2, columns=columns)
  calls = []
  real = scenes.SceneSource.toggles
  monkeypatch.setattr(scenes.SceneSource, "toggles",
                      lambda self, i, c: calls.append(len(c)) or real(self, i, c))
  prepared = scenes.toggled_once(source, indices, columns, max_bytes=max_bytes)
  got = fidelity.rendering_effects(y_fn, prepared, indices, len(columns), y=y, batch_size=2,
                                   columns=columns)
  assert got.tobytes() == expected.tobytes()
  assert sum(calls) == len(columns)  # every concept's images rendered once
  with pytest.raises(DataError, match="not among"):
    prepared(np.array([0]), 2)


def test_a_wrapped_source_passes_its_toggles_on():
  from xplain_jax import data  # pylint: disable=import-outside-toplevel
  from xplain_jax.data import scenes  # pylint: disable=import-outside-toplevel
  source = sa.load("test", num_examples=5, image_size=S)
  wrapped = data.MappedSource(source, lambda batch: batch)
  many = wrapped.toggles([3, 1], [5, 2])
  assert many.tobytes() == source.toggles([3, 1], [5, 2]).tobytes()
  no_toggles = type("Plain", (), {"counterfactuals": source.counterfactuals,
                                  "get_batch": source.get_batch})()
  prepared = scenes.toggled_once(no_toggles, [3, 1], [5, 2])
  assert prepared(np.array([1]), 2).tobytes() == source.counterfactuals([1], 2).tobytes()
