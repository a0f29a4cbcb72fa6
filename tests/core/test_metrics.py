"""Tests for xplain_jax.core.metrics on hand-worked cases and reference routines."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from xplain_jax.core import metrics

_threshold_accuracy = jax.jit(metrics.threshold_accuracy)


# ------------------------------------------------------------ entropy


def test_contribution_entropy_corner_and_hand_cases():
  alpha = jnp.array([[1.0, 1.0, 1.0, 1.0],    # uniform |α y| -> ln 4
                     [0.0, 2.0, 0.0, 0.0],    # one concept -> 0
                     [0.0, 0.0, 0.0, 0.0],    # nothing -> 0
                     [1.0, 1.0, 2.0, 5.0]])
  y_i = jnp.array([[2.0, -2.0, 2.0, -2.0],
                   [1.0, -3.0, 1.0, 1.0],
                   [1.0, 2.0, 3.0, 4.0],
                   [1.0, -1.0, 1.0, 0.0]])     # |α y| = 1, 1, 2, 0
  h = metrics.contribution_entropy(alpha, y_i)
  hand = -(0.5 * np.log(0.25) + 0.5 * np.log(0.5))
  np.testing.assert_allclose(h, [np.log(4.0), 0.0, 0.0, hand], rtol=1e-6,
                             atol=1e-7)


def test_contribution_entropy_bounded_and_finite_gradient():
  rng = np.random.default_rng(0)
  alpha = jnp.asarray(rng.normal(size=(16, 10)), jnp.float32)
  y_i = jnp.asarray(rng.normal(size=(16, 10)), jnp.float32)
  h = metrics.contribution_entropy(alpha, y_i)
  assert np.all((np.asarray(h) >= 0) & (np.asarray(h) <= np.log(10) + 1e-6))
  grad_fn = jax.jit(jax.grad(
      lambda a: jnp.sum(metrics.contribution_entropy(a, y_i))))
  grad = grad_fn(alpha.at[0].set(0.0).at[1, 3].set(0.0))
  assert np.all(np.isfinite(np.asarray(grad)))


# ------------------------------------------------------------ deviation


def test_relative_deviation_hand_cases():
  y = jnp.array([-1.0, 3.0, 1.0])          # range 4
  y_hat = jnp.array([0.0, 1.0, 1.0])
  np.testing.assert_allclose(metrics.relative_deviation(y, y_hat),
                             [0.25, 0.5, 0.0])
  # Constant y: divide by 1, never NaN.
  d = metrics.relative_deviation(jnp.full((3,), 2.0), jnp.array([2.0, 2.5, 0.0]))
  np.testing.assert_allclose(d, [0.0, 0.5, 2.0])


# ------------------------------------------------------------ accuracy


def _brute_force_accuracy(scores, labels):
  """Best accuracy over thresholds at every score and below the minimum."""
  taus = np.concatenate([[scores.min() - 1.0], np.unique(scores)])
  return max(np.mean((scores > t) == labels) for t in taus)


def _accuracy_at(scores, labels, tau):
  return np.mean((np.asarray(scores) > float(tau)) == np.asarray(labels))


def test_threshold_accuracy_separable():
  scores = jnp.array([0.9, -1.0, 0.2, 3.0, 0.1])
  labels = jnp.array([1, 0, 1, 1, 0])
  acc, tau = _threshold_accuracy(scores, labels)
  assert float(acc) == 1.0
  np.testing.assert_allclose(tau, 0.15, rtol=1e-6)  # midpoint of 0.1 and 0.2


def test_threshold_accuracy_ties_are_not_split():
  # Sorted (label): 0(0) 1(1) 1(0) 1(1) 2(0). Cuts: all positive 2/5; >0 3/5;
  # >1 2/5; >2 3/5. A cut inside the three 1's (up to 4/5) must not happen.
  scores = jnp.array([1.0, 0.0, 1.0, 2.0, 1.0])
  labels = jnp.array([1, 0, 0, 0, 1])
  acc, tau = _threshold_accuracy(scores, labels)
  np.testing.assert_allclose(acc, 0.6)
  np.testing.assert_allclose(tau, 0.5)  # the lowest of the equally good cuts
  np.testing.assert_allclose(_accuracy_at(scores, labels, tau), 0.6)


def test_threshold_accuracy_all_one_and_all_zero_labels():
  scores = jnp.array([0.3, -2.0, 5.0, 0.3])
  acc, tau = _threshold_accuracy(scores, jnp.ones(4, jnp.int32))
  assert float(acc) == 1.0 and float(tau) < -2.0
  acc, tau = _threshold_accuracy(scores, jnp.zeros(4, bool))
  assert float(acc) == 1.0 and float(tau) >= 5.0
  acc, tau = _threshold_accuracy(jnp.array([7.0]), jnp.array([1.0]))
  assert float(acc) == 1.0 and float(tau) < 7.0


def test_threshold_accuracy_matches_brute_force_with_ties():
  rng = np.random.default_rng(1)
  for trial in range(5):
    scores = rng.integers(0, 8, size=40).astype(np.float32) / 4
    labels = (rng.uniform(size=40) < 0.3 + 0.1 * scores).astype(np.int32)
    acc, tau = _threshold_accuracy(jnp.asarray(scores), jnp.asarray(labels))
    expected = _brute_force_accuracy(scores, labels)
    np.testing.assert_allclose(acc, expected, err_msg=f"trial {trial}")
    np.testing.assert_allclose(_accuracy_at(scores, labels, tau), expected)


def test_threshold_accuracy_adjacent_floats_stay_exact():
  lo = np.float32(1.0)
  hi = np.nextafter(lo, np.float32(2.0))
  scores = jnp.array([lo, hi])
  acc, tau = _threshold_accuracy(scores, jnp.array([0, 1]))
  assert float(acc) == 1.0
  assert _accuracy_at(scores, [0, 1], tau) == 1.0


# ------------------------------------------------------------ rank correlation


def test_rank_correlation_matches_scipy_with_ties():
  rng = np.random.default_rng(2)
  fn = jax.jit(metrics.rank_correlation)
  for _ in range(5):
    a = rng.integers(0, 5, size=20).astype(np.float32)
    b = (a + rng.integers(-3, 4, size=20)).astype(np.float32)
    expected = stats.spearmanr(a, b).statistic
    np.testing.assert_allclose(fn(jnp.asarray(a), jnp.asarray(b)), expected,
                               rtol=1e-5, atol=1e-6)
  a = rng.normal(size=20).astype(np.float32)
  b = rng.normal(size=20).astype(np.float32)
  np.testing.assert_allclose(fn(jnp.asarray(a), jnp.asarray(b)),
                             stats.spearmanr(a, b).statistic, rtol=1e-5, atol=1e-6)


def test_rank_correlation_constant_input_is_zero():
  r = metrics.rank_correlation(jnp.ones(4), jnp.arange(4.0))
  assert float(r) == 0.0


# ------------------------------------------------------------ mean |contribution|


def test_mean_abs_contribution_hand_case():
  alpha = jnp.array([[1.0, -2.0, 0.0], [3.0, 1.0, 1.0]])
  y_i = jnp.array([[2.0, 1.0, 5.0], [-1.0, 0.0, 1.0]])
  # |α y| rows: [2, 2, 0] and [3, 0, 1].
  np.testing.assert_allclose(metrics.mean_abs_contribution(alpha, y_i),
                             [2.5, 1.0, 0.5])


# ------------------------------------------------------------ shape errors


def test_shape_errors_name_expected_shapes():
  msg = (r"alpha has shape \(4, 3\) but y_i has shape \(4, 2\); "
         r"both must be \[B, n\]")
  with pytest.raises(ValueError, match=msg):
    metrics.contribution_entropy(jnp.ones((4, 3)), jnp.ones((4, 2)))
  with pytest.raises(ValueError, match=r"y has shape \(3,\) but y_hat has shape \(4,\)"):
    metrics.relative_deviation(jnp.ones(3), jnp.ones(4))
  with pytest.raises(ValueError, match=r"scores has shape \(3, 1\).*\[N\]"):
    metrics.threshold_accuracy(jnp.ones((3, 1)), jnp.ones((3, 1)))
  with pytest.raises(ValueError, match=r"N >= 1"):
    metrics.threshold_accuracy(jnp.ones(0), jnp.ones(0))
  with pytest.raises(ValueError, match=r"n >= 2"):
    metrics.rank_correlation(jnp.ones(1), jnp.ones(1))
  with pytest.raises(ValueError, match=r"\[B, n\]"):
    metrics.mean_abs_contribution(jnp.ones(3), jnp.ones(3))


def test_docstring_examples_run():
  result = doctest.testmod(metrics, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
