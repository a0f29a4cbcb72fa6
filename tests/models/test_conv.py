"""models.conv: the kernel gradient by taps equals XLA's (and finite differences), the other
convolutions are lax's own, and a performer trains to the same gradients with either."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from xplain_jax import models
from xplain_jax.errors import ConfigError
from xplain_jax.models import conv

DIMS = ("NHWC", "HWIO", "NHWC")


def _grads(fn, x, k, dy):
  return jax.grad(lambda x_, k_: jnp.sum(fn(x_, k_) * dy), argnums=(0, 1))(x, k)


@pytest.mark.parametrize("kernel,padding", [((3, 3), "SAME"), ((3, 3), ((1, 1), (1, 1))),
                                            ((1, 1), "VALID"), ((3, 2), ((0, 2), (1, 0))),
                                            ((5, 5), "VALID")])
def test_taps_gradient_equals_xlas(kernel, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 7, 6, 3)), jnp.float32)
  k = jnp.asarray(rng.normal(size=kernel + (3, 4)), jnp.float32)
  out_shape = lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=DIMS).shape
  dy = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
  xla = _grads(lambda a, b: lax.conv_general_dilated(a, b, (1, 1), padding,
                                                     dimension_numbers=DIMS), x, k, dy)
  taps = _grads(lambda a, b: conv.conv_general_dilated(a, b, (1, 1), padding,
                                                       dimension_numbers=DIMS), x, k, dy)
  for a, b in zip(taps, xla):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


def test_taps_kernel_gradient_matches_finite_differences():
  """An independent reference: central differences of Σ conv(x, k)·dy in one kernel entry."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(1, 5, 5, 2))
  k = rng.normal(size=(3, 3, 2, 2))
  dy = rng.normal(size=(1, 5, 5, 2))
  f = lambda k_: float(jnp.sum(lax.conv_general_dilated(  # noqa: E731
      jnp.asarray(x, jnp.float32), jnp.asarray(k_, jnp.float32), (1, 1), "SAME",
      dimension_numbers=DIMS) * dy))
  got = np.asarray(conv.kernel_gradient_by_taps(jnp.asarray(x, jnp.float32),
                                                jnp.asarray(dy, jnp.float32), k.shape,
                                                ((1, 1), (1, 1))))
  for idx in [(0, 0, 0, 0), (1, 2, 1, 0), (2, 1, 0, 1)]:
    e = np.zeros_like(k)
    e[idx] = 1e-2
    np.testing.assert_allclose(got[idx], (f(k + e) - f(k - e)) / 2e-2, rtol=2e-3, atol=2e-3)


def test_other_convolutions_are_laxs_own():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(1, 8, 8, 4)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32)
  for kw in (dict(window_strides=(2, 2)), dict(window_strides=(1, 1), rhs_dilation=(2, 2)),
             dict(window_strides=(1, 1), feature_group_count=2)):
    kk = k if kw.get("feature_group_count") else jnp.concatenate([k, k], axis=2)
    want = jax.jacrev(lambda k_: lax.conv_general_dilated(x, k_, padding="SAME",  # noqa: B023
                                                          dimension_numbers=DIMS, **kw))(kk)
    got = jax.jacrev(lambda k_: conv.conv_general_dilated(x, k_, padding="SAME",  # noqa: B023
                                                          dimension_numbers=DIMS, **kw))(kk)
    np.testing.assert_array_equal(got, want)


def test_conv_for_names_each_kind():
  assert conv.conv_for("xla") is lax.conv_general_dilated
  assert conv.conv_for("taps") is conv.conv_general_dilated
  on_cpu = jax.default_backend() == "cpu"
  assert (conv.conv_for("auto") is conv.conv_general_dilated) == on_cpu
  with pytest.raises(ConfigError, match="kernel_gradient='fast'"):
    conv.conv_for("fast")


@pytest.mark.parametrize("arch", ["tiny_vgg", "tiny_alexnet"])
def test_a_performer_has_the_same_gradient_with_either(arch):
  size = 64 if arch == "tiny_alexnet" else 32   # AlexNet's strided stem needs 63 px
  x = jnp.asarray(np.random.default_rng(3).random((2, size, size, 3)), jnp.float32)
  grads = {}
  for kind in ("xla", "taps"):
    m = models.get_performer(arch, num_outputs=3, conv=conv.conv_for(kind), dropout_rate=0.0)
    v = m.init(jax.random.PRNGKey(0), x, train=False)
    loss = lambda p: jnp.sum(m.apply({**v, "params": p}, x, train=False)[0] ** 2)  # noqa: E731,B023
    grads[kind] = jax.grad(loss)(v["params"])
  for a, b in zip(jax.tree.leaves(grads["taps"]), jax.tree.leaves(grads["xla"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.abs(b).max()) + 1e-7)
