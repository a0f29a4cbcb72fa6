"""Tests for xplain_jax.core.concepts."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.core import concepts


def test_filter_concepts_sums_over_positions():
  x = np.random.default_rng(0).normal(size=(3, 4, 5, 6)).astype(np.float32)
  y_i = concepts.filter_concepts(jnp.asarray(x))
  assert y_i.shape == (3, 6)
  expected = np.array([[x[b, :, :, i].sum() for i in range(6)] for b in range(3)])
  np.testing.assert_allclose(y_i, expected, rtol=1e-5, atol=1e-5)


def test_filter_concepts_jit_and_vmap():
  x = jnp.arange(2 * 2 * 3 * 2 * 4, dtype=jnp.float32).reshape(2, 2, 3, 2, 4)
  batched = jax.vmap(concepts.filter_concepts)(x)  # leading ensemble axis
  jitted = jax.jit(concepts.filter_concepts)(x[0])
  np.testing.assert_allclose(batched[0], jitted)
  np.testing.assert_allclose(batched[1], x[1].sum(axis=(1, 2)))


def test_filter_concepts_rank_error_names_shapes():
  with pytest.raises(ValueError, match=r"\(8, 14, 14\).*\[B, H, W, n\]"):
    concepts.filter_concepts(jnp.zeros((8, 14, 14)))


def test_docstring_examples_run():
  result = doctest.testmod(concepts, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
