"""``validate.check_fields``: the config checks ``launch/run.py`` runs before it imports JAX.

A value out of range must fail there with the same line as in the whole check, and the checks
themselves must not import JAX (else the early check saves nothing).
"""

import os
import subprocess
import sys

import pytest

from configs import synthetic
from xplain_jax import utils
from xplain_jax.errors import ConfigError
from xplain_jax.run import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(**fields):
  return utils.set_fields(synthetic.get_config("tiny"), fields)


@pytest.mark.parametrize("field, value", [
    ("explainer.beta", -1.0), ("explainer.beta", float("nan")), ("performer.batch_size", 0),
    ("performer.optimizer.grad_clip", -1.0), ("seed", -1), ("evals.fidelity.num_resamples", 0),
    ("performer.model.dropout_rate", 1.5), ("stages", "performer,train"),
])
def test_a_bad_value_fails_early_with_the_whole_checks_line(field, value):
  with pytest.raises(ConfigError) as early:
    validate.check_fields(_config(**{field: value}))
  with pytest.raises(ConfigError) as whole:
    validate.check_config(_config(**{field: value}), build=False)
  assert str(early.value) == str(whole.value)
  assert "\n" not in str(early.value)


def test_names_and_consistency_are_left_to_the_whole_check():
  bad_name = _config(**{"performer.arch": "resnet9000"})
  validate.check_fields(bad_name)  # names need the registries, so JAX: not checked early
  with pytest.raises(ConfigError, match="performer.arch"):
    validate.check_config(bad_name, build=False)


def test_the_early_checks_import_no_jax():
  code = ("import sys\n"
          "from configs import synthetic\n"
          "from xplain_jax import utils\n"
          "from xplain_jax.errors import ConfigError\n"
          "from xplain_jax.run import validate\n"
          "validate.check_fields(synthetic.get_config('tiny'))\n"
          "try:\n"
          "  validate.check_fields(utils.set_fields(synthetic.get_config('tiny'),\n"
          "                                         {'explainer.beta': -1.0}))\n"
          "except ConfigError:\n"
          "  pass\n"
          "else:\n"
          "  raise SystemExit('beta=-1 passed')\n"
          "print(sorted(m for m in ('jax', 'jaxlib', 'flax') if m in sys.modules))\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]", out.stdout
