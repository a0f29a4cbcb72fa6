"""Tests for xplain_jax.core.losses."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.core import losses


# Jitted once per (shape, kind): much faster on CPU than op-by-op dispatch.
_prior_loss = jax.jit(losses.prior_loss, static_argnames=("kind", "eps"))
_prior_loss_grad = jax.jit(jax.value_and_grad(losses.prior_loss),
                           static_argnames=("kind", "eps"))


def _positive(rng, shape):
  return jnp.asarray(rng.uniform(0.1, 2.0, size=shape), jnp.float32)


# ------------------------------------------------------------ distillation


def test_distillation_loss_hand_values_and_mask():
  y = jnp.array([1.0, 2.0, 3.0, 100.0])
  y_hat = jnp.array([0.0, 2.0, 5.0, -100.0])
  # (1 + 0 + 4 + 40000) / 4
  np.testing.assert_allclose(losses.distillation_loss(y, y_hat), 40005 / 4)
  mask = jnp.array([True, True, True, False])
  np.testing.assert_allclose(losses.distillation_loss(y, y_hat, mask), 5 / 3)
  assert float(losses.distillation_loss(y, y_hat, jnp.zeros(4, bool))) == 0.0


def test_distillation_loss_shape_errors():
  with pytest.raises(ValueError, match=r"y has shape \(4,\) but y_hat has shape \(4, 1\)"):
    losses.distillation_loss(jnp.zeros(4), jnp.zeros((4, 1)))
  with pytest.raises(ValueError, match=r"mask has shape \(3,\); expected \(4,\)"):
    losses.distillation_loss(jnp.zeros(4), jnp.zeros(4), jnp.ones(3, bool))


# ------------------------------------------------------------ prior loss


def test_cross_entropy_hand_value():
  # p = (1/4, 3/4), q = (1/2, 1/2): -Σ p log q = ln 2.
  loss = _prior_loss(jnp.array([[1.0, 1.0]]), jnp.array([[1.0, 3.0]]))
  np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-6)


def test_mse_hand_value():
  loss = _prior_loss(jnp.array([[2.0, 0.0]]), jnp.array([[0.0, 5.0]]),
                           kind="mse")
  np.testing.assert_allclose(loss, 2.0, rtol=1e-6)


def test_mixed_sign_rows_against_numpy():
  # Signed α and w: the norms are of |·| (L1 for cross-entropy, L2 for MSE).
  alpha = np.array([[1.0, -2.0, 0.5], [-1.0, 3.0, -0.5]], np.float32)
  w = np.array([[-0.5, 1.0, 2.0], [2.0, -1.0, 1.0]], np.float32)
  a64, w64 = alpha.astype(np.float64), w.astype(np.float64)
  unit2 = lambda m: m / np.linalg.norm(m, axis=-1, keepdims=True)
  mse = np.mean(((unit2(a64) - unit2(w64)) ** 2).sum(-1))
  np.testing.assert_allclose(_prior_loss(alpha, w, kind="mse"), mse, rtol=1e-5)
  p = w64 / np.abs(w64).sum(-1, keepdims=True)
  q = np.maximum(a64 / np.abs(a64).sum(-1, keepdims=True), 1e-12)
  ce = np.mean(-(p * np.log(q)).sum(-1))
  np.testing.assert_allclose(_prior_loss(alpha, w, kind="cross_entropy"), ce, rtol=1e-5)


def test_cross_entropy_minimised_at_alpha_proportional_to_w():
  rng = np.random.default_rng(0)
  n = 6
  w = _positive(rng, (1, n))
  per_alpha = jax.jit(jax.vmap(lambda a: losses.prior_loss(a[None], w)))
  best = per_alpha(3.0 * w)  # [1] (a batch of one alpha)
  p = np.asarray(w[0]) / np.sum(np.asarray(w[0]))
  np.testing.assert_allclose(best[0], -np.sum(p * np.log(p)), rtol=1e-5)
  others = per_alpha(_positive(rng, (200, n)))
  assert np.all(np.asarray(others) > float(best[0]))


def test_cross_entropy_gradient_vanishes_at_alpha_proportional_to_w():
  rng = np.random.default_rng(1)
  w = _positive(rng, (3, 5))
  grad = _prior_loss_grad(0.7 * w, w)[1]
  # Along the simplex directions (zero-sum changes of α) ...
  tangent = grad - jnp.mean(grad, axis=-1, keepdims=True)
  np.testing.assert_allclose(tangent, 0.0, atol=1e-5)
  # ... and, the loss being scale invariant in α, along α as well.
  np.testing.assert_allclose(grad, 0.0, atol=1e-5)
  # Away from the optimum the tangent gradient is not zero.
  grad_off = _prior_loss_grad(w[:, ::-1], w)[1]
  off = grad_off - jnp.mean(grad_off, axis=-1, keepdims=True)
  assert float(jnp.max(jnp.abs(off))) > 1e-2


def test_mse_zero_at_positive_multiples_only():
  rng = np.random.default_rng(2)
  w = jnp.asarray(rng.normal(size=(4, 7)), jnp.float32)
  for c in (0.5, 3.0, 1e-30, 1e20):  # tiny/huge scales must not under/overflow
    np.testing.assert_allclose(_prior_loss(c * w, w, kind="mse"), 0.0,
                               atol=1e-6)
  # α = -w points the opposite way: ‖-u - u‖² = 4.
  np.testing.assert_allclose(_prior_loss(-w, w, kind="mse"), 4.0,
                             rtol=1e-6)


@pytest.mark.parametrize("kind", ["cross_entropy", "mse"])
def test_zero_prior_rows_are_excluded_from_mean(kind):
  rng = np.random.default_rng(3)
  alpha = _positive(rng, (4, 5))
  w = _positive(rng, (4, 5)).at[2].set(0.0)
  with_zero_row = _prior_loss(alpha, w, kind=kind)
  keep = np.array([0, 1, 3])
  without = _prior_loss(alpha[keep], w[keep], kind=kind)
  np.testing.assert_allclose(with_zero_row, without, rtol=1e-6)
  # Every row zero: nothing to learn from, loss 0.
  assert float(_prior_loss(alpha, jnp.zeros_like(w), kind=kind)) == 0.0


@pytest.mark.parametrize("kind", ["cross_entropy", "mse"])
def test_mask_excludes_padded_rows(kind):
  rng = np.random.default_rng(4)
  alpha = _positive(rng, (5, 3))
  w = _positive(rng, (5, 3))
  mask = jnp.array([True, False, True, True, False])
  masked = _prior_loss(alpha, w, kind=kind, mask=mask)
  idx = np.flatnonzero(np.asarray(mask))
  np.testing.assert_allclose(masked, _prior_loss(alpha[idx], w[idx], kind=kind),
                             rtol=1e-6)
  assert float(_prior_loss(alpha, w, kind=kind,
                                 mask=jnp.zeros(5, bool))) == 0.0


@pytest.mark.parametrize("kind", ["cross_entropy", "mse"])
def test_zero_alpha_and_zero_w_are_finite(kind):
  w = jnp.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 1.0]])
  alpha = jnp.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 1.0, 2.0]])
  for a, ww in ((alpha, w), (jnp.zeros_like(w), jnp.zeros_like(w)),
                (jnp.zeros_like(w), w)):
    value, grad = _prior_loss_grad(a, ww, kind=kind)
    assert np.isfinite(float(value)), (a, ww)
    assert np.all(np.isfinite(np.asarray(grad))), (a, ww)


def test_cross_entropy_zero_alpha_costs_minus_log_eps():
  eps = 1e-6
  loss = _prior_loss(jnp.zeros((1, 3)), jnp.array([[1.0, 1.0, 2.0]]),
                           eps=eps)
  np.testing.assert_allclose(loss, -np.log(eps), rtol=1e-5)


def test_prior_loss_errors():
  with pytest.raises(
      ValueError,
      match=r"alpha has shape \(8, 39\) but w has shape \(8, 40\); both must be \[B, n\]"):
    losses.prior_loss(jnp.zeros((8, 39)), jnp.zeros((8, 40)))
  with pytest.raises(ValueError, match=r"unknown kind 'l1'.*'cross_entropy', 'mse'"):
    losses.prior_loss(jnp.ones((2, 3)), jnp.ones((2, 3)), kind="l1")
  with pytest.raises(ValueError, match=r"mask has shape \(3,\); expected \(2,\)"):
    losses.prior_loss(jnp.ones((2, 3)), jnp.ones((2, 3)), mask=jnp.ones(3, bool))


def test_prior_loss_jit():
  rng = np.random.default_rng(5)
  alpha, w = _positive(rng, (3, 4)), _positive(rng, (3, 4))
  for kind in ("cross_entropy", "mse"):
    eager = losses.prior_loss(alpha, w, kind)
    jitted = jax.jit(losses.prior_loss, static_argnums=2)(alpha, w, kind)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)


# ------------------------------------------------------------ prior weight


def test_prior_weight_values_and_jit():
  for t, expected in ((1, 10.0), (4, 5.0), (9, 10.0 / 3)):
    np.testing.assert_allclose(losses.prior_weight(t, 10.0), expected, rtol=1e-6)
  jitted = jax.jit(losses.prior_weight)(jnp.array(4), jnp.array(0.2))
  np.testing.assert_allclose(jitted, 0.1, rtol=1e-6)
  np.testing.assert_allclose(losses.prior_weight(jnp.array([1, 4, 9]), 3.0),
                             [3.0, 1.5, 1.0], rtol=1e-6)


def test_prior_weight_errors():
  with pytest.raises(ValueError, match=r"t = 0 must be >= 1"):
    losses.prior_weight(0, 1.0)
  with pytest.raises(ValueError, match=r"beta = -0.5 must be >= 0"):
    losses.prior_weight(1, -0.5)


def test_docstring_examples_run():
  result = doctest.testmod(losses, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("alpha, w, name", [
    ([[0.5, -0.2]], [[1.0, 2.0]], "alpha"),
    ([[0.5, 0.2]], [[1.0, -2.0]], "w"),
])
def test_cross_entropy_prior_rejects_negative_inputs(alpha, w, name):
  with pytest.raises(ValueError, match=f"needs {name} >= 0"):
    losses.prior_loss(jnp.asarray(alpha), jnp.asarray(w), kind="cross_entropy")
  # The signed form accepts the same arrays.
  assert np.isfinite(float(losses.prior_loss(jnp.asarray(alpha), jnp.asarray(w), kind="mse")))
