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
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image

# ImageNet channel statistics (RGB, for pixels scaled to [0, 1]) used by torchvision models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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


def normalize(image: np.ndarray,
              mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
  """Scales uint8 pixels to [0, 1] and standardises each channel.

  Args:
    image: ``[..., 3]`` uint8.
    mean: per-channel mean of the [0, 1] pixels (default ImageNet).
    std: per-channel standard deviation (default ImageNet).

  Returns:
    ``[..., 3]`` float32 ``(image / 255 - mean) / std``.
  """
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  return (image.astype(np.float32) / np.float32(255.0) - mean) / std


def preprocess_image(image: bytes | np.ndarray,
                     image_size: int,
                     mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD,
                     method: str = "bilinear") -> np.ndarray:
  """Decode, central square crop, resize and normalise one image.

  Args:
    image: encoded bytes or ``[H,W,3]`` uint8.
    image_size: output side ``S``.
    mean: per-channel mean for ``normalize``.
    std: per-channel standard deviation for ``normalize``.
    method: resampling method for ``resize``.

  Returns:
    ``[S,S,3]`` float32.
  """
  square = center_crop_square(decode_image(image))
  return normalize(resize(square, image_size, method), mean, std)


def denormalize(image: np.ndarray,
                mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
  """Inverse of ``normalize`` up to rounding, for display.

  Args:
    image: ``[..., 3]`` float32 normalised pixels.
    mean: the mean used by ``normalize``.
    std: the standard deviation used by ``normalize``.

  Returns:
    ``[..., 3]`` uint8.
  """
  x = np.asarray(image, np.float32) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
  return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
