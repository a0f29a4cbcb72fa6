"""Reading prepared Pascal-Part data: one animal category against negatives, cropped and resized.

The builder (``pascal_part.py``) stores whole images with object boxes and part masks; this module
crops each example to its box (Zhang et al.'s preprocessing), resizes it and pairs one
category's objects (label 1) with negatives (label 0). Two pools of negatives:

* ``"non_animal"``: the images whose annotation holds no animal (``pascal_part/negative``);
* ``"other_categories"``: those images and the objects of the other animals (those prepared),
  each cropped to its own box, so the performer must tell the category from other animals too.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from xplain_jax.data import pascal_part as pp
from xplain_jax.data import preprocess
from xplain_jax.errors import ConfigError, DataError

NEGATIVE_POOLS = ("non_animal", "other_categories")


def crop_box(box, image_shape, margin: float = 0.0) -> np.ndarray:
  """The box widened by ``margin`` × its height/width on every side, clipped to the image.

  Args:
    box: ``(ymin, xmin, ymax, xmax)`` pixels, max exclusive.
    image_shape: ``(H, W, ...)``.
    margin: fraction of the box's size added on each side (0: the box itself).

  Returns:
    [4] int32 ``(ymin, xmin, ymax, xmax)``, at least one pixel each way.
  """
  y0, x0, y1, x1 = (float(v) for v in box)
  dy, dx = margin * (y1 - y0), margin * (x1 - x0)
  h, w = image_shape[:2]
  out = np.array([max(0, int(np.floor(y0 - dy))), max(0, int(np.floor(x0 - dx))),
                  min(h, int(np.ceil(y1 + dy))), min(w, int(np.ceil(x1 + dx)))], np.int32)
  if out[2] <= out[0] or out[3] <= out[1]:
    raise DataError(f"box {tuple(box)} is empty inside an image of shape {image_shape[:2]}.")
  return out


def preprocess_object(image, box, part_mask: np.ndarray | None = None, *, image_size: int,
                      margin: float = 0.0, mean: Sequence[float] = preprocess.IMAGENET_MEAN,
                      std: Sequence[float] = preprocess.IMAGENET_STD):
  """The interpretable-CNN preprocessing: crop to the object box, resize, normalise.

  As in Zhang et al.'s code the crop is stretched to a square ``S×S`` (aspect ratio not kept).

  Args:
    image: encoded bytes or [H,W,3] uint8.
    box: ``(ymin, xmin, ymax, xmax)`` pixels, max exclusive.
    part_mask: optional [H,W] int labels, cropped alike and resized by nearest neighbour.
    image_size: S, the performer's input side.
    margin: widen the box by this fraction of its size on each side (0: Zhang et al.'s crop).
    mean: per-channel mean of the [0, 1] pixels (default ImageNet).
    std: per-channel standard deviation (default ImageNet).

  Returns:
    ``(image [S,S,3] float32, part_mask [S,S] int32 or None)``.
  """
  pixels = preprocess.decode_image(image)
  y0, x0, y1, x1 = crop_box(box, pixels.shape, margin)
  crop = Image.fromarray(np.ascontiguousarray(pixels[y0:y1, x0:x1]))
  out = preprocess.normalize(
      np.asarray(crop.resize((image_size, image_size), Image.Resampling.BILINEAR)), mean, std)
  if part_mask is None:
    return out, None
  m = Image.fromarray(np.ascontiguousarray(np.asarray(part_mask)[y0:y1, x0:x1], np.uint8))
  return out, np.asarray(m.resize((image_size, image_size), Image.Resampling.NEAREST), np.int32)


@dataclasses.dataclass(frozen=True)
class PascalPartSource(preprocess.Preprocessing):
  """Random-access source: one category's objects (label 1) and negative images (label 0).

  Attributes:
    positives: records of ``pascal_part/<category>`` (``len`` and ``[i]``).
    negatives: records of ``pascal_part/negative``.
    index: [N,2] int, rows ``(0, i)`` for ``positives[i]`` and ``(1, i)`` for ``negatives[i]``.
    margin: see ``preprocess_object``.
    image_size, mean, std, num_threads: ``preprocess.Preprocessing``.
  """

  positives: Any
  negatives: Any
  index: np.ndarray
  margin: float = 0.0

  def __len__(self) -> int:
    return len(self.index)

  def _example(self, row: int):
    src, i = self.index[row]
    ex = (self.positives if src == 0 else self.negatives)[int(i)]
    image, mask = preprocess_object(ex["image"], ex["box"], ex["part_mask"],
                                    image_size=self.image_size, margin=self.margin,
                                    mean=self.mean, std=self.std)
    return image, np.float32(src == 0), mask

  def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """``{"image": [b,S,S,3] float32, "label": [b] float32, "part_mask": [b,S,S] int32}``."""
    rows = [int(i) for i in np.asarray(indices).reshape(-1)]
    examples = preprocess.map_in_threads(self._example, rows, self.num_threads)
    s = self.image_size
    if not examples:
      return {"image": np.zeros((0, s, s, 3), np.float32), "label": np.zeros((0,), np.float32),
              "part_mask": np.zeros((0, s, s), np.int32)}
    images, labels, masks = zip(*examples)
    return {"image": np.stack(images), "label": np.array(labels, np.float32),
            "part_mask": np.stack(masks)}


@dataclasses.dataclass(frozen=True)
class _Concat:
  """Records of several sources one after the other (``len`` and ``[i]``)."""

  parts: tuple

  def __len__(self) -> int:
    return sum(len(p) for p in self.parts)

  def __getitem__(self, i: int):
    for part in self.parts:
      if i < len(part):
        return part[i]
      i -= len(part)
    raise IndexError(i)


def _open(config: str, split: str, data_dir, category: str):
  builder = pp.PascalPart(config=config, data_dir=data_dir)
  version_dir = os.fspath(builder.data_dir)
  root = os.path.dirname(os.path.dirname(os.path.dirname(version_dir)))
  if not builder.is_prepared():
    raise pp.DatasetNotPreparedError(
        f"Pascal-Part '{config}' is not prepared: nothing in {version_dir}; prepare it once "
        f"with: {pp.prepare_command(data_dir=root, categories=[category])} (no TensorFlow needed).")
  fmt = builder.info.file_format
  if fmt is not None and fmt.value != "array_record":
    raise pp.DatasetNotPreparedError(
        f"Pascal-Part '{config}' in {version_dir} is {fmt.value}, which has no random access; "
        f"rebuild it with: {pp.prepare_command(data_dir=root, categories=[category])}.")
  return tfds.data_source(f"pascal_part/{config}", split=split, data_dir=data_dir,
                          download=False)


def load(split: str, *, category: str, data_dir: str | os.PathLike | None = None,
         image_size: int = 224, margin: float = 0.0, negative_ratio: float | None = 1.0,
         seed: int = 0, mean: Sequence[float] = preprocess.IMAGENET_MEAN,
         std: Sequence[float] = preprocess.IMAGENET_STD,
         num_threads: int = 0, negatives: str = "non_animal") -> PascalPartSource:
  """One category against negative images, from the prepared data, without TensorFlow.

  Args:
    split: "train" or "test" (TFDS slicing such as "train[:50%]" is passed through).
    category: one of ``ANIMALS``.
    data_dir: TFDS data folder holding ``pascal_part/``; None: TFDS's default.
    image_size: S, the performer's input side.
    margin: crop margin, see ``preprocess_object``.
    negative_ratio: number of negatives per positive, a deterministic (``seed``) subset of
      the negative images; None: all of them.
    seed: seed of the negative subset.
    mean, std: normalisation (default ImageNet).
    num_threads: threads per batch.
    negatives: the pool negatives are drawn from, one of ``NEGATIVE_POOLS``: "non_animal"
      (images without animals) or "other_categories" (those and the objects of the other
      animals prepared in ``data_dir``, at least one).

  Returns:
    a ``PascalPartSource`` (positives first, then negatives; the loader shuffles).

  Raises:
    DatasetNotPreparedError: the category or the negatives are not prepared in ``data_dir``;
      the message gives the command that prepares them.
  """
  if category not in pp.ANIMALS:
    raise ConfigError(f"unknown Pascal-Part category {category!r}; use one of {list(pp.ANIMALS)}.")
  if negatives not in NEGATIVE_POOLS:
    raise ConfigError(f"negatives={negatives!r} is not known; use one of {list(NEGATIVE_POOLS)}.")
  pos = _open(category, split, data_dir, category)
  neg = _open(pp.NEGATIVE, split, data_dir, category)
  if negatives == "other_categories":
    prepared = [c for c in pp.ANIMALS
                if c != category and pp.PascalPart(config=c, data_dir=data_dir).is_prepared()]
    if not prepared:
      raise pp.DatasetNotPreparedError(
          f"negatives='other_categories' needs another animal than {category!r} prepared; "
          f"prepare them with: {pp.prepare_command(categories=pp.ANIMALS)}.")
    neg = _Concat((neg, *(_open(c, split, data_dir, c) for c in prepared)))
  n_neg = len(neg) if negative_ratio is None else min(len(neg), round(negative_ratio * len(pos)))
  chosen = np.sort(np.random.default_rng(seed).permutation(len(neg))[:n_neg])
  index = np.concatenate([np.stack([np.zeros(len(pos), int), np.arange(len(pos))], 1),
                          np.stack([np.ones(n_neg, int), chosen], 1)]).astype(np.int64)
  return PascalPartSource(pos, neg, index, image_size=image_size, margin=margin,
                          mean=tuple(mean), std=tuple(std), num_threads=num_threads)


