"""Stage identities where a user meets them: a feature cache is reused only for the featurizer
that wrote it, ``config.stages`` names at least one stage, and a run-only field does not hide the
fields whose names it begins.

Each test names in its docstring the single mutation of ``xplain_jax/spec/stages.py`` it catches."""

import numpy as np
import pytest

from configs import synthetic
from xplain_jax.spec import stages
from xplain_jax import utils
from xplain_jax.run import validate
from xplain_jax.data import feature_cache
from xplain_jax.errors import CheckpointError, ConfigError


def _config(**fields):
  return utils.set_fields(synthetic.get_config("tiny"), fields)


def _cache(tmp_path, config):
  arrays = {"feat": np.ones((3, 2, 2, 1), np.float32), "y": np.arange(3, dtype=np.float32)}
  feature_cache.write_cache(str(tmp_path), arrays,
                            identity=stages.stage_fingerprint(config, "features"))
  return str(tmp_path)


def test_a_feature_cache_of_one_consistency_target_is_not_reused_for_another(tmp_path):
  """Mutation: ``explainer.consistency_target`` dropped from ``stages.FEATURIZER_FIELDS``. The
  cache then holds the targets ``t`` of one target kind and would be read for another."""
  written = _config(**{"explainer.consistency_target": "gradient_x_input"})
  directory = _cache(tmp_path, written)
  other = _config(**{"explainer.consistency_target": "rendered"})
  assert feature_cache.load_cache(directory, stages.stage_fingerprint(other, "features")) is None
  assert feature_cache.load_cache(directory, stages.stage_fingerprint(written, "features"))
  # A field the featurizer does not read keeps the cache.
  beta = _config(**{"explainer.beta": 3.0})
  assert feature_cache.load_cache(directory, stages.stage_fingerprint(beta, "features"))


@pytest.mark.parametrize("text", ["", " ", ",", " , "])
def test_empty_stages_are_refused_in_one_line(text):
  """Mutation: ``stages.parse_groups`` loses its ``not names`` check; an empty
  ``config.stages`` would then run nothing and exit 0 as if the run had finished."""
  with pytest.raises(ConfigError) as e:
    stages.parse_groups(text)
  msg = str(e.value)
  assert "\n" not in msg and "config.stages" in msg and "performer,explainer" in msg
  with pytest.raises(ConfigError, match="config.stages"):
    validate.check_values(_config(stages=text))


def test_a_run_only_field_does_not_hide_fields_it_is_a_prefix_of():
  """Mutation: ``stages._within`` matches bare prefixes (no ``.`` boundary), so a field
  ``dataset.cache_dir`` counts as the run-only ``dataset.cache`` and stops deciding a result:
  a workdir's cache moved under another name would then pass the finished-workdir check."""
  config = _config()
  config.dataset.unlock()
  config.dataset.cache_dir = "a"
  config.explainer.unlock()
  config.explainer.cache_features_of = "x"
  moved = _config()
  moved.dataset.unlock()
  moved.dataset.cache_dir = "b"
  moved.explainer.unlock()
  moved.explainer.cache_features_of = "x"
  assert stages.decides_a_result("dataset.cache_dir")
  assert not stages.decides_a_result("dataset.cache")
  assert stages.in_identity("explainer.cache_features_of", "explainer")
  assert not stages.in_identity("explainer.cache_features", "explainer")
  assert (stages.stage_fingerprint(config, "performer")
          != stages.stage_fingerprint(moved, "performer"))
  # The dotted identity prefix "performer" is not the stage "performer_ordinary".
  assert not stages._within(  # pylint: disable=protected-access
      "performer_ordinary.x", ("performer",))


def test_two_variants_that_read_the_same_fields_keep_apart_identities(monkeypatch):
  """Mutation: ``stages.identity_fields`` leaves the variant's name out. Today's four variants
  read different fields, so their identities differ anyway; a variant added with another's
  settings (here ``twin``, a copy of ``prior``) would then share its checkpoints and be restored
  as the other."""
  monkeypatch.setitem(stages.VARIANTS, "twin", stages.VARIANTS["prior"])
  monkeypatch.setitem(stages.VARIANT_IGNORES, "twin", stages.VARIANT_IGNORES["prior"])
  config = _config()
  prior = stages.identity_fields(config, "explainer_prior")
  twin = stages.identity_fields(config, "explainer_twin")
  assert prior.pop("variant", None) == "prior" and twin.pop("variant", None) == "twin"
  assert prior == twin   # the same fields: only the name keeps the two apart
  assert (stages.stage_fingerprint(config, "explainer_prior")
          != stages.stage_fingerprint(config, "explainer_twin"))


@pytest.mark.parametrize("recorded", [None, ""])
def test_a_state_with_no_recorded_identity_is_never_reused(recorded):
  """Mutation: ``stages.check_fingerprint`` lets a missing record pass. A checkpoint or cache
  written before identities were recorded, or copied in by hand, would then be restored for
  any config: nothing may be reused without proof that the same config wrote it."""
  current = stages.stage_fingerprint(_config(), "performer")
  stages.check_fingerprint(current, current, "d")
  with pytest.raises(CheckpointError, match=r"in d were written by a different config \(no run "
                     r"identity recorded\)"):
    stages.check_fingerprint(recorded, current, "d")
  other = stages.stage_fingerprint(_config(seed=7), "performer")
  with pytest.raises(CheckpointError, match="field seed: recorded 7, now 0"):
    stages.check_fingerprint(other, current, "d")
