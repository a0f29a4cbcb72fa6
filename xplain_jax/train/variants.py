"""The explainer variants one run trains side by side, and what each trains with.

``baseline`` and ``prior`` are the paper's; ``ls_start`` and ``faithful`` are this project's
additions (docs/choices.md). The table of what each reads is ``stages.VARIANTS``; this module
resolves it on a config.
"""

from __future__ import annotations

import dataclasses
import zlib

import jax

import ml_collections

from xplain_jax.spec import config_base
from xplain_jax import utils
from xplain_jax.errors import ConfigError
from xplain_jax.spec.stages import VARIANTS, is_field


@dataclasses.dataclass(frozen=True)
class VariantSettings:
  """What one explainer variant trains with (``stages.VARIANTS`` resolved on a config)."""

  beta: float
  start: str
  consistency_weight: float
  scaled_bias: bool
  positive: bool
  prior_kind: str


def variant_key(rng: jax.Array, variant: str) -> jax.Array:
  """The key of a variant, ``fold_in(rng, crc32(variant))``: from its name, not its position."""
  return jax.random.fold_in(rng, zlib.crc32(variant.encode("utf-8")))


def variant_settings(config, variant: str) -> VariantSettings:
  """The settings of a variant, from the config's fields (see ``VARIANTS``)."""
  if variant not in VARIANTS:
    raise ConfigError(f"unknown explainer variant {variant!r}; choose from {list(VARIANTS)}.")

  def value(setting):
    return utils.get_field(config, setting) if is_field(setting) else setting

  v = VARIANTS[variant]
  return VariantSettings(beta=float(value(v.beta)), start=str(value(v.start)),
                         consistency_weight=float(value(v.consistency_weight)),
                         scaled_bias=bool(value(v.scaled_bias)),
                         positive=bool(value(v.positive)), prior_kind=str(value(v.prior_kind)))


def default_settings(variant: str, *, beta: float) -> VariantSettings:
  """The settings of a variant on the default explainer block (``config_base.EXPLAINER``)
  with β = ``beta``: what ``api.fit_explainer(variant=...)`` starts from."""
  if variant not in VARIANTS:
    raise ConfigError(f"variant={variant!r}; use one of {list(VARIANTS)}.")
  block = ml_collections.ConfigDict({"explainer": dict(config_base.EXPLAINER, beta=float(beta))})
  return variant_settings(block, variant)


def variant_beta(config, variant: str) -> float:
  """β of a variant: 0 for the baseline (λ ≡ 0), ``config.explainer.beta`` for the prior."""
  return variant_settings(config, variant).beta


def needs_targets(settings: VariantSettings) -> bool:
  """Whether a variant trains on the consistency targets ``"t"`` (its term or its start)."""
  return settings.consistency_weight > 0 or settings.start == "target"


def consistency_target(config) -> str:
  """The consistency target the run's featurizer must add (``"t"``), "" when no variant of
  ``explainer.variants`` has a consistency term or the target start."""
  variants = utils.split_list(config.explainer.variants)
  if any(needs_targets(variant_settings(config, v)) for v in variants):
    return config.explainer.consistency_target
  return ""
