"""End to end: the tiny synthetic config through every stage, and a planted additive performer."""

import json
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic
from xplain_jax import data
from xplain_jax.infra import parallel
from xplain_jax.data import synthetic_attributes
from xplain_jax.train import explainer as explainer_lib
from xplain_jax.train import features as features_lib
from xplain_jax.run import pipeline
from xplain_jax.spec import stages as stages_lib


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tiny"))
  config = synthetic.get_config("tiny")
  metrics = pipeline.train_and_evaluate(config, workdir)
  return workdir, metrics


@pytest.mark.slow
def test_tiny_pipeline_writes_every_result(tiny_run):
  workdir, metrics = tiny_run
  with open(os.path.join(workdir, "metrics.json")) as f:
    on_disk = json.load(f)
  assert on_disk["performer"]["accuracy"] == pytest.approx(metrics["performer"]["accuracy"])
  for variant in ("baseline", "prior"):
    for key in ("entropy", "accuracy", "relative_deviation", "gt_rank_correlation"):
      assert np.isfinite(on_disk[variant][key]), (variant, key)
    n = len(synthetic_attributes.CONCEPT_NAMES)
    assert 0.0 <= on_disk[variant]["entropy"] <= np.log(n) + 1e-5
    assert 0.0 <= on_disk[variant]["accuracy"] <= 100.0
    ev = np.load(os.path.join(workdir, "eval", f"{variant}.npz"))
    assert ev["alpha"].shape == (64, n) and ev["gt_contrib"].shape == (64, n)
  for name in ("report.html", "report.md", "logs/performer.jsonl", "logs/explainer_prior.jsonl",
               "eval/images.npz", "eval/meta.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  figures = os.listdir(os.path.join(workdir, "figures"))
  assert any(f.endswith(".png") for f in figures)
  with open(os.path.join(workdir, "report.html")) as f:
    html = f.read()
  for fig in figures:
    assert f"figures/{fig}" in html


@pytest.mark.slow
def test_prior_variant_logs_lambda_schedule(tiny_run):
  workdir, _ = tiny_run
  beta = synthetic.get_config("tiny").explainer.beta
  with open(os.path.join(workdir, "logs", "explainer_prior.jsonl")) as f:
    recs = [json.loads(line) for line in f]
  with open(os.path.join(workdir, "logs", "explainer_baseline.jsonl")) as f:
    base = [json.loads(line) for line in f]
  assert all(r["lambda"] == 0.0 for r in base)
  # 256 images / batch 32 = 8 steps per epoch; logs every 2 steps; λ averaged over the window.
  by_step = {r["step"]: r["lambda"] for r in recs}
  assert by_step[2] == pytest.approx(beta / np.sqrt(1.0))
  assert by_step[16] == pytest.approx(beta / np.sqrt(2.0))


@pytest.mark.slow
def test_rerun_skips_finished_stages(tiny_run):
  workdir, metrics = tiny_run
  again = pipeline.train_and_evaluate(synthetic.get_config("tiny"), workdir)
  assert again["prior"] == pytest.approx(metrics["prior"])


def _state(workdir: str) -> dict:
  """Every file of the trained stages and the training feature cache, name -> bytes."""
  out = {}
  for folder in ("performer", "explainer_prior", "features/train", "logs"):
    for root, _, files in os.walk(os.path.join(workdir, folder)):
      for f in files:
        path = os.path.join(root, f)
        if not f.endswith(".jsonl") or "performer" in f or "explainer" in f:
          with open(path, "rb") as fh:
            out[os.path.relpath(path, workdir)] = fh.read()
  return out


@pytest.mark.slow
def test_moving_the_data_of_a_finished_run_retrains_nothing(tiny_run, tmp_path):
  """dataset.data_dir and explainer.variants decide no stage's result: a finished workdir
  accepts them changed, restores every trained stage and reuses the feature cache."""
  workdir, metrics = tiny_run
  moved = str(tmp_path / "run")
  shutil.copytree(workdir, moved)
  before = _state(moved)
  config = synthetic.get_config("tiny")
  config.dataset.data_dir = str(tmp_path / "data_moved_here")
  config.explainer.variants = "prior"
  again = pipeline.train_and_evaluate(config, moved)
  assert again["prior"] == metrics["prior"]
  after = _state(moved)
  assert sorted(after) == sorted(before)  # no new checkpoint, log line or cache shard
  changed = [name for name in before if after[name] != before[name]]
  assert not changed, changed


@pytest.mark.slow
def test_a_variant_alone_trains_as_in_the_default_list(tiny_run, tmp_path):
  # The explainer's key comes from the variant's name, not its place in the list.
  workdir, metrics = tiny_run
  alone = str(tmp_path / "alone")
  shutil.copytree(workdir, alone, ignore=shutil.ignore_patterns(
      "explainer_*", "eval", "metrics.json", "config.json", "report.*", "figures"))
  config = synthetic.get_config("tiny")
  config.explainer.variants = "prior"
  config.stages = "performer,explainer,evaluate"
  got = pipeline.train_and_evaluate(config, alone)
  assert set(got) - {"performer", "prior_weights", "meta", "fidelity",
                     "fidelity_reference"} == {"prior"}
  assert got["prior"] == metrics["prior"]  # bit for bit


def test_stages_are_declared_with_what_they_need():
  config = synthetic.get_config("tiny")
  stages = pipeline.declare_stages(config)
  names = [s.name for s in stages]
  assert names == ["performer", "features", "explainer_baseline", "explainer_prior",
                   "evaluate", "report"]
  produced = set()
  for s in stages:  # every need is produced by an earlier stage
    assert set(s.needs) <= produced, s.name
    produced |= set(s.produces)
  # Asking for the evaluation alone pulls in (restores) everything it needs.
  assert [s.name for s in stages_lib.plan(stages, {"evaluate"})] == names[:-1]
  assert [s.name for s in stages_lib.plan(stages, {"report"})] == ["report"]


class PlantedPerformer(nn.Module):
  """A fixed performer whose target logit is exactly Σ_i v_i y_i of its concept logits.

  fc6 h = the flattened image (D = 8*8*3 = 192); concept logits y_i = C_i·h with orthonormal
  rows C_i; output 0 (the target) = Σ_i v_i y_i. Because the rows are orthonormal, the Case-2
  prior is exactly w_i = v_i, and the explainer can reproduce y with α = v, b = 0.
  """
  c: np.ndarray  # [n, D]
  v: np.ndarray  # [n]

  def setup(self):
    self.scale = self.param("scale", nn.initializers.ones, ())  # one trivial param

  def from_fc6(self, h, train=False):
    y_i = h @ jnp.asarray(self.c).T * self.scale
    return jnp.concatenate([(y_i @ jnp.asarray(self.v))[:, None], y_i], axis=1)

  def head(self, x, train=False):
    return self.from_fc6(x.reshape(x.shape[0], -1)), {}

  def __call__(self, images, train=False):
    h = images.reshape(images.shape[0], -1)
    return self.from_fc6(h), {"top_conv": images, "fc6": h}


@pytest.mark.slow
def test_explainer_recovers_planted_additive_contributions(tmp_path):
  rng = np.random.default_rng(0)
  n, size = 6, 8
  q, _ = np.linalg.qr(rng.normal(size=(size * size * 3, n)))
  c = q.T.astype(np.float32)                      # orthonormal rows
  v = np.array([2.0, -1.5, 1.0, 0.5, -0.25, 0.0], np.float32)
  perf = PlantedPerformer(c=c, v=v)
  images = rng.normal(size=(512, size, size, 3)).astype(np.float32) * 3.0
  variables = perf.init(jax.random.PRNGKey(0), images[:1])
  spec = data.Spec("shared_feature", ("target",) + tuple(f"c{i}" for i in range(n)), 0,
                   tuple(range(1, n + 1)), tuple(f"c{i}" for i in range(n)))
  featurize = features_lib.make_featurizer(perf, spec)
  feats = jax.jit(featurize)(variables, images)
  np.testing.assert_allclose(feats["w"], np.broadcast_to(v, (512, n)), atol=1e-4)
  np.testing.assert_allclose(feats["y"], feats["y_i"] @ v, rtol=1e-4, atol=1e-4)

  config = synthetic.get_config("tiny")
  config.explainer.num_epochs = 40
  config.explainer.optimizer.learning_rate = 3e-3
  config.explainer.optimizer.schedule = "constant"
  config.explainer.batch_size = 64
  config.checkpoint_every_steps = 10_000
  config.log_every_steps = 50
  cached = data.ArraySource({k: np.asarray(x) for k, x in feats.items()})
  loader = data.Loader(cached, 64, seed=0)
  mesh = parallel.make_mesh(1)
  explainer = explainer_lib.train_explainer(
      config, "prior", workdir=str(tmp_path), mesh=mesh, loader=loader,
      feat_shape=feats["feat"].shape, num_concepts=n, rng=jax.random.PRNGKey(1))
  alpha = explainer.alpha(np.asarray(feats["feat"]))
  contrib = alpha * np.asarray(feats["y_i"])
  planted = v * np.asarray(feats["y_i"])
  # Per image and concept, the learned contributions match the planted ones.
  # Per image and concept, the learned contributions follow the planted ones closely ...
  corr = np.corrcoef(contrib.ravel(), planted.ravel())[0, 1]
  assert corr > 0.97, corr
  # ... and each concept's mean absolute contribution is the planted one within 20 %
  # (the weight network's eval-mode BatchNorm statistics leave a small, uniform shrinkage).
  mean_c, mean_p = np.abs(contrib).mean(0), np.abs(planted).mean(0)
  np.testing.assert_allclose(mean_c[:5], mean_p[:5], rtol=0.2)
  assert mean_c[5] < 0.1 * mean_p[0]  # v_5 = 0: no contribution
  np.testing.assert_allclose(alpha.mean(0), v, atol=0.25)
