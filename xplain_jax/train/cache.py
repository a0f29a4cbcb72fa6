"""The feature cache: run the frozen performer once per image, train the explainer from files.

When the performer is frozen and inputs are not augmented, everything the explainer needs from
it (feature map, y, y_i, w, and the consistency targets t when a variant asks for them) is a
fixed function of the image. ``featurize_split`` computes it
once, data-parallel over the mesh, and writes it shard by shard (``shard-00000.npz, ...``,
uncompressed, ``shard_size`` rows each; bfloat16 stored as its uint16 bits) plus a ``done.json``
marker (written last, atomically) under ``workdir/features/<split>``. Reading maps every array
of every shard into memory (``np.memmap`` at the member's offset in the uncompressed zip) and
never concatenates them: a batch reads only its own rows, so a cache larger than the memory
(CelebA at 224 px: 162,770 x 14x14x512 bf16, 33 GB) trains from disk. A cache without its
marker, or with a damaged shard, is recomputed, never trusted.
"""

from __future__ import annotations

import os
import struct
import zipfile
from typing import Callable

import jax
import ml_dtypes
import numpy as np

from xplain_jax import checkpoint, parallel
from xplain_jax.data.input_pipeline import Loader

PASSTHROUGH_KEYS = ("labels", "gt_contrib", "part_mask")
FORMAT = "npz-stored-memmap-1"


def featurize_source(featurize: Callable, perf_variables, source, *, batch_size: int, mesh,
                     keep: tuple[str, ...] = PASSTHROUGH_KEYS, extra: Callable | None = None):
  """Yields host dicts of featurized batches of ``source`` in order, padding rows removed.

  Args:
    featurize: ``(perf_variables, images) -> dict`` (``make_featurizer``).
    source: random-access source with "image" (and optionally the ``keep`` keys).
    batch_size: global batch size, divisible by the device count.
    keep: source keys copied through to the output.
    extra: optional ``(perf_variables, images) -> dict`` of more per-image outputs.
  """
  parallel.check_batch_size(batch_size, mesh, "eval batch size")
  loader = Loader(source, batch_size, shuffle=False, drop_remainder=False,
                  process_index=jax.process_index(), process_count=jax.process_count())
  rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
  fn = (lambda v, x: {**featurize(v, x), **extra(v, x)}) if extra else featurize
  fn = jax.jit(fn, in_shardings=(rep, dat), out_shardings=dat)
  for batch in loader.epoch(0):
    images = parallel.to_global(batch["image"], mesh)
    out = parallel.to_host(fn(perf_variables, images))
    mask = parallel.to_host(parallel.to_global(batch["mask"], mesh))
    out = {k: np.asarray(v)[mask] for k, v in out.items()}
    for k in keep:
      if k in batch:
        out[k] = parallel.to_host(parallel.to_global(batch[k], mesh))[mask]
    yield out


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
  """A random-access source over a sharded cache.

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
    return {k: v[indices] for k, v in self.columns.items()}


def load_cache(directory: str) -> ShardedSource | None:
  """The cached features under ``directory``, mapped, or None when absent, incomplete or damaged."""
  marker = os.path.join(directory, "done.json")
  if not os.path.exists(marker):
    return None
  try:
    info = checkpoint.read_json(marker)
    if info.get("format") != FORMAT:
      return None  # an older layout: recompute
    shards = [map_npz(os.path.join(directory, f"shard-{i:05d}.npz"))
              for i in range(info["num_shards"])]
    dtypes = info["dtypes"]
    arrays = {k: ShardedArray([_decode(s[k], dtypes.get(k)) for s in shards]) for k in dtypes}
    if any(len(a) != info["num_examples"] for a in arrays.values()):
      return None
    return ShardedSource(arrays)
  except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile):
    return None  # damaged: recompute


def _gives_no_new_keys(cached: ShardedSource, featurize: Callable, perf_variables,
                       source) -> bool:
  """Whether the cache holds every key ``featurize`` gives (a cache written before the
  explainer asked for its consistency targets ``"t"`` lacks them and is recomputed)."""
  if not len(source):
    return True
  image = source.get_batch(np.arange(1))["image"]
  shapes = jax.eval_shape(featurize, perf_variables, jax.ShapeDtypeStruct(np.shape(image),
                                                                          np.float32))
  return set(shapes) <= set(cached.columns)


def featurize_split(featurize: Callable, perf_variables, source, *, directory: str,
                    batch_size: int, mesh, shard_size: int = 1024) -> ShardedSource:
  """Featurizes ``source`` once into ``directory`` (or maps an existing complete cache).

  At most ``shard_size`` rows (plus one batch) are held in memory while writing.
  """
  cached = load_cache(directory)
  if (cached is not None and len(cached) == len(source)
      and _gives_no_new_keys(cached, featurize, perf_variables, source)):
    return cached
  marker = os.path.join(directory, "done.json")
  if jax.process_index() == 0 and os.path.exists(marker):
    os.remove(marker)  # the shards are rewritten: the old marker must not vouch for them
  buf: list[dict] = []
  shards, count, rows = 0, 0, 0
  dtypes: dict[str, str] = {}

  def flush():
    nonlocal shards, buf, rows
    arrays = {k: _encode(np.concatenate([b[k] for b in buf])) for k in buf[0]}
    checkpoint.save_npz_atomic(os.path.join(directory, f"shard-{shards:05d}.npz"), **arrays)
    shards, buf, rows = shards + 1, [], 0

  for out in featurize_source(featurize, perf_variables, source, batch_size=batch_size, mesh=mesh):
    dtypes.update({k: np.asarray(v).dtype.name for k, v in out.items()})
    buf.append(out)
    n = len(out["y"])
    rows, count = rows + n, count + n
    if rows >= shard_size:
      flush()
  if buf:
    flush()
  checkpoint.write_json_atomic(marker, {"format": FORMAT, "num_shards": shards,
                                        "num_examples": count, "dtypes": dtypes})
  parallel.sync_processes("featurize_split:" + directory)  # process 0 wrote; all read
  result = load_cache(directory)
  assert result is not None
  return result
