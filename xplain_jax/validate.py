"""Config validation before any compute: keys, types, ranges, names, and the workdir.

Every check raises ``ConfigError`` (a ``ValueError``) with one line naming the field, what was
wrong and what to change, so a mistyped override fails in a second instead of after a compile.
"""

from __future__ import annotations

import os
import tempfile

import ml_collections

from xplain_jax.errors import ConfigError


# (dotted field, allowed python types) that every experiment config must have.
_FIELDS = (
    ("seed", int), ("stages", str), ("num_devices", int), ("dtype", str),
    ("checkpoint_every_steps", int), ("log_every_steps", int),
    ("distributed.coordinator_address", str), ("distributed.num_processes", int),
    ("distributed.process_id", int),
    ("dataset.name", str), ("dataset.image_size", int), ("dataset.num_train", int),
    ("dataset.num_test", int), ("dataset.seed", int), ("dataset.data_dir", str),
    ("performer.arch", str), ("performer.interpretable", bool),
    ("performer.filter_loss_weight", (int, float)), ("performer.batch_size", int),
    ("performer.num_epochs", int), ("performer.optimizer.name", str),
    ("performer.optimizer.learning_rate", (int, float)),
    ("explainer.case", str), ("explainer.target", str), ("explainer.feature", str),
    ("explainer.prior_kind", str), ("explainer.prior_method", str), ("explainer.positive", bool),
    ("explainer.clip_prior", bool), ("explainer.beta", (int, float)), ("explainer.depth", int),
    ("explainer.width", int), ("explainer.batch_size", int), ("explainer.num_epochs", int),
    ("explainer.variants", str), ("explainer.cache_features", bool),
    ("explainer.optimizer.name", str), ("explainer.optimizer.learning_rate", (int, float)),
    ("eval.batch_size", int), ("eval.num_report_images", int),
)

_CASE_OF_DATASET = {"synthetic_attributes": "shared_feature", "celeba": "shared_feature",
                    "synthetic_parts": "filter", "pascal_part": "filter"}


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      raise ConfigError(f"config field {dotted!r} is missing; start from a file in configs/ "
                        "(they define every field) and override values with --config.FIELD=VALUE.")
    node = node[part]
  return node


def _fail(field: str, value, what: str) -> None:
  raise ConfigError(f"config.{field}={value!r} is invalid: {what}.")


def check_config(config) -> None:
  """Raises ``ConfigError`` on the first problem found in ``config``."""
  try:
    _check_config(config)
  except ConfigError:
    raise
  except ValueError as e:  # a registry's own check (stage names, dtypes, ...)
    raise ConfigError(" ".join(str(e).split())) from None


def _check_config(config) -> None:
  from xplain_jax import losses, models, priors
  from xplain_jax.data import DATASETS
  from xplain_jax.train import explainer, pipeline, state

  for field, types in _FIELDS:
    value = _get(config, field)
    if isinstance(value, bool) and types is not bool and bool not in (types if isinstance(types, tuple) else (types,)):
      _fail(field, value, f"expected {getattr(types, '__name__', 'a number')}, got a bool")
    if not isinstance(value, types):
      names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
      _fail(field, value, f"expected {names}, got {type(value).__name__}")

  pipeline.parse_stages(config.stages) if config.stages else _fail("stages", "", "empty")
  state.compute_dtype(config.dtype) if config.dtype in state.COMPUTE_DTYPES else _fail(
      "dtype", config.dtype, f"choose one of {list(state.COMPUTE_DTYPES)}")
  for field in ("checkpoint_every_steps", "log_every_steps", "performer.batch_size",
                "performer.num_epochs", "explainer.batch_size", "explainer.num_epochs",
                "eval.batch_size", "dataset.image_size"):
    if _get(config, field) <= 0:
      _fail(field, _get(config, field), "must be a positive integer")
  for field in ("num_devices", "dataset.num_train", "dataset.num_test", "eval.num_report_images"):
    if _get(config, field) < 0:
      _fail(field, _get(config, field), "must be >= 0")
  for field in ("explainer.beta", "performer.filter_loss_weight"):
    if _get(config, field) < 0:
      _fail(field, _get(config, field), "must be >= 0 (0 switches the term off)")
  for field in ("performer.optimizer.learning_rate", "explainer.optimizer.learning_rate"):
    if not _get(config, field) > 0:
      _fail(field, _get(config, field), "must be > 0")
  for field in ("performer.optimizer.name", "explainer.optimizer.name"):
    if _get(config, field) not in state.OPTIMIZERS:
      _fail(field, _get(config, field), f"choose one of {list(state.OPTIMIZERS)}")

  name = config.dataset.name
  if name not in DATASETS:
    _fail("dataset.name", name, f"choose one of {list(DATASETS)}")
  if name.startswith("synthetic"):  # generated: 0 images would be an empty split
    _check_synthetic_generator(config)
    for field, batch in (("dataset.num_train", max(config.performer.batch_size,
                                                     config.explainer.batch_size)),
                         ("dataset.num_test", 1)):
      if _get(config, field) < batch:
        _fail(field, _get(config, field), f"the synthetic data needs at least {batch} images "
              "here (one batch); raise it")
  from xplain_jax import data
  try:
    data.get_spec(config)  # the target (and category) names
  except ValueError as e:
    raise ConfigError(" ".join(str(e).split())) from None
  if config.performer.arch not in models.PERFORMERS:
    _fail("performer.arch", config.performer.arch, f"choose one of {sorted(models.PERFORMERS)}")
  if config.explainer.depth not in models.WEIGHT_NET_DEPTHS:
    _fail("explainer.depth", config.explainer.depth,
          f"choose a ResNet depth from {list(models.WEIGHT_NET_DEPTHS)}")
  model_kwargs = dict(config.performer.get("model", {}))
  try:
    min_size = models.min_image_size(config.performer.arch, **model_kwargs)
  except TypeError as e:
    raise ConfigError(f"config.performer.model has a field the {config.performer.arch} "
                      f"performer does not take ({e}); remove it.") from None
  if config.dataset.image_size < min_size:
    _fail("dataset.image_size", config.dataset.image_size,
          f"{config.performer.arch} needs images of at least {min_size}x{min_size} pixels")

  e = config.explainer
  if e.case != _CASE_OF_DATASET[name]:
    _fail("explainer.case", e.case, f"dataset {name} is explained with case "
          f"{_CASE_OF_DATASET[name]!r}")
  if e.prior_kind not in losses.PRIOR_KINDS:
    _fail("explainer.prior_kind", e.prior_kind, f"choose one of {list(losses.PRIOR_KINDS)}")
  if e.prior_kind == "cross_entropy" and not e.positive:
    _fail("explainer.prior_kind", e.prior_kind, "the cross-entropy prior needs positive weights: "
          "set explainer.positive=True or use prior_kind='mse'")
  if e.prior_method not in priors.SHARED_FEATURE_METHODS:
    _fail("explainer.prior_method", e.prior_method,
          f"choose one of {list(priors.SHARED_FEATURE_METHODS)}")
  if e.feature not in ("top_conv", "top_conv_relu"):
    _fail("explainer.feature", e.feature, "the weight network reads a feature map: 'top_conv' "
          "or 'top_conv_relu'")
  variants = [v.strip() for v in e.variants.split(",") if v.strip()]
  bad = [v for v in variants if v not in explainer.VARIANTS]
  if not variants or bad:
    _fail("explainer.variants", e.variants, f"use a comma-separated subset of "
          f"{','.join(explainer.VARIANTS)}")
  if config.performer.interpretable and e.case != "filter":
    _fail("performer.interpretable", True, "the interpretable layer belongs to the filter case")


def _check_synthetic_generator(config) -> None:
  """Asks the generator for one image, so its own limits (e.g. the image size) apply now."""
  import importlib
  d = config.dataset
  module = importlib.import_module(f"xplain_jax.data.{d.name}")
  try:
    module.load("test", num_examples=1, image_size=d.image_size, seed=d.seed)
  except ValueError as e:
    raise ConfigError(f"config.dataset: {' '.join(str(e).split())}") from None


def check_workdir(workdir: str) -> None:
  """Raises ``ConfigError`` unless ``workdir`` exists or can be created, and is writable."""
  if not workdir:
    raise ConfigError("--workdir is empty; give a directory for checkpoints and results.")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir} is a file, not a directory; choose another path.")
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise ConfigError(f"--workdir={workdir} is not writable ({e.strerror}); choose a directory "
                      "you can write to.") from None


# Fields that may change between runs in the same workdir without changing its results.
_RUN_ONLY_FIELDS = ("stages", "num_devices", "distributed", "log_every_steps",
                    "checkpoint_every_steps", "eval.num_report_images", "parts.annotation",
                    "parts.num_regions", "parts.region_size", "parts.threshold",
                    "parts.top_fraction", "parts.max_images")


def _comparable(d: dict) -> dict:
  d = dict(d)
  for field in _RUN_ONLY_FIELDS:
    head, _, tail = field.partition(".")
    if tail and isinstance(d.get(head), dict):
      d[head] = {k: v for k, v in d[head].items() if k != tail}
    elif not tail:
      d.pop(head, None)
  return d


def check_same_experiment(config, workdir: str) -> None:
  """Records the config in ``workdir/config.json`` (once); refuses a workdir of another experiment.

  Fields of ``_RUN_ONLY_FIELDS`` (stages, devices, logging and checkpoint intervals) may differ.
  An existing, readable ``config.json`` is never rewritten.
  """
  import json
  from xplain_jax import checkpoint
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort())
  previous = None
  if os.path.exists(path):
    try:
      previous = checkpoint.read_json(path)
    except ValueError:
      previous = None
    if previous is not None and _comparable(previous) != _comparable(current):
      diff = _first_difference(_comparable(previous), _comparable(current))
      raise ConfigError(f"--workdir={workdir} holds a run of a different config ({diff}); use a "
                        "new --workdir, or delete that one to start over.")
  if previous is None:
    checkpoint.write_json_atomic(path, current)


def _first_difference(a, b, prefix="") -> str:
  for k in sorted(set(a) | set(b)):
    if k not in a or k not in b:
      return f"{prefix}{k} only in {'the new' if k in b else 'the recorded'} config"
    if isinstance(a[k], dict) and isinstance(b[k], dict):
      if a[k] != b[k]:
        return _first_difference(a[k], b[k], f"{prefix}{k}.")
    elif a[k] != b[k]:
      return f"{prefix}{k}: recorded {a[k]!r}, now {b[k]!r}"
  return "unknown difference"
