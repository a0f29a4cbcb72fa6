"""A convolution whose kernel gradient XLA:CPU computes several times faster.

XLA:CPU lowers the kernel gradient of a stride-1 convolution to a convolution with the batch as
its contraction, which runs far below the forward's FLOP rate (``launch/bench/bench_conv_grad.py``:
on a [64,32,32,32] → 64 layer the forward takes about 34 ms and the kernel gradient about 400 ms;
docs/scaling.md). ``conv_general_dilated`` here has the signature of
``jax.lax.conv_general_dilated`` and the same forward and input gradient; for stride-1,
undilated, ungrouped NHWC/HWIO convolutions its kernel gradient is a sum over the kernel's taps
of one matmul each,

    ∂L/∂k[i, j, c, o] = Σ_{b,h,w} x_pad[b, h+i, w+j, c] · ∂L/∂y[b, h, w, o],

the same value up to float rounding (tests/models/test_conv.py compares it with XLA's to 1e-5 of
the gradient's scale). Every other convolution (strided, dilated, grouped, other layouts) is
``lax.conv_general_dilated`` itself.

``conv_for(kind)`` picks one by the config's ``performer.kernel_gradient``: "xla" (XLA's own),
"taps" (this one) or "auto" (this one on CPU, XLA's on GPU and TPU, whose libraries are fast).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from xplain_jax.errors import ConfigError

KERNEL_GRADIENTS = ("auto", "xla", "taps")
_NHWC = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_taps(x, k, pads):
  return lax.conv_general_dilated(x, k, (1, 1), pads, dimension_numbers=_NHWC)


def _conv_taps_fwd(x, k, pads):
  return _conv_taps(x, k, pads), (x, k)


def _conv_taps_bwd(pads, residuals, dy):
  x, k = residuals
  _, input_vjp = jax.vjp(
      lambda x_: lax.conv_general_dilated(x_, k, (1, 1), pads, dimension_numbers=_NHWC), x)
  dx, = input_vjp(dy)
  return dx, kernel_gradient_by_taps(x, dy, k.shape, pads).astype(k.dtype)


_conv_taps.defvjp(_conv_taps_fwd, _conv_taps_bwd)


def kernel_gradient_by_taps(x, dy, kernel_shape, pads):
  """∂/∂k of Σ conv(x, k)·dy for a stride-1 NHWC/HWIO convolution, one matmul per tap.

  Args:
    x: [B,H,W,C] the convolution's input.
    dy: [B,H',W',O] the gradient of its output.
    kernel_shape: (kh, kw, C, O).
    pads: ((top, bottom), (left, right)) the convolution's padding.

  Returns:
    [kh,kw,C,O] float32.
  """
  kh, kw, c, o = kernel_shape
  h, w = dy.shape[1], dy.shape[2]
  xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
  taps = [jnp.einsum("bhwc,bhwo->co", xp[:, i:i + h, j:j + w], dy,
                     preferred_element_type=jnp.float32)
          for i in range(kh) for j in range(kw)]
  return jnp.stack(taps).reshape(kh, kw, c, o)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` with the kernel gradient by taps where it applies."""
  plain = lambda: lax.conv_general_dilated(  # noqa: E731
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count, precision, preferred_element_type)
  ones = lambda d: d is None or all(v == 1 for v in d)  # noqa: E731
  if (lhs.ndim != 4 or tuple(window_strides) != (1, 1) or not ones(lhs_dilation)
      or not ones(rhs_dilation) or feature_group_count != 1 or batch_group_count != 1
      or preferred_element_type is not None or precision is not None):
    return plain()
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != nhwc:
    return plain()
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
  return _conv_taps(lhs, rhs, tuple(tuple(int(v) for v in p) for p in padding))


def conv_for(kind: str) -> Callable:
  """The convolution of ``performer.kernel_gradient`` ``kind`` (``KERNEL_GRADIENTS``)."""
  if kind not in KERNEL_GRADIENTS:
    raise ConfigError(f"kernel_gradient={kind!r} is not one of {KERNEL_GRADIENTS}; 'auto' picks "
                      "the fastest for the platform.")
  if kind == "taps" or (kind == "auto" and jax.default_backend() == "cpu"):
    return conv_general_dilated
  return lax.conv_general_dilated
