"""Pascal-Part animals (Experiment 1): a TFDS builder over a manual download, read without TensorFlow.

Data (manual download, ``MANUAL_DOWNLOAD_INSTRUCTIONS``): the PASCAL VOC 2010 images and the
Pascal-Part annotations (Chen et al. 2014), one ``.mat`` per image with the structure
``anno.objects(k).{class, class_ind, mask, parts(p).{part_name, mask}}``. It is read with
``scipy.io.loadmat(squeeze_me=True, struct_as_record=False)``: structs become attribute objects,
1×K struct arrays become K-vectors (a single struct when K = 1, an empty array when K = 0).

Builder configs (``pascal_part/<name>``), each with splits "train" and "test":

* one per animal (``ANIMALS``): one example per object of that class (objects with an empty
  mask are skipped), with the whole image, the object box from its mask, and its part mask;
* ``negative``: the images whose annotation holds no animal object (people, vehicles,
  furniture, ...), one example per image, box = the whole image, empty part mask.

Splits: VOC 2010 ``ImageSets/Main/train.txt`` -> "train", ``val.txt`` -> "test" when the
devkit has them; otherwise an image goes to "test" when ``crc32(image_id) % 5 == 0`` (~20 %).

Part masks are grouped into the coarse parts ``PART_NAMES`` by ``FINE_TO_COARSE`` (neck and
wings count as torso, paws, feet and hooves as legs, eyes, ears, nose, muzzle, beak and horns as
head), the grouping of the interpretable-CNN evaluation code except that legs are not split
into front and back and tails count for every animal. The fine labels are kept as well
(``fine_part_mask``, index into ``FINE_PART_NAMES`` + 1) to allow other groupings. Pixels that a
later object of the image covers (Pascal-Part orders objects so that later ones occlude earlier
ones) are removed from an object's masks.

Stored features are plain tensors so that neither preparing nor reading needs TensorFlow:
``image`` (the original JPEG bytes), ``image_id``, ``object_index`` (−1 for negatives),
``category`` (``ANIMALS`` + "none"), ``box`` [4] int32 ``(ymin, xmin, ymax, xmax)`` in pixels,
max exclusive, and full-image uint8 masks ``object_mask``, ``part_mask``, ``fine_part_mask``.

Reading the prepared data (crop, resize, one category against negatives) lives in
``pascal_part_source.py`` (``load``, ``PascalPartSource``, ``preprocess_object``, ``crop_box``),
which imports this module and never the other way.

Preparing (once; ArrayRecord so that ``tfds.data_source`` has random access)::

  python -m xplain_jax.data.pascal_part --manual_dir=MANUAL_DIR --data_dir=DATA_DIR \\
      [--categories=cat,dog]

``tfds build`` imports TensorFlow even for ArrayRecord output; with TensorFlow installed,
``tfds build xplain_jax/data/pascal_part.py --config=cat --manual_dir=MANUAL_DIR
--data_dir=DATA_DIR --file_format=array_record`` (once per config, ``negative`` included) is the
equivalent route. TFDS refuses a split without examples, so every prepared config needs objects
in both splits (true of the real data). ``pascal_part_source.load`` then reads the prepared data.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import zlib
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from xplain_jax import utils


ANIMALS = ("bird", "cat", "cow", "dog", "horse", "sheep")
NEGATIVE = "negative"
PART_NAMES = ("head", "torso", "legs", "tail")
FINE_TO_COARSE = {
    **{n: "head" for n in ("head", "leye", "reye", "lear", "rear", "nose", "muzzle", "beak",
                           "lhorn", "rhorn")},
    **{n: "torso" for n in ("torso", "neck", "lwing", "rwing")},
    **{n: "legs" for n in ("lleg", "rleg", "lfoot", "rfoot",                      # bird
                           "lfleg", "rfleg", "lbleg", "rbleg",                    # cat, dog
                           "lfpa", "rfpa", "lbpa", "rbpa",                        # paws
                           "lfuleg", "lflleg", "rfuleg", "rflleg",                # cow, horse,
                           "lbuleg", "lblleg", "rbuleg", "rblleg",                # sheep
                           "lfho", "rfho", "lbho", "rbho")},                      # hooves
    "tail": "tail",
}
FINE_PART_NAMES = tuple(FINE_TO_COARSE)
MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download VOCtrainval_03-May-2010.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2010/) and the
Pascal-Part annotations trainval.tar.gz (http://roozbehm.info/pascal-parts/pascal-parts.html);
extract both into manual_dir so that it holds VOCdevkit/VOC2010/JPEGImages/*.jpg and
Annotations_Part/*.mat (trainval/Annotations_Part/*.mat is found too).
"""


from xplain_jax.errors import (  # noqa: E402 (one class for every dataset)
    ConfigError, DataError, DatasetNotPreparedError, exception_chain)


def _structs(value) -> list:
  """A loadmat struct array (squeeze_me=True) as a list: one struct, a vector, or empty."""
  if isinstance(value, np.ndarray):
    return [] if value.size == 0 else list(value.reshape(-1))
  return [value]


def parse_annotation(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads one Pascal-Part ``.mat`` file.

  Returns:
    one dict per object, in file order: ``"class"`` str, ``"class_ind"`` int, ``"mask"``
    [H,W] bool, ``"parts"`` list of ``(part_name, [H,W] bool)``.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top

  try:
    anno = scipy.io.loadmat(os.fspath(path), squeeze_me=True, struct_as_record=False)["anno"]
  except (KeyError, ValueError, TypeError) as e:
    raise DataError(f"{path} is not a Pascal-Part annotation (no 'anno' struct): {e}") from e
  objects = []
  for obj in _structs(anno.objects):
    parts = [(str(p.part_name), np.asarray(p.mask).astype(bool))
             for p in _structs(obj.parts)]
    objects.append({"class": str(getattr(obj, "class")),
                    "class_ind": int(np.asarray(obj.class_ind).reshape(-1)[0]),
                    "mask": np.asarray(obj.mask).astype(bool), "parts": parts})
  return objects


def mask_box(mask: np.ndarray) -> np.ndarray | None:
  """``(ymin, xmin, ymax, xmax)`` int32 (max exclusive) of the True pixels, None if empty."""
  rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
  if rows.size == 0:
    return None
  return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.int32)


def object_part_masks(obj: dict, occluders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Coarse and fine part masks [H,W] uint8 of one object, minus the ``occluders`` pixels."""
  coarse = np.zeros(obj["mask"].shape, np.uint8)
  fine = np.zeros(obj["mask"].shape, np.uint8)
  for name, m in obj["parts"]:
    if name not in FINE_TO_COARSE:
      logging.warning("Pascal-Part part %r of a %s is not in FINE_TO_COARSE; left unlabelled.",
                      name, obj["class"])
      continue
    coarse[m] = PART_NAMES.index(FINE_TO_COARSE[name]) + 1
    fine[m] = FINE_PART_NAMES.index(name) + 1
  coarse[occluders], fine[occluders] = 0, 0
  return coarse, fine


def _find_annotations(manual_dir: str) -> str:
  for sub in ("Annotations_Part", os.path.join("trainval", "Annotations_Part")):
    if os.path.isdir(os.path.join(manual_dir, sub)):
      return os.path.join(manual_dir, sub)
  raise DatasetNotPreparedError(f"no Annotations_Part folder in {manual_dir}; "
                          + MANUAL_DOWNLOAD_INSTRUCTIONS.replace("\n", " "))


def split_of(image_id: str, train_ids: set | None, test_ids: set | None) -> str | None:
  """"train"/"test" for an image: VOC ImageSets if given, else the crc32 rule; None: neither."""
  if train_ids is not None and test_ids is not None:
    return "train" if image_id in train_ids else ("test" if image_id in test_ids else None)
  return "test" if zlib.crc32(image_id.encode()) % 5 == 0 else "train"


class PascalPart(tfds.core.GeneratorBasedBuilder, skip_registration=__name__ == "__main__"):
  """Pascal-Part animal objects with coarse part masks, and non-animal negative images."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Animal objects with part masks; non-animal negatives."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  # This file (TFDS looks for a checksums file beside it). Set here because TFDS's own lookup
  # for a builder inside a package imports `importlib_resources`, which may be missing.
  code_path = epath.Path(__file__)
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f"{n} objects")
                     for n in ANIMALS] + [
                         tfds.core.BuilderConfig(name=NEGATIVE,
                                                 description="images without animals")]

  def _info(self) -> tfds.core.DatasetInfo:
    mask = lambda: tfds.features.Tensor(shape=(None, None), dtype=np.uint8, encoding="zlib")
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n")[0],
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # JPEG bytes
            "image_id": tfds.features.Text(),
            "object_index": tfds.features.Tensor(shape=(), dtype=np.int32),
            "category": tfds.features.ClassLabel(names=ANIMALS + ("none",)),
            "box": tfds.features.Tensor(shape=(4,), dtype=np.int32),
            "object_mask": mask(), "part_mask": mask(), "fine_part_mask": mask(),
        }),
        homepage="http://roozbehm.info/pascal-parts/pascal-parts.html")

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    voc = os.path.join(manual_dir, "VOCdevkit", "VOC2010")
    if not os.path.isdir(os.path.join(voc, "JPEGImages")):
      raise DatasetNotPreparedError(f"no VOCdevkit/VOC2010/JPEGImages in {manual_dir}; "
                              + MANUAL_DOWNLOAD_INSTRUCTIONS.replace("\n", " "))
    lists = [os.path.join(voc, "ImageSets", "Main", f"{s}.txt") for s in ("train", "val")]
    ids = [None, None]
    if all(os.path.exists(p) for p in lists):
      ids = [set(open(p).read().split()) for p in lists]
    annotations = _find_annotations(manual_dir)
    return {s: self._generate_examples(voc, annotations, s, ids[0], ids[1])
            for s in ("train", "test")}

  def _generate_examples(self, voc_dir, annotation_dir, split, train_ids=None, test_ids=None):
    """Yields ``(key, example)`` for this config's class (or the negatives) in ``split``."""
    config = self.builder_config.name
    count = 0
    for key, example in self._examples(config, voc_dir, annotation_dir, split, train_ids,
                                       test_ids):
      count += 1
      yield key, example
    if not count:  # TFDS would stop with an AssertionError traceback
      what = "images without animals" if config == NEGATIVE else f"{config} objects"
      raise DataError(
          f"Pascal-Part has no {what} in the {split} split of {annotation_dir} (a partial "
          "download?); download the complete annotations and VOC2010 images "
          f"(MANUAL_DIR/Annotations_Part, MANUAL_DIR/VOCdevkit/VOC2010), or prepare only "
          "categories with objects in both splits (--categories=...).")

  def _examples(self, config, voc_dir, annotation_dir, split, train_ids, test_ids):
    for fname in sorted(os.listdir(annotation_dir)):
      image_id, ext = os.path.splitext(fname)
      if ext != ".mat" or split_of(image_id, train_ids, test_ids) != split:
        continue
      jpeg_path = os.path.join(voc_dir, "JPEGImages", image_id + ".jpg")
      if not os.path.exists(jpeg_path):
        logging.warning("Pascal-Part annotation %s has no image %s; skipped.", fname, jpeg_path)
        continue
      objects = parse_annotation(os.path.join(annotation_dir, fname))
      is_animal = [o["class"] in ANIMALS for o in objects]
      if config == NEGATIVE:
        if not any(is_animal):
          yield image_id, self._negative(jpeg_path, image_id)
        continue
      for k, obj in enumerate(objects):
        box = mask_box(obj["mask"])
        if obj["class"] != config or box is None:
          continue
        occluders = np.zeros_like(obj["mask"])
        for later in objects[k + 1:]:
          occluders |= later["mask"]
        coarse, fine = object_part_masks(obj, occluders)
        yield f"{image_id}_{k}", {
            "image": _read_bytes(jpeg_path), "image_id": image_id, "object_index": k,
            "category": config, "box": box,
            "object_mask": (obj["mask"] & ~occluders).astype(np.uint8),
            "part_mask": coarse, "fine_part_mask": fine}

  def _negative(self, jpeg_path, image_id):
    with Image.open(jpeg_path) as im:
      w, h = im.size
    empty = np.zeros((h, w), np.uint8)
    return {"image": _read_bytes(jpeg_path), "image_id": image_id, "object_index": -1,
            "category": "none", "box": np.array([0, 0, h, w], np.int32),
            "object_mask": empty, "part_mask": empty, "fine_part_mask": empty}


def _read_bytes(path):
  return pathlib.Path(path).read_bytes()


def prepare_command(manual_dir: str = "MANUAL_DIR", data_dir: str = "DATA_DIR",
                    categories: Sequence[str] = ANIMALS) -> str:
  """The shell command that prepares the given categories (and the negatives)."""
  return (f"python -m xplain_jax.data.pascal_part --manual_dir={manual_dir} "
          f"--data_dir={data_dir} --categories={','.join(categories)}")


def prepare(manual_dir: str, data_dir: str | None = None,
            categories: Sequence[str] = ANIMALS, negatives: bool = True) -> None:
  """Prepares ``pascal_part/<category>`` (and ``pascal_part/negative``) as ArrayRecord."""
  bad = [c for c in categories if c not in ANIMALS]
  if bad:
    raise ConfigError(f"unknown Pascal-Part categories {bad}; use names from {list(ANIMALS)}.")
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  for name in list(categories) + ([NEGATIVE] if negatives else []):
    builder = PascalPart(config=name, data_dir=data_dir, file_format="array_record")
    try:
      builder.download_and_prepare(download_config=config)
    except Exception as e:  # pylint: disable=broad-except  (TFDS may wrap the generator's error)
      cause = next((c for c in exception_chain(e) if isinstance(c, DataError)), None)
      if cause is None:
        raise
      raise cause from None


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description="Prepare Pascal-Part for xplain_jax.")
  parser.add_argument("--manual_dir", required=True, help="has VOCdevkit/, Annotations_Part/")
  parser.add_argument("--data_dir", default=None, help="TFDS data folder (default: TFDS's)")
  parser.add_argument("--categories", default=",".join(ANIMALS), help="comma-separated animals")
  parser.add_argument("--no_negatives", action="store_true", help="skip pascal_part/negative")
  args = parser.parse_args(argv)
  prepare(args.manual_dir, args.data_dir, utils.split_list(args.categories),
          negatives=not args.no_negatives)


if __name__ == "__main__":
  main()
