"""Experiment 1's performer as the paper ran it: added 3x3 conv, mask before its ReLU.

Chen et al. (appendix "Details in Experiment 1") put the mask layer between the top conv and its
ReLU and take the mask's output as x; Zhang et al. (2018b) add a new 3x3 conv of M filters above
the original top conv, initialise the FC layers anew and weight the filter loss per epoch.
Expected values are computed here independently (templates written out in numpy, the added conv
by `jax.lax.conv_general_dilated`, parameter counts from the layer tables).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax import models
from xplain_jax.models import interpretable


def _numpy_mask(pre, tau, beta=4.0):
  """T_μ̂ per image and filter, μ̂ = argmax of the map (row-major first), by loops."""
  b, h, w, c = pre.shape
  n = np.sqrt(h * w)
  out = np.zeros_like(pre)
  for i in range(b):
    for f in range(c):
      a, bb = divmod(int(np.argmax(pre[i, :, :, f])), w)
      for r in range(h):
        for s in range(w):
          out[i, r, s, f] = tau * max(1 - beta * (abs(r - a) + abs(s - bb)) / n, -1.0)
  return out


def _paper_tiny(**kwargs):
  return models.get_performer("tiny_vgg", num_outputs=2, interpretable=True, added_layer=True,
                              top_channels=6, **kwargs)


@functools.lru_cache(maxsize=None)
def _run(mask_order="pre_relu"):
  model = _paper_tiny(mask_order=mask_order)
  images = jax.random.normal(jax.random.key(1), (3, 16, 16, 3))
  variables = jax.jit(model.init)(jax.random.key(0), images)
  outputs, inter = jax.jit(model.apply)(variables, images)
  return model, variables, images, outputs, jax.tree.map(np.asarray, inter)


def test_paper_order_x_is_mask_of_conv_before_relu_and_signed():
  model, variables, images, outputs, inter = _run("pre_relu")
  pre, x = inter["top_conv_pre"], inter["top_conv"]
  # The added conv's raw output: the 3x3 conv of the original top conv's ReLU map.
  plain = models.get_performer("tiny_vgg", num_outputs=2, top_channels=6)
  plain_params = {k: v for k, v in variables["params"].items() if k != "added_conv"}
  _, below = jax.jit(plain.apply)({"params": plain_params}, images)
  k = variables["params"]["added_conv"]
  want_pre = jax.lax.conv_general_dilated(
      below["top_conv_relu"], k["kernel"], (1, 1), [(1, 1), (1, 1)],
      dimension_numbers=("NHWC", "HWIO", "NHWC")) + k["bias"]
  np.testing.assert_allclose(pre, want_pre, rtol=1e-5, atol=1e-5)
  # x = mask(conv(.)) with no ReLU in between: signed values, y_i = Σ_hw x_i can be < 0.
  tau = interpretable.default_tau(pre.shape[1])
  np.testing.assert_allclose(x, pre * _numpy_mask(pre, tau=tau), rtol=1e-6, atol=1e-8)
  assert (pre < 0).any() and (x < 0).any()
  y_i = x.sum(axis=(1, 2))
  assert (y_i < 0).any()
  np.testing.assert_array_equal(inter["top_conv_relu"], np.maximum(pre, 0))
  # The ReLU follows the mask: head(x) = head(ReLU(x)) reproduces the outputs.
  head = jax.jit(functools.partial(model.apply, method=type(model).head))
  np.testing.assert_allclose(head(variables, x)[0], outputs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(head(variables, np.maximum(x, 0))[0], outputs, rtol=1e-5,
                             atol=1e-6)


def test_zhang_order_masks_after_relu_and_stays_non_negative():
  _, _, _, _, inter = _run("post_relu")
  relu = inter["top_conv_relu"]
  tau = interpretable.default_tau(relu.shape[1])
  want = np.maximum(relu * _numpy_mask(relu, tau=tau), 0)
  np.testing.assert_allclose(inter["top_conv"], want, rtol=1e-6, atol=1e-8)
  assert inter["top_conv"].min() >= 0


def test_unknown_mask_order_raises():
  model = _paper_tiny(mask_order="after")
  with pytest.raises(ValueError, match="mask_order='after'.*pre_relu"):
    jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 16, 16, 3),
                                                                        jnp.float32))


# The original top conv's filters (M) and its side at 224 px, from the architectures' tables.
_M_AT_224 = {"alexnet": (256, 13), "vgg_m": (512, 13), "vgg_s": (512, 17), "vgg16": (512, 14)}


def _n_params(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", sorted(_M_AT_224))
def test_added_layer_is_3x3xMxM_with_paper_n(name):
  m, side = _M_AT_224[name]
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  plain = models.get_performer(name, num_outputs=1)
  paper = models.get_performer(name, num_outputs=1, interpretable=True, added_layer=True)
  plain_vars = jax.eval_shape(plain.init, jax.random.key(0), x)
  paper_vars = jax.eval_shape(paper.init, jax.random.key(0), x)
  assert paper_vars["params"]["added_conv"]["kernel"].shape == (3, 3, m, m)
  assert _n_params(paper_vars) == _n_params(plain_vars) + 9 * m * m + m
  _, inter = jax.eval_shape(paper.apply, paper_vars, x)
  assert inter["top_conv"].shape == (1, side, side, m)  # n = M concepts


def test_filter_loss_weight_follows_one_over_epoch_times_activation():
  for t in range(1, 6):
    got = float(interpretable.filter_loss_weight(t, 3.0, base=0.2))
    assert got == pytest.approx(0.2 * 3.0 / t)
  # Under jit, with the epoch as a traced int32 scalar, and steps -> epochs.
  weight = jax.jit(lambda step: interpretable.filter_loss_weight(step // 10 + 1, 2.0, base=1.0))
  assert [float(weight(jnp.int32(s))) for s in (0, 9, 10, 25)] == pytest.approx(
      [2.0, 2.0, 1.0, 2.0 / 3.0])
  assert float(interpretable.filter_loss_weight(7, 9.0, base=0.5, schedule="constant")) == 0.5
  with pytest.raises(ValueError, match="schedule 'cosine'.*epoch"):
    interpretable.filter_loss_weight(1, base=1.0, schedule="cosine")


def test_mean_max_activation_over_positive_images():
  x = np.random.default_rng(0).normal(size=(4, 3, 5, 2)).astype(np.float32)
  positive = np.array([True, False, True, False])
  want = np.mean([x[i, :, :, f].max() for i in (0, 2) for f in range(2)])
  got = interpretable.mean_max_activation(jnp.asarray(x), jnp.asarray(positive))
  assert float(got) == pytest.approx(want, rel=1e-6)
  all_images = np.mean([x[i, :, :, f].max() for i in range(4) for f in range(2)])
  assert float(interpretable.mean_max_activation(jnp.asarray(x))) == pytest.approx(all_images)
  grad = jax.grad(lambda v: interpretable.mean_max_activation(v))(jnp.asarray(x))
  np.testing.assert_array_equal(grad, 0.0)  # a constant for the filter loss's weight
