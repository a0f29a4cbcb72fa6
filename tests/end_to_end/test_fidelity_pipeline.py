"""The fidelity and sanity evaluators wired into the pipeline, end to end on tiny configs."""

import json
import os
import re

from absl import flags
from ml_collections import config_flags
import numpy as np
import pytest

from configs import parts as parts_config
from configs import synthetic
from xplain_jax import data
from xplain_jax.data import synthetic_attributes as sa
from xplain_jax.errors import DataError
from xplain_jax import evaluators
from xplain_jax import fidelity
from xplain_jax.run import pipeline

VARIANTS = ("baseline", "prior")
REFERENCES = ("random", "shuffled_alpha", "prior_weights", "least_squares")
PEERS_CASE1 = ("least_squares_nonnegative", "gradient_x_input", "integrated_gradients")
NUM_SCORED = 16
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config_from_flags(config_arg: str, *overrides: str):
  """The config as ``launch/run.py`` parses it: a locked config file plus ``--config.*`` flags."""
  argv = ["run.py", f"--config={os.path.join(ROOT, config_arg)}", *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config file", flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  return values.config


def _read(workdir, name):
  with np.load(os.path.join(workdir, "eval", name)) as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fid_synthetic"))
  # Set by command-line flags, so the scored-image counts checked below show that
  # --config.evals.fidelity.num_images reaches the evaluator.
  c = _config_from_flags("configs/synthetic.py:tiny",
                         f"--config.evals.fidelity.num_images={NUM_SCORED}",
                         "--config.evals.fidelity.num_resamples=200",
                         "--config.evals.sanity.enabled=True",
                         "--config.evals.sanity.num_resamples=200")
  assert c.evals.fidelity.num_images == NUM_SCORED
  metrics = pipeline.train_and_evaluate(c, workdir)
  return workdir, metrics, c


@pytest.fixture(scope="module")
def parts_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fid_parts"))
  c = parts_config.get_config("tiny,tiny")
  c.parts.compare_ordinary = False
  c.evals.fidelity.num_images, c.evals.fidelity.num_resamples = NUM_SCORED, 200
  c.evals.fidelity.deletion_steps = 4
  c.evals.sanity.num_resamples = 200
  c.evals.sanity.enabled = True  # Case 1: its explainer starts as the run's (explainer.auto_scale)
  metrics = pipeline.train_and_evaluate(c, workdir)
  return workdir, metrics, c


def _check_fidelity_keys(metrics, *, deletion, peers=()):
  for name in VARIANTS + REFERENCES + peers:
    block = metrics["fidelity"][name] if name in VARIANTS else metrics["fidelity_reference"][name]
    rho = block["interventional_rank_correlation"]
    assert rho["num_images"] == NUM_SCORED and rho["low"] <= rho["mean"] <= rho["high"], name
    assert -1.0 <= rho["mean"] <= 1.0
    for key in ("sign_agreement", "sign_pairs", "sign_threshold"):
      assert key in block, (name, key)
    assert ("deletion_area" in block) == deletion or name == "shuffled_alpha", name
    predicts = name in VARIANTS or name.startswith("least_squares")
    assert ("relative_deviation" in block) == predicts, name
  for name in VARIANTS + ("least_squares",) + peers:   # measured cost per image
    block = metrics["fidelity"] if name in VARIANTS else metrics["fidelity_reference"]
    cost = block[name]["cost"]
    assert cost["seconds_per_image"] >= 0 and cost["explainer_passes"] == (name in VARIANTS)
  assert metrics["fidelity_reference"]["delta"]["cost"]["seconds_per_image"] > 0
  for name in ["prior_minus_baseline"] + [f"{v}_minus_{p}" for v in VARIANTS
                                          for p in ("least_squares",) + peers[1:2]]:
    d = metrics["fidelity"][name]
    assert d["low"] <= d["mean"] <= d["high"] and isinstance(d["significant"], bool), name


@pytest.mark.slow
def test_synthetic_run_holds_every_fidelity_key(synthetic_run):
  workdir, metrics, c = synthetic_run
  with open(os.path.join(workdir, "metrics.json")) as f:
    assert json.load(f) == json.loads(json.dumps(metrics))
  _check_fidelity_keys(metrics, deletion=False)
  for v in VARIANTS:
    assert metrics["fidelity"][v]["gt_rank_correlation_per_image"]["num_images"] == NUM_SCORED
  n, num_test = len(sa.CONCEPT_NAMES), c.dataset.num_test
  acc = metrics["performer"]["concept_accuracy"]
  assert set(acc["per_concept"]) == set(sa.CONCEPT_NAMES)
  assert acc["mean"] == pytest.approx(np.mean(list(acc["per_concept"].values())))
  labels = data.get_source(c, "test").get_batch(np.arange(num_test))["labels"][:, :n]
  for v in VARIANTS:
    ev = _read(workdir, f"{v}.npz")
    assert ev["delta"].shape == (num_test, n)
    assert np.all(np.isfinite(ev["delta"][:NUM_SCORED]))
    assert np.all(np.isnan(ev["delta"][NUM_SCORED:]))  # not scored: evals.fidelity.num_images
    assert ev["interventional_rank_correlation"].shape == (num_test,)
    np.testing.assert_allclose(np.mean(ev["interventional_rank_correlation"][:NUM_SCORED]),
                               metrics["fidelity"][v]["interventional_rank_correlation"]["mean"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ev["concept_labels"], labels)
  ref = _read(workdir, "fidelity_reference.npz")
  assert ref["random_contrib"].shape == (NUM_SCORED, n)
  meta = json.load(open(os.path.join(workdir, "eval", "meta.json")))
  assert {"fidelity", "sanity"} <= set(meta["evaluator_seconds"])


@pytest.mark.slow
def test_least_squares_peer_recomputes_from_the_run_files(synthetic_run):
  from xplain_jax import fidelity
  from xplain_jax.data import feature_cache
  workdir, metrics, _ = synthetic_run
  train = feature_cache.load_cache(os.path.join(workdir, "features", "train")).columns
  y_i, y = np.asarray(train["y_i"], np.float64), np.asarray(train["y"], np.float64)
  theta = np.linalg.lstsq(np.c_[y_i, np.ones(len(y))], y, rcond=None)[0]
  ref = _read(workdir, "fidelity_reference.npz")
  np.testing.assert_allclose(ref["least_squares_alpha"], theta[:-1], rtol=1e-3, atol=1e-4)
  assert float(ref["least_squares_bias"]) == pytest.approx(theta[-1], rel=1e-3, abs=1e-4)
  test = _read(workdir, "prior.npz")
  contrib = (theta[:-1] * test["concepts"][:NUM_SCORED]).astype(np.float32)
  np.testing.assert_allclose(ref["least_squares_contrib"], contrib, rtol=1e-3, atol=1e-4)
  rho = np.asarray(fidelity.interventional_rank_correlation(contrib, ref["delta"]))
  block = metrics["fidelity_reference"]["least_squares"]
  assert block["interventional_rank_correlation"]["mean"] == pytest.approx(rho.mean(), abs=1e-3)
  planted = metrics["fidelity_reference"]["planted"]   # the planted rule scored against Δ
  assert planted["interventional_rank_correlation"]["num_images"] == NUM_SCORED
  assert "gt_rank_correlation_per_image" not in planted and "planted_contrib" in ref


@pytest.mark.slow
def test_sanity_stage_on_tiny_run(synthetic_run):
  workdir, metrics, c = synthetic_run
  s = metrics["sanity"]
  assert s["layers"] == ["fc7", "fc8"] and s["variant"] == "prior"
  sim = s["randomized_performer_similarity"]
  assert -1.0 <= sim["low"] <= sim["mean"] <= sim["high"] <= 1.0
  arrays = _read(workdir, "sanity.npz")
  n = len(sa.CONCEPT_NAMES)
  assert arrays["contrib"].shape == (c.dataset.num_test, n)
  np.testing.assert_allclose(arrays["similarity"].mean(), sim["mean"], rtol=1e-5, atol=1e-6)
  prior = _read(workdir, "prior.npz")
  assert not np.allclose(arrays["contrib"], prior["contrib"])  # another performer, other values


@pytest.mark.slow
def test_report_has_the_trust_section_and_true_presence(synthetic_run):
  workdir, _, _ = synthetic_run
  md = open(os.path.join(workdir, "report.md")).read()
  assert "## Can this explanation be trusted?" in md
  assert "interventional_rank_correlation" in md and "Sanity check" in md
  assert os.path.exists(os.path.join(workdir, "figures", "fidelity_image_0.png"))
  # The planted-truth reasons of image 0 are named by true presence ("no x" iff x is absent).
  presence = _read(workdir, "prior.npz")["concept_labels"][0]
  line = next(s for s in md.splitlines() if s.strip().startswith("planted —"))
  named = re.findall(r"[+-]\d+\.\d+ (no )?(\w+)", line)
  assert named
  for no, name in named:
    assert (no == "") == (presence[sa.CONCEPT_NAMES.index(name)] > 0.5), name


@pytest.mark.slow
def test_parts_run_holds_case1_fidelity_with_deletion_curves(parts_run):
  workdir, metrics, c = parts_run
  _check_fidelity_keys(metrics, deletion=True, peers=PEERS_CASE1)
  ig = metrics["fidelity_reference"]["integrated_gradients"]["cost"]
  assert ig["forward_passes"] == ig["backward_passes"] == c.evals.fidelity.ig_steps
  n = c.performer.model.top_channels
  ref = _read(workdir, "fidelity_reference.npz")
  counts = ref["deletion_counts"]
  assert counts[0] == 0 and counts[-1] == n and len(counts) <= c.evals.fidelity.deletion_steps + 1
  for v in VARIANTS:
    ev = _read(workdir, f"{v}.npz")
    assert ev["delta"].shape == (c.dataset.num_test, n)
    curve = ev["deletion_curve"]
    assert curve.shape == (c.dataset.num_test, len(counts))
    # Column 0 deletes nothing: the performer's own score y of the scored images.
    np.testing.assert_allclose(curve[:NUM_SCORED, 0], ev["y"][:NUM_SCORED], rtol=1e-4, atol=1e-4)
  assert ref["random_deletion_curve"].shape == (NUM_SCORED, len(counts))
  assert "concept_accuracy" not in metrics["performer"]  # filters have no concept labels
  md = open(os.path.join(workdir, "report.md")).read()
  assert "## Can this explanation be trusted?" in md and "deletion_curves.png" in md


def _planted_oracle(source, seed, indices, v):
  """y_fn scoring an image v·(true presence) by looking it up among its renders."""
  split_seed = seed + 1_000_003  # synthetic_attributes' test split
  table = []
  for i in indices:
    attrs = sa.scene(split_seed, int(i))["attrs"].astype(np.float32)
    table.append((source.get_batch(np.array([i]))["image"][0], attrs))
    for r in range(len(sa.CONCEPT_NAMES)):
      flipped = attrs.copy()
      flipped[r] = 1.0 - flipped[r]
      table.append((source.counterfactuals(np.array([i]), r)[0], flipped))

  def y_fn(images):
    out = []
    for im in np.asarray(images):
      match = [a for ref, a in table if np.array_equal(ref, im)]
      assert len(match) >= 1
      out.append(float(v @ match[0]))
    return np.asarray(out, np.float32)
  return y_fn


def test_renderer_concept_k_is_column_k_of_y_i():
  c = synthetic.get_config("tiny")
  c.dataset.num_test = 3
  spec, src = data.get_spec(c), data.get_source(c, "test")
  assert src.counterfactuals is not None and src.num_concepts == len(sa.CONCEPT_NAMES)
  idx = np.arange(3)
  v = np.random.default_rng(0).normal(size=len(sa.CONCEPT_NAMES)).astype(np.float32)
  y_fn = _planted_oracle(src, c.dataset.seed, idx, v)
  columns = fidelity.renderer_columns(spec.concept_names, sa.CONCEPT_NAMES)
  delta = fidelity.rendering_effects(
      y_fn, src.counterfactuals, idx, len(columns), y=y_fn(src.get_batch(idx)["image"]),
      batch_size=2, columns=columns)
  # Column j of y_i is performer output concept_indices[j]; its true presence a_j comes from the
  # labels. Toggling it changes y = Σ v_j a_j by v_j (2 a_j − 1).
  presence = src.get_batch(idx)["labels"][:, list(spec.concept_indices)]
  v_cols = np.asarray([v[sa.CONCEPT_NAMES.index(name)] for name in spec.concept_names])
  np.testing.assert_allclose(delta, v_cols * (2 * presence - 1), rtol=1e-5, atol=1e-5)


def test_renderer_columns_follow_names():
  np.testing.assert_array_equal(fidelity.renderer_columns(["b", "a"], ["a", "b", "c"]),
                                [1, 0])
  with pytest.raises(DataError, match="cannot toggle concepts \\['z'\\]"):
    fidelity.renderer_columns(["a", "z"], ["a", "b"])


def test_enabled_evaluators_follow_the_enabled_flags():
  c = synthetic.get_config("tiny")
  assert evaluators.enabled(c) == ("explainer", "fidelity")
  assert evaluators.enabled(synthetic.get_config("")) == ("explainer", "fidelity", "sanity")
  c.evals.fidelity.enabled, c.evals.sanity.enabled = False, True
  assert evaluators.enabled(c) == ("explainer", "sanity")
  p = parts_config.get_config("tiny,tiny")
  assert evaluators.enabled(p) == ("explainer", "parts", "fidelity")
  p.evals.parts.enabled = False
  assert evaluators.enabled(p) == ("explainer", "fidelity")


def test_report_section_reads_only_the_scored_images(tmp_path):
  from xplain_jax.report import fidelity_section
  rng = np.random.default_rng(0)
  n, num, scored = 4, 5, 2
  delta = np.full((num, n), np.nan, np.float32)
  delta[:scored] = rng.normal(size=(scored, n))
  data = {"prior": {"alpha": rng.normal(size=(num, n)), "concepts": rng.normal(size=(num, n)),
                    "delta": delta, "deletion_curve": rng.normal(size=(num, 3))}}
  data["prior"]["deletion_curve"][scored:] = np.nan
  reference = {"deletion_counts": np.array([0, 2, 4]), "random_deletion_curve": np.ones((2, 3))}
  metrics = {"fidelity": {"prior": {"interventional_rank_correlation": {
      "mean": 0.1, "low": 0.0, "high": 0.2, "num_images": scored}}}}
  title, blocks = fidelity_section.section_from_eval(
      metrics, fig=lambda name: str(tmp_path / name), data=data,
      images=rng.random((num, 8, 8, 3)), names=list("abcd"), reference=reference, num_images=4)
  figures = [b[1] for b in blocks if b[0] == "figure"]
  # One panel per scored image only (the NaN rows were not measured), and the deletion curves.
  assert sorted(os.path.basename(f) for f in figures) == [
      "deletion_curves.png", "fidelity_image_0.png", "fidelity_image_1.png"]
  assert title == fidelity_section.TITLE


@pytest.mark.slow
def test_sanity_stage_on_tiny_parts_run(parts_run):
  _, metrics, c = parts_run
  assert c.explainer.auto_scale  # the Case-1 start, which the sanity explainer shares
  sim = metrics["sanity"]["randomized_performer_similarity"]
  assert -1.0 <= sim["low"] <= sim["mean"] <= sim["high"] <= 1.0
