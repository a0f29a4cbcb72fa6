"""CelebA face attributes (Experiment 2) as a random-access source, read without TensorFlow.

``load(split)`` opens the *prepared* TFDS ``celeb_a`` dataset (version 2.1.0) with
``tfds.data_source``, which gives random access over ArrayRecord files with no TensorFlow
import. Each record is the aligned 178×218 (W×H) face and 40 boolean attributes; ``get_batch``
returns

* ``"image"``: ``[b,S,S,3]`` float32, the central 178×178 square of the face (rows 20:198, i.e.
  PIL box ``(0, 20, 178, 198)``) resized to ``S = image_size`` and normalised with the ImageNet
  mean/std (see ``preprocess``), so torchvision ImageNet weights fit;
* ``"labels"``: ``[b,40]`` float32 in {0, 1}, column ``k`` is ``ATTRIBUTE_NAMES[k]``.

Split sizes: train 162,770 / validation 19,867 / test 19,962 images.

Preparing the data (once, needs TensorFlow: ``pip install 'xplain_jax[tfds]'``)::

  tfds build celeb_a --data_dir=DATA_DIR --file_format=array_record

The builder downloads five files (1.4 GB) from Google Drive. Drive often refuses with a quota
error; then download ``img_align_celeba.zip``, ``list_eval_partition.txt``,
``list_attr_celeba.txt``, ``list_landmarks_align_celeba.txt`` and ``identity_CelebA.txt`` from
the CelebA homepage (http://mmlab.ie.cuhk.edu.hk/projects/CelebA.html; the ``.txt`` files are in
its ``Anno``/``Eval`` folders) into ``DATA_DIR/downloads/manual/`` (or pass ``--manual_dir``)
and rerun: TFDS takes files found there, by these names, instead of downloading them. A dataset
already prepared as TFRecord (the ``tfds build`` default) has no random access; convert it with
``tfds convert_format --dataset_version_dir=DATA_DIR/celeb_a/2.1.0 --out_file_format=array_record``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Sequence

import numpy as np

from xplain_jax.data import preprocess

DATASET_NAME = "celeb_a"

# The 40 attributes in TFDS ``celeb_a`` order (the ``attributes`` feature keys, which are
# sorted; also the column order of the original list_attr_celeba.txt).
ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)

# Extra spellings beyond case, spaces and hyphens (which ``attribute_index`` ignores anyway).
_ALIASES = {"five_o_clock_shadow": "5_o_Clock_Shadow", "glasses": "Eyeglasses"}

_SPLITS = ("train", "validation", "test")  # 162,770 / 19,867 / 19,962 images


from xplain_jax.errors import (  # noqa: E402 (one class for every dataset)
    DataError, DatasetNotPreparedError)


def _canonical(name: str) -> str:
  return re.sub(r"[\s\-]+", "_", name.strip()).lower()


def attribute_index(name: str) -> int:
  """Column of attribute ``name`` in ``ATTRIBUTE_NAMES`` / the ``"labels"`` array.

  Args:
    name: an attribute name, case-insensitive, spaces or hyphens for underscores
      ("attractive", "Heavy Makeup", "heavy_makeup", "male", "young", ...).

  Returns:
    index in ``[0, 40)``.
  """
  lookup = {_canonical(n): i for i, n in enumerate(ATTRIBUTE_NAMES)}
  key = _canonical(name)
  key = _canonical(_ALIASES.get(key, key))
  if key not in lookup:
    raise DataError(f"unknown CelebA attribute {name!r}; valid names (case-insensitive): "
                     f"{', '.join(ATTRIBUTE_NAMES)}.")
  return lookup[key]


def _check_split(split: str) -> None:
  """Checks the split names of a TFDS split expression such as "train[:1000]+validation"."""
  for part in split.split("+"):
    base = part.split("[")[0].strip()
    if base not in _SPLITS:
      raise DataError(f"unknown CelebA split {base!r} in {split!r}; use one of "
                       f"{list(_SPLITS)} (TFDS slicing such as 'train[:1000]' "
                       "is allowed).")


def _preparation_problem(data_dir: str | os.PathLike | None) -> str | None:
  """Why ``celeb_a`` cannot be read with random access from ``data_dir``; None if it can."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(DATASET_NAME, data_dir=data_dir)
  version_dir = os.fspath(builder.data_dir)
  root = os.path.dirname(os.path.dirname(version_dir))
  build = (f"tfds build {DATASET_NAME} --data_dir={root} --file_format=array_record (needs "
           "TensorFlow: pip install 'xplain_jax[tfds]'; if the Google Drive download fails, put "
           "img_align_celeba.zip, list_eval_partition.txt, list_attr_celeba.txt, "
           "list_landmarks_align_celeba.txt and identity_CelebA.txt from the CelebA homepage "
           f"in {os.path.join(root, 'downloads', 'manual')} and rerun)")
  if not builder.is_prepared():
    return (f"CelebA is not prepared: no TFDS {DATASET_NAME} {builder.version} found in "
            f"{version_dir}; prepare it once with: {build}.")
  fmt = builder.info.file_format
  if fmt is not None and fmt.value not in ("array_record", "parquet"):
    return (f"CelebA in {version_dir} was prepared as {fmt.value}, which has no random access; "
            f"convert it with: tfds convert_format --dataset_version_dir={version_dir} "
            f"--out_file_format=array_record (or rebuild with: {build}).")
  return None


@dataclasses.dataclass(frozen=True)
class CelebASource(preprocess.Preprocessing):
  """Random-access CelebA source over a TFDS data source.

  Attributes:
    records: sequence of TFDS ``celeb_a`` examples (``len`` and ``[i]``), each a dict with
      ``"image"`` (decoded ``[218,178,3]`` uint8 or encoded JPEG bytes) and ``"attributes"``
      (name -> bool for the 40 ``ATTRIBUTE_NAMES``).
    image_size, mean, std, num_threads: ``preprocess.Preprocessing``.
  """

  records: Any

  def __len__(self) -> int:
    return len(self.records)

  def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Loads and preprocesses records ``indices``, ``num_threads`` records at a time.

    Args:
      indices: ``[b]`` int record indices.

    Returns:
      ``{"image": [b,S,S,3] float32, "labels": [b,40] float32 in {0,1}}``.
    """
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    size = self.image_size
    images = np.empty((len(idx), size, size, 3), np.float32)
    labels = np.empty((len(idx), len(ATTRIBUTE_NAMES)), np.float32)

    def one(row: int) -> None:  # each thread writes its own rows
      ex = self.records[idx[row]]
      labels[row] = [bool(ex["attributes"][n]) for n in ATTRIBUTE_NAMES]
      preprocess.preprocess_image(ex["image"], size, self.mean, self.std, out=images[row])

    preprocess.map_in_threads(one, range(len(idx)), self.num_threads)
    return {"image": images, "labels": labels}


def load(split: str,
         *,
         data_dir: str | os.PathLike | None = None,
         image_size: int = 224,
         mean: Sequence[float] = preprocess.IMAGENET_MEAN,
         std: Sequence[float] = preprocess.IMAGENET_STD,
         num_threads: int = 0) -> CelebASource:
  """Opens a split of the prepared TFDS ``celeb_a`` dataset as a random-access source.

  Args:
    split: "train", "validation" or "test", with optional TFDS slicing ("train[:1000]").
    data_dir: TFDS data folder holding ``celeb_a/2.1.0``; None uses TFDS's default
      (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    image_size: output side ``S`` of the square images.
    mean: per-channel normalisation mean (default ImageNet).
    std: per-channel normalisation standard deviation (default ImageNet).
    num_threads: threads per batch for reading and preprocessing (0: none).

  Returns:
    a ``CelebASource`` whose ``get_batch`` gives ``"image"`` [b,S,S,3] float32 and ``"labels"``
    [b,40] float32.

  Raises:
    DatasetNotPreparedError: the dataset is not prepared (as ArrayRecord) in ``data_dir``; the
      message says which folder was searched and the command that prepares it.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  _check_split(split)
  try:
    records = tfds.data_source(DATASET_NAME, split=split, data_dir=data_dir, download=False)
  except (KeyError, NotImplementedError, FileNotFoundError, ValueError) as e:
    problem = _preparation_problem(data_dir)
    if problem is None:
      raise
    raise DatasetNotPreparedError(problem) from e
  return CelebASource(records, image_size=image_size, mean=tuple(mean), std=tuple(std),
                      num_threads=num_threads)
