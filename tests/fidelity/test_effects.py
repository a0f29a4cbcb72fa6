"""Fidelity metrics against known effects: linear heads, planted rules, chance references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax import fidelity
from xplain_jax.fidelity import sanity as fidelity_sanity
from xplain_jax.errors import ConfigError, DataError


def _linear_head(weights, bias=0.3):
  return lambda x: jnp.sum(x * weights, axis=(1, 2, 3)) + bias


def test_filter_deletion_matches_closed_form_for_a_linear_head():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 3, 4, 6)).astype(np.float32)
  weights = rng.normal(size=(3, 4, 6)).astype(np.float32)
  delta = fidelity.filter_deletion_effects(_linear_head(weights), x)
  # Zeroing filter k removes exactly its term Σ_hw W[h,w,k] x[h,w,k].
  expected = np.einsum("bhwk,hwk->bk", x, weights)
  np.testing.assert_allclose(delta, expected, rtol=1e-5, atol=1e-5)
  batched = fidelity.filter_deletion_effects(_linear_head(weights), x, batch_size=4)
  np.testing.assert_allclose(batched, delta, rtol=1e-6, atol=1e-6)


def test_filter_deletion_equals_brute_force_for_a_nonlinear_head():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 2, 2, 5)).astype(np.float32)
  head = lambda x: jnp.tanh(x).max(axis=(1, 2)) @ jnp.arange(1.0, 6.0) + jnp.sum(x**2, (1, 2, 3))
  delta = np.asarray(jax.jit(lambda x: fidelity.filter_deletion_effects(head, x))(x))
  y = np.asarray(head(x))
  for k in range(5):
    xk = x.copy()
    xk[..., k] = 0.0
    np.testing.assert_allclose(delta[:, k], y - np.asarray(head(xk)), rtol=1e-5, atol=1e-5)


def _planted(attrs, v, interaction=0.3):
  """A planted-rule performer over concept indicators: Σ v_k s_k plus a small interaction."""
  s = 2.0 * attrs - 1.0
  return s @ v + interaction * s[:, 0] * s[:, 1]


def test_planted_rule_performer_gives_high_interventional_rank_correlation():
  rng = np.random.default_rng(2)
  n, num = 12, 300
  v = rng.normal(size=n) * np.linspace(2.0, 0.1, n)
  attrs = (rng.random((num, n)) < 0.5).astype(np.float32)

  def counterfactuals(indices, k):  # the "renderer": the scene with concept k toggled
    a = attrs[indices].copy()
    a[:, k] = 1.0 - a[:, k]
    return a

  y_fn = lambda a: _planted(a, v)
  delta = fidelity.rendering_effects(y_fn, counterfactuals, np.arange(num), n,
                                     y=y_fn(attrs), batch_size=64)
  s = 2.0 * attrs - 1.0
  # Toggling concept k flips s_k: its effect is 2 v_k s_k (plus the interaction's share).
  np.testing.assert_allclose(delta[:, 2:], 2.0 * v[2:] * s[:, 2:], rtol=1e-5, atol=1e-5)
  contrib = v * s  # the explanation of the planted rule, α = v on y_k = s_k
  rho = np.asarray(fidelity.interventional_rank_correlation(contrib, delta))
  assert rho.shape == (num,) and rho.mean() > 0.9, rho.mean()
  share, pairs = fidelity.sign_agreement(contrib, delta, threshold=0.05)
  assert share > 0.95 and pairs > 0.9 * num * n


def test_random_reference_sits_near_zero_and_faithful_near_one():
  rng = np.random.default_rng(3)
  num, n = 400, 20
  alpha = np.abs(rng.normal(size=(num, n))).astype(np.float32)
  y_i = np.ones((num, n), np.float32)
  delta = alpha * y_i * rng.choice([-1.0, 1.0], size=(num, n))  # the performer's true effects
  faithful = fidelity.interventional_rank_correlation(alpha * y_i, delta)
  np.testing.assert_allclose(faithful, 1.0, atol=1e-5)
  shuffled = fidelity.shuffled_alpha(jax.random.PRNGKey(0), jnp.asarray(alpha))
  # A permutation per image: the same values, in a new order.
  np.testing.assert_allclose(np.sort(shuffled, 1), np.sort(alpha, 1))
  rho = np.asarray(fidelity.interventional_rank_correlation(shuffled * y_i, delta))
  assert abs(rho.mean()) < 0.1, rho.mean()


def test_sign_agreement_counts_only_effects_above_threshold():
  contrib = np.array([[1.0, -1.0, 2.0], [-3.0, 1.0, 0.5]])
  delta = np.array([[0.5, 0.5, 0.01], [-2.0, -0.2, 0.3]])
  share, pairs = fidelity.sign_agreement(contrib, delta, threshold=0.1)
  # Counted pairs: (0,0) agree, (0,1) disagree, (1,0) agree, (1,1) disagree, (1,2) agree.
  assert pairs == 5 and share == pytest.approx(3 / 5)
  share, pairs = fidelity.sign_agreement(contrib, delta, threshold=10.0)
  assert pairs == 0 and np.isnan(share)


def test_gt_rank_correlation_per_image():
  gt = np.array([[2.0, -1.0, 0.5, 0.0], [1.0, 2.0, 3.0, 4.0]])
  contrib = np.array([[4.0, 3.0, -2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
  rho = np.asarray(fidelity.gt_rank_correlation_per_image(contrib, gt))
  np.testing.assert_allclose(rho, [1.0, -1.0], atol=1e-6)


def test_deletion_curve_of_a_linear_head_follows_the_contributions():
  rng = np.random.default_rng(4)
  b, n = 6, 8
  x = rng.normal(size=(b, 2, 2, n)).astype(np.float32)
  weights = rng.normal(size=(2, 2, n)).astype(np.float32)
  head = _linear_head(weights)
  terms = np.einsum("bhwk,hwk->bk", x, weights)  # exact per-filter contributions
  order = np.asarray(fidelity.order_by(jnp.asarray(terms)))
  curve = np.asarray(fidelity.deletion_curve(head, x, order))
  y = np.asarray(head(x))
  sorted_terms = np.take_along_axis(terms, order, 1)
  expected = y[:, None] - np.concatenate([np.zeros((b, 1)), np.cumsum(sorted_terms, 1)], 1)
  np.testing.assert_allclose(curve, expected, rtol=1e-4, atol=1e-4)
  # Deleting the largest contributions first lowers y faster than a random or reversed order.
  random = np.asarray(fidelity.random_order(jax.random.PRNGKey(0), b, n))
  area = lambda o: fidelity.deletion_area(np.asarray(fidelity.deletion_curve(head, x, o)))
  assert area(order) < area(random) < area(order[:, ::-1])
  counts = fidelity.deletion_counts(n, 4)
  np.testing.assert_array_equal(counts, [0, 2, 4, 6, 8])
  sub = np.asarray(fidelity.deletion_curve(head, x, order, counts))
  np.testing.assert_allclose(sub, curve[:, counts], rtol=1e-5, atol=1e-5)


def test_deletion_area_closed_forms():
  # A straight fall by the whole scale has area -1/2; an immediate fall of 2 (scale 4) at the
  # first of four steps, then flat: -(1/2 * 1/4 + 3/4) * 2/4 = -0.4375.
  line = np.linspace(1.0, 0.0, 5)[None]
  assert fidelity.deletion_area(line, scale=1.0) == pytest.approx(-0.5)
  drop = np.array([[3.0, 1.0, 1.0, 1.0, 1.0]])
  assert fidelity.deletion_area(drop, scale=4.0) == pytest.approx(-0.4375)
  # Default scale: the spread of y over the images (column 0).
  two = np.array([[3.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
  assert fidelity.deletion_area(two) == pytest.approx(-0.5 * (0.5 * 0.5 + 0.5))
  assert np.isnan(fidelity.deletion_area(np.ones((2, 5))))
  with pytest.raises(ConfigError, match="num_steps"):
    fidelity.deletion_counts(8, 0)


def test_mean_interval_covers_the_mean_with_the_normal_width():
  rng = np.random.default_rng(5)
  values = rng.normal(0.3, 1.0, size=2000)
  out = fidelity.mean_interval(values, num_resamples=2000, seed=0)
  assert out["low"] < out["mean"] < out["high"] and out["num_images"] == 2000
  se = values.std() / np.sqrt(values.size)  # normal approximation, derived independently
  assert out["high"] - out["low"] == pytest.approx(2 * 1.96 * se, rel=0.15)
  const = fidelity.mean_interval(np.full(10, 0.7), num_resamples=100)
  assert const["low"] == pytest.approx(0.7) and const["high"] == pytest.approx(0.7)
  with pytest.raises(DataError, match="finite"):
    fidelity.mean_interval(np.array([1.0, np.nan]), num_resamples=10)


def test_paired_difference_interval_says_when_zero_is_excluded():
  rng = np.random.default_rng(6)
  a = rng.normal(size=500)
  shifted = fidelity.paired_difference_interval(a + 0.5, a, num_resamples=500)
  assert shifted["significant"] and shifted["mean"] == pytest.approx(0.5)
  same = fidelity.paired_difference_interval(a + rng.normal(0, 1e-3, 500), a, num_resamples=500)
  assert same["low"] < 0 < same["high"] and not same["significant"]


def test_summarize_has_every_key():
  rng = np.random.default_rng(7)
  c, d, gt = (rng.normal(size=(30, 5)) for _ in range(3))
  out = fidelity.summarize(c, d, sign_threshold=0.1, num_resamples=50, gt_contrib=gt)
  for key in ("interventional_rank_correlation", "gt_rank_correlation_per_image"):
    assert set(out[key]) == {"mean", "low", "high", "num_images"}
  assert 0.0 <= out["sign_agreement"] <= 1.0 and out["sign_pairs"] > 0


def test_randomize_layers_replaces_only_the_named_layers():
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones(4)},
            "fc7": {"kernel": jnp.ones((64, 32)), "bias": jnp.ones(32)}}
  variables = {"params": params, "batch_stats": {"x": jnp.ones(2)}}
  new = fidelity_sanity.randomize_layers(variables, ("fc7",), jax.random.PRNGKey(0))
  np.testing.assert_array_equal(new["params"]["conv"]["kernel"], params["conv"]["kernel"])
  assert new["batch_stats"] is variables["batch_stats"]
  k = np.asarray(new["params"]["fc7"]["kernel"])
  np.testing.assert_array_equal(new["params"]["fc7"]["bias"], 0.0)
  # LeCun normal: variance 1 / fan_in.
  assert k.std() == pytest.approx(1 / np.sqrt(64), rel=0.1)
  with pytest.raises(ConfigError, match="fc9"):
    fidelity_sanity.randomize_layers(variables, ("fc9",), jax.random.PRNGKey(0))
  assert fidelity_sanity.layers_above("fc6") == ("fc7", "fc8")


def test_randomize_layers_on_a_real_performer_changes_the_head():
  from xplain_jax import models
  perf = models.get_performer("tiny_vgg", num_outputs=3)
  images = jnp.ones((2, 32, 32, 3))
  variables = perf.init(jax.random.PRNGKey(0), images)
  names = fidelity_sanity.layers_above("top_conv")
  new = fidelity_sanity.randomize_layers(variables, names, jax.random.PRNGKey(1))
  (out_a, inter_a), (out_b, inter_b) = perf.apply(variables, images), perf.apply(new, images)
  np.testing.assert_allclose(inter_a["top_conv"], inter_b["top_conv"])  # below: unchanged
  assert not np.allclose(out_a, out_b)


def test_contribution_similarity():
  rng = np.random.default_rng(8)
  a = rng.normal(size=(300, 15))
  np.testing.assert_allclose(fidelity_sanity.contribution_similarity(a, -a), 1.0, atol=1e-5)
  other = rng.normal(size=(300, 15))
  assert abs(float(np.mean(fidelity_sanity.contribution_similarity(a, other)))) < 0.1


def test_concept_accuracy():
  logits = np.array([[1.0, -1.0], [2.0, 3.0], [-1.0, 0.5], [0.2, -0.1]])
  labels = np.array([[1, 0], [1, 0], [1, 1], [1, 0]], np.float32)
  out = fidelity_sanity.concept_accuracy(logits, labels, ("a", "b"))
  assert out["per_concept"] == {"a": 75.0, "b": 75.0} and out["mean"] == 75.0
  with pytest.raises(DataError, match="names"):
    fidelity_sanity.concept_accuracy(logits, labels, ("a",))


def test_evaluate_fidelity_case1_faithful_explainer_beats_references():
  from xplain_jax.core import concepts
  from xplain_jax.fidelity import compare
  rng = np.random.default_rng(9)
  b, n = 200, 10
  x = rng.normal(size=(b, 2, 2, n)).astype(np.float32) + 0.5
  v = rng.normal(size=n).astype(np.float32) * np.linspace(2, 0.2, n).astype(np.float32)
  head = lambda x: concepts.filter_concepts(x) @ jnp.asarray(v)  # y = Σ v_k y_k exactly
  y_i = np.asarray(concepts.filter_concepts(x))
  delta = np.asarray(fidelity.filter_deletion_effects(head, x))
  np.testing.assert_allclose(delta, v * y_i, rtol=1e-4, atol=1e-4)  # closed form
  alphas = {"baseline": np.broadcast_to(v, (b, n)) + rng.normal(0, 0.5, (b, n)),
            "prior": np.broadcast_to(v, (b, n))}
  w = np.abs(rng.normal(size=(b, n)))  # uninformative prior weights
  counts = fidelity.deletion_counts(n, 5)
  fid, ref, arrays = compare.evaluate_fidelity(
      alphas, y_i, w, delta, key=jax.random.PRNGKey(0), sign_threshold=1e-3,
      num_resamples=200, deletion_fn=lambda o: fidelity.deletion_curve(head, x, o, counts),
      deletion_counts=counts)
  assert fid["prior"]["interventional_rank_correlation"]["mean"] == pytest.approx(1.0, abs=1e-5)
  assert fid["prior"]["sign_agreement"] == pytest.approx(1.0)
  rho = lambda m: m["interventional_rank_correlation"]["mean"]
  assert abs(rho(ref["random"])) < 0.1
  # α shuffled keeps |y_k|, which here carries part of |Δ_k| = |v_k y_k|: between chance and 1.
  assert 0.1 < rho(ref["shuffled_alpha"]) < rho(fid["baseline"]) < 1.0
  assert fid["prior_minus_baseline"]["significant"] and fid["prior_minus_baseline"]["mean"] > 0
  assert fid["prior"]["deletion_area"] < ref["random"]["deletion_area"]
  assert arrays["prior/deletion_curve"].shape == (b, len(counts))
  assert arrays["reference/random/contrib"].shape == (b, n)


def test_filter_deletion_and_deletion_curve_on_a_real_performer_head():
  from xplain_jax import models
  perf = models.get_performer("tiny_vgg", num_outputs=1, interpretable=True, top_channels=6,
                              fc_features=16)
  images = jnp.asarray(np.random.default_rng(10).normal(size=(3, 32, 32, 3)), jnp.float32)
  variables = perf.init(jax.random.PRNGKey(0), images)
  x = perf.apply(variables, images)[1]["top_conv"]
  head = lambda x: perf.apply(variables, x, method=perf.head)[0][:, 0]
  delta = np.asarray(jax.jit(lambda x: fidelity.filter_deletion_effects(head, x))(x))
  y = np.asarray(head(x))
  for k in range(x.shape[-1]):
    zeroed = np.asarray(x).copy()
    zeroed[..., k] = 0.0
    np.testing.assert_allclose(delta[:, k], y - np.asarray(head(zeroed)), rtol=1e-4, atol=1e-5)
  order = fidelity.order_by(jnp.asarray(delta))
  curve = np.asarray(fidelity.deletion_curve(head, x, order))
  np.testing.assert_allclose(curve[:, 0], y, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(curve[:, 1], y - np.take_along_axis(delta, np.asarray(order), 1)[:, 0],
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(curve[:, -1], np.asarray(head(jnp.zeros_like(x))), rtol=1e-5,
                             atol=1e-6)
