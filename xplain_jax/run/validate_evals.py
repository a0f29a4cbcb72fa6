"""The config check of the evaluators' blocks (``config.evals.*``), before any compute.

``validate.check_config`` calls ``check_evals``: every value an evaluator reads is checked
here, where a bad one costs a second, rather than in the evaluator after the performer and the
explainers have trained (and after ``config.json`` has recorded it, which would refuse the
corrected rerun). Each check raises a one-line ``ConfigError`` naming the field.
"""

from __future__ import annotations

import math

from xplain_jax.spec import stages as stages_lib
from xplain_jax.errors import ConfigError

_MAX_SEED = 2**31 - 1
# (block, field) -> (least value, what the value means); integers unless the base is a float.
_AT_LEAST = {
    ("explainer", "top_k"): (1, "reasons named per report image"),
    ("fidelity", "num_images"): (0, "test images scored; 0 = all"),
    ("fidelity", "num_resamples"): (1, "bootstrap resamples of every interval"),
    ("fidelity", "deletion_steps"): (1, "points of a deletion curve"),
    ("fidelity", "ig_steps"): (1, "points on the integrated-gradients path"),
    ("fidelity", "sign_threshold"): (0.0, "effects at or below it do not count"),
    ("sanity", "num_resamples"): (1, "bootstrap resamples of the similarity's interval"),
}
_SEEDS = (("fidelity", "seed"), ("sanity", "seed"))
# The explainer variant the sanity check retrains and compares with (``run/sanity.py``).
SANITY_VARIANT = "prior"


def _fail(field: str, value, what: str) -> None:
  raise ConfigError(f"config.evals.{field}={value!r} is invalid: {what}.")


def check_evals(config) -> None:
  """Raises ``ConfigError`` on the first evaluator setting no evaluator can use.

  Checks the ranges of ``_AT_LEAST`` and the seeds of the blocks the config has, and that the
  sanity check, when enabled, has the ``prior`` explainer it retrains among the variants.
  """
  evals = config.evals
  for (block, field), (least, what) in _AT_LEAST.items():
    if block not in evals or field not in evals[block]:
      continue
    value = evals[block][field]
    if isinstance(value, float) and not math.isfinite(value):
      _fail(f"{block}.{field}", value, "must be a finite number")
    if value < least:
      _fail(f"{block}.{field}", value, f"must be >= {least} ({what})")
  for block, field in _SEEDS:
    if block in evals and not 0 <= evals[block][field] <= _MAX_SEED:
      _fail(f"{block}.{field}", evals[block][field], f"must lie in [0, {_MAX_SEED}]")
  if "sanity" in evals and evals.sanity.enabled:
    if SANITY_VARIANT not in stages_lib.variants(config):
      raise ConfigError(f"config.evals.sanity.enabled=True needs the {SANITY_VARIANT!r} "
                        "explainer it retrains, but config.explainer.variants="
                        f"{config.explainer.variants!r}; add {SANITY_VARIANT} to "
                        "explainer.variants or set evals.sanity.enabled=False.")
