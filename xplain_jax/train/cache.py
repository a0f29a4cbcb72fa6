"""The feature cache: run the frozen performer once per image, train the explainer from files.

When the performer is frozen and inputs are not augmented, everything the explainer needs from
it (feature map, y, y_i, w) is a fixed function of the image. ``featurize_split`` computes it
once, data-parallel over the mesh, and writes it as shards ``shard-00000.npz, ...`` plus a
``done.json`` marker (written last, atomically) under ``workdir/features/<split>``; later epochs
and resumed runs read the files. A cache without its marker is recomputed, never trusted.
"""

from __future__ import annotations

import os
import zipfile
from typing import Callable

import jax
import ml_dtypes
import numpy as np

from xplain_jax import checkpoint, parallel
from xplain_jax.data.pipeline import ArraySource, Loader

PASSTHROUGH_KEYS = ("labels", "gt_contrib", "part_mask")


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


def load_cache(directory: str) -> ArraySource | None:
  """The cached features under ``directory``, or None when the cache is absent or incomplete."""
  marker = os.path.join(directory, "done.json")
  if not os.path.exists(marker):
    return None
  try:
    info = checkpoint.read_json(marker)
    parts = []
    for i in range(info["num_shards"]):
      with np.load(os.path.join(directory, f"shard-{i:05d}.npz")) as f:
        parts.append({k: f[k] for k in f.files})
    arrays = {k: _decode(np.concatenate([p[k] for p in parts]), info.get("dtypes", {}).get(k))
              for k in parts[0]}
    if len(next(iter(arrays.values()))) != info["num_examples"]:
      return None
    return ArraySource(arrays)
  except (OSError, ValueError, KeyError, zipfile.BadZipFile):
    return None  # damaged: recompute


def featurize_split(featurize: Callable, perf_variables, source, *, directory: str,
                    batch_size: int, mesh, shard_size: int = 4096) -> ArraySource:
  """Featurizes ``source`` once into ``directory`` (or reads an existing complete cache)."""
  cached = load_cache(directory)
  if cached is not None and len(cached) == len(source):
    return cached
  os.makedirs(directory, exist_ok=True)
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
  checkpoint.write_json_atomic(os.path.join(directory, "done.json"),
                               {"num_shards": shards, "num_examples": count,
                                "dtypes": dtypes})
  parallel.sync_processes("featurize_split:" + directory)  # process 0 wrote; all read
  result = load_cache(directory)
  assert result is not None
  return result
