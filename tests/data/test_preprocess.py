"""The fast preprocessing paths give the same pixels as the plain chain, in any thread count."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from xplain_jax.data import celeba, preprocess

MEAN, STD = (0.3, 0.5, 0.7), (0.2, 0.25, 0.3)


def _face(seed: int, height: int = 218, width: int = 178) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _encode(image: np.ndarray, fmt: str) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format=fmt)
  return buf.getvalue()


def test_normalization_table_is_the_formula():
  table = preprocess.normalization_table(MEAN, STD)
  assert table.shape == (3, 256) and table.dtype == np.float32
  v = np.arange(256, dtype=np.float64)
  for c in range(3):
    np.testing.assert_allclose(table[c], (v / 255 - MEAN[c]) / STD[c], rtol=1e-6, atol=1e-6)


def test_normalize_table_equals_arithmetic_bit_for_bit():
  pixels = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1)
  pixels = np.concatenate([pixels, pixels[..., :1][::-1]], -1).astype(np.uint8)  # [256,256,3]
  m, s = np.asarray(MEAN, np.float32), np.asarray(STD, np.float32)
  want = (pixels.astype(np.float32) / np.float32(255) - m) / s
  np.testing.assert_array_equal(preprocess.normalize(pixels, MEAN, STD), want)
  out = np.full(pixels.shape, np.nan, np.float32)
  assert preprocess.normalize(pixels, MEAN, STD, out=out) is out
  np.testing.assert_array_equal(out, want)
  # Values that are not uint8 take the formula.
  np.testing.assert_array_equal(preprocess.normalize(pixels.astype(np.float64), MEAN, STD), want)
  with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
    preprocess.normalize(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("shape,size", [((218, 178), 224), ((100, 151), 64), ((50, 50), 50)])
def test_crop_resize_of_bytes_matches_the_array_chain(fmt, shape, size):
  data = _encode(_face(1, *shape), fmt)
  decoded = preprocess.decode_image(data)
  want = preprocess.resize(preprocess.center_crop_square(decoded), size)
  np.testing.assert_array_equal(preprocess.crop_resize(data, size), want)
  np.testing.assert_array_equal(preprocess.crop_resize(decoded, size), want)


def test_crop_resize_of_grey_bytes_is_rgb():
  grey = np.random.default_rng(2).integers(0, 256, (40, 30), dtype=np.uint8)
  out = preprocess.crop_resize(_encode(grey, "PNG"), 30)
  np.testing.assert_array_equal(out, np.repeat(grey[5:35, :, None], 3, axis=-1))


def test_map_in_threads_uses_threads_and_raises():
  names = preprocess.map_in_threads(lambda _: threading.current_thread().name, range(6), 3)
  assert threading.current_thread().name not in names
  assert preprocess.map_in_threads(lambda x: x * x, range(7), 4) == [x * x for x in range(7)]
  assert preprocess.map_in_threads(lambda x: x, range(3), 0) == [0, 1, 2]
  bad = [{"image": image, "attributes": dict.fromkeys(celeba.ATTRIBUTE_NAMES, False)}
         for image in (_encode(_face(0), "PNG"), b"not an image")]
  with pytest.raises(OSError):  # PIL cannot identify the bytes, in a reading thread
    celeba.CelebASource(bad, image_size=8, num_threads=2).get_batch(np.arange(2))
  with pytest.raises(ValueError, match="num_threads"):
    preprocess.map_in_threads(abs, [1], -1)


def _records(n: int) -> list[dict]:
  rng = np.random.default_rng(4)
  return [{"image": _encode(_face(i), "JPEG"),
           "attributes": {a: bool(rng.random() < 0.5) for a in celeba.ATTRIBUTE_NAMES}}
          for i in range(n)]


@pytest.mark.parametrize("num_threads", [1, 2, 5])
def test_celeba_source_threads_give_the_same_batch(num_threads):
  records = _records(7)
  plain = celeba.CelebASource(records, image_size=24)
  threaded = celeba.CelebASource(records, image_size=24, num_threads=num_threads)
  idx = np.array([6, 0, 3, 3, 1])
  a, b = plain.get_batch(idx), threaded.get_batch(idx)
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["labels"], b["labels"])
  for row, i in enumerate(idx):
    want = [float(records[i]["attributes"][n]) for n in celeba.ATTRIBUTE_NAMES]
    np.testing.assert_array_equal(b["labels"][row], want)
    np.testing.assert_array_equal(b["image"][row],
                                  preprocess.preprocess_image(records[i]["image"], 24))
  empty = threaded.get_batch(np.array([], int))
  assert empty["image"].shape == (0, 24, 24, 3) and empty["labels"].shape == (0, 40)
