"""The configs, built from one shared base, keep every value they had (a snapshot taken before
the move), and the base's typed, locked fields reject unknown or mistyped overrides."""

import importlib
import json
import os

import pytest

from xplain_jax.spec import config_base
from xplain_jax import utils
from xplain_jax.errors import ConfigError

SNAPSHOT = os.path.join(os.path.dirname(__file__), "config_snapshot.json")
# Fields added to every config since the snapshot (each must be named here, with its value).
ADDED = {"distributed.initialization_timeout": ["int", 300], "explainer.seed": ["int", 0],
         "explainer.stem": ["str", "paper"], "explainer.auto_scale": ["bool", False],
         "evals.fidelity.enabled": ["bool", True], "evals.fidelity.num_images": ["int", 0],
         "evals.fidelity.sign_threshold": ["float", 0.05],
         "evals.fidelity.num_resamples": ["int", 1000],
         "evals.fidelity.deletion_steps": ["int", 16], "evals.fidelity.seed": ["int", 0],
         "evals.fidelity.ig_steps": ["int", 32],
         "evals.sanity.enabled": ["bool", False], "evals.sanity.layers": ["str", ""],
         "evals.sanity.num_resamples": ["int", 1000], "evals.sanity.seed": ["int", 0],
         "evals.explainer.top_k": ["int", 5], "evals.parts.enabled": ["bool", True],
         "dataset.rule": ["str", "linear"],
         "explainer.start": ["str", "paper"], "explainer.consistency_weight": ["float", 0.0],
         "explainer.consistency_target": ["str", "gradient_x_input"],
         "explainer.faithful_weight": ["float", 1.0],
         "explainer.scaled_bias": ["bool", False], "explainer.coord_channels": ["bool", False],
         "explainer.shapley_permutations": ["int", 64],
         "performer.init_from": ["str", ""], "performer.init_convs_only": ["bool", False],
         "performer.filter_loss_schedule": ["str", "epoch"],
         "performer.kernel_gradient": ["str", "auto"]}
# Fields moved since the snapshot: old dotted name -> new (the evaluators' blocks in config.evals).
MOVED = {"eval.batch_size": "evals.explainer.batch_size",
         "eval.num_report_images": "evals.explainer.num_report_images",
         **{f"parts.{k}": f"evals.parts.{k}" for k in (
             "annotation", "threshold", "top_fraction", "max_images", "num_regions",
             "region_size")}}


# Added fields a config variant sets to another value than the base's.
def added_in(variant: str) -> dict:
  if variant == "synthetic:":
    return {"evals.sanity.enabled": ["bool", True]}
  if variant.startswith(("parts:", "pascal_part:")):  # the Case-1 explainer's start
    return {"explainer.auto_scale": ["bool", True]}
  return {}


def flatten(d):
  """``{dotted field: [type name, value]}``, tuples as lists (as the snapshots hold them)."""
  return {k: [type(v).__name__, list(v) if isinstance(v, tuple) else v]
          for k, v in utils.flatten(d).items()}


def _snapshot():
  with open(SNAPSHOT) as f:
    return {variant: {MOVED.get(k, k): v for k, v in fields.items()}
            for variant, fields in json.load(f).items()}


@pytest.mark.parametrize("variant", sorted(_snapshot()))
def test_config_values_unchanged(variant):
  name, _, arg = variant.partition(":")
  module = importlib.import_module(f"configs.{name}")
  now = flatten(module.get_config(arg))
  want = _snapshot()[variant]
  # A field the base gained that a variant already had keeps the variant's value.
  assert {k: v for k, v in now.items() if k in want or k not in ADDED} == want
  for k in set(now) - set(want):
    assert now[k] == added_in(variant).get(k, ADDED[k]), k


@pytest.mark.parametrize("name", ["synthetic", "parts", "celeba", "pascal_part"])
def test_every_base_field_present_with_its_type(name):
  """Each config has every field of the base blocks, of the base's type."""
  c = importlib.import_module(f"configs.{name}").get_config("")
  blocks = [("", config_base.TOP), ("distributed.", config_base.DISTRIBUTED),
            ("dataset.", config_base.DATASET), ("performer.", config_base.PERFORMER),
            ("performer.optimizer.", config_base.OPTIMIZER), ("explainer.", config_base.EXPLAINER),
            ("explainer.optimizer.", config_base.OPTIMIZER)]
  blocks += [(f"evals.{k}.", v) for k, v in config_base.EVALS.items()
             if k not in config_base.OPTIONAL_EVALS or name in ("parts", "pascal_part")]
  flat = flatten(c)
  for prefix, defaults in blocks:
    for k, v in defaults.items():
      assert flat[prefix + k][0] == type(v).__name__, (prefix + k, flat[prefix + k])


def test_locked_config_rejects_unknown_and_mistyped_fields():
  from configs import synthetic
  c = synthetic.get_config("tiny")
  c.lock()
  with pytest.raises(AttributeError):
    c.explainer.betta = 0.5
  with pytest.raises(TypeError):
    c.performer.batch_size = 1.5
  with pytest.raises(TypeError):
    c.explainer.beta = "abc"
  c.explainer.beta = 1  # an int where a float belongs is widened
  assert isinstance(c.explainer.beta, float)


def test_block_rejects_unknown_field_and_wrong_type():
  with pytest.raises(ConfigError, match="learnig_rate"):
    config_base.optimizer("adam", 1e-3, learnig_rate=2.0)
  with pytest.raises(ConfigError, match="warmup_steps"):
    config_base.optimizer("adam", 1e-3, warmup_steps=1.5)
  assert config_base.optimizer("adam", 1).learning_rate == 1.0


def test_adding_a_field_to_the_base_reaches_every_config(monkeypatch):
  from configs import celeba, synthetic
  monkeypatch.setitem(config_base.EVALS["fidelity"], "new_switch", False)
  for module in (synthetic, celeba):
    assert module.get_config("").evals.fidelity.new_switch is False


@pytest.mark.parametrize("file,arg,words", [
    ("synthetic", "bogus", ["bogus", "tiny"]),
    ("parts", "arch=resnet", ["resnet", "vgg16"]),
    ("parts", "vgg16,alexnet", ["alexnet"]),
    ("pascal_part", "category=zebra", ["zebra", "cat"]),
    ("celeba", "target", ["target", "target=NAME"]),
])
def test_bad_config_argument(file, arg, words):
  module = importlib.import_module(f"configs.{file}")
  with pytest.raises(ConfigError) as info:
    module.get_config(arg)
  for w in words:
    assert w in str(info.value)


def test_parse_arg_first_item_is_the_architecture():
  from configs import parts
  assert parts.parse_arg("tiny") == {"arch": "tiny", "tiny": False}
  assert parts.parse_arg("tiny,tiny") == {"arch": "tiny", "tiny": True}
  assert parts.parse_arg("arch=vgg16,tiny") == {"arch": "vgg16", "tiny": True}
