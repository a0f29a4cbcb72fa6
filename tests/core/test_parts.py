"""Tests of the part-level analysis on hand-made maps whose answers are known."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.core import parts


def _masks(n=4, size=8):
  """Head (1) in the top-left quadrant, torso (2) in the bottom-right one, legs (3) nowhere."""
  m = np.zeros((n, size, size), np.int32)
  m[:, :size // 2, :size // 2] = 1
  m[:, size // 2:, size // 2:] = 2
  return m


def test_part_occupancy_by_hand():
  m = np.zeros((1, 4, 4), np.int32)
  m[0, :2, :2] = 1
  m[0, 0, 2] = 2  # one pixel of cell (0, 1)
  occ = parts.part_occupancy(m, (2, 2), 2)
  np.testing.assert_allclose(occ[0, :, :, 0], [[1, 0], [0, 0]])
  np.testing.assert_allclose(occ[0, :, :, 1], [[0, 0.25], [0, 0]])
  # 3 rows onto 2 cells: rows 0 and 1 -> cell 0, row 2 -> cell 1.
  m3 = np.array([[[1], [0], [1]]], np.int32)
  np.testing.assert_allclose(parts.part_occupancy(m3, (2, 1), 1)[0, :, 0, 0], [0.5, 1.0])


def test_assign_filters_on_known_maps():
  n, masks = 4, _masks()
  x = np.zeros((n, 4, 4, 4), np.float32)
  head_cells = [(0, 0), (1, 1), (0, 1), (1, 0)]
  torso_cells = [(2, 2), (3, 3), (2, 3), (3, 2)]
  for k in range(n):
    x[k, :, :, 0] = 0.1
    x[(k,) + head_cells[k] + (0,)] = 5.0 + k        # filter 0: the head, wherever it is
    x[(k,) + torso_cells[k] + (1,)] = 3.0           # filter 1: the torso
    x[k, 0, 3, 2] = 2.0                             # filter 2: background (top-right)
  # filter 3 never fires.
  f2p, scores = parts.assign_filters_to_parts(x, masks, 3, top_fraction=1.0)
  np.testing.assert_array_equal(f2p, [0, 1, -1, -1])
  np.testing.assert_allclose(scores, [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
  sel = parts.part_selectivity(x, masks, 3, top_fraction=1.0)
  np.testing.assert_allclose(sel, [1, 1, 0, 0])
  assert parts.mean_part_selectivity(x, masks, 3, top_fraction=1.0) == pytest.approx(0.5)


def test_top_fraction_keeps_the_strongest_peaks():
  masks = _masks()
  x = np.zeros((4, 4, 4, 1), np.float32)
  x[0, 0, 0, 0], x[1, 1, 1, 0] = 9.0, 8.0      # strong peaks on the head
  x[2, 3, 3, 0], x[3, 2, 2, 0] = 1.0, 0.5      # weak peaks on the torso
  half = parts.part_scores(x, masks, 2, top_fraction=0.5)
  np.testing.assert_allclose(half, [[1.0, 0.0]])
  np.testing.assert_allclose(parts.part_scores(x, masks, 2, top_fraction=1.0), [[0.5, 0.5]])
  f2p, _ = parts.assign_filters_to_parts(x, masks, 2, top_fraction=1.0, threshold=0.6)
  np.testing.assert_array_equal(f2p, [-1])
  f2p, _ = parts.assign_filters_to_parts(x, masks, 2, top_fraction=1.0, threshold=0.5)
  np.testing.assert_array_equal(f2p, [0])  # tie broken towards the first part


def test_partial_cells_and_coarser_grid():
  # 8x8 masks onto a 2x2 grid (4x4 pixel cells). Image 0: the peak cell (0,1) is 8 pixels head,
  # 8 background -> all head. Image 1: the peak cell is 4 pixels head, 12 torso -> 1/4, 3/4.
  masks = np.zeros((2, 8, 8), np.int32)
  masks[0, :4, :6] = 1
  masks[1, :4, 4:5] = 1
  masks[1, :4, 5:] = 2
  x = np.zeros((2, 2, 2, 1), np.float32)
  x[:, 0, 1, 0] = 1.0
  np.testing.assert_allclose(parts.part_scores(x[:1], masks[:1], 2, top_fraction=1.0),
                             [[1.0, 0.0]])
  np.testing.assert_allclose(parts.part_scores(x[1:], masks[1:], 2, top_fraction=1.0),
                             [[0.25, 0.75]])
  np.testing.assert_allclose(parts.part_scores(x, masks, 2, top_fraction=1.0),
                             [[0.625, 0.375]])


def test_input_errors():
  with pytest.raises(ValueError, match=r"\[N,h,w,C\]"):
    parts.assign_filters_to_parts(np.zeros((2, 4, 4)), _masks(2), 2)
  with pytest.raises(ValueError, match="one mask per feature map"):
    parts.assign_filters_to_parts(np.zeros((3, 4, 4, 1)), _masks(2), 2)
  with pytest.raises(ValueError, match="outside 0..1"):
    parts.assign_filters_to_parts(np.zeros((2, 4, 4, 1)), _masks(2), 1)
  with pytest.raises(ValueError, match="finer"):
    parts.assign_filters_to_parts(np.zeros((2, 16, 16, 1)), _masks(2), 2)


def test_part_contributions_by_hand():
  contribs = jnp.array([[1.0, 2.0, 4.0, 8.0, 16.0], [-1.0, 0.5, 0.0, 3.0, 1.0]])
  f2p = np.array([1, -1, 1, 0, 2])
  out = np.asarray(parts.part_contributions(contribs, f2p, 4))
  np.testing.assert_allclose(out, [[8.0, 5.0, 16.0, 0.0], [3.0, -1.0, 1.0, 0.0]])
  with pytest.raises(ValueError, match="outside -1..3"):
    parts.part_contributions(contribs, np.array([0, 1, 2, 3, 4]), 4)
  with pytest.raises(ValueError, match="same C"):
    parts.part_contributions(contribs, np.array([0, 1]), 4)


def test_annotation_roundtrip(tmp_path):
  path = tmp_path / "parts.json"
  parts.save_part_annotation(path, np.array([2, -1, 0, 0]), ("head", "torso", "legs"))
  doc = json.loads(path.read_text())
  assert doc == {"part_names": ["head", "torso", "legs"],
                 "filters": {"0": "legs", "1": "none", "2": "head", "3": "head"}}
  f2p, names = parts.load_part_annotation(path)
  np.testing.assert_array_equal(f2p, [2, -1, 0, 0])
  assert names == ("head", "torso", "legs")


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "not valid JSON"),
    ('["head"]', "must be an object"),
    ('{"part_names": ["head"], "filters": {"0": "head", "2": "head"}}', "filter keys"),
    ('{"part_names": ["head"], "filters": {"0": "tail"}}', "'tail'"),
    ('{"part_names": ["head", "head"], "filters": {}}', "distinct"),
])
def test_annotation_errors(tmp_path, content, message):
  path = tmp_path / "bad.json"
  if content is not None:
    path.write_text(content)
  with pytest.raises(ValueError, match=message):
    parts.load_part_annotation(path)


def test_save_annotation_errors(tmp_path):
  with pytest.raises(ValueError, match="outside"):
    parts.save_part_annotation(tmp_path / "a.json", [0, 3], ("head", "torso"))
  with pytest.raises(ValueError, match="distinct"):
    parts.save_part_annotation(tmp_path / "a.json", [0], ("none",))


def test_oracle_filters_on_synthetic_parts():
  # A filter per part whose map is that part's coverage (plus noise), on the synthetic animals:
  # each must be assigned to its own part; a pure-noise filter to none.
  from xplain_jax.data import synthetic_parts as sp
  data = sp.make_parts_dataset(40, image_size=64, seed=0, positive_fraction=1.0)
  p = len(sp.PART_NAMES)
  occ = parts.part_occupancy(data["part_mask"], (8, 8), p)
  rng = np.random.default_rng(0)
  noise = rng.uniform(0, 0.05, occ.shape[:3] + (1,)).astype(np.float32)
  maps = np.concatenate([occ + noise, noise], axis=-1)
  f2p, scores = parts.assign_filters_to_parts(maps, data["part_mask"], p)
  np.testing.assert_array_equal(f2p, list(range(p)) + [-1])
  assert np.all(np.diag(scores[:p]) > 0.9)
