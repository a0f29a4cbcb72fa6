"""Scores at their edges and the peers put together (``fidelity.compare``), against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.core import concepts
from xplain_jax import fidelity
from xplain_jax.errors import DataError
from xplain_jax.fidelity import compare as fc
from xplain_jax.fidelity import sanity


def test_sign_agreement_skips_effects_exactly_at_the_threshold():
  contrib = np.array([[1.0, 1.0, -1.0, 1.0]])
  delta = np.array([[0.25, -0.25, -0.5, 0.2500001]])   # 0.25 is exact in binary
  share, pairs = fidelity.sign_agreement(contrib, delta, threshold=0.25)
  assert pairs == 2 and share == 1.0                    # (0,2) agree, (0,3) agree


def test_concept_accuracy_reads_a_logit_of_exactly_zero_as_absent():
  logits = np.zeros((2, 1))
  out = sanity.concept_accuracy(logits, np.array([[1.0], [0.0]]), ("a",))
  assert out["per_concept"] == {"a": 50.0}               # present: wrong; absent: right


def test_paired_difference_interval_pairs_the_images():
  rng = np.random.default_rng(0)
  base = rng.normal(size=400) * 2.0                      # large spread between images
  a, b = base + 0.05 + rng.normal(size=400) * 0.01, base
  paired = fidelity.paired_difference_interval(a, b, num_resamples=1000)
  # Unpaired: the two means resampled independently (what pairing must not do).
  draw = np.random.default_rng(1).integers(0, 400, size=(2, 1000, 400))
  unpaired = a[draw[0]].mean(1) - b[draw[1]].mean(1)
  low, high = np.percentile(unpaired, [2.5, 97.5])
  assert low < 0 < high                                   # unpaired: no measurable difference
  assert paired["significant"] and paired["low"] > 0.04 and paired["high"] < 0.06
  assert (paired["high"] - paired["low"]) < 0.05 * (high - low)


def _case2(seed=0, num=60, n=5, train=400):
  rng = np.random.default_rng(seed)
  v = rng.normal(size=n) * np.linspace(2.0, 0.3, n)
  s = lambda m: np.where(rng.random((m, n)) < 0.5, 1.0, -1.0) * rng.uniform(0.5, 1.5, (m, n))
  y_i, train_y_i = s(num), s(train)
  noise = lambda m: rng.normal(size=m) * 0.2
  return (v, y_i.astype(np.float32), (y_i @ v + 0.3 + noise(num)).astype(np.float32),
          train_y_i.astype(np.float32), (train_y_i @ v + 0.3 + noise(train)).astype(np.float32))


def test_prior_weights_reference_multiplies_w_by_the_concept_values():
  v, y_i, y, _, _ = _case2()
  w = np.abs(np.random.default_rng(3).normal(size=y_i.shape)).astype(np.float32) + 0.1
  delta = w * y_i                                         # effects exactly w_k y_k
  alphas = {"prior": np.ones_like(y_i)}
  _, ref, arrays = fc.evaluate_fidelity(alphas, y_i, w, delta, key=jax.random.PRNGKey(0),
                                        sign_threshold=0.0, num_resamples=50)
  np.testing.assert_allclose(arrays["reference/prior_weights/contrib"], w * y_i, rtol=1e-6)
  assert ref["prior_weights"]["interventional_rank_correlation"]["mean"] == pytest.approx(1.0)
  w_alone = np.asarray(fidelity.interventional_rank_correlation(w, delta)).mean()
  assert w_alone < 0.9                                    # dropping y_i would be caught


def test_explanation_fidelity_case2_scores_least_squares_and_the_planted_rule():
  v, y_i, y, train_y_i, train_y = _case2()
  delta = (v * y_i).astype(np.float32)                    # a linear performer's effects
  rng = np.random.default_rng(4)
  alphas = {"baseline": np.broadcast_to(v, y_i.shape) + rng.normal(0, 1.0, y_i.shape),
            "prior": np.broadcast_to(v, y_i.shape) + rng.normal(0, 0.3, y_i.shape)}
  biases = {"baseline": 0.1, "prior": 0.2}
  cost = {"forward_passes": 5, "backward_passes": 0, "explainer_passes": 0, "renders": 5,
          "seconds_per_image": 0.01}
  fid, ref, arrays = fc.explanation_fidelity(
      alphas, biases, y_i, y, np.ones_like(y_i), train_y_i=train_y_i, train_y=train_y,
      key=jax.random.PRNGKey(0), sign_threshold=0.05, num_resamples=100, ig_steps=4,
      case="shared_feature", delta=delta, delta_cost=cost, gt_contrib=delta)
  theta = np.linalg.lstsq(np.c_[train_y_i, np.ones(len(train_y))].astype(np.float64),
                          train_y.astype(np.float64), rcond=None)[0]
  np.testing.assert_allclose(arrays["least_squares/alpha"], theta[:-1], rtol=1e-4, atol=1e-5)
  contrib = theta[:-1] * y_i
  rho = np.asarray(fidelity.interventional_rank_correlation(contrib, delta))
  ls = ref["least_squares"]
  assert ls["interventional_rank_correlation"]["mean"] == pytest.approx(rho.mean(), abs=1e-5)
  dev = np.abs(y - (contrib.sum(1) + theta[-1])) / (y.max() - y.min())
  assert ls["relative_deviation"]["mean"] == pytest.approx(dev.mean(), rel=1e-4)
  dev_prior = np.abs(y - ((alphas["prior"] * y_i).sum(1) + 0.2)) / (y.max() - y.min())
  assert fid["prior"]["relative_deviation"]["mean"] == pytest.approx(dev_prior.mean(), rel=1e-4)
  assert ls["cost"]["forward_passes"] == 0 and ls["cost"]["fit_rows"] == len(train_y)
  assert fid["prior"]["cost"]["explainer_passes"] == 1 and ref["delta"]["cost"] == cost
  assert ref["planted"]["interventional_rank_correlation"]["mean"] == pytest.approx(1.0)
  assert "least_squares_nonnegative" not in ref and "gradient_x_input" not in ref
  rho_prior = np.asarray(fidelity.interventional_rank_correlation(alphas["prior"] * y_i, delta))
  expected = fidelity.paired_difference_interval(rho_prior, rho, num_resamples=100)
  assert fid["prior_minus_least_squares"] == expected
  assert "prior_minus_gradient_x_input" not in fid
  with pytest.raises(DataError, match="needs the measured"):
    fc.explanation_fidelity(alphas, biases, y_i, y, y_i, train_y_i=None, train_y=None,
                            key=jax.random.PRNGKey(0), sign_threshold=0.05, num_resamples=10,
                            ig_steps=4, case="shared_feature")


def test_explanation_fidelity_case1_measures_effects_and_attributions_from_the_head():
  rng = np.random.default_rng(5)
  n = 4
  v = jnp.asarray(rng.normal(size=n), jnp.float32)
  head = lambda x: concepts.filter_concepts(x) @ v + 0.2 * jnp.sum(jnp.tanh(x), (1, 2, 3))
  x = (rng.normal(size=(24, 3, 3, n)) + 0.3).astype(np.float32)
  xt = (rng.normal(size=(100, 3, 3, n)) + 0.3).astype(np.float32)
  y_i, y = np.asarray(concepts.filter_concepts(x)), np.asarray(head(x))
  alphas = {"prior": np.broadcast_to(np.asarray(v), y_i.shape)}
  fid, ref, arrays = fc.explanation_fidelity(
      alphas, {"prior": 0.0}, y_i, y, np.ones_like(y_i),
      train_y_i=np.asarray(concepts.filter_concepts(xt)), train_y=np.asarray(head(xt)),
      key=jax.random.PRNGKey(0), sign_threshold=0.01, num_resamples=50, ig_steps=16,
      case="filter", head_fn=head, x=x, deletion_steps=2, batch_size=10)
  np.testing.assert_allclose(arrays["delta"], fidelity.filter_deletion_effects(head, x),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(arrays["reference/gradient_x_input/contrib"],
                             fidelity.gradient_x_input(head, x), rtol=1e-5, atol=1e-5)
  assert ref["delta"]["cost"]["forward_passes"] == n + 1
  assert ref["integrated_gradients"]["cost"]["backward_passes"] == 16
  assert np.all(arrays["least_squares_nonnegative/alpha"] >= 0)
  for name in ("least_squares", "least_squares_nonnegative", "gradient_x_input",
               "integrated_gradients", "prior_weights", "random"):
    assert "deletion_area" in ref[name], name
  assert {"prior_minus_least_squares", "prior_minus_gradient_x_input"} <= set(fid)
  curve = arrays["prior/deletion_curve"]
  np.testing.assert_allclose(curve[:, 0], y, rtol=1e-5, atol=1e-5)   # padded batches trimmed
  per_variant, reference = fc.files(arrays, alphas, y_i)
  assert set(per_variant["prior"]) == {"delta", "interventional_rank_correlation",
                                       "deletion_curve"}
  assert np.mean(per_variant["prior"]["interventional_rank_correlation"]) == pytest.approx(
      fid["prior"]["interventional_rank_correlation"]["mean"], abs=1e-6)
  gxi_rho = reference["gradient_x_input_interventional_rank_correlation"]
  assert np.mean(gxi_rho) == pytest.approx(
      ref["gradient_x_input"]["interventional_rank_correlation"]["mean"], abs=1e-6)
  for key in ("delta", "deletion_counts", "least_squares_alpha", "least_squares_bias",
              "least_squares_contrib", "random_deletion_curve"):
    assert key in reference, key
  with pytest.raises(DataError, match="needs head_fn"):
    fc.explanation_fidelity(alphas, {"prior": 0.0}, y_i, y, y_i, train_y_i=None, train_y=None,
                            key=jax.random.PRNGKey(0), sign_threshold=0.05, num_resamples=10,
                            ig_steps=4, case="filter")
