"""The explainer variants one run trains side by side, and what each trains with.

``baseline`` and ``prior`` are the paper's; ``ls_start`` and ``faithful`` are this project's
additions (docs/choices.md). Every setting comes from ``config.explainer``.
"""

from __future__ import annotations

import dataclasses
import zlib

import jax

from xplain_jax import utils
from xplain_jax.errors import ConfigError
from xplain_jax.stages import VARIANTS

# baseline, prior: the paper's (β = 0 / explainer.beta), from explainer.start with
# explainer.consistency_weight (the paper: "paper", 0). Additions: ls_start = prior from the
# least-squares start; faithful = least-squares start + consistency weight
# explainer.faithful_weight, without the prior.


@dataclasses.dataclass(frozen=True)
class VariantSettings:
  """What one explainer variant trains with."""

  beta: float
  start: str
  consistency_weight: float


def variant_key(rng: jax.Array, variant: str) -> jax.Array:
  """The key of a variant, ``fold_in(rng, crc32(variant))``: from its name, not its position."""
  return jax.random.fold_in(rng, zlib.crc32(variant.encode("utf-8")))


def variant_settings(config, variant: str) -> VariantSettings:
  """The settings of a variant, from the config's fields (see ``VARIANTS``)."""
  if variant not in VARIANTS:
    raise ConfigError(f"unknown explainer variant {variant!r}; choose from {list(VARIANTS)}.")
  e = config.explainer
  beta, weight = float(e.beta), float(e.consistency_weight)
  return {"baseline": VariantSettings(0.0, e.start, weight),
          "prior": VariantSettings(beta, e.start, weight),
          "ls_start": VariantSettings(beta, "least_squares", weight),
          "faithful": VariantSettings(0.0, "least_squares", float(e.faithful_weight)),
          }[variant]


def variant_beta(config, variant: str) -> float:
  """β of a variant: 0 for the baseline (λ ≡ 0), ``config.explainer.beta`` for the prior."""
  return variant_settings(config, variant).beta


def consistency_target(config) -> str:
  """The consistency target the run's featurizer must add (``"t"``), "" when no variant of
  ``explainer.variants`` has a consistency term."""
  variants = utils.split_list(config.explainer.variants)
  if any(variant_settings(config, v).consistency_weight > 0 for v in variants):
    return config.explainer.consistency_target
  return ""
