"""Tests of the Pascal-Part builder on a small fake tree in the real Pascal-Part layout.

The fake ``.mat`` files are written with ``scipy.io.savemat`` as MATLAB stores the release:
``anno`` is a struct with ``imname`` and ``objects``, a 1×K struct array (numpy structured array
of shape (1, K)) with fields ``class`` (char), ``class_ind`` (double), ``mask`` (logical) and
``parts``, a 1×P struct array with ``part_name`` and ``mask``, or a 0×0 double when the object
has no parts. Images are 40×60 (H×W) JPEGs: blue, with every object's box painted red.
"""

import dataclasses
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from xplain_jax.data import pascal_part as pp
from xplain_jax.data import pascal_part_source as pps

H, W = 40, 60
_OBJ = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
_PART = [("part_name", "O"), ("mask", "O")]
VOC_INDEX = {"bird": 3, "car": 7, "cat": 8, "dog": 12, "person": 15}


def _box_mask(y0, y1, x0, x1):
  m = np.zeros((H, W), bool)
  m[y0:y1, x0:x1] = True
  return m


def _struct_array(rows, dtype):
  arr = np.empty((1, len(rows)), dtype=dtype)
  for k, row in enumerate(rows):
    arr[0, k] = row
  return arr


def _write_image(root, image_id, objects):
  """objects: list of (class, mask, [(part_name, mask), ...])."""
  pixels = np.zeros((H, W, 3), np.uint8)
  pixels[..., 2] = 220
  for _, mask, _ in objects:
    y0, x0, y1, x1 = pp.mask_box(mask)
    pixels[y0:y1, x0:x1] = (220, 0, 0)
  Image.fromarray(pixels).save(root / "VOCdevkit/VOC2010/JPEGImages" / f"{image_id}.jpg",
                               quality=95)
  rows = []
  for cls, mask, parts in objects:
    part_arr = (_struct_array([(n, m) for n, m in parts], _PART) if parts
                else np.zeros((0, 0)))
    rows.append((cls, np.array([[float(VOC_INDEX[cls])]]), mask, part_arr))
  scipy.io.savemat(root / "Annotations_Part" / f"{image_id}.mat",
                   {"anno": {"imname": image_id, "objects": _struct_array(rows, _OBJ)}})


# The cat of image 1: box rows 4:24, cols 6:36 (20×30); parts on blocks of 2 rows × 3 columns.
CAT_BOX = (4, 6, 24, 36)
CAT_PARTS = [("torso", _box_mask(8, 16, 6, 30)), ("head", _box_mask(4, 10, 27, 36)),
             ("leye", _box_mask(6, 8, 30, 33)), ("lfleg", _box_mask(16, 24, 9, 15)),
             ("tail", _box_mask(8, 12, 6, 9))]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("manual")
  for sub in ("VOCdevkit/VOC2010/JPEGImages", "VOCdevkit/VOC2010/ImageSets/Main",
              "Annotations_Part"):
    (root / sub).mkdir(parents=True)
  _write_image(root, "2008_000001", [
      ("cat", _box_mask(*CAT_BOX[::2], *CAT_BOX[1::2]), CAT_PARTS),
      ("person", _box_mask(26, 40, 40, 50), [("head", _box_mask(26, 30, 40, 50))])])
  _write_image(root, "2008_000002", [
      ("dog", _box_mask(2, 20, 2, 20), []),
      ("cat", _box_mask(20, 38, 20, 50), [("torso", _box_mask(20, 38, 20, 50))]),
      ("person", _box_mask(30, 40, 40, 60), [])])  # occludes the cat's bottom-right corner
  _write_image(root, "2008_000003", [("car", _box_mask(5, 30, 5, 50), [])])
  _write_image(root, "2008_000004", [("person", _box_mask(0, 40, 0, 20), [])])
  _write_image(root, "2008_000005", [("cat", _box_mask(10, 30, 10, 30),
                                      [("tail", _box_mask(10, 14, 10, 30))])])
  _write_image(root, "2008_000006", [("dog", _box_mask(0, 40, 0, 60), [])])
  sets = root / "VOCdevkit/VOC2010/ImageSets/Main"
  (sets / "train.txt").write_text("2008_000001\n2008_000002\n2008_000003\n")
  (sets / "val.txt").write_text("2008_000004\n2008_000005\n2008_000006\n")
  return root


@pytest.fixture(scope="module")
def prepared(tree, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  pp.prepare(str(tree), str(data_dir), categories=["cat"])
  return data_dir


def test_parse_annotation_squeeze_cases(tree):
  objs = pp.parse_annotation(tree / "Annotations_Part/2008_000001.mat")
  assert [o["class"] for o in objs] == ["cat", "person"]
  assert objs[0]["class_ind"] == 8 and objs[0]["mask"].dtype == bool
  assert [n for n, _ in objs[0]["parts"]] == ["torso", "head", "leye", "lfleg", "tail"]
  single = pp.parse_annotation(tree / "Annotations_Part/2008_000005.mat")  # 1 object, 1 part
  assert len(single) == 1 and [n for n, _ in single[0]["parts"]] == ["tail"]
  no_parts = pp.parse_annotation(tree / "Annotations_Part/2008_000002.mat")[0]
  assert no_parts["class"] == "dog" and no_parts["parts"] == []


def test_grouping_table_covers_the_animal_parts():
  assert set(pp.FINE_TO_COARSE.values()) == set(pp.PART_NAMES)
  for name, coarse in [("leye", "head"), ("muzzle", "head"), ("beak", "head"),
                       ("neck", "torso"), ("lwing", "torso"), ("lfpa", "legs"),
                       ("rblleg", "legs"), ("lbho", "legs"), ("rfoot", "legs"),
                       ("tail", "tail")]:
    assert pp.FINE_TO_COARSE[name] == coarse


def test_part_masks_grouped_and_occluded():
  obj = {"class": "cat", "mask": _box_mask(0, 10, 0, 10),
         "parts": [("head", _box_mask(0, 4, 0, 4)), ("lear", _box_mask(0, 1, 0, 1)),
                   ("rfpa", _box_mask(8, 10, 0, 2)), ("made_up", _box_mask(5, 6, 5, 6))]}
  occluders = _box_mask(0, 2, 2, 4)
  coarse, fine = pp.object_part_masks(obj, occluders)
  assert coarse[0, 0] == 1 and coarse[3, 3] == 1 and coarse[9, 0] == 3
  assert coarse[0, 2] == 0 and coarse[5, 5] == 0  # occluded; unknown name
  assert fine[0, 0] == pp.FINE_PART_NAMES.index("lear") + 1
  assert fine[1, 1] == pp.FINE_PART_NAMES.index("head") + 1


def _expected_cat_mask():
  m = np.zeros((H, W), np.int32)
  for name, mask in CAT_PARTS:
    m[mask] = pp.PART_NAMES.index(pp.FINE_TO_COARSE[name]) + 1
  return m


def test_generate_examples_on_fake_tree(tree):
  voc, ann = str(tree / "VOCdevkit/VOC2010"), str(tree / "Annotations_Part")
  train_ids = {"2008_000001", "2008_000002", "2008_000003"}
  test_ids = {"2008_000004", "2008_000005", "2008_000006"}
  cat = pp.PascalPart(config="cat", data_dir=str(tree / "unused"))
  ex = dict(cat._generate_examples(voc, ann, "train", train_ids, test_ids))
  assert sorted(ex) == ["2008_000001_0", "2008_000002_1"]
  first = ex["2008_000001_0"]
  np.testing.assert_array_equal(first["box"], CAT_BOX)
  np.testing.assert_array_equal(first["part_mask"], _expected_cat_mask())
  assert first["category"] == "cat" and first["image"][:2] == b"\xff\xd8"  # JPEG bytes
  second = ex["2008_000002_1"]  # the person (object 2) covers rows 30:40, cols 40:60
  assert second["part_mask"][25, 25] == 2 and second["part_mask"][35, 45] == 0
  assert second["object_mask"][35, 45] == 0 and second["object_mask"][35, 25] == 1
  test = dict(cat._generate_examples(voc, ann, "test", train_ids, test_ids))
  assert sorted(test) == ["2008_000005_0"]
  neg = pp.PascalPart(config="negative", data_dir=str(tree / "unused"))
  negs = dict(neg._generate_examples(voc, ann, "train", train_ids, test_ids))
  assert sorted(negs) == ["2008_000003"]
  np.testing.assert_array_equal(negs["2008_000003"]["box"], [0, 0, H, W])
  assert not negs["2008_000003"]["part_mask"].any()


def test_crop_box_and_preprocessing():
  np.testing.assert_array_equal(pps.crop_box((10, 20, 30, 60), (100, 100), 0.0), [10, 20, 30, 60])
  np.testing.assert_array_equal(pps.crop_box((10, 20, 30, 60), (100, 100), 0.25), [5, 10, 35, 70])
  np.testing.assert_array_equal(pps.crop_box((10, 20, 30, 60), (32, 64), 1.0), [0, 0, 32, 64])
  with pytest.raises(ValueError, match="empty"):
    pps.crop_box((5, 5, 5, 9), (10, 10))
  img = np.zeros((H, W, 3), np.uint8)
  img[4:24, 6:36] = (200, 10, 10)
  out, mask = pps.preprocess_object(img, CAT_BOX, _expected_cat_mask(), image_size=10,
                                    mean=(0, 0, 0), std=(1, 1, 1))
  np.testing.assert_allclose(out[..., 0], 200 / 255, atol=1e-6)  # only the box is kept
  # 20×30 crop -> 10×10: each output cell is a 2×3 block, and parts are aligned to blocks.
  np.testing.assert_array_equal(mask, _expected_cat_mask()[4:24:2, 6:36:3])
  wide, _ = pps.preprocess_object(img, CAT_BOX, image_size=10, margin=0.2, mean=(0, 0, 0),
                                  std=(1, 1, 1))
  assert wide[0, 0, 0] < 0.05 and wide[5, 5, 0] > 0.75  # the margin shows background


def test_split_rule_without_imagesets():
  ids = [f"2009_{i:06d}" for i in range(2000)]
  splits = [pp.split_of(i, None, None) for i in ids]
  assert splits == [pp.split_of(i, None, None) for i in ids]
  assert 0.15 < splits.count("test") / len(ids) < 0.25
  assert pp.split_of("a", {"a"}, {"b"}) == "train" and pp.split_of("c", {"a"}, {"b"}) is None


@pytest.mark.slow
def test_prepare_and_load_without_tensorflow(prepared):
  src = pps.load("train", category="cat", data_dir=str(prepared), image_size=10,
                 mean=(0, 0, 0), std=(1, 1, 1))
  assert len(src) == 3  # two cats, one negative image (all there are; ratio 1 allows 2)
  batch = src.get_batch(np.arange(3))
  assert batch["image"].shape == (3, 10, 10, 3) and batch["image"].dtype == np.float32
  np.testing.assert_array_equal(batch["label"], [1, 1, 0])
  assert batch["part_mask"].shape == (3, 10, 10) and batch["part_mask"].dtype == np.int32
  first = [k for k in range(2) if (batch["part_mask"][k] == 3).any()]  # the cat with legs
  assert len(first) == 1
  np.testing.assert_array_equal(batch["part_mask"][first[0]], _expected_cat_mask()[4:24:2, 6:36:3])
  assert np.all(batch["image"][first[0], ..., 0] > 0.6)  # the red box (JPEG-blurred edges)
  assert not batch["part_mask"][2].any()
  test = pps.load("test", category="cat", data_dir=str(prepared), image_size=10)
  assert len(test) == 2  # the cat of image 5 and the person-only image 4
  assert len(pps.load("train", category="cat", data_dir=str(prepared), image_size=10,
                      negative_ratio=0.0)) == 2


@pytest.mark.slow
def test_load_unprepared_says_what_to_run(prepared):
  with pytest.raises(pp.DatasetNotPreparedError) as err:
    pps.load("train", category="horse", data_dir=str(prepared))
  message = str(err.value)
  assert "python -m xplain_jax.data.pascal_part" in message
  assert f"--data_dir={prepared}" in message and "--categories=horse" in message
  assert "\n" not in message
  with pytest.raises(ValueError, match="category"):
    pps.load("train", category="person", data_dir=str(prepared))


@pytest.mark.slow
def test_prepare_command_line_works(tree, prepared):
  repo = pathlib.Path(__file__).resolve().parents[2]
  env = dict(os.environ, PYTHONPATH=str(repo))
  cmd = pp.prepare_command(str(tree), str(prepared), ["dog"]).split()[1:] + ["--no_negatives"]
  run = subprocess.run([sys.executable] + cmd, cwd=repo, env=env, capture_output=True,
                       text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]
  dog = pps.load("train", category="dog", data_dir=str(prepared), image_size=8)
  assert len(dog) == 2 and dog.get_batch(np.array([0]))["label"][0] == 1


@pytest.mark.slow
def test_negatives_from_other_categories(tree, tmp_path):
  # Zhang et al.'s setting: negatives are images of other categories, other animals included.
  data_dir = tmp_path / "tfds"
  with pytest.raises(pp.DatasetNotPreparedError, match="another animal"):
    pp.prepare(str(tree), str(data_dir), categories=["cat"])
    pps.load("train", category="cat", data_dir=str(data_dir), negatives="other_categories")
  pp.prepare(str(tree), str(data_dir), categories=["dog"], negatives=False)  # the fake data's
  plain = pps.load("train", category="cat", data_dir=str(data_dir), image_size=8,
                   negative_ratio=None)
  mixed = pps.load("train", category="cat", data_dir=str(data_dir), image_size=8,
                   negative_ratio=None, negatives="other_categories")
  # Train images: 1 (cat, person), 2 (dog, cat, person), 3 (car). Non-animal: image 3 only;
  # other animals' objects: the dog of image 2. Positives: the two cats.
  assert len(plain) == 2 + 1 and len(mixed) == 2 + 2
  neg = [mixed.negatives[int(i)] for s, i in mixed.index if s == 1]
  assert sorted(str(ex["category"]) for ex in neg) == sorted(
      [str(pp.ANIMALS.index("dog")), str(len(pp.ANIMALS))])  # dog and "none"
  labels = mixed.get_batch(np.arange(len(mixed)))["label"]
  np.testing.assert_array_equal(labels, [1, 1, 0, 0])
  with pytest.raises(ValueError, match="negatives='animals'.*other_categories"):
    pps.load("train", category="cat", data_dir=str(data_dir), negatives="animals")


@pytest.mark.slow
def test_a_partial_download_is_one_data_error(tree, tmp_path):
  """A category without objects (or a split without them) stops with one line, not TFDS's
  AssertionError; preparing a category that has objects then works in the same folder."""
  data_dir = tmp_path / "tfds"
  with pytest.raises(pp.DataError) as info:
    pp.prepare(str(tree), str(data_dir), categories=["bird"], negatives=False)
  msg = str(info.value)
  assert "no bird objects in the train split" in msg and "partial download" in msg
  assert "--categories" in msg and "\n" not in msg
  voc, ann = str(tree / "VOCdevkit/VOC2010"), str(tree / "Annotations_Part")
  only_train = {"2008_000001", "2008_000002", "2008_000003"}
  with pytest.raises(pp.DataError, match="no cat objects in the test split"):
    list(pp.PascalPart(config="cat", data_dir=str(tmp_path / "unused"))._generate_examples(
        voc, ann, "test", only_train, set()))
  assert not pp.PascalPart(config="bird", data_dir=str(data_dir)).is_prepared()
  pp.prepare(str(tree), str(data_dir), categories=["dog"], negatives=False)
  assert pp.PascalPart(config="dog", data_dir=str(data_dir)).is_prepared()


@pytest.mark.slow
def test_num_threads_reaches_the_loader(prepared, monkeypatch):
  """config.dataset.num_threads is the PascalPartSource's (the batches are read with it)."""
  from configs import pascal_part as pascal_config
  from xplain_jax import data
  config = pascal_config.get_config("category=cat,tiny")
  config.dataset.data_dir = str(prepared)
  config.dataset.num_threads = 3
  config.dataset.negatives = "non_animal"
  src = data.get_source(config, "train")
  while not hasattr(src, "num_threads"):
    src = src.source
  assert src.num_threads == 3
  calls = []  # the batch goes through the one threaded map, with the config's threads
  real = pps.preprocess.map_in_threads
  monkeypatch.setattr(pps.preprocess, "map_in_threads",
                      lambda fn, items, n: calls.append(n) or real(fn, items, n))
  rows = np.arange(len(src))
  threaded = src.get_batch(rows)
  single = dataclasses.replace(src, num_threads=0).get_batch(rows)
  assert calls == [3, 0]
  for key in ("image", "label", "part_mask"):
    np.testing.assert_array_equal(threaded[key], single[key])
