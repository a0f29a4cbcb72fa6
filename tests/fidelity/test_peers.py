"""The peers of the explainer against independent references: numpy's least squares, a
brute-force non-negative fit, closed forms of gradient × input and integrated gradients."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax import fidelity
from xplain_jax.errors import DataError
from xplain_jax.fidelity import peers


def _fixture(seed=0, num=300, n=5):
  rng = np.random.default_rng(seed)
  y_i = rng.normal(size=(num, n)) + rng.normal(size=n)
  y = y_i @ rng.normal(size=n) + 0.4 + rng.normal(size=num) * 0.3
  return y_i.astype(np.float32), y.astype(np.float32)


def test_least_squares_alpha_equals_numpy_lstsq_over_row_batches():
  y_i, y = _fixture()
  ref = np.linalg.lstsq(np.c_[y_i, np.ones(len(y))].astype(np.float64), y.astype(np.float64),
                        rcond=None)[0]
  for rows in (7, 64, 10_000):
    alpha, b = peers.least_squares_alpha(y_i, y, rows_per_batch=rows)
    assert alpha.shape == (5,) and alpha.dtype == np.float32 and isinstance(b, float)
    np.testing.assert_allclose(alpha, ref[:5], rtol=1e-5, atol=1e-5)
    assert b == pytest.approx(ref[5], abs=1e-5)
  assert fidelity.least_squares_alpha is peers.least_squares_alpha


def test_least_squares_alpha_collinear_columns_give_the_minimum_norm_solution():
  y_i, y = _fixture(seed=1)
  twin = np.c_[y_i, y_i[:, :1]]  # the last concept always equals the first
  ref = np.linalg.lstsq(np.c_[twin, np.ones(len(y))].astype(np.float64), y.astype(np.float64),
                        rcond=None)[0]
  alpha, b = peers.least_squares_alpha(twin, y, rows_per_batch=50)
  np.testing.assert_allclose(alpha, ref[:-1], rtol=1e-4, atol=1e-4)
  assert alpha[0] == pytest.approx(alpha[-1], rel=1e-4) and b == pytest.approx(ref[-1], abs=1e-4)


def _brute_force_nonnegative(y_i, y):
  """Exact α ≥ 0, free b: the best unconstrained fit over every support whose α is ≥ 0."""
  n = y_i.shape[1]
  best = (np.inf, None)
  for size in range(n + 1):
    for support in itertools.combinations(range(n), size):
      design = np.c_[y_i[:, support], np.ones(len(y))].astype(np.float64)
      theta = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]
      if np.all(theta[:-1] >= 0):
        loss = np.sum((design @ theta - y) ** 2)
        if loss < best[0]:
          alpha = np.zeros(n)
          alpha[list(support)] = theta[:-1]
          best = (loss, (alpha, theta[-1]))
  return best[1]


def test_nonnegative_least_squares_equals_brute_force_with_a_negative_coefficient():
  rng = np.random.default_rng(2)
  y_i = rng.normal(size=(200, 4)) + 1.0
  y = y_i @ np.array([1.5, -2.0, 0.5, 0.8]) - 0.3 + rng.normal(size=200) * 0.1
  free, _ = peers.least_squares_alpha(y_i, y)
  assert free[1] < -1.0   # the unconstrained fit has a clearly negative weight
  alpha, b = peers.least_squares_alpha(y_i, y, nonnegative=True, rows_per_batch=33)
  ref_alpha, ref_b = _brute_force_nonnegative(y_i, y)
  assert np.all(alpha >= 0) and alpha[1] == 0.0
  np.testing.assert_allclose(alpha, ref_alpha, rtol=1e-4, atol=1e-5)
  assert b == pytest.approx(ref_b, abs=1e-4)


def test_least_squares_alpha_refuses_mismatched_rows():
  with pytest.raises(DataError, match="same N rows"):
    peers.least_squares_alpha(np.ones((5, 2)), np.ones(4))


def _linear_head(weights, bias=0.3):
  return lambda x: jnp.sum(x * weights, axis=(1, 2, 3)) + bias


def test_gradient_x_input_and_integrated_gradients_on_a_linear_head_are_w_times_x():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(4, 3, 2, 5)), jnp.float32)
  weights = rng.normal(size=(3, 2, 5)).astype(np.float32)
  closed = np.einsum("bhwk,hwk->bk", np.asarray(x), weights)  # Σ_hw W x per filter
  gxi = np.asarray(peers.gradient_x_input(_linear_head(weights), x))
  np.testing.assert_allclose(gxi, closed, rtol=1e-5, atol=1e-5)
  ig = np.asarray(peers.integrated_gradients(_linear_head(weights), x, steps=3))
  np.testing.assert_allclose(ig, closed, rtol=1e-5, atol=1e-5)  # exact for any steps
  shift = np.asarray(peers.integrated_gradients(_linear_head(weights), x, steps=2,
                                                baseline=jnp.ones_like(x)))
  np.testing.assert_allclose(shift, closed - weights.sum(axis=(0, 1)), rtol=1e-4, atol=1e-4)


def test_integrated_gradients_complete_on_a_nonlinear_head():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(3, 2, 2, 4)), jnp.float32)
  v = jnp.asarray(rng.normal(size=4), jnp.float32)
  head = lambda z: jnp.tanh(z).max(axis=(1, 2)) @ v + jnp.sum(z**2, (1, 2, 3)) * 0.5
  ig = np.asarray(jax.jit(lambda z: peers.integrated_gradients(head, z, steps=256))(x))
  gap = np.asarray(head(x) - head(jnp.zeros_like(x)))
  np.testing.assert_allclose(ig.sum(axis=1), gap, rtol=1e-3, atol=1e-3)
  gxi = np.asarray(peers.gradient_x_input(head, x))
  assert np.max(np.abs(gxi.sum(axis=1) - gap)) > 0.05   # gradient × input is not complete
  # Gradient × input against a finite-difference gradient.
  eps = 1e-3
  for k in range(4):
    step = jnp.zeros_like(x).at[..., k].set(x[..., k])
    fd = (head(x + eps * step) - head(x - eps * step)) / (2 * eps)   # d/dt y(x + t x_k) at 0
    np.testing.assert_allclose(gxi[:, k], np.asarray(fd), rtol=2e-2, atol=2e-2)
