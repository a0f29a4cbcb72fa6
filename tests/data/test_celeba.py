"""Tests for the CelebA source and its preprocessing (no network, no TensorFlow, fake data)."""

import io
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from configs import celeba as celeba_config
from xplain_jax import data
from xplain_jax.data import celeba
from xplain_jax.data import preprocess
from xplain_jax.data.input_pipeline import Loader

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _ramp_face(height=218, width=178):
  """[H,W,3] uint8: red = row, green = column, blue = 7 (so every pixel says where it was)."""
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  return np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8)


def _pixels(image):
  """The uint8 pixels a normalised image [..., 3] came from (ImageNet mean/std)."""
  return np.clip(np.rint((image * STD + MEAN) * 255.0), 0, 255).astype(np.uint8)


def _write_prepared_celeb_a(data_dir, split_lengths, file_format="array_record", seed=0):
  """Writes a tiny prepared TFDS celeb_a (real feature spec, JPEG images) without TensorFlow.

  Returns:
    split -> list of (jpeg bytes, [40] bool attributes) in record order.
  """
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  builder = tfds.builder("celeb_a", data_dir=data_dir, file_format=file_format)
  info, features = builder.info, builder.info.features
  os.makedirs(builder.data_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  written, split_infos = {}, []
  for split, n in split_lengths.items():
    template = tfds.core.ShardedFileTemplate(data_dir=builder.data_dir, dataset_name="celeb_a",
                                             split=split, filetype_suffix=file_format)
    path = os.fspath(template.sharded_filepath(shard_index=0, num_shards=1))
    writer = (array_record_module.ArrayRecordWriter(path, "group_size:1")
              if file_format == "array_record" else None)  # other formats: metadata only
    written[split] = []
    for i in range(n):
      buf = io.BytesIO()
      pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
      attrs = rng.integers(0, 2, 40).astype(bool)
      example = {
          "image": buf.getvalue(),
          "attributes": dict(zip(celeba.ATTRIBUTE_NAMES, attrs)),
          "landmarks": {k: 0 for k in features["landmarks"].keys()},
          "identity": {"Identity_No": i},
      }
      if writer is not None:
        writer.write(features.serialize_example(example))
      written[split].append((buf.getvalue(), attrs))
    if writer is not None:
      writer.close()
    split_infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[n], num_bytes=0,
                                           filename_template=template))
  info.set_splits(tfds.core.SplitDict(split_infos))
  info.write_to_directory(builder.data_dir)
  return written


# ---- attributes -----------------------------------------------------------------------------

def test_attribute_names_match_tfds_feature_keys():
  keys = tuple(tfds.builder("celeb_a").info.features["attributes"].keys())
  assert len(celeba.ATTRIBUTE_NAMES) == 40
  assert celeba.ATTRIBUTE_NAMES == tuple(sorted(keys))
  assert celeba.ATTRIBUTE_NAMES[0] == "5_o_Clock_Shadow"
  assert celeba.ATTRIBUTE_NAMES[-1] == "Young"


@pytest.mark.parametrize("name,expected", [
    ("attractive", "Attractive"), ("Heavy_Makeup", "Heavy_Makeup"),
    ("heavy makeup", "Heavy_Makeup"), ("HEAVY-MAKEUP", "Heavy_Makeup"), ("male", "Male"),
    ("young", "Young"), ("5_o_clock_shadow", "5_o_Clock_Shadow"),
    ("five_o_clock_shadow", "5_o_Clock_Shadow"), ("wearing_necktie", "Wearing_Necktie"),
])
def test_attribute_index(name, expected):
  assert celeba.ATTRIBUTE_NAMES[celeba.attribute_index(name)] == expected


def test_attribute_index_unknown_lists_valid_names():
  with pytest.raises(ValueError, match="unknown CelebA attribute 'handsome'") as info:
    celeba.attribute_index("handsome")
  assert "Wearing_Lipstick" in str(info.value) and "\n" not in str(info.value)


def test_spec_explains_a_target_by_the_39_other_attributes():
  spec = data.get_spec(celeba_config.get_config("target=male"))
  assert spec.target_index == 20 and spec.target_name == "Male"
  assert spec.concept_indices == tuple(i for i in range(40) if i != 20)
  assert spec.concept_names == tuple(n for n in celeba.ATTRIBUTE_NAMES if n != "Male")


# ---- preprocessing on hand-made images ------------------------------------------------------

def test_center_square_box():
  assert preprocess.center_square_box(218, 178) == (20, 0, 178)
  assert preprocess.center_square_box(100, 151) == (0, 25, 100)
  assert preprocess.center_square_box(64, 64) == (0, 0, 64)


def test_crop_and_normalise_by_hand():
  face = _ramp_face()
  out = preprocess.preprocess_image(face, image_size=178)  # no resize: exact values
  assert out.shape == (178, 178, 3) and out.dtype == np.float32
  rows = np.arange(20, 198, dtype=np.float32)[:, None] * np.ones((1, 178), np.float32)
  cols = np.ones((178, 1), np.float32) * np.arange(178, dtype=np.float32)[None, :]
  np.testing.assert_allclose(out[..., 0], (rows / 255 - 0.485) / 0.229, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out[..., 1], (cols / 255 - 0.456) / 0.224, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out[..., 2], (7 / 255 - 0.406) / 0.225, rtol=1e-6, atol=1e-6)
  # Corners of the crop: row 20 / col 0 top-left, row 197 / col 177 bottom-right.
  assert _pixels(out)[0, 0, 0] == 20 and _pixels(out)[-1, -1, 0] == 197


def test_resize_keeps_constant_and_orientation():
  face = np.zeros((218, 178, 3), np.uint8)
  face[..., 1] = 200
  face[:109, :, 0] = 255  # top half red (rows 0..108); the crop covers rows 20..197
  out = _pixels(preprocess.preprocess_image(face, image_size=224))
  assert out.shape == (224, 224, 3)
  assert np.all(out[..., 1] == 200) and np.all(out[..., 2] == 0)
  # Rows 20..108 (89 of 178) are red: the top ~half of the output is red, the bottom is not.
  assert np.all(out[:100, :, 0] == 255) and np.all(out[125:, :, 0] == 0)


def test_decode_bytes_matches_array():
  face = _ramp_face()
  buf = io.BytesIO()
  Image.fromarray(face).save(buf, format="PNG")
  np.testing.assert_array_equal(preprocess.decode_image(buf.getvalue()), face)
  with pytest.raises(ValueError, match="expected an"):
    preprocess.decode_image(np.zeros((4, 4), np.uint8))


# ---- loading through tfds.data_source -------------------------------------------------------

def test_mock_data_through_loader():
  lo, hi = (0 - MEAN) / STD, (1 - MEAN) / STD
  with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_CODE):
    source = celeba.load("train", image_size=32)
    raw = tfds.data_source("celeb_a", split="train", download=False)
    loader = Loader(source, batch_size=4, seed=3, process_count=2, process_index=1)
    full = Loader(source, batch_size=4, seed=3)
    assert len(source) == 10 and loader.steps_per_epoch == 2
    for step in range(3):
      batch = loader.batch(step)
      assert batch["image"].shape == (2, 32, 32, 3) and batch["image"].dtype == np.float32
      assert batch["labels"].shape == (2, 40) and batch["labels"].dtype == np.float32
      assert set(np.unique(batch["labels"])) <= {0.0, 1.0}
      assert np.all(batch["image"] >= lo - 1e-5) and np.all(batch["image"] <= hi + 1e-5)
      idx, _ = loader.indices(step)
      for row, i in enumerate(idx):
        ex = raw[int(i)]
        want = [float(ex["attributes"][n]) for n in celeba.ATTRIBUTE_NAMES]
        np.testing.assert_array_equal(batch["labels"][row], want)
        np.testing.assert_allclose(batch["image"][row],
                                   preprocess.preprocess_image(ex["image"], 32), atol=1e-6)
      # This process's half is the second half of the global batch.
      np.testing.assert_array_equal(full.batch(step)["labels"][2:], batch["labels"])


def test_real_array_record_files(tmp_path):
  written = _write_prepared_celeb_a(tmp_path, {"train": 5, "validation": 3})
  source = celeba.load("validation", data_dir=tmp_path, image_size=40, num_threads=2)
  assert len(source) == 3
  batch = source.get_batch(np.array([2, 0]))
  assert batch["image"].shape == (2, 40, 40, 3) and batch["labels"].shape == (2, 40)
  for row, i in enumerate([2, 0]):
    jpeg, attrs = written["validation"][i]
    np.testing.assert_array_equal(batch["labels"][row], attrs.astype(np.float32))
    # Decoders may differ by a grey level (PIL vs OpenCV): 2/255/std bounds it.
    np.testing.assert_allclose(batch["image"][row], preprocess.preprocess_image(jpeg, 40),
                               atol=2 / 255 / 0.224)
  # Encoded records (images left as JPEG bytes) give the same batch.
  encoded = tfds.data_source("celeb_a", split="validation", data_dir=tmp_path, download=False,
                             decoders={"image": tfds.decode.SkipDecoding()})
  assert isinstance(encoded[0]["image"], bytes)
  again = celeba.CelebASource(encoded, image_size=40).get_batch(np.array([2, 0]))
  np.testing.assert_allclose(again["image"], batch["image"], atol=2 / 255 / 0.224)
  sliced = celeba.load("train[1:4]", data_dir=tmp_path, image_size=8)
  np.testing.assert_array_equal(sliced.get_batch(np.array([0]))["labels"][0],
                                written["train"][1][1].astype(np.float32))


def test_not_prepared_error(tmp_path):
  with pytest.raises(celeba.DatasetNotPreparedError) as info:
    celeba.load("train", data_dir=tmp_path)
  msg = str(info.value)
  assert isinstance(info.value, FileNotFoundError) and "\n" not in msg
  assert os.fspath(tmp_path / "celeb_a") in msg
  assert f"tfds build celeb_a --data_dir={tmp_path} --file_format=array_record" in msg
  assert "xplain_jax[tfds]" in msg and "img_align_celeba.zip" in msg


def test_prepared_as_tfrecord_error(tmp_path):
  _write_prepared_celeb_a(tmp_path, {"train": 1}, file_format="tfrecord")
  with pytest.raises(celeba.DatasetNotPreparedError, match="tfds convert_format"):
    celeba.load("train", data_dir=tmp_path)


def test_unknown_split():
  with pytest.raises(ValueError, match="unknown CelebA split 'valid'"):
    celeba.load("valid")
