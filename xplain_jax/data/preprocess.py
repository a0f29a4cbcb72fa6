"""Image preprocessing for face crops in pure numpy/PIL (no TensorFlow).

The chain for one image is the torchvision one (``CenterCrop → Resize → ToTensor → Normalize``),
so ImageNet weights imported from torchvision see inputs in the range they were trained on:

1. ``decode_image``: encoded bytes (JPEG/PNG) or an already decoded array -> ``[H,W,3] uint8``;
2. ``center_crop_square``: the central ``s×s`` square, ``s = min(H, W)``, with top-left corner
   ``((H - s) // 2, (W - s) // 2)`` (see ``center_square_box``). For an aligned CelebA face
   (``H×W = 218×178``) that is rows ``20:198`` and all 178 columns, i.e. the PIL box
   ``(left, upper, right, lower) = (0, 20, 178, 198)``;
3. ``resize``: PIL bilinear resampling of the uint8 square to ``size×size``;
4. ``normalize``: ``(x / 255 - mean) / std`` per channel, float32, with the ImageNet statistics
   ``IMAGENET_MEAN`` / ``IMAGENET_STD`` by default.

Speed (the input must keep an accelerator busy): encoded images are cropped and resized as PIL
images (no intermediate numpy copies); ``normalize`` looks the 256 possible values of each
channel up in a table computed with the formula above (the same float32 numbers, 2.5x faster
than the arithmetic); a source runs the chain for the images of a batch in threads
(``map_in_threads``: PIL's decoder and resampler and numpy's ``take`` release the GIL) and writes
each image straight into its row of the batch (``preprocess_image``'s ``out``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
from typing import Sequence

import numpy as np
from PIL import Image

# ImageNet channel statistics (RGB, for pixels scaled to [0, 1]) used by torchvision models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



@dataclasses.dataclass(frozen=True, kw_only=True)
class Preprocessing:
  """The preprocessing fields every source of photographs has (``celeba.CelebASource``,
  ``pascal_part_source.PascalPartSource``), keyword-only after the source's own fields.

  Attributes:
    image_size: output side ``S``.
    mean: per-channel normalisation mean (default ImageNet).
    std: per-channel normalisation standard deviation (default ImageNet).
    num_threads: threads that read and preprocess the records of a batch (reading, PIL
      decoding and resizing release the GIL); 0 or 1 reads them in the calling thread.
  """

  image_size: int = 224
  mean: Sequence[float] = IMAGENET_MEAN
  std: Sequence[float] = IMAGENET_STD
  num_threads: int = 0


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def decode_image(image: bytes | np.ndarray) -> np.ndarray:
  """Decodes an image to RGB uint8.

  Args:
    image: encoded bytes (any format PIL reads) or a decoded ``[H,W,3]`` uint8 array, which is
      returned as is.

  Returns:
    ``[H,W,3]`` uint8.
  """
  if isinstance(image, (bytes, bytearray, memoryview)):
    with Image.open(io.BytesIO(image)) as img:
      return np.asarray(img.convert("RGB"), dtype=np.uint8)
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f"image has shape {image.shape} and dtype {image.dtype}; expected an "
                     "[H, W, 3] uint8 RGB array or encoded image bytes.")
  return image


def center_square_box(height: int, width: int) -> tuple[int, int, int]:
  """The central square of an ``height×width`` image.

  Args:
    height: image height ``H``.
    width: image width ``W``.

  Returns:
    ``(top, left, side)`` with ``side = min(H, W)``, ``top = (H - side) // 2``,
    ``left = (W - side) // 2``; the crop is ``image[top:top+side, left:left+side]``.
  """
  side = min(height, width)
  return (height - side) // 2, (width - side) // 2, side


def center_crop_square(image: np.ndarray) -> np.ndarray:
  """Crops the central square (see ``center_square_box``).

  Args:
    image: ``[H,W,C]`` array.

  Returns:
    ``[s,s,C]`` view of ``image`` with ``s = min(H, W)``.
  """
  top, left, side = center_square_box(*image.shape[:2])
  return image[top:top + side, left:left + side]


def resize(image: np.ndarray, size: int, method: str = "bilinear") -> np.ndarray:
  """Resizes a square uint8 image with PIL.

  Args:
    image: ``[h,w,3]`` uint8.
    size: output side ``S``.
    method: "bilinear" (default, as torchvision's ``Resize``), "bicubic" or "nearest".

  Returns:
    ``[S,S,3]`` uint8; ``image`` itself when it already is ``S×S``.
  """
  if method not in _RESAMPLE:
    raise ValueError(f"unknown resize method {method!r}; use one of {sorted(_RESAMPLE)}.")
  if size <= 0:
    raise ValueError(f"image size must be positive, got {size}.")
  if image.shape[:2] == (size, size):
    return image
  pil = Image.fromarray(np.ascontiguousarray(image))
  return np.asarray(pil.resize((size, size), _RESAMPLE[method]), dtype=np.uint8)


def normalization_table(mean: Sequence[float] = IMAGENET_MEAN,
                        std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
  """``(v / 255 - mean) / std`` in float32 for every uint8 value ``v``.

  Args:
    mean: per-channel mean of the [0, 1] pixels.
    std: per-channel standard deviation.

  Returns:
    ``[3,256]`` float32; row ``c`` is channel ``c``'s table.
  """
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  values = np.arange(256, dtype=np.float32)[:, None]
  return np.ascontiguousarray(((values / np.float32(255.0) - mean) / std).T)


def normalize(image: np.ndarray,
              mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD,
              out: np.ndarray | None = None) -> np.ndarray:
  """Scales uint8 pixels to [0, 1] and standardises each channel.

  Args:
    image: ``[..., 3]`` uint8 (other dtypes are taken as 0..255 values).
    mean: per-channel mean of the [0, 1] pixels (default ImageNet).
    std: per-channel standard deviation (default ImageNet).
    out: optional C-contiguous float32 array of ``image``'s shape to write into.

  Returns:
    ``[..., 3]`` float32 ``(image / 255 - mean) / std`` (``out`` when given).
  """
  image = np.asarray(image)
  if image.shape[-1:] != (3,):
    raise ValueError(f"normalize takes [..., 3] RGB pixels, got shape {image.shape}; decode the "
                     "image first (decode_image).")
  if out is None:
    out = np.empty(image.shape, np.float32)
  if image.dtype != np.uint8:  # no table for other dtypes: the formula itself
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    out[...] = (image.astype(np.float32) / np.float32(255.0) - m) / s
    return out
  table = normalization_table(mean, std)
  pixels, dest = image.reshape(-1, 3), out.reshape(-1, 3)
  for c in range(3):
    np.take(table[c], pixels[:, c], out=dest[:, c])
  return out


def crop_resize(image: bytes | np.ndarray, image_size: int, method: str = "bilinear") -> np.ndarray:
  """Decode, central square crop and resize, in uint8 (``preprocess_image`` before normalising).

  Args:
    image: encoded bytes (any format PIL reads) or ``[H,W,3]`` uint8.
    image_size: output side ``S``.
    method: resampling method for ``resize``.

  Returns:
    ``[S,S,3]`` uint8, the same pixels as ``resize(center_crop_square(decode_image(image)))``.
  """
  if not isinstance(image, (bytes, bytearray, memoryview)):
    return resize(center_crop_square(decode_image(image)), image_size, method)
  if method not in _RESAMPLE:
    raise ValueError(f"unknown resize method {method!r}; use one of {sorted(_RESAMPLE)}.")
  if image_size <= 0:
    raise ValueError(f"image size must be positive, got {image_size}.")
  with Image.open(io.BytesIO(image)) as img:
    img = img if img.mode == "RGB" else img.convert("RGB")
    top, left, side = center_square_box(img.height, img.width)
    square = img.crop((left, top, left + side, top + side))
    if side != image_size:
      square = square.resize((image_size, image_size), _RESAMPLE[method])
    return np.asarray(square, dtype=np.uint8)


def preprocess_image(image: bytes | np.ndarray,
                     image_size: int,
                     mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD,
                     method: str = "bilinear",
                     out: np.ndarray | None = None) -> np.ndarray:
  """Decode, central square crop, resize and normalise one image.

  Args:
    image: encoded bytes or ``[H,W,3]`` uint8.
    image_size: output side ``S``.
    mean: per-channel mean for ``normalize``.
    std: per-channel standard deviation for ``normalize``.
    method: resampling method for ``resize``.
    out: optional ``[S,S,3]`` C-contiguous float32 array to write into.

  Returns:
    ``[S,S,3]`` float32.
  """
  return normalize(crop_resize(image, image_size, method), mean, std, out=out)


def map_in_threads(fn, items, num_threads: int) -> list:
  """``[fn(x) for x in items]``, computed by ``num_threads`` threads when that is more than 1.

  Args:
    fn: a function of one item; exceptions propagate to the caller.
    items: a sequence.
    num_threads: threads to use; 0 or 1 works in the calling thread.

  Returns:
    the results, in the order of ``items``.
  """
  if num_threads < 0:
    raise ValueError(f"num_threads must be >= 0 (0 or 1: no threads), got {num_threads}.")
  items = list(items)
  if num_threads <= 1 or len(items) <= 1:
    return [fn(x) for x in items]
  with concurrent.futures.ThreadPoolExecutor(min(num_threads, len(items))) as pool:
    return list(pool.map(fn, items))
