"""The stage registry (xplain_jax/spec/stages.py) is the one place each fact about a stage is
written: the pipeline runs only registered stages, every config field is either in some stage's
identity or run-only, and the config check of a finished workdir follows the identities."""

import os

import pytest

from configs import celeba, parts, pascal_part, synthetic
from xplain_jax.spec import stages
from xplain_jax import utils
from xplain_jax.run import validate_workdir
from xplain_jax.errors import ConfigError
from xplain_jax.run import pipeline

CONFIGS = [(synthetic, "tiny"), (synthetic, ""), (parts, "tiny"), (celeba, "tiny"),
           (pascal_part, "tiny")]


def _configs():
  return [module.get_config(arg) for module, arg in CONFIGS]


def test_every_stage_the_pipeline_runs_has_its_registry_entry_and_runner():
  assert set(pipeline.RUNNERS) == set(stages.BY_NAME), (
      "a stage of stages.REGISTRY without a runner, or a runner without a registry entry")
  for config in _configs():
    for s in pipeline.declare_stages(config):
      entry = stages.lookup(s.name)  # raises for a stage the registry does not know
      assert s.group in stages.GROUPS and s.group == entry.group
      assert s.spec.identity == entry.identity
  with pytest.raises(ValueError, match="REGISTRY"):
    stages.lookup("explainer_mystery")


def test_every_config_field_is_in_an_identity_or_run_only():
  """A new config field must be placed: in a stage's identity or in stages.RUN_ONLY."""
  for config in _configs():
    for field in stages.config_fields(config):
      run_only = any(field == p or field.startswith(p + ".") for p in stages.RUN_ONLY)
      assert stages.decides_a_result(field) != run_only, field


def test_what_may_differ_in_a_finished_workdir_comes_from_the_identities():
  config = synthetic.get_config("tiny")
  may_differ = {f for f in stages.config_fields(config) if not stages.decides_a_result(f)}
  assert {"dataset.data_dir", "explainer.variants", "stages", "num_devices",
          "log_every_steps", "checkpoint_every_steps"} <= may_differ
  assert not may_differ & {"seed", "explainer.beta", "performer.arch", "dataset.seed",
                           stages.FEATURE_BATCH_FIELD}
  # Each may-differ field changes no stage's fingerprint; each other field changes at least one.
  names = [s.name for s in stages.concrete(config)]
  base = {n: stages.stage_fingerprint(config, n) for n in names}
  for field in ("dataset.data_dir", "explainer.variants", "explainer.beta", "dataset.seed"):
    changed = synthetic.get_config("tiny")
    head, _, last = field.rpartition(".")
    block = changed[head] if head else changed
    block[last] = {"dataset.data_dir": "/moved", "explainer.variants": "prior",
                   "explainer.beta": 0.7, "dataset.seed": 5}[field]
    moved = [n for n in names if stages.stage_fingerprint(changed, n) != base[n]]
    assert bool(moved) == stages.decides_a_result(field), (field, moved)


def test_config_check_accepts_moved_data_and_other_variants_and_refuses_results(tmp_path):
  workdir = str(tmp_path)
  validate_workdir.check_same_experiment(synthetic.get_config("tiny"), workdir)
  assert os.path.exists(os.path.join(workdir, "config.json"))
  moved = synthetic.get_config("tiny")
  moved.dataset.data_dir, moved.explainer.variants = "/data/moved", "prior"
  moved.stages, moved.num_devices = "evaluate,report", 1
  validate_workdir.check_same_experiment(moved, workdir)
  other = synthetic.get_config("tiny")
  other.explainer.beta = 0.7
  with pytest.raises(ConfigError, match="explainer.beta: recorded 0.2, now 0.7"):
    validate_workdir.check_same_experiment(other, workdir)


def test_the_feature_cache_identity_is_the_performers_and_the_featurizers():
  base = synthetic.get_config("tiny")
  same = lambda **kw: stages.stage_fingerprint(base, "features") == stages.stage_fingerprint(
      _set(synthetic.get_config("tiny"), **kw), "features")
  assert same(**{"explainer.beta": 0.7}) and same(**{"explainer.seed": 3})
  assert same(**{"dataset.data_dir": "/moved"})
  assert not same(**{"performer.optimizer.learning_rate": 0.01})
  assert not same(seed=3)
  assert not same(**{"explainer.prior_method": "jacrev"})


def test_the_stage_graph_comes_from_the_registry():
  config = synthetic.get_config("tiny")
  declared = stages.concrete(config)
  assert [s.name for s in declared] == ["performer", "features", "explainer_baseline",
                                        "explainer_prior", "evaluate", "report"]
  produced = set()
  for s in declared:  # every need is produced by an earlier stage
    assert set(s.needs) <= produced, s.name
    produced |= set(s.produces)
  assert [s.name for s in stages.plan(declared, {"explainer"})] == [
      "performer", "features", "explainer_baseline", "explainer_prior"]
  assert [s.name for s in stages.concrete(parts.get_config("tiny"))][:2] == [
      "performer", "performer_ordinary"]


def _set(config, **fields):
  return utils.set_fields(config, fields)
