"""Per-example arrays stored as one ``.npy`` file per key and read as memory-mapped slices.

A feature cache (feature maps, y, y_i, w of every training image) can be far larger than the
host's memory at full size (a 14×14×512 bfloat16 map is 200 KB per image, 32 GB for CelebA's
162,770 training images). ``save_arrays`` writes each array as ``<key>.npy``, ``MmapSource``
opens them with ``np.load(mmap_mode="r")`` and ``get_batch`` copies only the rows of a batch, so
a loader reads its batches from the page cache or the disk without loading the whole cache.
bfloat16 (no NumPy dtype, so ``.npy`` files cannot name it) is stored as its uint16 bits and
named in ``dtypes.json``.
"""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np

DTYPES_FILE = "dtypes.json"


def save_arrays(directory: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes ``<directory>/<key>.npy`` for every array (equal first dimensions).

  Args:
    directory: created if missing.
    arrays: name -> ``[N, ...]`` array; bfloat16 arrays are stored as their uint16 bits.
  """
  lengths = {k: len(v) for k, v in arrays.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"arrays have different lengths {lengths}; every array needs one row per "
                     "example.")
  os.makedirs(directory, exist_ok=True)
  dtypes = {}
  for key, value in arrays.items():
    value = np.asarray(value)
    if value.dtype == ml_dtypes.bfloat16:
      dtypes[key], value = "bfloat16", value.view(np.uint16)
    np.save(os.path.join(directory, f"{key}.npy"), value)
  with open(os.path.join(directory, DTYPES_FILE), "w") as f:
    json.dump(dtypes, f)


class MmapSource:
  """A random-access source (``len``, ``get_batch``) over the ``.npy`` files of a directory.

  Args:
    directory: written by ``save_arrays``.
    keys: the arrays to read (default: every ``.npy`` file).
  """

  def __init__(self, directory: str, keys: tuple[str, ...] | None = None):
    if not os.path.isdir(directory):
      raise FileNotFoundError(f"no feature files in {directory!r}: the folder does not exist; "
                              "write them first (save_arrays) or fix the path.")
    path = os.path.join(directory, DTYPES_FILE)
    dtypes = {}
    if os.path.exists(path):
      with open(path) as f:
        dtypes = json.load(f)
    if keys is None:
      keys = tuple(sorted(n[:-4] for n in os.listdir(directory) if n.endswith(".npy")))
    if not keys:
      raise FileNotFoundError(f"no .npy files in {directory!r}; write them with save_arrays.")
    self.arrays = {}
    for key in keys:
      a = np.load(os.path.join(directory, f"{key}.npy"), mmap_mode="r")
      self.arrays[key] = a.view(ml_dtypes.bfloat16) if dtypes.get(key) == "bfloat16" else a
    lengths = {k: len(v) for k, v in self.arrays.items()}
    if len(set(lengths.values())) > 1:
      raise ValueError(f"the feature files in {directory!r} have different lengths {lengths}; "
                       "the folder is damaged: delete it and write it again.")

  def __len__(self) -> int:
    return len(next(iter(self.arrays.values())))

  def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``indices`` of every array, copied into memory.

    Args:
      indices: ``[b]`` int row indices (any order, repeats allowed).

    Returns:
      name -> ``[b, ...]`` in-memory array.
    """
    idx = np.asarray(indices, np.int64).reshape(-1)
    return {key: np.asarray(np.take(a, idx, axis=0)) for key, a in self.arrays.items()}
