"""Memory-mapped per-example arrays (data/feature_files.py): exact round trips, batches equal to
in-memory gathers, and clear errors for missing or damaged folders."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from xplain_jax import data
from xplain_jax.data import feature_files


def _arrays(n: int = 20) -> dict:
  rng = np.random.default_rng(0)
  return {"feat": rng.standard_normal((n, 3, 3, 4)).astype(ml_dtypes.bfloat16),
          "y": rng.standard_normal(n).astype(np.float32),
          "labels": rng.integers(0, 2, (n, 5)).astype(np.float32)}


def test_round_trip_is_exact_and_memory_mapped(tmp_path):
  arrays = _arrays()
  feature_files.save_arrays(str(tmp_path), arrays)
  src = feature_files.MmapSource(str(tmp_path))
  assert len(src) == 20 and set(src.arrays) == set(arrays)
  for k, v in arrays.items():
    assert src.arrays[k].dtype == v.dtype
    assert isinstance(src.arrays[k].base, np.memmap) or isinstance(src.arrays[k], np.memmap)
    np.testing.assert_array_equal(np.asarray(src.arrays[k]).view(np.uint8), v.view(np.uint8))


def test_batches_equal_in_memory_gathers(tmp_path):
  arrays = _arrays()
  feature_files.save_arrays(str(tmp_path), arrays)
  src = feature_files.MmapSource(str(tmp_path), keys=("feat", "y"))
  for idx in ([3, 0, 19, 3], [7], list(range(20))[::-1]):
    got = src.get_batch(np.array(idx))
    assert set(got) == {"feat", "y"}
    for k in got:
      assert type(got[k]) is np.ndarray and got[k].dtype == arrays[k].dtype
      np.testing.assert_array_equal(got[k].view(np.uint8), arrays[k][idx].view(np.uint8))
  # Through the loader: the same batches as from the in-memory arrays.
  mem = data.ArraySource({k: arrays[k] for k in ("feat", "y")})
  a, b = data.Loader(src, 8, seed=3), data.Loader(mem, 8, seed=3)
  for step in range(5):
    for k in ("feat", "y"):
      np.testing.assert_array_equal(a.batch(step)[k].view(np.uint8),
                                    b.batch(step)[k].view(np.uint8))


def test_errors_say_what_to_do(tmp_path):
  with pytest.raises(ValueError, match="different lengths"):
    feature_files.save_arrays(str(tmp_path / "x"), {"a": np.zeros(3), "b": np.zeros(4)})
  with pytest.raises(FileNotFoundError, match="does not exist"):
    feature_files.MmapSource(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="save_arrays"):
    feature_files.MmapSource(str(tmp_path / "empty"))
  feature_files.save_arrays(str(tmp_path / "d"), {"a": np.zeros(3)})
  np.save(tmp_path / "d" / "b.npy", np.zeros(5))  # a damaged folder
  with pytest.raises(ValueError, match="damaged"):
    feature_files.MmapSource(str(tmp_path / "d"))
