"""Tests for xplain_jax.core.concepts."""

import doctest
import functools

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


def test_select_concepts_target_and_others_in_order():
  outputs = jnp.arange(12.0).reshape(2, 6)
  y, y_i = concepts.select_concepts(outputs, 2)
  np.testing.assert_array_equal(y, [2.0, 8.0])
  np.testing.assert_array_equal(y_i, [[0, 1, 3, 4, 5], [6, 7, 9, 10, 11]])
  # Negative index means the same column as in Python indexing.
  y_neg, y_i_neg = concepts.select_concepts(outputs, -1)
  np.testing.assert_array_equal(y_neg, [5.0, 11.0])
  np.testing.assert_array_equal(y_i_neg, outputs[:, :5])
  # First column.
  y0, y_i0 = concepts.select_concepts(outputs, 0)
  np.testing.assert_array_equal(y0, [0.0, 6.0])
  np.testing.assert_array_equal(y_i0, outputs[:, 1:])


def test_other_indices_match_select_concepts():
  outputs = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)))
  for t in range(5):
    _, y_i = concepts.select_concepts(outputs, t)
    np.testing.assert_array_equal(y_i, outputs[:, concepts.other_indices(5, t)])
  assert concepts.other_indices(4, -1) == [0, 1, 2]


def test_select_concepts_under_jit_with_static_index():
  outputs = jnp.arange(8.0).reshape(2, 4)
  fn = jax.jit(concepts.select_concepts, static_argnums=1)
  y, y_i = fn(outputs, 3)
  np.testing.assert_array_equal(y, [3.0, 7.0])
  np.testing.assert_array_equal(y_i, [[0, 1, 2], [4, 5, 6]])


def test_select_concepts_errors():
  with pytest.raises(ValueError, match=r"out of range.*m = 4"):
    concepts.select_concepts(jnp.zeros((2, 4)), 4)
  with pytest.raises(ValueError, match=r"\(2, 1\).*m >= 2"):
    concepts.select_concepts(jnp.zeros((2, 1)), 0)
  with pytest.raises(ValueError, match=r"\(2, 4, 1\).*\[B, m\]"):
    concepts.select_concepts(jnp.zeros((2, 4, 1)), 0)
  with pytest.raises(ValueError, match="static Python int"):
    concepts.select_concepts(jnp.zeros((2, 4)), 1.5)
  traced = functools.partial(concepts.select_concepts, jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="static Python int"):
    jax.jit(traced)(1)


def test_docstring_examples_run():
  result = doctest.testmod(concepts, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
