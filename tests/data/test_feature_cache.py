"""The feature cache (data/feature_cache.py, written by train/features.py) reads one batch at a time
from memory-mapped shards and trains from them; a cache of another identity is recomputed."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from configs import synthetic
from xplain_jax import data
from xplain_jax.infra import parallel
from xplain_jax.data import feature_cache
from xplain_jax.train import features as features_lib
from xplain_jax.train import explainer as explainer_lib

NUM, SHARD, N = 48, 4, 5


def _featurize(v, x):
  """A stand-in performer: feat = v·x, y and y_i sums, w means (all [B,...] float32)."""
  return {"feat": x * v, "y": jnp.sum(x, (1, 2, 3)), "y_i": jnp.sum(x, (1, 2))[:, :1].repeat(N, 1)
          * jnp.arange(1.0, N + 1), "w": jnp.mean(x, (1, 2))[:, :1].repeat(N, 1)}


class _Spy:
  """Wraps a shard's array and records which shards were read."""

  def __init__(self, array, shard, reads):
    self.array, self.shard, self.reads = array, shard, reads
    self.shape, self.dtype = array.shape, array.dtype

  def __len__(self):
    return len(self.array)

  def __getitem__(self, idx):
    self.reads.add(self.shard)
    return self.array[idx]


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
  rng = np.random.default_rng(0)
  src = data.ArraySource({"image": rng.normal(size=(NUM, 4, 4, 3)).astype(np.float32),
                          "labels": (rng.random((NUM, 1)) < 0.5).astype(np.float32)})
  directory = str(tmp_path_factory.mktemp("features"))
  out = features_lib.featurize_split(_featurize, jnp.float32(2.0), src, directory=directory,
                                  batch_size=4, mesh=parallel.make_mesh(1), shard_size=SHARD)
  want = jax.device_get(jax.jit(_featurize)(jnp.float32(2.0), src.arrays["image"]))
  return out, want, src


def test_every_shard_is_memory_mapped_never_concatenated(cached):
  out, want, _ = cached
  for key, arr in out.columns.items():
    assert len(arr.parts) == NUM // SHARD, key
    assert all(isinstance(p, np.memmap) for p in arr.parts), key
  for key in want:
    np.testing.assert_array_equal(np.asarray(out.columns[key]), want[key])


def test_a_batch_reads_only_its_shards(cached, monkeypatch):
  out, want, _ = cached
  reads = set()
  spied = feature_cache.ShardedSource({k: feature_cache.ShardedArray(
      [_Spy(p, i, reads) for i, p in enumerate(a.parts)]) for k, a in out.columns.items()})

  def no_concatenate(*args, **kwargs):
    raise AssertionError("the cache concatenated arrays while reading a batch")

  monkeypatch.setattr(np, "concatenate", no_concatenate)
  idx = np.array([1, 13, 2, 14])  # shards 0 and 3 only
  batch = spied.get_batch(idx)
  assert reads == {0, 3}
  for key in want:
    np.testing.assert_array_equal(batch[key], want[key][idx])


@pytest.mark.slow
def test_explainer_trains_from_the_mapped_cache_as_from_memory(cached, tmp_path):
  out, _, _ = cached
  config = synthetic.get_config("tiny")
  config.explainer.batch_size, config.explainer.num_epochs = 8, 1
  config.checkpoint_every_steps, config.log_every_steps = 3, 3
  in_memory = data.ArraySource(out.arrays)
  mesh = parallel.make_mesh(1)
  params = {}
  for name, source in (("mapped", out), ("memory", in_memory)):
    loader = data.Loader(source, 8, seed=1)
    explainer = explainer_lib.train_explainer(
        config, "prior", workdir=str(tmp_path / name), mesh=mesh, loader=loader,
        feat_shape=(1, 4, 4, 3), num_concepts=N, rng=jax.random.PRNGKey(0))
    params[name] = jax.device_get(explainer.variables)
  for a, b in zip(jax.tree.leaves(params["mapped"]), jax.tree.leaves(params["memory"])):
    np.testing.assert_array_equal(a, b)


def test_a_truncated_shard_is_never_trusted(cached, tmp_path):
  _, want, src = cached
  kw = dict(directory=str(tmp_path), batch_size=4, mesh=parallel.make_mesh(1), shard_size=SHARD)
  features_lib.featurize_split(_featurize, jnp.float32(2.0), src, **kw)
  shard = tmp_path / "shard-00002.npz"
  shard.write_bytes(shard.read_bytes()[:-10])
  assert feature_cache.load_cache(str(tmp_path)) is None
  again = features_lib.featurize_split(_featurize, jnp.float32(2.0), src, **kw)
  for key in want:
    np.testing.assert_array_equal(again.arrays[key], want[key])


def test_a_cache_without_the_consistency_targets_is_recomputed_with_them(cached, tmp_path):
  """A featurizer that now also gives the targets "t" does not reuse a cache written without."""
  _, want, src = cached
  kw = dict(directory=str(tmp_path), batch_size=4, mesh=parallel.make_mesh(1), shard_size=SHARD)
  features_lib.featurize_split(_featurize, jnp.float32(2.0), src, **kw)
  with_targets = lambda v, x: dict(_featurize(v, x), t=_featurize(v, x)["y_i"] * 3.0)
  again = features_lib.featurize_split(with_targets, jnp.float32(2.0), src, **kw).arrays
  np.testing.assert_array_equal(again["t"], want["y_i"] * 3.0)
  # and a cache holding more than asked for is reused as it is
  kept = features_lib.featurize_split(_featurize, jnp.float32(2.0), src, **kw).arrays
  np.testing.assert_array_equal(kept["t"], want["y_i"] * 3.0)


def test_a_cache_of_another_identity_is_recomputed_never_reused(cached, tmp_path):
  """The cache records what computed it; another identity (another performer config) or none
  recomputes it with the featurizer given now."""
  _, want, src = cached
  kw = dict(directory=str(tmp_path), batch_size=4, mesh=parallel.make_mesh(1), shard_size=SHARD)
  features_lib.featurize_split(_featurize, jnp.float32(2.0), src, identity="performer A", **kw)
  assert feature_cache.load_cache(str(tmp_path), "performer A") is not None
  assert feature_cache.load_cache(str(tmp_path), "performer B") is None
  # Performer B (parameters 3 instead of 2) with the cache of A: recomputed, not reused.
  got = features_lib.featurize_split(_featurize, jnp.float32(3.0), src, identity="performer B",
                                     **kw).arrays
  np.testing.assert_array_equal(got["feat"], src.arrays["image"] * np.float32(3.0))
  assert feature_cache.read_marker(str(tmp_path))["identity"] == "performer B"
  # The same identity is reused as it is (a featurizer that now gives other values is not run).
  kept = features_lib.featurize_split(_featurize, jnp.float32(5.0), src, identity="performer B",
                                      **kw).arrays
  np.testing.assert_array_equal(kept["feat"], got["feat"])


def _arrays(n: int = 20) -> dict:
  rng = np.random.default_rng(0)
  return {"feat": rng.standard_normal((n, 3, 3, 4)).astype(ml_dtypes.bfloat16),
          "y": rng.standard_normal(n).astype(np.float32),
          "labels": rng.integers(0, 2, (n, 5)).astype(np.float32)}


def test_written_arrays_round_trip_exactly_and_batch_like_memory(tmp_path):
  arrays = _arrays()
  src = feature_cache.write_cache(str(tmp_path), arrays, shard_size=6)
  assert len(src) == 20 and set(src.columns) == set(arrays)
  for k, v in arrays.items():
    assert src.columns[k].dtype == v.dtype and len(src.columns[k].parts) == 4
    np.testing.assert_array_equal(np.asarray(src.columns[k]).view(np.uint8), v.view(np.uint8))
  for idx in ([3, 0, 19, 3], [7], list(range(20))[::-1]):
    got = src.get_batch(np.array(idx))
    for k in got:
      assert type(got[k]) is np.ndarray and got[k].dtype == arrays[k].dtype
      np.testing.assert_array_equal(got[k].view(np.uint8), arrays[k][idx].view(np.uint8))
  # Through the loader: the same batches as from the in-memory arrays.
  a, b = data.Loader(src, 8, seed=3), data.Loader(data.ArraySource(arrays), 8, seed=3)
  for step in range(5):
    for k in arrays:
      np.testing.assert_array_equal(a.batch(step)[k].view(np.uint8),
                                    b.batch(step)[k].view(np.uint8))


def test_arrays_of_different_lengths_are_refused(tmp_path):
  with pytest.raises(ValueError, match="one row per example"):
    feature_cache.write_cache(str(tmp_path), {"a": np.zeros(3), "b": np.zeros(4)})
  assert feature_cache.load_cache(str(tmp_path / "missing")) is None
