"""The own-model API's guards (xplain_jax/api/guards.py): settings of a wrong type get one
``ConfigError`` line, and two fits started at once into one workdir/name cannot both train
there."""

import numpy as np
import pytest

from xplain_jax import api
from xplain_jax.api import guards as api_checks
from xplain_jax.errors import ConfigError

FAST = dict(depth=10, width=8, epochs=1, batch_size=16, log_every=10 ** 6)


def _features(n=32, concepts=4, seed=0):
  rng = np.random.default_rng(seed)
  y_i = rng.normal(size=(n, concepts)).astype(np.float32)
  return {"feat": rng.normal(size=(n, 4, 4, 3)).astype(np.float32),
          "y": y_i @ np.arange(1.0, concepts + 1, dtype=np.float32), "y_i": y_i,
          "w": rng.uniform(0.1, 1.0, size=(n, concepts)).astype(np.float32)}


@pytest.mark.parametrize("setting, words", [
    (dict(epochs="1"), ["epochs='1'", "str", "integer >= 1"]),
    (dict(epochs=0), ["epochs=0", "integer >= 1"]),
    (dict(epochs=2.0), ["epochs=2.0", "float", "integer"]),
    (dict(batch_size=16.5), ["batch_size=16.5", "float", "integer >= 1"]),
    (dict(batch_size=True), ["batch_size=True", "integer"]),
    (dict(learning_rate="fast"), ["learning_rate='fast'", "str", "finite number > 0"]),
    (dict(learning_rate=float("nan")), ["learning_rate=nan", "finite number > 0"]),
    (dict(learning_rate=0), ["learning_rate=0", "> 0"]),
    (dict(grad_clip=-1.0), ["grad_clip=-1.0", ">= 0"]),
    (dict(weight_decay="x"), ["weight_decay='x'", ">= 0"]),
    (dict(seed=-1), ["seed=-1", "integer >= 0"]),
    (dict(seed="0"), ["seed='0'", "integer >= 0"]),
    (dict(log_every=0), ["log_every=0", "integer >= 1"]),
    (dict(optimizer="lion"), ["optimizer='lion'", "adam"]),
    (dict(schedule="cosin"), ["schedule='cosin'", "cosine"]),
])
def test_training_settings_of_a_wrong_type_or_range_get_one_line(setting, words):
  """Hostile trial: ``epochs="1"`` raised a TypeError, ``learning_rate="fast"`` a raw
  ValueError, ``batch_size=16.5`` a misleading message about the process count."""
  args = dict(batch_size=16, epochs=1)
  args.update(setting)
  with pytest.raises(ConfigError) as e:
    api_checks.check_training(**args)
  msg = str(e.value)
  assert "\n" not in msg
  for w in words:
    assert w in msg, (w, msg)


@pytest.mark.parametrize("setting", [dict(epochs="1"), dict(batch_size=16.5), dict(epochs=0),
                                     dict(learning_rate="fast"), dict(beta="x"),
                                     dict(schedule="cosin"), dict(seed=-1)])
def test_fit_explainer_refuses_them_before_any_work(setting, tmp_path):
  args = dict(FAST, **setting)
  with pytest.raises(ConfigError):
    api.fit_explainer(_features(), case="filter", workdir=str(tmp_path), **args)
  assert not list(tmp_path.iterdir())   # nothing recorded


def test_numpy_integers_and_floats_are_settings_too():
  api_checks.check_training(batch_size=np.int64(8), epochs=np.int32(2),
                            learning_rate=np.float32(1e-3), seed=np.int64(3))


@pytest.mark.parametrize("labels, shown", [
    (np.arange(6) % 3, "{0, 1, 2}"),
    (np.array([0.0, 1.0, 0.5, 1.0, 0.0, 1.0]), "{0, 0.5, 1}"),
    (np.array([0.0, 1.0, np.nan, 1.0, 0.0, 1.0]), "{0, 1, nan}"),
])
def test_labels_other_than_0_or_1_are_refused(labels, shown):
  """Mutation: ``check_labels`` stops checking the values. A class index or a NaN would then
  be read as a boolean (any non-zero value True) and every accuracy computed against it.
  (The API's own tests of it train an explainer first, so they run only in the slow suite.)"""
  with pytest.raises(ConfigError, match="labels hold values") as e:
    api_checks.check_labels(labels, 6)
  assert shown in str(e.value) and "\n" not in str(e.value)
  np.testing.assert_array_equal(api_checks.check_labels(np.array([0, 1, 1, 0, 0, 1]), 6),
                                [False, True, True, False, False, True])
  with pytest.raises(ConfigError, match="labels has 5 entries for 6 images"):
    api_checks.check_labels(np.ones(5, bool), 6)


@pytest.mark.parametrize("key", ["feat", "y", "y_i", "w"])
def test_features_holding_nan_are_refused_naming_the_key_and_image(key):
  """Mutation: ``check_features`` stops checking finiteness. A NaN would then reach the fit,
  which stops later with another error (or trains to NaN) instead of naming the array and
  the first bad image."""
  feats = _features(n=8)
  bad = feats[key].copy()
  bad[5] = np.nan
  feats[key] = bad
  with pytest.raises(ConfigError) as e:
    api_checks.check_features(feats)
  assert f"features[{key!r}] holds NaN or Inf (first in image 5)" in str(e.value)


def test_two_fits_started_at_once_cannot_share_one_workdir(tmp_path):
  """Hostile trial: ``fit_explainer(..., seed=0)`` and ``seed=1`` with one ``workdir=``, started
  at the same instant in two processes, both found the folder free and trained into one
  ``ckpt/``. The check and the record are now one locked step: the second to record is
  refused (here the two processes' steps, interleaved in the order that lost the seed-1 fit)."""
  workdir = str(tmp_path)
  feats = api_checks.check_features(_features())
  first = api_checks.identity(feats, {"seed": 0})
  second = api_checks.identity(feats, {"seed": 1})
  assert api_checks.check_fit_workdir(workdir, "explainer", first) is None
  assert api_checks.check_fit_workdir(workdir, "explainer", second) is None   # both see it free
  api_checks.record_identity(workdir, "explainer", first, {"depth": 10})
  with pytest.raises(ConfigError, match=r"taken by another fit started at the same time "
                                        r"\(other data or settings; field seed: recorded 0, "
                                        r"now 1\).*another workdir or name"):
    api_checks.record_identity(workdir, "explainer", second, {"depth": 10})
  # The same fit may record again (a resumed fit), and the folder holds only the first's.
  api_checks.record_identity(workdir, "explainer", first, {"depth": 10})
  assert sorted(p.name for p in (tmp_path / "explainer").iterdir()) == ["identity.json"]
