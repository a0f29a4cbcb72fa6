"""A feature-cache shard changed in place (same size, other bytes) is never used: each shard's
checksum, recorded when it was written, is verified on load, and the cache is recomputed."""

import logging

import jax.numpy as jnp
import numpy as np

from xplain_jax import data
from xplain_jax.infra import parallel
from xplain_jax.data import feature_cache
from xplain_jax.train import features


def _zero_in_place(path, key):
  """Zeroes array ``key`` inside an uncompressed .npz without changing the file's size."""
  mapped = feature_cache.map_npz(str(path))[key]
  writable = np.memmap(str(path), dtype=mapped.dtype, mode="r+", shape=mapped.shape,
                       offset=mapped.offset)
  writable[...] = 0
  writable.flush()
  del writable


def test_a_shard_changed_in_place_is_refused_with_a_warning(tmp_path, caplog):
  arrays = {"feat": np.arange(24, dtype=np.float32).reshape(6, 2, 2, 1) + 1,
            "y": np.arange(6, dtype=np.float32)}
  feature_cache.write_cache(str(tmp_path), arrays, shard_size=4)
  assert feature_cache.load_cache(str(tmp_path)) is not None
  shard = tmp_path / "shard-00001.npz"
  size = shard.stat().st_size
  _zero_in_place(shard, "feat")
  assert shard.stat().st_size == size
  with caplog.at_level(logging.WARNING):
    assert feature_cache.load_cache(str(tmp_path)) is None
  msg = " ".join(r.getMessage() for r in caplog.records)
  assert "shard-00001.npz changed since it was written" in msg and "recomputed" in msg


def test_a_marker_without_checksums_is_not_trusted(tmp_path):
  from xplain_jax.infra import checkpoint
  feature_cache.write_cache(str(tmp_path), {"y": np.arange(3, dtype=np.float32)})
  marker = checkpoint.read_json(str(tmp_path / "done.json"))
  marker.pop("checksums")
  checkpoint.write_json_atomic(str(tmp_path / "done.json"), marker)
  assert feature_cache.load_cache(str(tmp_path)) is None


def test_the_split_is_recomputed_as_it_was(tmp_path):
  """Hostile trial: zeroing ``feat`` inside ``features/test/shard-00000.npz`` (same size) was
  read silently by the next evaluate stage and changed 51 metric values."""
  rng = np.random.default_rng(0)
  src = data.ArraySource({"image": rng.normal(size=(10, 4, 4, 3)).astype(np.float32),
                          "labels": np.zeros((10, 1), np.float32)})
  featurize = lambda v, x: {"feat": x * v, "y": jnp.sum(x, (1, 2, 3)),
                            "y_i": jnp.sum(x, (1, 2)), "w": jnp.mean(x, (1, 2))}
  kw = dict(directory=str(tmp_path / "features"), batch_size=4, mesh=parallel.make_mesh(1),
            shard_size=4, identity="same")
  first = features.featurize_split(featurize, jnp.float32(2.0), src, **kw).arrays
  _zero_in_place(tmp_path / "features" / "shard-00000.npz", "feat")
  again = features.featurize_split(featurize, jnp.float32(2.0), src, **kw).arrays
  for k in first:
    np.testing.assert_array_equal(again[k], first[k])
  assert np.any(again["feat"][:4] != 0)
