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

Preparing (once; ArrayRecord so that ``tfds.data_source`` has random access)::

  python -m xplain_jax.data.pascal_part --manual_dir=MANUAL_DIR --data_dir=DATA_DIR [--categories=cat,dog]

``tfds build`` imports TensorFlow even for ArrayRecord output; with TensorFlow installed,
``tfds build xplain_jax/data/pascal_part.py --config=cat --manual_dir=MANUAL_DIR
--data_dir=DATA_DIR --file_format=array_record`` (once per config, ``negative`` included) is the
equivalent route. TFDS refuses a split without examples, so every prepared config needs objects
in both splits (true of the real data). ``load`` then reads the prepared data.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import logging
import os
import pathlib
import zlib
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from xplain_jax.data import preprocess

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


from xplain_jax.errors import DatasetNotPreparedError  # noqa: E402 (one class for every dataset)


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
    raise ValueError(f"{path} is not a Pascal-Part annotation (no 'anno' struct): {e}") from e
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
  raise FileNotFoundError(f"no Annotations_Part folder in {manual_dir}; "
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
      raise FileNotFoundError(f"no VOCdevkit/VOC2010/JPEGImages in {manual_dir}; "
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
    raise ValueError(f"box {tuple(box)} is empty inside an image of shape {image_shape[:2]}.")
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
class PascalPartSource:
  """Random-access source: one category's objects (label 1) and negative images (label 0).

  Attributes:
    positives: records of ``pascal_part/<category>`` (``len`` and ``[i]``).
    negatives: records of ``pascal_part/negative``.
    index: [N,2] int, rows ``(0, i)`` for ``positives[i]`` and ``(1, i)`` for ``negatives[i]``.
    image_size, margin, mean, std: see ``preprocess_object``.
    num_threads: threads that read and preprocess a batch (0 or 1: the calling thread).
  """

  positives: Any
  negatives: Any
  index: np.ndarray
  image_size: int = 224
  margin: float = 0.0
  mean: Sequence[float] = preprocess.IMAGENET_MEAN
  std: Sequence[float] = preprocess.IMAGENET_STD
  num_threads: int = 0

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
    if self.num_threads > 1 and len(rows) > 1:
      with concurrent.futures.ThreadPoolExecutor(min(self.num_threads, len(rows))) as pool:
        examples = list(pool.map(self._example, rows))
    else:
      examples = [self._example(r) for r in rows]
    s = self.image_size
    if not examples:
      return {"image": np.zeros((0, s, s, 3), np.float32), "label": np.zeros((0,), np.float32),
              "part_mask": np.zeros((0, s, s), np.int32)}
    images, labels, masks = zip(*examples)
    return {"image": np.stack(images), "label": np.array(labels, np.float32),
            "part_mask": np.stack(masks)}


def prepare_command(manual_dir: str = "MANUAL_DIR", data_dir: str = "DATA_DIR",
                    categories: Sequence[str] = ANIMALS) -> str:
  """The shell command that prepares the given categories (and the negatives)."""
  return (f"python -m xplain_jax.data.pascal_part --manual_dir={manual_dir} "
          f"--data_dir={data_dir} --categories={','.join(categories)}")


def _open(config: str, split: str, data_dir, category: str):
  builder = PascalPart(config=config, data_dir=data_dir)
  version_dir = os.fspath(builder.data_dir)
  root = os.path.dirname(os.path.dirname(os.path.dirname(version_dir)))
  if not builder.is_prepared():
    raise DatasetNotPreparedError(
        f"Pascal-Part '{config}' is not prepared: nothing in {version_dir}; prepare it once "
        f"with: {prepare_command(data_dir=root, categories=[category])} (no TensorFlow needed).")
  fmt = builder.info.file_format
  if fmt is not None and fmt.value != "array_record":
    raise DatasetNotPreparedError(
        f"Pascal-Part '{config}' in {version_dir} is {fmt.value}, which has no random access; "
        f"rebuild it with: {prepare_command(data_dir=root, categories=[category])}.")
  return tfds.data_source(f"pascal_part/{config}", split=split, data_dir=data_dir,
                          download=False)


def load(split: str, *, category: str, data_dir: str | os.PathLike | None = None,
         image_size: int = 224, margin: float = 0.0, negative_ratio: float | None = 1.0,
         seed: int = 0, mean: Sequence[float] = preprocess.IMAGENET_MEAN,
         std: Sequence[float] = preprocess.IMAGENET_STD,
         num_threads: int = 0) -> PascalPartSource:
  """One category against non-animal images, from the prepared data, without TensorFlow.

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

  Returns:
    a ``PascalPartSource`` (positives first, then negatives; the loader shuffles).

  Raises:
    DatasetNotPreparedError: the category or the negatives are not prepared in ``data_dir``;
      the message gives the command that prepares them.
  """
  if category not in ANIMALS:
    raise ValueError(f"unknown Pascal-Part category {category!r}; use one of {list(ANIMALS)}.")
  pos = _open(category, split, data_dir, category)
  neg = _open(NEGATIVE, split, data_dir, category)
  n_neg = len(neg) if negative_ratio is None else min(len(neg), round(negative_ratio * len(pos)))
  chosen = np.sort(np.random.default_rng(seed).permutation(len(neg))[:n_neg])
  index = np.concatenate([np.stack([np.zeros(len(pos), int), np.arange(len(pos))], 1),
                          np.stack([np.ones(n_neg, int), chosen], 1)]).astype(np.int64)
  return PascalPartSource(pos, neg, index, image_size=image_size, margin=margin,
                          mean=tuple(mean), std=tuple(std), num_threads=num_threads)


def prepare(manual_dir: str, data_dir: str | None = None,
            categories: Sequence[str] = ANIMALS, negatives: bool = True) -> None:
  """Prepares ``pascal_part/<category>`` (and ``pascal_part/negative``) as ArrayRecord."""
  bad = [c for c in categories if c not in ANIMALS]
  if bad:
    raise ValueError(f"unknown Pascal-Part categories {bad}; use names from {list(ANIMALS)}.")
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  for name in list(categories) + ([NEGATIVE] if negatives else []):
    builder = PascalPart(config=name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=config)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description="Prepare Pascal-Part for xplain_jax.")
  parser.add_argument("--manual_dir", required=True, help="has VOCdevkit/, Annotations_Part/")
  parser.add_argument("--data_dir", default=None, help="TFDS data folder (default: TFDS's)")
  parser.add_argument("--categories", default=",".join(ANIMALS), help="comma-separated animals")
  parser.add_argument("--no_negatives", action="store_true", help="skip pascal_part/negative")
  args = parser.parse_args(argv)
  prepare(args.manual_dir, args.data_dir, [c for c in args.categories.split(",") if c],
          negatives=not args.no_negatives)


if __name__ == "__main__":
  main()
