"""A study's runs are checked as each run would check its own config, before any run starts
or any SLURM array is written (hostile trial: ``--set=dataset.rule=bogus --emit=slurm`` wrote a
job array in which every task would fail, and in running mode every run failed with advice to
rerun)."""

import os

import pytest

from configs.studies import regimes
from xplain_jax.errors import ConfigError
from xplain_jax.study import commands

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("sets, words", [
    (["dataset.rule=bogus"], ["dataset.rule", "bogus"]),
    (["explainer.beta=-1"], ["explainer.beta", ">= 0"]),
    (["evals.fidelity.num_resamples=0"], ["evals.fidelity.num_resamples", ">= 1"]),
    (["performer.optimizer.name=lion"], ["performer.optimizer.name", "choose one of"]),
])
def test_a_set_every_run_would_refuse_is_one_line_before_any_run(tmp_path, sets, words):
  config = regimes.get_config("targets_tiny")
  with pytest.raises(ConfigError) as e:
    commands.check(config, str(tmp_path / "study"), sets=sets, repo_root=ROOT, running=False)
  msg = str(e.value)
  assert "\n" not in msg and msg.startswith("run ") and "no run was started" in msg, msg
  for w in words:
    assert w in msg, (w, msg)
  assert not (tmp_path / "study").exists()


def test_the_shipped_study_grids_pass():
  for arg in ("tiny", "targets_tiny", "parts_tiny"):
    commands.check(regimes.get_config(arg), "/nonexistent/study", repo_root=ROOT, running=False)
