"""The feature cache's one file format: per-example arrays in memory-mapped shards.

A feature cache (feature map, y, y_i, w of every image, and the consistency targets t when a
variant asks for them) can be far larger than the host's memory at full size (CelebA at 224 px:
162,770 x 14x14x512 bfloat16, 33 GB). ``CacheWriter`` writes it shard by shard
(``shard-00000.npz, ...``, uncompressed, ``shard_size`` rows each; bfloat16, which ``.npy``
cannot name, stored as its uint16 bits) and then a ``done.json`` marker (written last,
atomically) naming the format, the shapes' row count, the dtypes, a SHA-256 checksum of each
shard file and the *identity* of what was cached (``stages.stage_fingerprint(config,
"features")`` in a run: the performer's and the featurizer's fields). ``load_cache`` maps every
array of every shard (``np.memmap`` at the member's offset in the uncompressed zip) and never
concatenates them: a batch reads only its own rows, so a cache larger than the memory trains from
disk. A cache without its marker, with a damaged shard or a shard whose bytes changed since it was
written (its checksum is verified on every load; a warning names it), or written under another
identity is not returned (the caller recomputes it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import zipfile

import jax
import ml_dtypes
import numpy as np

from xplain_jax.infra import checkpoint

FORMAT = "npz-stored-memmap-2"   # -2: with per-shard checksums
MARKER = "done.json"


def _encode(a: np.ndarray) -> np.ndarray:
  """bfloat16 (not a NumPy type: ``np.savez`` would write raw void ``|V2``) as its uint16 bits."""
  return a.view(np.uint16) if a.dtype == ml_dtypes.bfloat16 else a


def _decode(a: np.ndarray, name: str | None) -> np.ndarray:
  return a.view(ml_dtypes.bfloat16) if name == "bfloat16" else a


def map_npz(path: str) -> dict[str, np.ndarray]:
  """Every array of an uncompressed ``.npz`` as a read-only ``np.memmap`` (nothing is read).

  Raises:
    ValueError, OSError, zipfile.BadZipFile: a damaged or compressed file.
  """
  out = {}
  with zipfile.ZipFile(path) as z, open(path, "rb") as f:
    for info in z.infolist():
      if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
        raise ValueError(f"{path}: member {info.filename} is not a stored .npy")
      f.seek(info.header_offset)
      local = f.read(30)
      if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"{path}: bad local header of {info.filename}")
      name_len, extra_len = struct.unpack("<HH", local[26:30])
      f.seek(info.header_offset + 30 + name_len + extra_len)
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, fortran, dtype = read_header(f)
      offset = f.tell()
      if offset + int(np.prod(shape)) * dtype.itemsize > os.path.getsize(path):
        raise ValueError(f"{path}: {info.filename} is truncated")
      key = info.filename[:-len(".npy")]
      out[key] = (np.zeros(shape, dtype) if 0 in shape else
                  np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                            order="F" if fortran else "C"))
  return out


class ShardedArray:
  """Rows of one key over many memory-mapped shards; indexing gathers only the rows asked for.

  ``a[idx]`` (an int, a slice or an int array) returns a numpy array; ``np.asarray(a)`` reads
  every row (only for arrays known to fit in memory).
  """

  def __init__(self, parts: list[np.ndarray]):
    self.parts = parts
    self.starts = np.cumsum([0] + [len(p) for p in parts])
    self.shape = (int(self.starts[-1]),) + tuple(parts[0].shape[1:])
    self.dtype, self.ndim = parts[0].dtype, len(self.shape)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, idx) -> np.ndarray:
    if isinstance(idx, (int, np.integer)):
      return self[np.asarray([idx])][0]
    rows = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, np.int64)
    rows = np.where(rows < 0, rows + len(self), rows)
    out = np.empty((len(rows),) + self.shape[1:], self.dtype)
    shard = np.searchsorted(self.starts, rows, side="right") - 1
    for s in np.unique(shard):
      sel = shard == s
      out[sel] = self.parts[s][rows[sel] - self.starts[s]]
    return out

  def __array__(self, dtype=None, copy=None):
    out = self[slice(None)]
    return out if dtype is None else out.astype(dtype)


class ShardedSource:
  """A random-access source (``len``, ``get_batch``) over a sharded cache.

  Attributes:
    columns: key -> ``ShardedArray`` (lazy: indexing reads only the rows asked for).
  """

  def __init__(self, columns: dict[str, ShardedArray]):
    self.columns = columns

  @property
  def arrays(self) -> dict[str, np.ndarray]:
    """Every key read into memory (for splits known to fit; training uses ``get_batch``)."""
    return {k: np.asarray(v) for k, v in self.columns.items()}

  def __len__(self) -> int:
    return len(next(iter(self.columns.values())))

  def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``indices`` ([b] int, any order, repeats allowed) of every key, in memory."""
    return {k: v[indices] for k, v in self.columns.items()}


def checksum(path: str, *, chunk: int = 1 << 22) -> str:
  """SHA-256 of a file's bytes (hex), read in chunks of ``chunk`` bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      h.update(block)
  return h.hexdigest()


def _changed_shard(directory: str, info: dict) -> str | None:
  """The first shard of the cache whose checksum is not the marker's, or None."""
  sums = info["checksums"]
  if len(sums) != info["num_shards"]:
    return MARKER
  for i, want in enumerate(sums):
    name = f"shard-{i:05d}.npz"
    if checksum(os.path.join(directory, name)) != want:
      return name
  return None


def read_marker(directory: str) -> dict | None:
  """The cache's ``done.json`` as a dict, or None when absent or unreadable."""
  try:
    info = checkpoint.read_json(os.path.join(directory, MARKER))
  except (OSError, ValueError):
    return None
  return info if isinstance(info, dict) else None


def load_cache(directory: str, identity: str | None = None) -> ShardedSource | None:
  """The cache under ``directory``, mapped; None when absent, incomplete, damaged, or (with
  ``identity``) written under another identity or none."""
  info = read_marker(directory)
  if info is None or info.get("format") != FORMAT:
    return None  # absent, damaged, or an older layout: recompute
  if identity is not None and info.get("identity") != identity:
    return None  # another performer or featurizer config: recompute, never reuse
  try:
    changed = _changed_shard(directory, info)
    if changed is not None:
      logging.warning("feature cache %s: %s changed since it was written (its checksum differs); "
                      "the cache is recomputed.", directory, changed)
      return None
    shards = [map_npz(os.path.join(directory, f"shard-{i:05d}.npz"))
              for i in range(info["num_shards"])]
    dtypes = info["dtypes"]
    arrays = {k: ShardedArray([_decode(s[k], dtypes.get(k)) for s in shards]) for k in dtypes}
    if any(len(a) != info["num_examples"] for a in arrays.values()):
      return None
    return ShardedSource(arrays)
  except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile):
    return None  # damaged: recompute


class CacheWriter:
  """Writes a cache row block by row block; at most ``shard_size`` rows (plus one block) are
  held in memory. ``close()`` writes the marker that makes the cache readable.

  Args:
    directory: the cache's folder (created if missing); an existing marker is removed first,
      so the old marker never vouches for shards being rewritten.
    shard_size: rows per shard.
    identity: what the cache holds (``load_cache`` compares it); "" = none recorded.
  """

  def __init__(self, directory: str, *, shard_size: int = 1024, identity: str = ""):
    self.directory, self.shard_size, self.identity = directory, shard_size, identity
    self._buf: list[dict] = []
    self._shards = self._rows = self._count = 0
    self._dtypes: dict[str, str] = {}
    self._checksums: list[str] = []
    marker = os.path.join(directory, MARKER)
    if jax.process_index() == 0 and os.path.exists(marker):  # process 0 writes
      os.remove(marker)

  def add(self, block: dict[str, np.ndarray]) -> None:
    """Appends rows: ``block`` maps every key to an ``[b, ...]`` array (equal b)."""
    lengths = {k: len(v) for k, v in block.items()}
    if len(set(lengths.values())) > 1:
      raise ValueError(f"arrays have different lengths {lengths}; every array needs one row "
                       "per example.")
    self._dtypes.update({k: np.asarray(v).dtype.name for k, v in block.items()})
    self._buf.append(block)
    n = next(iter(lengths.values()), 0)
    self._rows, self._count = self._rows + n, self._count + n
    if self._rows >= self.shard_size:
      self._flush()

  def _flush(self) -> None:
    arrays = {k: _encode(np.concatenate([np.asarray(b[k]) for b in self._buf]))
              for k in self._buf[0]}
    path = os.path.join(self.directory, f"shard-{self._shards:05d}.npz")
    checkpoint.save_npz_atomic(path, **arrays)
    if jax.process_index() == 0:  # the process that wrote it
      self._checksums.append(checksum(path))
    self._shards, self._buf, self._rows = self._shards + 1, [], 0

  def close(self) -> None:
    """Writes the last shard and the marker."""
    if self._buf:
      self._flush()
    checkpoint.write_json_atomic(os.path.join(self.directory, MARKER),
                                 {"format": FORMAT, "num_shards": self._shards,
                                  "num_examples": self._count, "dtypes": self._dtypes,
                                  "checksums": self._checksums, "identity": self.identity})


def write_cache(directory: str, arrays: dict[str, np.ndarray], *, shard_size: int = 1024,
                identity: str = "") -> ShardedSource:
  """Writes in-memory ``arrays`` (name -> ``[N, ...]``) as a cache and maps it back."""
  lengths = {k: len(v) for k, v in arrays.items()}
  if not lengths or len(set(lengths.values())) > 1 or 0 in lengths.values():
    raise ValueError(f"arrays of lengths {lengths}; a cache needs at least one array and one "
                     "row per example in every array.")
  writer = CacheWriter(directory, shard_size=shard_size, identity=identity)
  n = next(iter(lengths.values()))
  for start in range(0, n, shard_size):
    writer.add({k: np.asarray(v)[start:start + shard_size] for k, v in arrays.items()})
  writer.close()
  return load_cache(directory)
