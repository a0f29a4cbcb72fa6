"""models.layers.max_pool_2d: the tiled max-pool against flax's, values and gradients bit for bit.

Non-overlapping pools take ``max_pool_tiles`` (a custom gradient without select-and-scatter);
the reference is ``nn.max_pool`` with the same Caffe/torch output rounding. Inputs carry many
ties (ReLU zeros, values rounded to one decimal), where the gradient must go to each window's
first maximum in row-major order, as XLA's does.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.models import layers


def _reference(x, window, stride, ceil_mode):
  pads = [(0, max((layers.pooled_size(n, window, stride, ceil_mode) - 1) * stride + window - n,
                  0)) for n in x.shape[1:3]]
  return nn.max_pool(x, (window, window), (stride, stride), padding=pads)


def _tied_input(shape, seed=0):
  rng = np.random.default_rng(seed)
  x = np.round(rng.normal(size=shape), 1)
  return jnp.asarray(np.where(rng.random(shape) < 0.4, 0.0, x), jnp.float32)


@pytest.mark.parametrize("shape,window,ceil_mode", [
    ((2, 8, 8, 3), 2, False),     # VGG's 2x2/2 on an even map
    ((2, 9, 7, 3), 2, False),     # odd sides: the last row and column are dropped
    ((2, 9, 7, 3), 2, True),      # ceil: padded with -inf
    ((2, 9, 9, 4), 3, True),      # VGG-M/S's 3x3/3 with ceil
    ((2, 10, 11, 4), 3, False),
    ((1, 3, 3, 1), 3, False),     # one window
])
def test_tiled_pool_equals_flax_values_and_gradient_bit_for_bit(shape, window, ceil_mode):
  x = _tied_input(shape)
  ours = jax.jit(lambda v: layers.max_pool_2d(v, window, window, ceil_mode))
  ref = jax.jit(lambda v: _reference(v, window, window, ceil_mode))
  np.testing.assert_array_equal(ours(x), ref(x))
  dy = jnp.asarray(np.random.default_rng(1).normal(size=ref(x).shape), jnp.float32)
  g_ours = jax.grad(lambda v: jnp.sum(ours(v) * dy))(x)
  g_ref = jax.grad(lambda v: jnp.sum(ref(v) * dy))(x)
  np.testing.assert_array_equal(g_ours, g_ref)


def test_a_tie_sends_the_gradient_to_the_first_maximum_in_row_major_order():
  """A 2x2 window of equal values: all of dy goes to its top-left element, none elsewhere."""
  x = jnp.ones((1, 2, 2, 1))
  g = jax.grad(lambda v: jnp.sum(layers.max_pool_2d(v, 2, 2) * 5.0))(x)
  np.testing.assert_array_equal(g[0, :, :, 0], [[5.0, 0.0], [0.0, 0.0]])
  x = jnp.array([[1.0, 3.0], [3.0, 2.0]]).reshape(1, 2, 2, 1)
  g = jax.grad(lambda v: jnp.sum(layers.max_pool_2d(v, 2, 2)))(x)
  np.testing.assert_array_equal(g[0, :, :, 0], [[0.0, 1.0], [0.0, 0.0]])


def test_overlapping_windows_stay_flax_pool():
  x = _tied_input((2, 9, 9, 2))
  np.testing.assert_array_equal(layers.max_pool_2d(x, 3, 2, True), _reference(x, 3, 2, True))
  dy = jnp.ones_like(_reference(x, 3, 2, True))
  np.testing.assert_array_equal(
      jax.grad(lambda v: jnp.sum(layers.max_pool_2d(v, 3, 2, True) * dy))(x),
      jax.grad(lambda v: jnp.sum(_reference(v, 3, 2, True) * dy))(x))
