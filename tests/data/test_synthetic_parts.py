"""Tests of the synthetic parts dataset (Experiment 1's built-in data)."""

import time

import numpy as np
import pytest

from xplain_jax.data import synthetic_parts as sp


@pytest.fixture(scope="module")
def data():
  return sp.make_parts_dataset(400, image_size=64, seed=3)


def test_shapes_dtypes_and_range(data):
  n, s = 400, 64
  assert data["image"].shape == (n, s, s, 3) and data["image"].dtype == np.float32
  assert data["label"].shape == (n,) and data["label"].dtype == np.float32
  assert data["part_mask"].shape == (n, s, s) and data["part_mask"].dtype == np.int32
  assert data["image"].min() >= -1.0 and data["image"].max() <= 1.0
  assert set(np.unique(data["label"])) == {0.0, 1.0}
  assert set(np.unique(data["part_mask"])) <= set(range(len(sp.PART_NAMES) + 1))


def test_deterministic_and_seed_dependent():
  a = sp.make_parts_dataset(20, seed=7)
  b = sp.make_parts_dataset(20, seed=7)
  c = sp.make_parts_dataset(20, seed=8)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["image"], c["image"])


def test_labels_balanced(data):
  assert data["label"].sum() == 200
  other = sp.make_parts_dataset(40, seed=0, positive_fraction=0.25)
  assert other["label"].sum() == 10


def test_masks_consistent_with_labels(data):
  pos = data["label"] > 0
  masks, stray = data["part_mask"], data["stray_part"]
  assert np.all(stray[pos] == 0)
  # Negatives without a stray part have no part pixels; with one, exactly that part.
  assert np.all(masks[~pos & (stray == 0)] == 0)
  for k in np.flatnonzero(~pos & (stray > 0)):
    assert set(np.unique(masks[k])) == {0, int(stray[k])}
  # Some, not most, negatives show a stray part (default probability 0.3).
  share = np.mean(stray[~pos] > 0)
  assert 0.15 < share < 0.45
  # Every positive shows an animal: torso and legs always, several parts each time.
  assert np.all([len(np.unique(m)) >= 4 for m in masks[pos]])


def test_every_part_visible_in_most_positives(data):
  masks = data["part_mask"][data["label"] > 0]
  for p, name in enumerate(sp.PART_NAMES, start=1):
    visible = np.mean((masks == p).sum(axis=(1, 2)) >= 4)
    assert visible >= 0.95, f"{name} visible in only {visible:.0%} of positives"


def test_parts_have_distinct_colours(data):
  # The mean colour of each part differs from every other part's (they are told apart by look).
  img, masks = (data["image"] + 1) / 2, data["part_mask"]
  means = np.stack([img[masks == p].mean(axis=0) for p in range(1, len(sp.PART_NAMES) + 1)])
  dists = np.linalg.norm(means[:, None] - means[None], axis=-1)
  assert dists[~np.eye(len(means), dtype=bool)].min() > 0.1


def test_load_splits_disjoint_and_sizes():
  train = sp.load("train", num_examples=30, seed=0)
  test = sp.load("test", num_examples=30, seed=0)
  assert len(train) == len(test) == 30
  batch = train.get_batch(np.array([0, 5]))
  assert batch["image"].shape == (2, 64, 64, 3)
  assert not np.array_equal(train.arrays["image"], test.arrays["image"])
  again = sp.load("train", num_examples=30, seed=0)
  np.testing.assert_array_equal(train.arrays["image"], again.arrays["image"])
  with pytest.raises(ValueError, match="split"):
    sp.load("validation", num_examples=4)


def test_bad_arguments():
  with pytest.raises(ValueError, match="image_size"):
    sp.make_parts_dataset(4, image_size=16)
  with pytest.raises(ValueError, match="num_images"):
    sp.make_parts_dataset(0)


def test_generation_time_printed():
  t = time.perf_counter()
  sp.make_parts_dataset(1000, seed=1)
  print(f"synthetic_parts: 1000 images of 64x64 in {time.perf_counter() - t:.2f} s")
