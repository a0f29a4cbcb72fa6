"""Featurizers built from plain callables, checked against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.train import featurizers
from xplain_jax.errors import ConfigError


def test_filter_featurizer_matches_linear_head_closed_form():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(4, 3, 5, 6)), jnp.float32)  # non-square map on purpose
  v = jnp.asarray(rng.normal(size=(3, 5, 6)), jnp.float32)
  head = lambda m: jnp.sum(m * v, axis=(1, 2, 3)) + 0.5
  out = featurizers.filter_featurizer(lambda im: im, head, clip_prior=False)(x)
  np.testing.assert_allclose(out["y"], np.sum(np.asarray(x) * np.asarray(v), (1, 2, 3)) + 0.5,
                             rtol=1e-5)
  np.testing.assert_allclose(out["y_i"], np.asarray(x).sum((1, 2)), rtol=1e-5)
  expected_w = np.broadcast_to(np.asarray(v).sum((0, 1)), (4, 6))
  np.testing.assert_allclose(out["w"], expected_w, rtol=1e-5, atol=1e-6)
  clipped = featurizers.filter_featurizer(lambda im: im, head, clip_prior=True)(x)
  np.testing.assert_allclose(clipped["w"], np.maximum(expected_w, 0), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(out["feat"], x)


def test_shared_feature_featurizer_matches_closed_form_and_flags_constant_prior():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(7, 5)).astype(np.float32)     # D=7 -> K=5 logits, linear head
  h = rng.normal(size=(3, 7)).astype(np.float32)
  feat = np.zeros((3, 2, 2, 4), np.float32)
  f = featurizers.shared_feature_featurizer(lambda im: (feat, im), lambda v: v @ a, target=2,
                                            concepts=[0, 1, 3, 4])
  out = f(jnp.asarray(h))
  cols = [0, 1, 3, 4]
  expected = [(a[:, 2] @ a[:, i]) / (a[:, i] @ a[:, i]) for i in cols]
  np.testing.assert_allclose(out["w"], np.tile(expected, (3, 1)), rtol=1e-4)
  np.testing.assert_allclose(out["y"], h @ a[:, 2], rtol=1e-5)
  np.testing.assert_allclose(out["y_i"], h @ a[:, cols], rtol=1e-5)
  assert not featurizers.prior_varies(np.asarray(out["w"]))
  nonlinear = featurizers.shared_feature_featurizer(lambda im: (feat, im),
                                                    lambda v: jnp.tanh(v) @ a, target=2,
                                                    concepts=cols)
  assert featurizers.prior_varies(np.asarray(nonlinear(jnp.asarray(h))["w"]))


def test_featurizers_are_jittable():
  x = jnp.ones((2, 3, 3, 4))
  f = featurizers.filter_featurizer(lambda im: im, lambda m: jnp.sum(m ** 2, axis=(1, 2, 3)))
  out = jax.jit(f)(x)
  np.testing.assert_allclose(out["w"], np.full((2, 4), 18.0), rtol=1e-6)  # Σ_hw 2·x = 2·9


@pytest.mark.parametrize("kwargs, match", [
    (dict(target=1, concepts=[0, 1]), "also listed"),
    (dict(target=1, concepts=[]), "non-empty"),
    (dict(target=1, concepts=[0, 0]), "repeat"),
])
def test_shared_feature_featurizer_rejects_bad_indices(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    featurizers.shared_feature_featurizer(lambda im: im, lambda v: v, **kwargs)


def test_head_with_wrong_output_shape_is_named():
  f = featurizers.filter_featurizer(lambda im: im, lambda m: m.sum(axis=(1, 2)))  # [B,n]
  with pytest.raises(ConfigError, match=r"head\(x\) returned shape \(2, 4\)"):
    f(jnp.ones((2, 3, 3, 4)))
  g = featurizers.shared_feature_featurizer(lambda im: (im, im.reshape(2, -1)),
                                            lambda v: v[:, :3], target=5, concepts=[0])
  with pytest.raises(ConfigError, match="must index its last axis"):
    g(jnp.ones((2, 3, 3, 4)))


def test_prior_varies_at_its_tolerance_boundary():
  base = np.array([[1.0, 0.5], [1.0, 0.5]])  # max|w| = 1
  at = base + np.array([[0.0, 0.0], [0.0, 0.25]])  # a difference of exactly rtol · max|w|
  assert not featurizers.prior_varies(at, rtol=0.25)
  assert featurizers.prior_varies(base + np.array([[0.0, 0.0], [0.0, 0.25 + 2 ** -20]]),
                                  rtol=0.25)
  assert not featurizers.prior_varies(base + np.array([[0.0, 0.0], [0.0, 0.5e-4]]))  # default
  assert featurizers.prior_varies(base + np.array([[0.0, 0.0], [0.0, 2e-4]]))
  assert featurizers.prior_varies(np.ones((1, 3)))  # one image: nothing to compare
