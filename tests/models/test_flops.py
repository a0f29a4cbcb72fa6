"""FLOP counting from jaxprs (xplain_jax.models.flops) against hand-worked counts and XLA's own
count."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.models import flops

KEY = jax.random.PRNGKey(0)


def _abstract_init(model, x):
  """Variables as ``jax.ShapeDtypeStruct``s: counting needs shapes only (and compiles nothing)."""
  return jax.eval_shape(model.init, KEY, x)


def _conv(x, k, stride=1, padding="VALID", groups=1):
  return jax.lax.conv_general_dilated(x, k, (stride, stride), padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=groups)


def test_single_conv_hand_worked():
  # A 3x3 image and a 2x2 kernel, one channel: 2x2 outputs, 4 multiply-adds each.
  x, k = jnp.ones((1, 3, 3, 1)), jnp.ones((2, 2, 1, 1))
  assert flops.count_flops(_conv, x, k) == 2 * 4 * 4


def test_single_conv_general_shapes():
  # [2,10,12,3] * [3,5,3,4], VALID: out [2,8,8,4]; each output sums 3*5*3 products.
  x, k = jnp.ones((2, 10, 12, 3)), jnp.ones((3, 5, 3, 4))
  assert flops.count_flops(_conv, x, k) == 2 * (2 * 8 * 8 * 4) * (3 * 5 * 3)
  # Stride 2: out [2,4,4,4] (floor((10-3)/2)+1 = 4, floor((12-5)/2)+1 = 4).
  assert flops.count_flops(lambda x, k: _conv(x, k, 2), x, k) == 2 * (2 * 4 * 4 * 4) * 45
  # Two groups: 4 in / 6 out channels, each output reads 2 input channels.
  x, k = jnp.ones((1, 5, 5, 4)), jnp.ones((3, 3, 2, 6))
  assert flops.count_flops(lambda x, k: _conv(x, k, groups=2), x, k) == 2 * (9 * 6) * (9 * 2)


def test_single_dense():
  layer = nn.Dense(5)
  x = jnp.ones((3, 7))
  v = _abstract_init(layer, x)
  assert flops.count_flops(layer.apply, v, x) == 2 * 3 * 7 * 5  # the bias add is not counted
  # Batched contraction: [4,3,7] x [4,7,2] over the shared batch axis.
  f = lambda a, b: jnp.einsum("bij,bjk->bik", a, b)
  assert flops.count_flops(f, jnp.ones((4, 3, 7)), jnp.ones((4, 7, 2))) == 2 * 4 * 3 * 2 * 7


class _Tiny(nn.Module):
  """conv 3x3 (4) VALID -> relu -> conv 3x3/2 (8) VALID -> flatten -> dense 10."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3), padding="VALID")(x))
    x = nn.relu(nn.Conv(8, (3, 3), strides=2, padding="VALID")(x))
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


def _tiny_hand_count(batch, size, channels):
  s1 = size - 2                  # 9 -> 7
  s2 = (s1 - 3) // 2 + 1         # 7 -> 3
  conv1 = 2 * (batch * s1 * s1 * 4) * (9 * channels)
  conv2 = 2 * (batch * s2 * s2 * 8) * (9 * 4)
  dense = 2 * batch * (s2 * s2 * 8) * 10
  return conv1 + conv2 + dense


def test_tiny_model_matches_hand_count():
  model, x = _Tiny(), jnp.ones((2, 9, 9, 3))
  v = _abstract_init(model, x)
  want = _tiny_hand_count(2, 9, 3)
  assert flops.count_flops(model.apply, v, x) == want
  assert flops.count_flops(model.apply, v, jnp.ones((1, 9, 9, 3))) == want // 2  # batch 1
  # Jitted and rematerialised calls are followed into their sub-jaxprs.
  assert flops.count_flops(jax.jit(jax.checkpoint(model.apply)), v, x) == want


class _Same(nn.Module):
  """SAME-padded convs (stride 1 and 2 on even sizes) and a dense: gradients cost 2x forward."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(6, (3, 3), padding="SAME")(x))
    x = nn.relu(nn.Conv(8, (3, 3), strides=2, padding="SAME")(x))
    return nn.Dense(3)(x.reshape(x.shape[0], -1)).sum()


def test_forward_plus_backward_is_three_forwards():
  model, x = _Same(), jnp.ones((2, 8, 8, 5))
  v = _abstract_init(model, x)
  fwd = flops.count_flops(model.apply, v, x)
  both = flops.count_flops(jax.grad(model.apply, argnums=(0, 1)), v, x)
  assert both == 3 * fwd
  # Without the input gradient the first conv's transposed conv is skipped.
  first = 2 * (2 * 8 * 8 * 6) * (9 * 5)
  assert flops.count_flops(jax.grad(model.apply), v, x) == 3 * fwd - first


def test_control_flow():
  w, x = jnp.ones((4, 4)), jnp.ones((2, 4))
  one = 2 * 2 * 4 * 4
  scan = lambda w, x: jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=5)[0]
  assert flops.count_flops(scan, w, x) == 5 * one
  cond = lambda p, w, x: jax.lax.cond(p, lambda: x @ w, lambda: (x @ w) @ w)
  assert flops.count_flops(cond, True, w, x) == 2 * one  # the costlier branch
  # Custom derivative rules (softplus, relu) count their primal body.
  assert flops.count_flops(lambda w, x: jax.nn.softplus(x @ w), w, x) == one


def test_agrees_with_xla_cost_analysis():
  """XLA also counts element-wise ops (bias, ReLU): within 5% for this VALID-padded model."""
  model, x = _Tiny(), jax.ShapeDtypeStruct((4, 17, 17, 3), jnp.float32)
  v = _abstract_init(model, x)
  xla = flops.xla_flops(jax.jit(model.apply).lower(v, x).compile())
  if xla is None:
    pytest.skip("this backend reports no FLOPs")
  ours = flops.count_flops(model.apply, v, x)
  assert ours == _tiny_hand_count(4, 17, 3)
  np.testing.assert_allclose(xla, ours, rtol=0.05)


class _Fake:
  def __init__(self, cost):
    self.cost = cost

  def cost_analysis(self):
    if isinstance(self.cost, Exception):
      raise self.cost
    return self.cost


def test_xla_flops_reading():
  assert flops.xla_flops(_Fake({"flops": 10.0}), num_devices=4) == 40.0
  assert flops.xla_flops(_Fake([{"flops": 3.0}])) == 3.0  # older JAX: one dict per program
  assert flops.xla_flops(_Fake({"bytes accessed": 1.0})) is None
  assert flops.xla_flops(_Fake({"flops": -1.0})) is None
  assert flops.xla_flops(_Fake(None)) is None
  assert flops.xla_flops(_Fake(NotImplementedError("no cost model"))) is None


def test_peak_table():
  assert flops.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.0
  assert flops.peak_tflops("NVIDIA H100 80GB HBM3", "float32") == 495.0
  assert flops.peak_tflops("NVIDIA H200", "bfloat16") == flops.peak_tflops("H100", "bfloat16")
  assert flops.peak_tflops("NVIDIA A100-SXM4-80GB", "bfloat16") == 312.0
  assert flops.peak_tflops("cpu", "float32") is None
  assert flops.peak_tflops("NVIDIA H100", "float64") is None
