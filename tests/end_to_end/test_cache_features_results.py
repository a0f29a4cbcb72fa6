"""``explainer.cache_features`` is run-only (it decides how, not what): a finished workdir
evaluated again with the feature cache off gives the same metrics, the least-squares peer
included (hostile trial: ``metrics.json`` lost ``fidelity_reference.least_squares`` and both
``*_minus_least_squares`` entries while ``evaluate/done.json`` kept its identity)."""

import json
import shutil

import pytest

from test_catalogue import PREPARED_CONFIG, run_cli
from xplain_jax import utils


def _numbers(path):
  with open(path, encoding="utf-8") as f:
    flat = utils.flatten(json.load(f))
  # Measured costs (seconds) differ from run to run; everything else must not.
  return {k: v for k, v in flat.items() if "seconds" not in k}


@pytest.mark.slow
def test_evaluating_without_the_feature_cache_gives_the_same_metrics(tmp_path):
  work = tmp_path / "work"
  out = run_cli(PREPARED_CONFIG + [f"--workdir={work}"])
  assert out.returncode == 0, out.stderr[-3000:]
  cached = _numbers(work / "metrics.json")
  assert "fidelity_reference.least_squares.interventional_rank_correlation.mean" in cached
  again = tmp_path / "again"
  shutil.copytree(work, again)
  out = run_cli(PREPARED_CONFIG + [f"--workdir={again}", "--config.explainer.cache_features=False",
                                   "--config.stages=evaluate"])
  assert out.returncode == 0, out.stderr[-3000:]
  uncached = _numbers(again / "metrics.json")
  assert sorted(uncached) == sorted(cached)
  assert uncached == cached
