"""Tests for the performers and the weight network (xplain_jax.models)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xplain_jax import models
from xplain_jax.models import performers


def _count(layers):
  """Parameters of conv/FC layers given as (kernel_h*kernel_w, in, out)."""
  return sum(k * cin * cout + cout for k, cin, cout in layers)


def _fc(fc6_in, n=1000):
  return [(1, fc6_in, 4096), (1, 4096, 4096), (1, 4096, n)]


# Layers written out from the papers' tables: (k*k, in, out).
_ALEXNET = [(121, 3, 64), (25, 64, 192), (9, 192, 384), (9, 384, 256),
            (9, 256, 256)] + _fc(6 * 6 * 256)
_VGG_MS = [(49, 3, 96), (25, 96, 256), (9, 256, 512), (9, 512, 512),
           (9, 512, 512)] + _fc(6 * 6 * 512)
_VGG16 = ([(9, 3, 64), (9, 64, 64), (9, 64, 128), (9, 128, 128),
           (9, 128, 256), (9, 256, 256), (9, 256, 256), (9, 256, 512)]
          + [(9, 512, 512)] * 5 + _fc(7 * 7 * 512))

# name -> (hand-derived parameter count, top conv side at 224, channels, pool5).
# Top conv sides by hand: AlexNet 224 -conv11/4p2-> 55 -pool-> 27 -> 27 -pool->
# 13; VGG-M 224 -conv7/2-> 109 -pool ceil-> 54 -conv5/2p1-> 26 -pool ceil-> 13;
# VGG-S 109 -pool3/3 ceil-> 37 -conv5-> 33 -pool2/2 ceil-> 17; VGG-16 224/16.
_FULL = {
    "alexnet": (_count(_ALEXNET), 13, 256, 6),
    "vgg_m": (_count(_VGG_MS), 13, 512, 6),
    "vgg_s": (_count(_VGG_MS), 17, 512, 6),
    "vgg16": (_count(_VGG16), 14, 512, 7),
}


def _n_params(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", sorted(_FULL))
def test_full_size_shapes_and_parameter_counts(name):
  count, side, channels, pool5 = _FULL[name]
  model = models.get_performer(name, num_outputs=1000)
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  outputs, inter = jax.eval_shape(model.apply, variables, x)
  assert _n_params(variables) == count
  assert outputs.shape == (2, 1000) and outputs.dtype == jnp.float32
  assert inter["top_conv"].shape == (2, side, side, channels)
  assert inter["top_conv_relu"].shape == (2, side, side, channels)
  assert inter["pool5"].shape == (2, pool5, pool5, channels)
  assert inter["fc6"].shape == inter["fc7"].shape == (2, 4096)


def test_published_parameter_counts():
  # torchvision's documented sizes, and VGG-M/S (~103M, Chatfield et al.).
  assert _count(_VGG16) == 138_357_544
  assert _count(_ALEXNET) == 61_100_840
  assert _count(_VGG_MS) == 102_908_520


@pytest.mark.parametrize("name,size", [("vgg16", 64), ("vgg16", 112),
                                       ("alexnet", 112), ("vgg_m", 112),
                                       ("vgg_s", 64)])
def test_other_input_sizes_reach_the_same_classifier(name, size):
  model = models.get_performer(name, num_outputs=3)
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  outputs, inter = jax.eval_shape(model.apply, variables, x)
  assert outputs.shape == (1, 3)
  assert inter["pool5"].shape[1:3] == (model.pooled,) * 2


def _fake_variables(model, x, seed=1):
  """Variables with init's structure filled by numpy (compiling init is slow).

  Kernels ~ N(0, 2/fan_in), biases ~ N(0, 0.1), BatchNorm scale 1, bias 0,
  running mean 0, running var 1.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path[-1:])
    if "kernel" in name:
      scale = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(size=leaf.shape) * scale, leaf.dtype)
    if "bias" in name and "params" in jax.tree_util.keystr(path[:1]):
      return jnp.asarray(rng.normal(size=leaf.shape) * 0.1, leaf.dtype)
    fill_value = 1.0 if ("scale" in name or "var" in name) else 0.0
    return jnp.full(leaf.shape, fill_value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _init(model, size, batch=2, seed=0):
  images = jax.random.normal(jax.random.key(seed), (batch, size, size, 3))
  return _fake_variables(model, images), images


def _apply(model, *args, **kwargs):
  """model.apply under jit (op-by-op dispatch is slow on CPU)."""
  return jax.jit(functools.partial(model.apply, **kwargs))(*args)


@pytest.mark.parametrize("name,size", [("tiny_vgg", 32), ("tiny_alexnet", 64)])
def test_head_and_from_fc6_reproduce_outputs(name, size):
  model = models.get_performer(name, num_outputs=5)
  variables, images = _init(model, size)
  outputs, inter = _apply(model, variables, images)
  np.testing.assert_array_equal(inter["top_conv"], inter["top_conv_relu"])
  assert float(inter["top_conv"].min()) >= 0.0  # after ReLU
  assert float(jnp.abs(outputs).max()) > 0.0
  head_out, head_inter = _apply(model, variables, inter["top_conv"],
                                method=type(model).head)
  np.testing.assert_allclose(head_out, outputs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(head_inter["fc6"], inter["fc6"], rtol=1e-5,
                             atol=1e-6)
  fc6_out = _apply(model, variables, inter["fc6"], method=type(model).from_fc6)
  np.testing.assert_allclose(fc6_out, outputs, rtol=1e-5, atol=1e-6)
  # head differentiates: changing the top map changes the outputs.
  grad = jax.jit(jax.grad(lambda x: model.apply(
      variables, x, method=type(model).head)[0].sum()))(inter["top_conv"])
  assert grad.shape == inter["top_conv"].shape and jnp.any(grad != 0)


def test_interpretable_mask_sits_between_relu_and_head():
  model = models.get_performer("tiny_vgg", num_outputs=2, interpretable=True,
                               top_channels=8)
  variables, images = _init(model, 32)
  outputs, inter = _apply(model, variables, images)
  assert inter["top_conv"].shape == inter["top_conv_relu"].shape
  assert inter["top_conv"].shape[-1] == 8
  head_out, _ = _apply(model, variables, inter["top_conv"],
                       method=type(model).head)
  np.testing.assert_allclose(head_out, outputs, rtol=1e-5, atol=1e-6)
  # The mask changes the map (it is not the identity on a post-ReLU map).
  assert not np.allclose(inter["top_conv"], inter["top_conv_relu"])


def test_dropout_only_in_training():
  model = models.get_performer("tiny_vgg", num_outputs=3, dropout_rate=0.5)
  variables, images = _init(model, 32)
  eval1, _ = _apply(model, variables, images)
  eval2, _ = _apply(model, variables, images, train=False)
  np.testing.assert_array_equal(eval1, eval2)
  rngs = {"dropout": jax.random.key(3)}
  train1, _ = _apply(model, variables, images, train=True, rngs=rngs)
  assert not np.allclose(train1, eval1)


def test_bfloat16_computation_keeps_float32_params_and_outputs():
  model = models.get_performer("tiny_vgg", num_outputs=3, dtype=jnp.bfloat16)
  variables, images = _init(model, 32)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  outputs, inter = _apply(model, variables, images)
  assert outputs.dtype == jnp.float32
  assert inter["top_conv"].dtype == jnp.bfloat16


def test_unknown_performer_raises_listing_names():
  with pytest.raises(ValueError, match="choose one of alexnet.*tiny_vgg, vgg16, vgg_m, vgg_s"):
    models.get_performer("resnet", num_outputs=2)


@pytest.mark.parametrize("name", ["alexnet", "vgg_m", "vgg_s", "vgg16",
                                  "tiny_vgg"])
def test_min_image_size_is_tight(name):
  m = models.min_image_size(name)
  model = models.get_performer(name, num_outputs=2)
  ok = jax.ShapeDtypeStruct((1, m, m, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), ok)
  jax.eval_shape(model.apply, variables, ok)
  small = jax.ShapeDtypeStruct((1, m - 1, m - 1, 3), jnp.float32)
  with pytest.raises(ValueError, match=f"at least {m}x{m}"):
    jax.eval_shape(model.apply, variables, small)


def test_alexnet_on_32px_raises_clear_error():
  model = models.get_performer("alexnet", num_outputs=2)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  with pytest.raises(ValueError, match="at least 63x63 pixels; got 32x32"):
    jax.eval_shape(model.init, jax.random.key(0), x)


def test_adaptive_avg_pool_hand_case():
  # torchvision: 3 -> 2 averages rows [0, 1] and [1, 2].
  x = jnp.arange(9.0).reshape(1, 3, 3, 1)
  y = performers.adaptive_avg_pool(x, (2, 2))
  expected = np.array([[(0 + 1 + 3 + 4) / 4, (1 + 2 + 4 + 5) / 4],
                       [(3 + 4 + 6 + 7) / 4, (4 + 5 + 7 + 8) / 4]])
  np.testing.assert_allclose(y[0, ..., 0], expected)
  # 1 -> 2 repeats; equal sizes are the identity.
  np.testing.assert_allclose(
      performers.adaptive_avg_pool(jnp.ones((1, 1, 1, 2)) * 3, (2, 2)),
      jnp.full((1, 2, 2, 2), 3.0))
  np.testing.assert_array_equal(performers.adaptive_avg_pool(x, (3, 3)), x)


def test_adaptive_avg_pool_matches_torch():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(size=(2, 13, 10, 3)).astype(np.float32)
  for out in [(7, 7), (6, 4), (3, 5)]:
    want = torch.nn.functional.adaptive_avg_pool2d(
        torch.from_numpy(x).permute(0, 3, 1, 2), out).permute(0, 2, 3, 1)
    np.testing.assert_allclose(performers.adaptive_avg_pool(x, out),
                               want.numpy(), rtol=1e-5, atol=1e-6)


def test_max_pool_ceil_mode_matches_torch():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(1).normal(size=(1, 26, 17, 2)).astype(np.float32)
  for window, stride in [(3, 2), (3, 3), (2, 2)]:
    for ceil in (False, True):
      want = torch.nn.functional.max_pool2d(
          torch.from_numpy(x).permute(0, 3, 1, 2), window, stride,
          ceil_mode=ceil).permute(0, 2, 3, 1).numpy()
      got = performers.max_pool_2d(jnp.asarray(x), window, stride, ceil)
      np.testing.assert_array_equal(got, want)
  # Hand case: 26 with window 3 stride 2 -> 12 (floor) or 13 (ceil).
  assert performers.pooled_size(26, 3, 2, False) == 12
  assert performers.pooled_size(26, 3, 2, True) == 13


def test_local_response_norm_against_loop():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(1, 2, 2, 7)).astype(np.float32) * 30
  size, alpha, beta, k = 5, 1e-4, 0.75, 2.0
  want = np.empty_like(x)
  for c in range(7):
    lo, hi = max(0, c - 2), min(7, c + 3)
    s = (x[..., lo:hi] ** 2).sum(-1)
    want[..., c] = x[..., c] / (k + alpha * s) ** beta
  got = performers.local_response_norm(jnp.asarray(x), size=size,
                                       alpha=alpha, beta=beta, k=k)
  np.testing.assert_allclose(got, want, rtol=1e-5)


# ---------------------------------------------------------------- weight net


@pytest.mark.parametrize("stem,shape,side", [
    # paper: 7x7/2 stem, no max-pool: 14 -> 7, then stages 7, 4, 2, 1 (SAME).
    ("paper", (2, 14, 14, 512), 1), ("paper", (2, 7, 7, 256), 1),
    # small: 3x3/1 stem: 14 -> 14, stages 14, 7, 4, 2; 7 -> 7, 4, 2, 1.
    ("small", (2, 14, 14, 512), 2), ("small", (2, 7, 7, 256), 1)])
def test_resnet152_on_feature_maps(stem, shape, side):
  g = models.get_weight_net(152, num_outputs=39, positive=True, stem=stem)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(g.init, jax.random.key(0), x)
  alpha, inter = jax.eval_shape(g.apply, variables, x)
  assert alpha.shape == (2, 39) and alpha.dtype == jnp.float32
  assert inter["features"].shape == (2, side * side * 2048)
  kernel = 7 if stem == "paper" else 3
  assert variables["params"]["conv_init"]["kernel"].shape == (kernel, kernel, shape[-1], 64)


def _stage_sides(g, x):
  """Spatial side after every residual block of g on x, in order."""
  variables = jax.eval_shape(g.init, jax.random.key(0), x)
  _, state = jax.eval_shape(functools.partial(
      g.apply, capture_intermediates=lambda m, _: isinstance(m, g.block_cls)), variables, x)
  sides = [v["__call__"][0].shape[1:3] for v in state["intermediates"].values()
           if isinstance(v, dict) and "__call__" in v]
  return [h for h, _ in sides]


def test_default_weight_net_maps_are_7_4_2_1_on_14x14():
  x = jax.ShapeDtypeStruct((1, 14, 14, 32), jnp.float32)
  g = models.get_weight_net(18, num_outputs=3, positive=True, width=8)
  assert _stage_sides(g, x) == [7, 7, 4, 4, 2, 2, 1, 1]  # two blocks per stage
  small = models.get_weight_net(18, num_outputs=3, positive=True, width=8, stem="small")
  assert _stage_sides(small, x) == [14, 14, 7, 7, 4, 4, 2, 2]


def test_unknown_stem_raises():
  g = models.get_weight_net(10, num_outputs=2, positive=False, stem="7x7")
  with pytest.raises(ValueError, match="stem='7x7'.*paper"):
    jax.eval_shape(g.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 4, 4, 2), jnp.float32))


def _layer_depth(params):
  """Convs and Dense layers on the main path (projections excluded)."""
  paths = [jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_leaves_with_path(params)]
  return sum(p.endswith("['kernel']") and "conv_proj" not in p for p in paths)


@pytest.mark.parametrize("depth", models.WEIGHT_NET_DEPTHS)
def test_weight_net_depth_counts_layers(depth):
  g = models.get_weight_net(depth, num_outputs=4, positive=False, width=8)
  x = jax.ShapeDtypeStruct((1, 4, 4, 16), jnp.float32)
  variables = jax.eval_shape(g.init, jax.random.key(0), x)
  assert _layer_depth(variables["params"]) == depth
  assert "batch_stats" in variables


@pytest.mark.parametrize("shape", [(3, 14, 14, 16), (3, 1, 1, 4)])
def test_tiny_weight_net_computes(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  pos = models.get_weight_net(10, num_outputs=6, positive=True, width=8)
  variables = _fake_variables(pos, x)
  alpha, inter = _apply(pos, variables, x)
  assert alpha.shape == (3, 6) and bool(jnp.all(alpha > 0))
  assert inter["features"].shape[0] == 3
  signed = models.get_weight_net(10, num_outputs=6, positive=False, width=8)
  raw, _ = _apply(signed, variables, x)
  np.testing.assert_allclose(alpha, jax.nn.softplus(raw), rtol=1e-6)
  (alpha_t, _), state = _apply(pos, variables, x, train=True,
                               mutable=["batch_stats"])
  assert alpha_t.shape == (3, 6)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         state["batch_stats"], variables["batch_stats"])
  assert any(jax.tree.leaves(changed))


def test_weight_net_head_channels_reduce_before_flatten():
  g = models.get_weight_net(10, num_outputs=3, positive=False, width=8,
                            head_channels=2)
  x = jnp.ones((1, 28, 28, 4))  # paper stem: 28 -> 14, stages 14, 7, 4, 2
  variables = jax.eval_shape(g.init, jax.random.key(0), x)
  _, inter = jax.eval_shape(g.apply, variables, x)
  assert inter["features"].shape == (1, 2 * 2 * 2)


def test_unknown_weight_net_depth_raises():
  with pytest.raises(ValueError, match="10, 18, 34, 50, 101, 152"):
    models.get_weight_net(20, num_outputs=2, positive=False)
  assert isinstance(models.get_weight_net(18, num_outputs=2, positive=False),
                    nn.Module)
