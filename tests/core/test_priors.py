"""Tests for xplain_jax.core.priors against heads with known Jacobians."""

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.core import priors


def _rng(seed):
  return np.random.default_rng(seed)


# ---------------------------------------------------------------- Case 1


def test_filter_prior_linear_head_is_v_summed_over_positions():
  v = _rng(0).normal(size=(4, 5, 3)).astype(np.float32)
  head = lambda x: jnp.einsum("bhwc,hwc->b", x, v)
  x = jnp.asarray(_rng(1).normal(size=(2, 4, 5, 3)), jnp.float32)
  w = priors.filter_prior(head, x)
  expected = np.broadcast_to(v.sum(axis=(0, 1)), (2, 3))
  np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-5)


def test_filter_prior_clip():
  v = np.zeros((2, 2, 3), np.float32)
  v[..., 0], v[..., 1], v[..., 2] = 1.0, -2.0, 0.5  # sums 4, -8, 2
  head = lambda x: jnp.einsum("bhwc,hwc->b", x, v)
  x = jnp.ones((1, 2, 2, 3))
  np.testing.assert_allclose(priors.filter_prior(head, x), [[4.0, -8.0, 2.0]])
  np.testing.assert_allclose(priors.filter_prior(head, x, clip=True),
                             [[4.0, 0.0, 2.0]])


def _nonlinear_head(params, x):
  """A small conv-free head: per-position MLP, spatial mean, then a score."""
  w1, w2 = params
  h = jnp.tanh(jnp.einsum("bhwc,cd->bhwd", x, w1))
  pooled = jnp.mean(h ** 2 + h, axis=(1, 2))
  return jnp.sin(pooled @ w2)


def test_filter_prior_matches_central_finite_differences():
  with jax.enable_x64(True):
    rng = _rng(2)
    params = (jnp.asarray(rng.normal(size=(3, 6))),
              jnp.asarray(rng.normal(size=(6,))))
    head = functools.partial(_nonlinear_head, params)
    x = jnp.asarray(rng.normal(size=(2, 3, 4, 3)))
    w = priors.filter_prior(head, x)
    assert w.dtype == jnp.float64
    # Σ_hw ∂y/∂x[h,w,i] is the derivative along "add ε to channel i everywhere".
    eps = 1e-5
    fd = np.zeros((2, 3))
    for i in range(3):
      e = np.zeros(x.shape)
      e[..., i] = eps
      fd[:, i] = (np.asarray(head(x + e)) - np.asarray(head(x - e))) / (2 * eps)
    np.testing.assert_allclose(w, fd, rtol=1e-6, atol=1e-8)


def test_filter_prior_examples_independent_and_jit():
  rng = _rng(3)
  params = (jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            jnp.asarray(rng.normal(size=(4,)), jnp.float32))
  head = functools.partial(_nonlinear_head, params)
  x = jnp.asarray(rng.normal(size=(3, 2, 2, 3)), jnp.float32)
  w = jax.jit(priors.filter_prior, static_argnums=(0, 2))(head, x, False)
  for b in range(3):
    np.testing.assert_allclose(w[b], priors.filter_prior(head, x[b:b + 1])[0],
                               rtol=1e-5, atol=1e-6)


def test_filter_prior_shape_errors():
  with pytest.raises(ValueError, match=r"x has shape \(2, 3\).*\[B, H, W, n\]"):
    priors.filter_prior(lambda x: x.sum(-1), jnp.zeros((2, 3)))
  head = lambda x: jnp.sum(x, axis=(1, 2, 3))[:, None]  # [B, 1], not [B]
  with pytest.raises(ValueError, match=r"head_fn returned shape \(2, 1\).*\(2,\)"):
    priors.filter_prior(head, jnp.zeros((2, 2, 2, 3)))


# ---------------------------------------------------------------- Case 2


def test_shared_feature_prior_linear_closed_form():
  rng = _rng(4)
  a = rng.normal(size=(7,)).astype(np.float32)
  c = rng.normal(size=(5, 7)).astype(np.float32)
  x = jnp.asarray(rng.normal(size=(3, 7)), jnp.float32)
  expected = (c @ a) / np.sum(c * c, axis=1)
  target_fn, concepts_fn = lambda z: z @ a, lambda z: z @ c.T
  for method in ("jvp", "jacrev"):
    w = priors.shared_feature_prior(target_fn, concepts_fn, x, method=method)
    w_jit = _prior(target_fn, concepts_fn, method)(x)
    assert w.shape == w_jit.shape == (3, 5)
    for result in (w, w_jit):
      np.testing.assert_allclose(result, np.broadcast_to(expected, (3, 5)),
                                 rtol=1e-5, atol=1e-5)


def _mlp_heads(rng, d, n, dtype):
  """A shared hidden layer with a target head and an n-concept head."""
  w1 = jnp.asarray(rng.normal(size=(d, 8)) / np.sqrt(d), dtype)
  u = jnp.asarray(rng.normal(size=(8,)), dtype)
  v = jnp.asarray(rng.normal(size=(8, n)), dtype)
  hidden = lambda z: jnp.tanh(z @ w1)
  target_fn = lambda z: jnp.sin(hidden(z) @ u) + jnp.sum(z ** 2, axis=-1)
  concepts_fn = lambda z: jax.nn.softplus(hidden(z) @ v) + z[:, :1] ** 3
  return jax.jit(target_fn), jax.jit(concepts_fn)


def _prior(target_fn, concepts_fn, method):
  """A jitted prior (fast on CPU: one compile instead of many dispatches)."""
  return jax.jit(functools.partial(priors.shared_feature_prior, target_fn,
                                   concepts_fn, method=method))


def test_shared_feature_prior_jvp_and_jacrev_agree_on_mlp():
  target_fn, concepts_fn = _mlp_heads(_rng(5), d=6, n=4, dtype=jnp.float32)
  x = jnp.asarray(_rng(6).normal(size=(5, 6)), jnp.float32)
  w_jvp = _prior(target_fn, concepts_fn, "jvp")(x)
  w_rev = _prior(target_fn, concepts_fn, "jacrev")(x)
  np.testing.assert_allclose(w_jvp, w_rev, rtol=1e-4, atol=1e-5)


def test_shared_feature_prior_matches_finite_differences():
  with jax.enable_x64(True):
    d, n = 5, 3
    target_fn, concepts_fn = _mlp_heads(_rng(7), d=d, n=n, dtype=jnp.float64)
    x = np.asarray(_rng(8).normal(size=(2, d)))
    eps = 1e-6
    gy = np.zeros((2, d))
    gc = np.zeros((2, n, d))
    for k in range(d):
      e = np.zeros((2, d))
      e[:, k] = eps
      gy[:, k] = (np.asarray(target_fn(x + e)) - np.asarray(target_fn(x - e))) / (2 * eps)
      gc[:, :, k] = (np.asarray(concepts_fn(x + e)) -
                     np.asarray(concepts_fn(x - e))) / (2 * eps)
    expected = np.einsum("bd,bnd->bn", gy, gc) / np.sum(gc ** 2, axis=-1)
    for method in ("jvp", "jacrev"):
      w = _prior(target_fn, concepts_fn, method)(jnp.asarray(x))
      np.testing.assert_allclose(w, expected, rtol=1e-6, atol=1e-8)


def test_shared_feature_prior_zero_gradient_concept_gives_zero():
  a = jnp.array([1.0, -2.0, 0.5])
  c = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
  # Concept 1 is constant in x (zero gradient); concept 2 is a dead ReLU.
  concepts_fn = lambda z: jnp.stack(
      [z @ c[0], 0 * z[:, 0] + 3.0, jax.nn.relu(z @ c[2] - 100.0)], axis=-1)
  target_fn = lambda z: z @ a
  x = jnp.ones((2, 3))
  for method in ("jvp", "jacrev"):
    prior = _prior(target_fn, concepts_fn, method)
    w = prior(x)
    assert np.all(np.isfinite(w))
    np.testing.assert_allclose(w, [[1.0, 0.0, 0.0]] * 2)
    grad = jax.jit(jax.grad(lambda z: jnp.sum(prior(z))))(x)
    assert np.all(np.isfinite(grad))


def test_shared_feature_prior_batch_independence():
  target_fn, concepts_fn = _mlp_heads(_rng(9), d=4, n=3, dtype=jnp.float32)
  x = jnp.asarray(_rng(10).normal(size=(3, 4)), jnp.float32)
  for method in ("jvp", "jacrev"):
    prior = _prior(target_fn, concepts_fn, method)
    np.testing.assert_allclose(prior(x)[1], prior(x[1:2])[0], rtol=1e-4,
                               atol=1e-5)


def test_shared_feature_prior_errors():
  x = jnp.zeros((4, 6))
  good_t = lambda z: z.sum(-1)
  good_c = lambda z: z[:, :3]
  with pytest.raises(ValueError, match=r"unknown method 'jac'.*'jvp', 'jacrev'"):
    priors.shared_feature_prior(good_t, good_c, x, method="jac")
  with pytest.raises(ValueError, match=r"x has shape \(4, 6, 1\).*\[B, D\]"):
    priors.shared_feature_prior(good_t, good_c, x[..., None])
  with pytest.raises(ValueError, match=r"concepts_fn returned shape \(4,\).*\(4, n\)"):
    priors.shared_feature_prior(good_t, lambda z: z.sum(-1), x)
  with pytest.raises(ValueError, match=r"target_fn returned shape \(4, 1\).*\(4,\)"):
    priors.shared_feature_prior(lambda z: z[:, :1], good_c, x)


def test_docstring_examples_run():
  result = doctest.testmod(priors, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
