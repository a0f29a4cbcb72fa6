"""The sanity check's explainer as a stage: trained from its memory-mapped feature cache,
checkpointed under workdir/sanity, and, killed mid-training, resumed to the same weights."""

import os

import jax
import numpy as np
import pytest

from configs import synthetic
from xplain_jax.infra import checkpoint, parallel
from xplain_jax import data
from xplain_jax.train import performer as performer_lib
from xplain_jax.run import sanity as sanity_stage


class Killed(Exception):
  """Stands for the process being killed right after a checkpoint was written."""


def _config():
  c = synthetic.get_config("tiny")
  c.evals.sanity.enabled = True
  c.dataset.num_train, c.dataset.num_test = 64, 16
  c.explainer.num_epochs, c.explainer.batch_size = 2, 16   # 4 steps an epoch, 8 in all
  c.evals.explainer.batch_size = 16
  c.checkpoint_every_steps = 2
  return c


def _run(config, workdir):
  spec = data.get_spec(config)
  mesh = parallel.make_mesh(config.num_devices)
  perf = performer_lib.build_performer(config, spec)   # untrained: the stage only needs one
  perf_vars = performer_lib.init_variables(perf, config.dataset.image_size,
                                           jax.random.PRNGKey(3))
  result = sanity_stage.run_sanity(config, spec, workdir=str(workdir), mesh=mesh, perf=perf,
                                   perf_vars=parallel.replicate(perf_vars, mesh))
  return result.explainer.alpha(result.test["feat"], batch_size=8), result


@pytest.mark.slow
def test_sanity_stage_killed_mid_training_resumes_to_the_same_figures(tmp_path, monkeypatch,
                                                                      capsys):
  config = _config()
  whole, result = _run(config, tmp_path / "whole")
  # The train split went through the memory-mapped cache of the stage, not into memory.
  for split in ("train", "test"):
    assert os.path.exists(tmp_path / "whole" / "sanity" / "features" / split / "done.json")
  assert os.path.exists(tmp_path / "whole" / "sanity" / "done.json")
  assert type(result.test["feat"]) is not np.ndarray  # pylint: disable=unidiomatic-typecheck

  save = checkpoint.Checkpointer.save

  def save_then_die(self, step, state, meta=None):
    save(self, step, state, meta)
    if step == 4 and "sanity" in str(self.directory):
      raise Killed(step)

  monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_die)
  with pytest.raises(Killed):
    _run(config, tmp_path / "cut")
  assert not os.path.exists(tmp_path / "cut" / "sanity" / "done.json")
  monkeypatch.setattr(checkpoint.Checkpointer, "save", save)
  capsys.readouterr()
  resumed, _ = _run(config, tmp_path / "cut")
  assert "[sanity] resumed from the checkpoint at step 4" in capsys.readouterr().out
  np.testing.assert_array_equal(resumed, whole)
  assert os.path.exists(tmp_path / "cut" / "sanity" / "done.json")

  # A finished stage is restored: no step runs, nothing is saved again.
  monkeypatch.setattr(checkpoint.Checkpointer, "save",
                      lambda *a, **k: pytest.fail("a finished sanity stage trained again"))
  again, _ = _run(config, tmp_path / "cut")
  np.testing.assert_array_equal(again, whole)
