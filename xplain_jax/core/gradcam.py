"""Grad-CAM of a feature map for a scalar score (Selvaraju et al. 2017).

For a feature map x [B,H,W,C] and a head y = head_fn(x) [B] (the part of the network above x,
e.g. a performer's ``head`` read at the explained logit), the class-activation map of image b is

    cam_b[h,w] = ReLU( Σ_c a_bc · x_b[h,w,c] ),      a_bc = mean_{h,w} ∂y_b/∂x_b[h,w,c].

One reverse pass (``jax.vjp`` with a cotangent of ones) gives every ∂y_b/∂x_b at once, because
the head treats images independently (call the model in inference mode). Like
``priors.filter_prior``, the model reaches this module only through a callable.

Example:
  >>> head = lambda x: jnp.einsum("bhwc,c->b", x, v)    # a linear head
  >>> cam = grad_cam(head, x)                            # [B,H,W] = ReLU(Σ_c v_c x_c / (H·W))

References:
  Selvaraju et al. Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization. ICCV 2017.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def grad_cam(head_fn: Callable[[Array], Array], x: Array) -> Array:
  """Grad-CAM maps of a feature map for a scalar score per image.

  Args:
    head_fn: [B,H,W,C] -> [B], the score (e.g. a logit) computed from x; must treat the images
      of the batch independently (no batch statistics).
    x: [B,H,W,C] float, the feature map (e.g. ``inter["top_conv"]``).

  Returns:
    [B,H,W] float32, ``ReLU(Σ_c mean_hw(∂y/∂x_c) · x_c)`` per image; jit-able.

  Raises:
    ValueError: x is not [B,H,W,C] or head_fn does not return one score per image.
  """
  if x.ndim != 4:
    raise ValueError(f"grad_cam: x has shape {tuple(x.shape)}; expected a feature map [B,H,W,C].")
  x = jnp.asarray(x, jnp.float32)
  y, vjp_fn = jax.vjp(lambda z: jnp.asarray(head_fn(z), jnp.float32), x)
  if y.shape != x.shape[:1]:
    raise ValueError(f"grad_cam: head_fn returned shape {tuple(y.shape)}; expected ({x.shape[0]},)"
                     ", one score per image.")
  (grads,) = vjp_fn(jnp.ones_like(y))
  weights = jnp.mean(grads, axis=(1, 2))                       # [B,C]
  return jax.nn.relu(jnp.einsum("bhwc,bc->bhw", x, weights))


def normalize_maps(maps: Array, eps: float = 1e-12) -> Array:
  """Each map [B,H,W] divided by its maximum (all-zero maps stay 0), for display in [0, 1].

  Args:
    maps: [B,H,W] float, non-negative (e.g. from ``grad_cam``).
    eps: floor of the divisor.

  Returns:
    [B,H,W] float32 in [0, 1].
  """
  maps = jnp.asarray(maps, jnp.float32)
  top = jnp.max(maps, axis=(1, 2), keepdims=True)
  return maps / jnp.maximum(top, eps)
