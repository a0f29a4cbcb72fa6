"""Config validation before any compute: fields, ranges, names, consistency, a dry build.

Types are enforced by the locked, typed ConfigDict that every config builds from
``xplain_jax.spec.config_base``; ``check_config`` adds what types cannot say (ranges, finite
numbers, names from the allowed sets, fields that must agree) and dry-builds the real factories with
``jax.eval_shape``. Every check raises ``ConfigError`` with one line naming the field, what was
wrong and what to change, so a bad value fails in a second, before anything is written.
``check_same_experiment`` compares a workdir's recorded config with this one.
"""

from __future__ import annotations

import contextlib
import math

import ml_collections

from xplain_jax.spec import config_base
from xplain_jax import utils
from xplain_jax.spec import stages as stages_lib
from xplain_jax.run import validate_evals
from xplain_jax.errors import ConfigError


_CASE_OF_DATASET = {"synthetic_attributes": "shared_feature", "celeba": "shared_feature",
                    "synthetic_parts": "filter", "pascal_part": "filter"}
_MAX_SEED = 2**31 - 1

# Ranges, by (dotted) field; "*" matches any block (e.g. the two optimizer blocks).
_POSITIVE = ("checkpoint_every_steps", "log_every_steps", "performer.batch_size",
             "performer.num_epochs", "explainer.batch_size", "explainer.num_epochs",
             "explainer.width", "explainer.shapley_permutations", "evals.explainer.batch_size",
             "dataset.image_size",
             "distributed.initialization_timeout", "*.optimizer.learning_rate")
_NON_NEGATIVE = ("num_devices", "dataset.num_train", "dataset.num_test",
                 "evals.explainer.num_report_images", "evals.explainer.top_k",
                 "*.optimizer.warmup_steps", "*.optimizer.weight_decay", "*.optimizer.grad_clip",
                 "explainer.beta", "explainer.consistency_weight", "explainer.faithful_weight",
                 "performer.filter_loss_weight", "evals.parts.max_images",
                 "evals.parts.num_regions")
_UNIT_INTERVAL = ("*.optimizer.momentum", "evals.parts.threshold", "evals.parts.top_fraction",
                  "evals.parts.region_size", "performer.model.dropout_rate")
# Fields of performer.model that replace an architecture's conv stack: only the small test
# architectures take them (a paper architecture keeps its published layers).
_CONV_STACK_FIELDS = ("block_widths", "block_depths", "widths")
_SMALL_ARCHS = ("tiny_vgg", "tiny_alexnet")


def _fail(field: str, value, what: str) -> None:
  raise ConfigError(f"config.{field}={value!r} is invalid: {what}.")


def _leaves(node, prefix: str = ""):
  for k in node.keys():
    v = node[k]
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      yield from _leaves(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


def _matches(field: str, pattern: str) -> bool:
  head, _, tail = pattern.partition("*.")
  return field == pattern or (head == "" and "*." in pattern and field.endswith("." + tail)
                              and field.count(".") == tail.count(".") + 1)


def check_config(config, *, build: bool = True) -> None:
  """Raises ``ConfigError`` on the first problem found in ``config`` (nothing is computed).

  Checks, in order: every field of the base (``config_base``) present with its type, ranges
  and finiteness of every number, the evals' fields (``check_fields``); names from the allowed
  sets; consistency between fields;
  finally (``build``) the real factories are dry-built (``jax.eval_shape``: performer, weight
  network, optimisers), so a value they cannot take fails now, not after a stage has run;
  without ``build`` only the dataset's names (target, rule) are looked up.
  """
  with _as_config_error():
    check_fields(config)
    check_names(config)
    check_consistency(config)
    if build:
      dry_build(config)
    else:  # the dataset's own names (target, rule), without building anything
      from xplain_jax import data  # pylint: disable=import-outside-toplevel
      data.get_spec(config)


def check_fields(config) -> None:
  """The checks that import no JAX: base fields and types, ranges, the evals' fields.

  ``launch/run.py`` runs them before it imports JAX, so a value out of range fails in a fraction
  of a second; ``check_config`` runs them again, first.
  """
  with _as_config_error():
    check_base_fields(config)
    check_ranges(config)
    validate_evals.check_evals(config)


@contextlib.contextmanager
def _as_config_error():
  """A ``ValueError`` of a registry's own check (target names, data generator limits, ...)
  becomes one ``ConfigError`` line."""
  try:
    yield
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(" ".join(str(e).split())) from None


def check_base_fields(config) -> None:
  """Every field of the shared base is there, with the base's type."""
  blocks = [("", config_base.TOP), ("distributed.", config_base.DISTRIBUTED),
            ("dataset.", config_base.DATASET), ("performer.", config_base.PERFORMER),
            ("performer.optimizer.", config_base.OPTIMIZER), ("explainer.", config_base.EXPLAINER),
            ("explainer.optimizer.", config_base.OPTIMIZER)]
  blocks += [(f"evals.{name}.", defaults) for name, defaults in config_base.EVALS.items()
             if name not in config_base.OPTIONAL_EVALS or name in config.get("evals", {})]
  for prefix, defaults in blocks:
    for name, default in defaults.items():
      node, field = config, prefix + name
      for part in field.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
          raise ConfigError(f"config field {field!r} is missing; build the config from "
                            "xplain_jax.spec.config_base (the files in configs/ do) and override "
                            "values with --config.FIELD=VALUE.")
        node = node[part]
      ok = isinstance(node, type(default)) and not (isinstance(node, bool) and
                                                    not isinstance(default, bool))
      if isinstance(default, float) and isinstance(node, int) and not isinstance(node, bool):
        ok = True
      if not ok:
        _fail(field, node, f"expected {type(default).__name__}, got {type(node).__name__}")


def check_values(config) -> None:
  """Ranges, finiteness and names of single fields."""
  check_ranges(config)
  check_names(config)


def check_ranges(config) -> None:
  """Ranges and finiteness of single fields, and the stage names (no registry is imported)."""
  for field, value in _leaves(config):
    if isinstance(value, float) and not math.isfinite(value):
      _fail(field, value, "must be a finite number")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      continue
    if any(_matches(field, p) for p in _POSITIVE) and not value > 0:
      _fail(field, value, "must be positive (> 0)")
    if any(_matches(field, p) for p in _NON_NEGATIVE) and value < 0:
      _fail(field, value, "must be >= 0 (0 switches it off)" if isinstance(value, float)
            else "must be >= 0")
    if any(_matches(field, p) for p in _UNIT_INTERVAL) and not 0 <= value <= 1:
      _fail(field, value, "must lie in [0, 1]")
  for field in ("seed", "dataset.seed", "explainer.seed"):
    if not 0 <= utils.get_field(config, field) <= _MAX_SEED:
      _fail(field, utils.get_field(config, field), f"must lie in [0, {_MAX_SEED}]")
  if config.performer.model.get("dropout_rate", 0.0) >= 1:
    _fail("performer.model.dropout_rate", config.performer.model.dropout_rate,
          "must be < 1 (1 drops every unit)")
  stages_lib.parse_groups(config.stages)


def check_names(config) -> None:
  """Names from the registries' allowed sets (imports the registries, and with them JAX)."""
  from xplain_jax.core import losses, priors  # pylint: disable=import-outside-toplevel
  from xplain_jax import models
  from xplain_jax.data import DATASETS  # pylint: disable=import-outside-toplevel
  from xplain_jax.models import resnet  # pylint: disable=import-outside-toplevel
  from xplain_jax.models import conv as conv_lib  # pylint: disable=import-outside-toplevel
  from xplain_jax.train import optim  # pylint: disable=import-outside-toplevel
  names = [("dtype", list(optim.COMPUTE_DTYPES)), ("dataset.name", list(DATASETS)),
           ("performer.arch", sorted(models.PERFORMERS)),
           ("performer.kernel_gradient", list(conv_lib.KERNEL_GRADIENTS)),
           ("performer.optimizer.name", list(optim.OPTIMIZERS)),
           ("explainer.optimizer.name", list(optim.OPTIMIZERS)),
           ("performer.optimizer.schedule", list(config_base.SCHEDULES)),
           ("explainer.optimizer.schedule", list(config_base.SCHEDULES)),
           ("explainer.prior_kind", list(losses.PRIOR_KINDS)),
           ("explainer.prior_method", list(priors.SHARED_FEATURE_METHODS)),
           ("explainer.feature", ["top_conv", "top_conv_relu"]),
           ("explainer.case", ["shared_feature", "filter"]),
           ("explainer.stem", sorted(resnet.STEMS)),
           ("explainer.start", ["paper", "least_squares", "target"])]
  for field, allowed in names:
    if utils.get_field(config, field) not in allowed:
      _fail(field, utils.get_field(config, field), f"choose one of {allowed}")
  if config.explainer.depth not in models.WEIGHT_NET_DEPTHS:
    _fail("explainer.depth", config.explainer.depth,
          f"choose a ResNet depth from {list(models.WEIGHT_NET_DEPTHS)}")
  variants = stages_lib.variants(config)
  if not variants or any(v not in stages_lib.VARIANTS for v in variants) or len(
      set(variants)) != len(variants):
    _fail("explainer.variants", config.explainer.variants, f"use a comma-separated subset of "
          f"{','.join(stages_lib.VARIANTS)} (each once)")


def check_consistency(config) -> None:
  """Fields that must agree with each other."""
  name, e, p = config.dataset.name, config.explainer, config.performer
  if e.case != _CASE_OF_DATASET[name]:
    _fail("explainer.case", e.case, f"dataset {name} is explained with case "
          f"{_CASE_OF_DATASET[name]!r}")
  if e.prior_kind == "cross_entropy" and not e.positive:
    _fail("explainer.prior_kind", e.prior_kind, "the cross-entropy prior needs positive weights: "
          "set explainer.positive=True or use prior_kind='mse'")
  if e.case == "filter" and e.prior_kind == "cross_entropy" and not e.clip_prior:
    _fail("explainer.clip_prior", False, "the cross-entropy prior needs w >= 0: set "
          "explainer.clip_prior=True, or for signed Case 1 set explainer.positive=False and "
          "explainer.prior_kind='mse'")
  from xplain_jax.train import featurizers  # pylint: disable=import-outside-toplevel
  targets = featurizers.CONSISTENCY_TARGETS[e.case]
  if e.consistency_target not in targets:
    _fail("explainer.consistency_target", e.consistency_target,
          f"case {e.case!r} offers {list(targets)}")
  if e.consistency_target in featurizers.SOURCE_TARGETS:
    if name != "synthetic_attributes":
      _fail("explainer.consistency_target", e.consistency_target,
            f"dataset {name} cannot redraw its images with one concept toggled (only "
            "synthetic_attributes can); use 'gradient_x_input'")
    if not e.cache_features or config.distributed.num_processes > 1:
      _fail("explainer.consistency_target", e.consistency_target,
            "its targets are written into the feature cache by one process: set "
            "explainer.cache_features=True and run on one host (distributed.num_processes=1), "
            "or use 'gradient_x_input'")
  if p.interpretable and e.case != "filter":
    _fail("performer.interpretable", True, "the interpretable layer belongs to the filter case")
  stack = [f for f in _CONV_STACK_FIELDS if f in p.get("model", {})]
  if stack and p.arch not in _SMALL_ARCHS:
    _fail(f"performer.model.{stack[0]}", p.model[stack[0]], f"it replaces the conv layers of "
          f"performer.arch={p.arch!r}, which keeps its published layers; remove it from "
          f"performer.model (e.g. start from a config written for {p.arch}), or use one of "
          f"{list(_SMALL_ARCHS)}")
  if name.startswith("synthetic"):  # generated: 0 images would be an empty split
    _check_synthetic_generator(config)
    for field, batch in (("dataset.num_train", max(p.batch_size, e.batch_size)),
                         ("dataset.num_test", 1)):
      if utils.get_field(config, field) < batch:
        _fail(field, utils.get_field(config, field),
              f"the synthetic data needs at least {batch} images "
              "here (one batch); raise it")
  if name == "pascal_part":
    from xplain_jax.data import pascal_part  # pylint: disable=import-outside-toplevel
    if config.dataset.category not in pascal_part.ANIMALS:
      _fail("dataset.category", config.dataset.category,
            f"choose one of {list(pascal_part.ANIMALS)}")


def dry_build(config) -> None:
  """Builds the performer, the weight network and the optimisers of ``config`` abstractly
  (``jax.eval_shape``: shapes only, no compute); a value they reject becomes ``ConfigError``."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from xplain_jax import data, models  # pylint: disable=import-outside-toplevel
  from xplain_jax.train import optim  # pylint: disable=import-outside-toplevel
  p, e, size = config.performer, config.explainer, config.dataset.image_size
  spec = data.get_spec(config)
  model = dict(p.get("model", {}))
  try:
    min_size = models.min_image_size(p.arch, **model)
  except TypeError as err:
    raise ConfigError(f"config.performer.model has a field the {p.arch} performer does not "
                      f"take ({err}); remove it.") from None
  if size < min_size:
    _fail("dataset.image_size", size, f"{p.arch} needs images of at least {min_size}x{min_size} "
          "pixels")
  dtype = optim.compute_dtype(config.dtype)
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)
  image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  try:
    perf = models.get_performer(p.arch, num_outputs=len(spec.output_names),
                                interpretable=p.interpretable, dtype=dtype, **model)
    variables = jax.eval_shape(lambda k, x: perf.init({"params": k, "dropout": k}, x), key, image)
    _, inter = jax.eval_shape(lambda v, x: perf.apply(v, x), variables, image)
  except (TypeError, ValueError, ZeroDivisionError) as err:
    raise ConfigError(f"config.performer cannot be built ({type(err).__name__}: "
                      f"{' '.join(str(err).split())[:200]}); check performer.arch, "
                      "performer.model and dataset.image_size.") from None
  if e.feature not in inter:
    _fail("explainer.feature", e.feature, f"the {p.arch} performer has no such map")
  feat = inter[e.feature]
  n = (len(spec.concept_indices) if spec.case == "shared_feature" else feat.shape[-1])
  try:
    g = models.get_weight_net(e.depth, num_outputs=n, positive=e.positive, width=e.width,
                              dtype=dtype)
    g_vars = jax.eval_shape(lambda k, x: g.init(k, x, train=False), key,
                            jax.ShapeDtypeStruct((1,) + feat.shape[1:], jnp.float32))
  except (TypeError, ValueError, ZeroDivisionError) as err:
    raise ConfigError(f"config.explainer cannot build its weight network ({type(err).__name__}: "
                      f"{' '.join(str(err).split())[:200]}); check explainer.depth and "
                      "explainer.width.") from None
  for block, params in (("performer", variables["params"]), ("explainer", g_vars["params"])):
    try:
      opt = optim.make_optimizer(config[block].optimizer, total_steps=100)
      jax.eval_shape(opt.init, params)
    except (TypeError, ValueError) as err:
      raise ConfigError(f"config.{block}.optimizer cannot be built ({type(err).__name__}: "
                        f"{' '.join(str(err).split())[:200]}).") from None


def _check_synthetic_generator(config) -> None:
  """Asks the generator for one image, so its own limits (e.g. the image size) apply now."""
  import importlib  # pylint: disable=import-outside-toplevel
  d = config.dataset
  module = importlib.import_module(f"xplain_jax.data.{d.name}")
  try:
    module.load("test", num_examples=1, image_size=d.image_size, seed=d.seed)
  except ValueError as e:
    raise ConfigError(f"config.dataset: {' '.join(str(e).split())}") from None


# The workdir checks live in validate_workdir.py; re-exported for callers.
from xplain_jax.run.validate_workdir import (  # noqa: E402,F401 pylint: disable=g-import-not-at-top
    check_same_experiment, check_workdir)
