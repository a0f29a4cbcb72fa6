"""Datasets by name, as random-access sources with one batch layout for the whole pipeline.

Every source returned by ``get_source`` yields batches with
``"image"`` [b,S,S,3] float32 and ``"labels"`` [b,A] float32 in {0,1} (A performer outputs),
and optionally ``"gt_contrib"`` [b,n] (planted ground-truth contributions of the concepts to the
explained target) and ``"part_mask"`` [b,S,S] int32 (ground-truth part masks).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from xplain_jax.data.input_pipeline import ArraySource, Batch, Loader  # noqa: F401
from xplain_jax.errors import ConfigError

DATASETS = ("synthetic_attributes", "synthetic_parts", "celeba", "pascal_part")


@dataclasses.dataclass(frozen=True)
class MappedSource:
  """A source whose batches pass through ``fn`` (renaming, slicing)."""

  source: Any
  fn: Callable[[Batch], Batch]

  def __len__(self) -> int:
    return len(self.source)

  def get_batch(self, indices: np.ndarray) -> Batch:
    return self.fn(self.source.get_batch(indices))

  @property
  def counterfactuals(self) -> Callable | None:
    """The wrapped source's ``counterfactuals(indices, concept) -> images`` (images are not
    remapped by ``fn``), or None when it cannot redraw its images."""
    return getattr(self.source, "counterfactuals", None)

  @property
  def toggles(self) -> Callable | None:
    """The wrapped source's ``toggles(indices, concepts) -> images [b,K,S,S,3]`` (many
    counterfactuals in one call), or None when it has none."""
    return getattr(self.source, "toggles", None)

  @property
  def num_concepts(self) -> int:
    """How many concepts ``counterfactuals`` can toggle (0 without counterfactuals)."""
    return int(getattr(self.source, "num_concepts", 0))


@dataclasses.dataclass(frozen=True)
class Spec:
  """What the performer predicts and what the explainer explains, for one experiment.

  Attributes:
    case: "shared_feature" (Case 2: attributes explain an attribute) or "filter" (Case 1:
      interpretable filters explain a classification).
    output_names: names of the performer's A outputs.
    target_index: which performer output is explained (y).
    concept_indices: Case 2: the performer outputs used as concepts y_i; Case 1: empty (the
      concepts are the top conv layer's filters).
    concept_names: Case 2: names of the concepts; Case 1: filled in from the model.
    has_ground_truth: batches carry "gt_contrib".
    part_names: Case 1: names of the ground-truth parts, when known.
  """

  case: str
  output_names: tuple[str, ...]
  target_index: int
  concept_indices: tuple[int, ...]
  concept_names: tuple[str, ...]
  has_ground_truth: bool = False
  part_names: tuple[str, ...] = ()

  @property
  def target_name(self) -> str:
    return self.output_names[self.target_index]


def _check_name(name: str) -> None:
  if name not in DATASETS:
    raise ConfigError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}.")


def _check_rule(name: str, rule: str) -> None:
  from xplain_jax.data import synthetic_rules
  if rule not in synthetic_rules.RULES:
    raise ConfigError(f"unknown config.dataset.rule={rule!r}; choose one of "
                      f"{list(synthetic_rules.RULES)}.")
  if rule != "linear" and name != "synthetic_attributes":
    raise ConfigError(f"config.dataset.rule={rule!r} applies only to synthetic_attributes; "
                      f"dataset {name} has no planted rule, leave it 'linear'.")


def get_spec(config) -> Spec:
  """The experiment's ``Spec`` from ``config.dataset`` and ``config.explainer``."""
  name = config.dataset.name
  _check_name(name)
  _check_rule(name, config.dataset.rule)
  target = config.explainer.target
  if name == "synthetic_attributes":
    from xplain_jax.data import synthetic_attributes as sa
    names = sa.ATTRIBUTE_NAMES
    if target not in sa.TARGET_NAMES:
      raise ConfigError(f"config.explainer.target={target!r} is not a synthetic target; choose one "
                       f"of {list(sa.TARGET_NAMES)}.")
    return Spec("shared_feature", names, names.index(target),
                tuple(range(len(sa.CONCEPT_NAMES))), sa.CONCEPT_NAMES, has_ground_truth=True)
  if name == "celeba":
    from xplain_jax.data import celeba
    names = tuple(celeba.ATTRIBUTE_NAMES)
    t = celeba.attribute_index(target)
    others = tuple(i for i in range(len(names)) if i != t)
    return Spec("shared_feature", names, t, others, tuple(names[i] for i in others))
  # Case 1: one binary performer per category; concepts are filters.
  parts: tuple[str, ...] = ()
  if name == "synthetic_parts":
    from xplain_jax.data import synthetic_parts as sp
    parts = tuple(sp.PART_NAMES)
    label = "object"
  else:
    from xplain_jax.data import pascal_part as pp
    parts = tuple(pp.PART_NAMES)
    label = config.dataset.category
  return Spec("filter", (label,), 0, (), (), part_names=parts)


def get_source(config, split: str, *, workdir: str | None = None):
  """The ``split`` ("train" or "test") of ``config.dataset`` as a source in the common layout."""
  d = config.dataset
  _check_name(d.name)
  num = d.num_train if split == "train" else d.num_test
  if d.name == "synthetic_attributes":
    from xplain_jax.data import synthetic_attributes as sa
    cache = os.path.join(workdir, "data") if (workdir and d.get("cache", True)) else None
    src = sa.load(split, num_examples=num, image_size=d.image_size, seed=d.seed, cache_dir=cache,
                  rule=d.rule)
    t = sa.TARGET_NAMES.index(config.explainer.target)
    return MappedSource(src, lambda b: {"image": b["image"], "labels": b["labels"],
                                        "gt_contrib": b["gt_contrib"][:, t]})
  if d.name == "synthetic_parts":
    from xplain_jax.data import synthetic_parts as sp
    src = sp.load(split, num_examples=num, image_size=d.image_size, seed=d.seed)
    return MappedSource(src, _binary_layout)
  if d.name == "celeba":
    from xplain_jax.data import celeba
    src = celeba.load(_tfds_split(split, d), data_dir=d.data_dir or None,
                      image_size=d.image_size, num_threads=d.get("num_threads", 0))
    return _limit(src, num)
  from xplain_jax.data import pascal_part_source
  src = pascal_part_source.load(split, category=d.category, data_dir=d.data_dir or None,
                                image_size=d.image_size, negatives=d.get("negatives", "non_animal"),
                                num_threads=d.get("num_threads", 0))
  return _limit(MappedSource(src, _binary_layout), num)


def renderer_concept_names(config, concept_names) -> tuple[str, ...]:
  """The names of the concepts ``source.counterfactuals(indices, concept)`` indexes, for the
  sources of ``config.dataset`` that can redraw their images (``concept_names``, the y_i
  columns' names, where the renderer toggles exactly those)."""
  if config.dataset.name == "synthetic_attributes":
    from xplain_jax.data import synthetic_attributes as sa
    return tuple(sa.CONCEPT_NAMES)
  return tuple(concept_names)


def _binary_layout(b: Batch) -> Batch:
  out = {k: v for k, v in b.items() if k != "label"}
  out["labels"] = np.asarray(b["label"], np.float32).reshape(-1, 1)
  return out


def _tfds_split(split: str, d) -> str:
  return d.get(f"{split}_split", split)


@dataclasses.dataclass(frozen=True)
class _Prefix:
  source: Any
  n: int

  def __len__(self) -> int:
    return self.n

  def get_batch(self, indices: np.ndarray) -> Batch:
    return self.source.get_batch(indices)


def _limit(src, num: int):
  """The first ``num`` records of ``src`` (all when ``num`` <= 0 or larger than the source)."""
  if num and 0 < num < len(src):
    return _Prefix(src, num)
  return src
