"""The evaluators' settings (``config.evals.*``) are checked with the rest of the config, before
any compute: a value no evaluator can use is one ``ConfigError`` line, not a traceback (or a
silently empty report) after training."""

import pytest

from configs import synthetic
from xplain_jax import utils
from xplain_jax.run import validate, validate_evals
from xplain_jax.errors import ConfigError


def _config(**fields):
  return utils.set_fields(synthetic.get_config("tiny"), fields)


@pytest.mark.parametrize("field, value, words", [
    ("evals.fidelity.num_resamples", 0, [">= 1", "bootstrap"]),
    ("evals.fidelity.num_images", -1, [">= 0", "0 = all"]),
    ("evals.fidelity.ig_steps", 0, [">= 1", "integrated-gradients"]),
    ("evals.fidelity.deletion_steps", 0, [">= 1"]),
    ("evals.fidelity.sign_threshold", -0.1, [">= 0"]),
    ("evals.fidelity.sign_threshold", float("nan"), ["finite"]),
    ("evals.fidelity.seed", -1, ["[0, 2147483647]"]),
    ("evals.explainer.top_k", 0, [">= 1", "reasons"]),
    ("evals.sanity.num_resamples", 0, [">= 1"]),
    ("evals.sanity.seed", 2**31, ["[0, 2147483647]"]),
])
def test_a_value_no_evaluator_can_use_is_refused_before_compute(field, value, words):
  with pytest.raises(ConfigError) as e:
    validate_evals.check_evals(_config(**{field: value}))
  msg = str(e.value)
  assert "\n" not in msg and f"config.{field}=" in msg
  for w in words:
    assert w in msg, (w, msg)


def test_the_sanity_check_without_the_prior_explainer_is_refused_before_compute():
  """Hostile trial: ``explainer.variants=baseline`` with ``evals.sanity.enabled=True`` used to
  fail after the performer and the baseline had trained, and config.json then refused the
  suggested fix."""
  config = _config(**{"explainer.variants": "baseline", "evals.sanity.enabled": True})
  with pytest.raises(ConfigError, match=r"evals.sanity.enabled=True needs the 'prior' "
                                        r"explainer.*explainer.variants='baseline'"):
    validate.check_config(config)
  validate.check_config(_config(**{"explainer.variants": "baseline"}))
  validate.check_config(_config(**{"evals.sanity.enabled": True}))


def test_the_check_runs_in_the_config_check():
  with pytest.raises(ConfigError, match="evals.fidelity.ig_steps"):
    validate.check_config(_config(**{"evals.fidelity.ig_steps": 0}))


def test_every_shipped_config_passes():
  from configs import celeba, parts, pascal_part  # pylint: disable=import-outside-toplevel
  for module, arg in ((synthetic, "tiny"), (synthetic, ""), (parts, "tiny"), (celeba, "tiny"),
                      (pascal_part, "tiny")):
    validate_evals.check_evals(module.get_config(arg))
