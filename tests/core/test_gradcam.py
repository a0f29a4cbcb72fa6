"""Grad-CAM against closed forms (linear heads) and finite differences (a non-linear head)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xplain_jax.core.gradcam import grad_cam, normalize_maps


def _linear_head(v, bias=0.0):
  """y_b = Σ_hwc v[h,w,c] x_b[h,w,c] + bias: ∂y/∂x = v for every image."""
  return lambda x: jnp.einsum("bhwc,hwc->b", x, v) + bias


def test_linear_head_closed_form():
  rng = np.random.default_rng(0)
  b, h, w, c = 3, 5, 4, 6
  x = rng.normal(size=(b, h, w, c)).astype(np.float32)
  v = rng.normal(size=(h, w, c)).astype(np.float32)
  cam = np.asarray(jax.jit(lambda x: grad_cam(_linear_head(v, 2.0), x))(x))
  a = v.mean(axis=(0, 1))                                       # [C], the same for every image
  want = np.maximum(np.einsum("bhwc,c->bhw", x, a), 0.0)
  assert cam.shape == (b, h, w)
  np.testing.assert_allclose(cam, want, rtol=1e-5, atol=1e-6)


def test_uniform_weights_give_relu_of_channel_sum():
  # y = Σ_hwc x: every ∂y/∂x = 1, so a_c = 1 and cam = ReLU(Σ_c x_c).
  x = np.random.default_rng(1).normal(size=(2, 3, 3, 4)).astype(np.float32)
  cam = np.asarray(grad_cam(lambda z: z.sum(axis=(1, 2, 3)), x))
  np.testing.assert_allclose(cam, np.maximum(x.sum(-1), 0.0), rtol=1e-5, atol=1e-6)


def test_negative_evidence_is_cut():
  # A head that only counts channel 0 negatively: every cam value is ReLU(−mean weight · x_0).
  x = np.abs(np.random.default_rng(2).normal(size=(1, 4, 4, 2))).astype(np.float32)
  cam = np.asarray(grad_cam(lambda z: -z[..., 0].sum(axis=(1, 2)), x))
  assert np.all(cam == 0.0)


def test_nonlinear_head_matches_finite_differences():
  rng = np.random.default_rng(3)
  b, h, w, c = 2, 3, 3, 2
  x = rng.normal(size=(b, h, w, c))
  v = rng.normal(size=(h, w, c))
  head = lambda z: jnp.sum(jnp.tanh(z * v) ** 2, axis=(1, 2, 3))
  cam = np.asarray(grad_cam(head, jnp.asarray(x, jnp.float32)))
  eps = 1e-4
  grads = np.zeros_like(x)
  f = lambda z: np.sum(np.tanh(z * v) ** 2, axis=(1, 2, 3))
  for idx in np.ndindex(h, w, c):
    d = np.zeros_like(x)
    d[(slice(None),) + idx] = eps
    grads[(slice(None),) + idx] = (f(x + d) - f(x - d)) / (2 * eps)
  want = np.maximum(np.einsum("bhwc,bc->bhw", x, grads.mean(axis=(1, 2))), 0.0)
  np.testing.assert_allclose(cam, want, rtol=1e-3, atol=1e-4)


def test_images_are_independent():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(4, 3, 3, 5)).astype(np.float32)
  v = rng.normal(size=(3, 3, 5)).astype(np.float32)
  head = lambda z: jnp.sum(jax.nn.softplus(z * v), axis=(1, 2, 3))
  batch = np.asarray(grad_cam(head, x))
  single = np.stack([np.asarray(grad_cam(head, x[i:i + 1]))[0] for i in range(4)])
  np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-6)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r"\[B,H,W,C\]"):
    grad_cam(lambda z: z.sum(), jnp.ones((2, 3, 3)))
  with pytest.raises(ValueError, match="one score per image"):
    grad_cam(lambda z: z.sum(axis=(1, 2)), jnp.ones((2, 3, 3, 4)))


def test_normalize_maps():
  maps = jnp.asarray([[[0.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
  out = np.asarray(normalize_maps(maps))
  np.testing.assert_allclose(out[0], [[0.0, 0.5], [0.25, 1.0]])
  np.testing.assert_allclose(out[1], 0.0)
