"""The explainer's fitted starts and scaled bias (``xplain_jax/train/start.py``), the variant
table they come from (``stages.VARIANTS``) and the Case-1 targets they start at, checked against
closed forms written here."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import parts
from xplain_jax import api, fidelity
from xplain_jax.train import featurizers
from xplain_jax.spec import stages
from xplain_jax.errors import ConfigError
from xplain_jax.train import start as start_lib
from xplain_jax.train import variants as variants_lib


def _collinear(seed=0, n_rows=400):
  """Four concepts, two of them equal up to 1e-5 noise; y = 3·y_0 + 0.5·y_2 + noise + 100."""
  rng = np.random.default_rng(seed)
  base = rng.normal(size=n_rows)
  y_i = np.stack([base, base + 1e-5 * rng.normal(size=n_rows), rng.normal(size=n_rows),
                  rng.normal(size=n_rows)], axis=1).astype(np.float32)
  y = (3.0 * y_i[:, 0] + 0.5 * y_i[:, 2] + 0.1 * rng.normal(size=n_rows) + 100).astype(
      np.float32)
  return y_i, y


def test_the_ridge_start_never_starts_at_cancelling_contributions():
  """Plain least squares splits y_0's effect into two huge opposite coefficients; the ridge
  start keeps every contribution's spread within y's (mutation: the spread bound or the grid's
  strong values dropped -> fails)."""
  y_i, y = _collinear()
  plain, _ = start_lib.least_squares_fit(y_i, y, positive=False)
  spread = np.std(y_i, axis=0) * np.abs(plain)
  assert spread.max() > 10 * np.std(y)          # the fixture really is ill-conditioned
  alpha, b, strength = start_lib.ridge_fit(y_i, y, positive=False)
  assert strength in start_lib.RIDGE_GRID
  contrib = np.std(y_i, axis=0) * np.abs(alpha)
  assert contrib.max() <= 1.05 * np.std(y)      # no contribution spreads beyond y
  # the pair shares y_0's coefficient and the fit still explains y
  np.testing.assert_allclose(alpha[0] + alpha[1], 3.0, rtol=0.05)
  resid = y - (y_i @ alpha + b)
  assert np.std(resid) < 0.2 * np.std(y)
  nonneg, _, _ = start_lib.ridge_fit(np.abs(y_i), y, positive=True)
  assert np.all(nonneg >= 0)


def test_the_ridge_strength_is_chosen_on_held_out_rows():
  """Without noise between near-duplicates the held-out rows prefer the weakest ridge; with
  pure-noise concepts and little signal they prefer a strong one."""
  rng = np.random.default_rng(1)
  y_i = rng.normal(size=(500, 3)).astype(np.float32)
  exact = (y_i @ np.array([1.0, -2.0, 0.5]) + 4.0).astype(np.float32)
  assert start_lib.ridge_fit(y_i, exact, positive=False)[2] == min(start_lib.RIDGE_GRID)
  noisy_x = rng.normal(size=(40, 30)).astype(np.float32)
  noise_y = rng.normal(size=40).astype(np.float32)
  assert start_lib.ridge_fit(noisy_x, noise_y, positive=False)[2] >= 1.0


def test_the_target_start_is_each_concepts_own_fit_of_its_target():
  rng = np.random.default_rng(2)
  y_i = rng.uniform(0, 2, size=(50, 4)).astype(np.float32)
  y_i[:, 3] = 0.0                                   # a concept that never fires gets α = 0
  t = (rng.normal(size=(50, 4)) * y_i).astype(np.float32)
  y = (t.sum(1) + 7.0).astype(np.float32)
  alpha, b = start_lib.begin("target", y_i, y, positive=False, t=t)
  expected = [float(np.sum(t[:, k].astype(np.float64) * y_i[:, k]) / np.sum(
      y_i[:, k].astype(np.float64) ** 2)) if k < 3 else 0.0 for k in range(4)]
  np.testing.assert_allclose(alpha, expected, rtol=1e-5)
  np.testing.assert_allclose(b, np.mean(y - y_i @ alpha), rtol=1e-6)
  alpha_pos, _ = start_lib.begin("target", y_i, y, positive=True, t=t)
  np.testing.assert_allclose(alpha_pos, np.maximum(expected, 0), rtol=1e-5)
  _, b_empty = start_lib.begin("target", y_i, y, positive=False, t=t,
                               empty_score=np.full(50, -3.5))
  assert b_empty == -3.5
  with pytest.raises(ValueError, match="needs the consistency targets"):
    start_lib.begin("target", y_i, y, positive=False)


def _linear_head_cnn(offset=2.5):
  """x [B,4,4,3] -> y = offset + Σ v·x (flattened): y(∅) = offset exactly, Δ_k = Σ v_k x_k."""
  v = jnp.asarray(np.random.default_rng(3).normal(size=(4, 4, 3)), jnp.float32)
  return lambda x: offset + jnp.sum(x * v, axis=(1, 2, 3))


def test_b_starts_at_the_score_of_the_zeroed_map():
  head = _linear_head_cnn(offset=2.5)
  images = np.random.default_rng(4).uniform(size=(16, 4, 4, 3)).astype(np.float32)
  fz = featurizers.filter_featurizer(lambda im: im, head, clip_prior=False, target="deletion")
  data = api.featurize_dataset(fz, images)
  np.testing.assert_allclose(data["y0"], 2.5, rtol=1e-6)
  np.testing.assert_allclose(data["t"], np.asarray(fidelity.filter_deletion_effects(
      head, jnp.asarray(images))), rtol=1e-5, atol=1e-6)
  alpha, b = start_lib.begin("target", data["y_i"], data["y"], positive=False, t=data["t"],
                             empty_score=data["y0"])
  assert b == pytest.approx(2.5, rel=1e-6)
  # for an additive head the start already reproduces y up to the spatial pattern
  assert np.all(np.isfinite(alpha))


def test_the_shapley_target_sums_to_the_score_minus_the_empty_score():
  rng = np.random.default_rng(5)
  w1 = jnp.asarray(rng.normal(size=(4 * 4 * 3, 6)), jnp.float32)
  head = lambda x: jnp.sum(jax.nn.relu(x.reshape(x.shape[0], -1) @ w1), axis=-1)
  x = jnp.asarray(rng.uniform(size=(3, 4, 4, 3)), jnp.float32)
  phi = fidelity.filter_shapley_effects(head, x, num_permutations=5)
  np.testing.assert_allclose(np.sum(phi, 1), head(x) - head(jnp.zeros_like(x)), rtol=1e-4,
                             atol=1e-5)
  with pytest.raises(ConfigError, match="at least one permutation"):
    fidelity.filter_shapley_effects(head, x, num_permutations=0)


def test_a_scaled_bias_moves_in_units_of_ys_spread():
  y = np.array([0.0, 10.0, 20.0, 30.0], np.float32)
  stats = start_lib.bias_variables(5.0, y)
  assert float(start_lib.compose_bias(0.0, stats)) == 5.0
  assert float(start_lib.compose_bias(0.1, stats)) == pytest.approx(5.0 + 0.1 * np.std(y))
  assert float(start_lib.compose_bias(0.7, {})) == pytest.approx(0.7)   # the paper's b
  assert float(start_lib.bias_variables(1.0, np.ones(3))[start_lib.BIAS_SCALE_KEY]) == 1.0


@pytest.mark.slow
def test_the_fitted_bias_reaches_the_planted_offset():
  """y = 100 + Σ_k c_k y_k with the contributions given as targets: the faithful variant's b
  ends within 2 % of y's spread of 100 after the API's default steps."""
  rng = np.random.default_rng(6)
  n_img, n = 256, 4
  y_i = rng.uniform(0.5, 3.0, size=(n_img, n)).astype(np.float32)
  c = np.array([2.0, -1.0, 0.5, 3.0], np.float32)
  feats = {"feat": rng.normal(size=(n_img, 4, 4, 2)).astype(np.float32),
           "y": (100.0 + y_i @ c).astype(np.float32), "y_i": y_i,
           "w": np.abs(rng.normal(size=(n_img, n))).astype(np.float32),
           "t": (y_i * c).astype(np.float32)}
  e = api.fit_explainer(feats, case="shared_feature", variant="faithful", depth=10, width=8,
                        log_every=10 ** 6)
  assert abs(e.bias - 100.0) < 0.02 * np.std(feats["y"])
  with pytest.raises(ConfigError, match="variant='faithful' needs finite features"):
    api.fit_explainer({k: v for k, v in feats.items() if k != "t"}, variant="faithful")


class FlatHeadCNN(nn.Module):
  """images [B,8,8,1] -> x [B,4,4,6] (conv, ReLU, pool); head: flatten -> 16 ReLU -> 1."""

  @nn.compact
  def __call__(self, images):
    x = nn.relu(nn.Conv(6, (3, 3), name="conv")(images))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return x, nn.Dense(1, name="fc2")(nn.relu(nn.Dense(16, name="fc1")(x.reshape(len(x), -1))))


@pytest.mark.slow
def test_a_case1_faithful_fit_on_a_flattening_head_reaches_the_filters_effects():
  """The faithful variant on a small CNN whose head flattens its map: the relative training
  residual Σ(α_k y_k − Δ_k)² / ΣΔ_k² ends below 0.3 (all-zero contributions score 1)."""
  net = FlatHeadCNN()
  images = np.random.default_rng(7).uniform(size=(320, 8, 8, 1)).astype(np.float32)
  v = net.init(jax.random.PRNGKey(0), images[:1])
  features = lambda im: net.apply(v, im)[0]
  head = lambda x: (nn.Dense(1).apply({"params": v["params"]["fc2"]}, nn.relu(
      nn.Dense(16).apply({"params": v["params"]["fc1"]}, x.reshape(len(x), -1)))))[:, 0]
  fz = featurizers.filter_featurizer(features, head, clip_prior=False, target="deletion")
  data = api.featurize_dataset(fz, images)
  e = api.fit_explainer(data, case="filter", variant="faithful", positive=False,
                        prior_kind="mse", consistency_weight=1.0, depth=10, width=8,
                        epochs=20, log_every=10 ** 6, coords=True)
  contrib = e.contributions(data["feat"], data["y_i"])
  residual = np.sum((contrib - data["t"]) ** 2) / np.sum(data["t"] ** 2)
  assert residual < 0.3


def test_a_new_beta_retrains_exactly_the_variants_that_read_it():
  """Changing explainer.beta of a finished run: of the trained stages only the explainers whose
  settings read β (prior, ls_start) get a new identity (so they retrain, in a study's run or a
  fresh workdir); the performer, the feature cache, baseline and faithful keep theirs and are
  reused. The variant list names all four, as configs/studies/regimes.py does."""
  c = parts.get_config("tiny")
  c.explainer.variants = ",".join(stages.VARIANTS)
  trained = [s.name for s in stages.concrete(c) if s.name != "evaluate" and s.name != "report"]
  before = {s: stages.stage_fingerprint(c, s) for s in trained}
  c.explainer.beta = c.explainer.beta * 2 + 1.0
  changed = sorted(s for s in trained if stages.stage_fingerprint(c, s) != before[s])
  assert changed == ["explainer_ls_start", "explainer_prior"]
  assert "performer" in trained and "features" in trained


def test_the_variant_table_decides_what_each_variant_reads():
  """Mutation: VARIANT_IGNORES emptied, or faithful reading explainer.beta -> fails."""
  c = parts.get_config("tiny")
  base = {v: stages.stage_fingerprint(c, stages.variant_stage(v)) for v in stages.VARIANTS}
  c.explainer.beta = c.explainer.beta + 1.0
  changed = {v for v in stages.VARIANTS
             if stages.stage_fingerprint(c, stages.variant_stage(v)) != base[v]}
  assert changed == {"prior", "ls_start"}
  c.explainer.faithful_weight = 5.0
  c.explainer.start = "least_squares"
  changed = {v for v in stages.VARIANTS
             if stages.stage_fingerprint(c, stages.variant_stage(v)) != base[v]}
  assert changed == {"baseline", "prior", "ls_start", "faithful"}
  s = variants_lib.variant_settings(c, "faithful")
  assert (s.beta, s.start, s.consistency_weight, s.scaled_bias) == (0.0, "target", 5.0, True)
  for name, v in stages.VARIANTS.items():
    read = set(v.reads())
    assert read.isdisjoint(stages.VARIANT_IGNORES[name])
    assert read | set(stages.VARIANT_IGNORES[name]) == set(stages.VARIANT_FIELDS)


def test_the_api_takes_a_variant_by_its_pipeline_name():
  s = api.variant_settings("faithful", beta=10.0)
  assert (s.beta, s.start, s.scaled_bias) == (0.0, "target", True)
  assert api.variant_settings("prior", beta=10.0).beta == 10.0
  with pytest.raises(ConfigError, match="variant='bogus'"):
    api.variant_settings("bogus", beta=1.0)


def test_a_study_shares_an_explainer_across_exactly_the_fields_its_variant_ignores():
  """The β sweep's shared baseline: its free fields come from the variant table, not a list of
  the study's own (mutation: faithful reading β -> the pair's common fields lose β)."""
  from xplain_jax.study import commands  # pylint: disable=import-outside-toplevel
  assert "explainer.beta" in commands.free_fields(["explainer_baseline"])
  assert "explainer.beta" in commands.free_fields(["explainer_baseline", "explainer_faithful"])
  assert commands.free_fields(["explainer_prior"]) == ["explainer.faithful_weight"]
  with pytest.raises(ValueError, match="explainer_<variant>"):
    commands.free_fields(["performer"])


def test_compose_alpha_scales_gs_output_under_every_start():
  """Mutation: compose_alpha ignoring alpha_scale -> fails (was caught only by slow tests)."""
  raw = jnp.asarray([[0.5, -1.0]], jnp.float32)
  offset = np.array([1.0, 2.0], np.float32)
  np.testing.assert_allclose(start_lib.compose_alpha(raw, {}, alpha_scale=3.0), 3.0 * raw)
  np.testing.assert_allclose(
      start_lib.compose_alpha(raw, {start_lib.START_KEY: offset}, alpha_scale=3.0),
      offset + 3.0 * raw)
  soft = start_lib.start_variables(offset, positive=True)
  np.testing.assert_allclose(start_lib.compose_alpha(raw, soft, alpha_scale=3.0),
                             jax.nn.softplus(start_lib.inverse_softplus(offset) + 3.0 * raw),
                             rtol=1e-5)


def test_a_concept_the_positive_fit_sets_to_zero_starts_at_the_floor():
  """Mutation: the floor removed (softplus⁻¹(0) = −inf) -> fails."""
  alpha0 = np.array([0.0, 4.0, 0.0], np.float32)
  stats = start_lib.start_variables(alpha0, positive=True)
  assert np.all(np.isfinite(stats[start_lib.SOFTPLUS_START_KEY]))
  alpha = np.asarray(start_lib.compose_alpha(jnp.zeros((1, 3)), stats))[0]
  floor = 4.0 * np.finfo(np.float32).eps
  np.testing.assert_allclose(alpha, [floor, 4.0, floor], rtol=1e-3)


class _Images:
  """A source of 5 images (no cached columns): training_concepts must featurize every one."""

  def __init__(self):
    self.images = np.arange(5 * 2 * 2 * 1, dtype=np.float32).reshape(5, 2, 2, 1)

  def __len__(self):
    return len(self.images)

  def get_batch(self, idx):
    return {"image": self.images[idx]}


def test_training_concepts_featurizes_every_image_of_a_source_without_columns():
  """Mutation: the last partial batch dropped -> 4 rows instead of 5 -> fails."""
  featurize = lambda v, im: {"y_i": im.reshape(len(im), -1) * v, "y": im.sum((1, 2, 3)),
                             "t": -im.reshape(len(im), -1)}
  src = _Images()
  y_i, y, t, y0 = start_lib.training_concepts(src, featurize=featurize, perf_variables=2.0,
                                              batch_size=2, keys=("y_i", "y", "t", "y0"))
  np.testing.assert_allclose(y_i, 2.0 * src.images.reshape(5, -1))
  np.testing.assert_allclose(y, src.images.sum((1, 2, 3)))
  np.testing.assert_allclose(t, -src.images.reshape(5, -1))
  assert y0 is None


@pytest.mark.parametrize("batch_size", [3, 5, 8])
def test_training_concepts_keeps_the_last_image_of_every_batching(batch_size):
  """Mutation: each batch stops one image short of the source's end (the last image dropped).
  With a last batch of 2 images or one batch of all 5 the featurizer still gets images, so
  the mutation shows as 4 rows instead of 5, not as a crash on an empty batch."""
  featurize = lambda v, im: {"y_i": im.reshape(len(im), -1) * v, "y": im.sum((1, 2, 3))}
  src = _Images()
  y_i, y = start_lib.training_concepts(src, featurize=featurize, perf_variables=1.0,
                                       batch_size=batch_size)
  assert y_i.shape == (5, 4) and y.shape == (5,)
  np.testing.assert_allclose(y, src.images.sum((1, 2, 3)))


def test_the_api_identity_holds_the_score_of_the_zeroed_map():
  """y0 moves the target start's b, so two fits that differ only in it are different fits."""
  from xplain_jax.api import guards as api_checks  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(8)
  feats = {"feat": rng.normal(size=(4, 2, 2, 1)), "y": rng.normal(size=4),
           "y_i": rng.normal(size=(4, 3)), "w": rng.normal(size=(4, 3)),
           "t": rng.normal(size=(4, 3)), "y0": np.zeros(4)}
  other = dict(feats, y0=np.ones(4))
  assert api_checks.data_hash(feats) != api_checks.data_hash(other)
