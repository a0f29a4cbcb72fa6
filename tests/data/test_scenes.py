"""Counterfactual rendering: toggling one concept changes only that concept's pixels."""

import numpy as np
import pytest

from xplain_jax.data import scenes
from xplain_jax.data import synthetic_attributes as sa
from xplain_jax.data import synthetic_parts as sp
from xplain_jax.errors import DataError

S, SEED, N = 64, 11, 12
NUM_OBJECTS = len(sa.COLOURS) * len(sa.SHAPES)


@pytest.fixture(scope="module")
def attrs_data():
  return sa.make_dataset(N, image_size=S, seed=SEED)


def _changed(a, b):
  return np.abs(a - b).max(axis=-1) > 0


def test_factual_scene_renders_the_dataset_image(attrs_data):
  for i in range(N):
    sc = sa.scene(SEED, i, image_size=S)
    np.testing.assert_array_equal(sc["attrs"], attrs_data["labels"][i, :len(sa.CONCEPT_NAMES)])
    np.testing.assert_allclose(sa.render_scene(sc, sc["attrs"], S) * 2 - 1,
                               attrs_data["image"][i], atol=1e-6)


def _cell_box(cell):
  size = S // sa.GRID
  r, c = divmod(int(cell), sa.GRID)
  box = np.zeros((S, S), bool)
  box[r * size:(r + 1) * size, c * size:(c + 1) * size] = True
  return box


def test_object_counterfactual_changes_only_its_cell(attrs_data):
  for k in range(NUM_OBJECTS):
    cf = sa.render_toggled(SEED, np.arange(N), k, image_size=S)
    for i in range(N):
      sc = sa.scene(SEED, i, image_size=S)
      changed = _changed(cf[i], attrs_data["image"][i])
      assert changed.any(), (k, i)  # removed or added: something is visible
      assert not (changed & ~_cell_box(sc["cell"][k])).any(), (k, i)
      if not sc["attrs"][k]:
        # An added object goes into a cell no present object nor the clutter holds.
        held = [sc["cell"][j] for j in range(NUM_OBJECTS) if sc["attrs"][j]]
        held += list(sc["cell"][NUM_OBJECTS:])
        assert sc["cell"][k] not in held


def test_removed_object_leaves_the_background_under_it(attrs_data):
  for i in range(N):
    sc = sa.scene(SEED, i, image_size=S)
    present = [k for k in range(NUM_OBJECTS) if sc["attrs"][k]]
    if not present:
      continue
    k = present[0]
    without = sc["attrs"].copy()
    without[k] = False
    # The scene with every object removed shows the background; removing k alone must show
    # exactly that background inside k's cell.
    bare = sc["attrs"].copy()
    bare[:NUM_OBJECTS] = False
    cell = _cell_box(sc["cell"][k])
    np.testing.assert_allclose(sa.render_scene(sc, without, S)[cell],
                               sa.render_scene(sc, bare, S)[cell], atol=1e-6)


def _expected_pattern(name, sc):
  """Where a global attribute may change pixels, derived from its description in the module doc."""
  yy, xx = np.mgrid[0:S, 0:S]
  half = max(4, S // 8) // 2
  if name == "horizontal_stripes":
    return (yy // half) % 2 == 0
  if name == "vertical_stripes":
    return (xx // half) % 2 == 0
  if name == "border":
    w = max(2, S // 21)
    return np.minimum(np.minimum(yy, S - 1 - yy), np.minimum(xx, S - 1 - xx)) < w
  if name == "speckles":
    return sc["dots"]
  if name == "diagonal_line":
    target = (S - 1 - xx) if sc["anti_diagonal"] else xx
    return np.abs(yy - target) <= max(1, S // 64)
  if name == "dark_corner":  # shading 0.35 + 1.3 d/S stays below 1 within d < S/2 of the corner
    cy, cx = sc["corner"]
    return np.hypot(yy - cy, xx - cx) < 0.5 * S
  return np.ones((S, S), bool)  # bright_background, warm_tint: the whole background


def test_global_attribute_counterfactual_changes_only_its_pattern(attrs_data):
  for j, name in enumerate(sa.GLOBAL_ATTRIBUTES):
    k = NUM_OBJECTS + j
    cf = sa.render_toggled(SEED, np.arange(N), k, image_size=S)
    for i in range(N):
      sc = sa.scene(SEED, i, image_size=S)
      changed = _changed(cf[i], attrs_data["image"][i])
      assert changed.sum() > 10, (name, i)
      allowed = _expected_pattern(name, sc)
      for o in range(NUM_OBJECTS + sa.MAX_CLUTTER):  # objects are drawn over every attribute
        if o >= NUM_OBJECTS or sc["attrs"][o]:
          y0, x0, size = sa.object_box(sc, o, S)
          mask = sa.shape_mask(sa.SHAPES[o % len(sa.SHAPES)] if o < NUM_OBJECTS
                               else sa.SHAPES[sc["clutter"][1]], size)
          covered = np.zeros((S, S), bool)
          covered[y0:y0 + size, x0:x0 + size] = mask[::-1] if sc["flip"][o] else mask
          allowed &= ~covered
      assert not (changed & ~allowed).any(), (name, i, int((changed & ~allowed).sum()))


def test_source_counterfactuals_and_bad_input(tmp_path):
  src = sa.load("test", num_examples=6, image_size=S, seed=2, cache_dir=str(tmp_path))
  again = sa.load("test", num_examples=6, image_size=S, seed=2, cache_dir=str(tmp_path))
  np.testing.assert_array_equal(src.arrays["image"], again.arrays["image"])
  cf = again.counterfactuals(np.array([1, 4]), 3)
  assert cf.shape == (2, S, S, 3) and cf.dtype == np.float32
  assert not np.array_equal(cf, src.arrays["image"][[1, 4]])
  with pytest.raises(ValueError, match="concept"):
    src.counterfactuals([0], len(sa.CONCEPT_NAMES))
  with pytest.raises(ValueError, match="indices"):
    src.counterfactuals([6], 0)


def test_part_removal_changes_only_that_part():
  src = sp.load("test", num_examples=24, image_size=S, seed=5)
  images, masks = src.arrays["image"], src.arrays["part_mask"]
  for p in range(len(sp.PART_NAMES)):
    cf = src.counterfactuals(np.arange(24), p)
    changed = _changed(cf, images)
    # Only pixels of that part change; every image showing the part loses it.
    assert not (changed & (masks != p + 1)).any(), sp.PART_NAMES[p]
    shown = (masks == p + 1).sum(axis=(1, 2)) > 0
    assert np.all(changed.sum(axis=(1, 2))[shown] > 0)
    assert not changed[~shown].any()


@pytest.mark.parametrize("rule", sa.RULES)
def test_present_objects_hold_cells_of_their_own_apart_from_the_clutter(rule):
  for i in range(300):
    sc = sa.scene(SEED, i, image_size=32, rule=rule)
    held = [int(sc["cell"][k]) for k in range(NUM_OBJECTS) if sc["attrs"][k]]
    clutter = [int(c) for c in sc["cell"][NUM_OBJECTS:]]
    assert len(set(held + clutter)) == len(held) + len(clutter), (rule, i, held, clutter)


def test_scene_source_refuses_concept_n_itself():
  """The source's own check, not only the renderer's: a renderer that accepts any index."""
  calls = []
  render = lambda idx, k: calls.append(k) or np.zeros((len(idx), 4, 4, 3), np.float32)
  src = scenes.SceneSource({"image": np.zeros((3, 4, 4, 3), np.float32)}, render, 5)
  assert src.counterfactuals([0, 2], 4).shape == (2, 4, 4, 3) and calls == [4]
  for bad in (5, -1):
    with pytest.raises(DataError, match="concept") as e:
      src.counterfactuals([0], bad)
    assert "\n" not in str(e.value)
  assert calls == [4]
