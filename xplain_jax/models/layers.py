"""Pure layer functions of the performers: LRN, max-pool with Caffe's ceil rounding,
torchvision's adaptive average pool, and the output-size arithmetic that rejects inputs too small.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def local_response_norm(x, *, size=5, alpha=1e-4, beta=0.75, k=2.0):
  """Cross-channel local response normalisation (Krizhevsky et al. 2012).

  `y_c = x_c / (k + alpha * sum_{c' in window(c)} x_c'^2) ** beta`, the window
  being `size` channels centred on c (zero-padded at the ends). Caffe writes the
  same layer with `alpha_caffe = alpha * size` (e.g. 5e-4 for VGG-M/VGG-S).

  Args:
    x: [B,H,W,C] feature map.
    size: channels in the window (odd).
    alpha: scale of the sum of squares.
    beta: exponent.
    k: additive constant.

  Returns:
    [B,H,W,C] normalised map, dtype of x.
  """
  half = size // 2
  sq = jnp.square(x.astype(jnp.float32))
  sq = jnp.pad(sq, [(0, 0)] * (x.ndim - 1) + [(half, half)])
  channels = x.shape[-1]
  window_sum = sum(sq[..., i:i + channels] for i in range(size))
  return (x / (k + alpha * window_sum) ** beta).astype(x.dtype)


def pooled_size(length, window, stride, ceil_mode):
  """Output length of a max-pool (no padding); may be <= 0 if too short.

  In ceil mode a last window is kept only if it starts inside the input
  (PyTorch's and Caffe's rule).
  """
  if ceil_mode:
    out = -(-(length - window) // stride) + 1
    if out > 1 and (out - 1) * stride >= length:
      out -= 1
    return out
  return (length - window) // stride + 1


def max_pool_2d(x, window, stride, ceil_mode=False):
  """Max-pool over H and W without padding (floor) or Caffe's ceil rounding.

  Non-overlapping windows (``window == stride``, VGG's 2×2/2, VGG-M/S's 3×3/3) take
  ``max_pool_tiles``: the same values and, bit for bit, the same gradient as ``nn.max_pool``,
  whose gradient XLA:CPU computes several times slower (``launch/bench/bench_conv_grad.py``,
  docs/scaling.md). Overlapping windows (AlexNet's 3×3/2) are ``nn.max_pool``.

  Args:
    x: [B,H,W,C] feature map.
    window: square window size.
    stride: stride in both directions.
    ceil_mode: round the output size up, padding the bottom/right with -inf.

  Returns:
    [B,h,w,C] pooled map.
  """
  pads = []
  for length in x.shape[1:3]:
    out = pooled_size(length, window, stride, ceil_mode)
    pads.append((0, max((out - 1) * stride + window - length, 0)))
  if window != stride:
    return nn.max_pool(x, (window, window), (stride, stride), padding=pads)
  if any(p[1] for p in pads):
    x = jnp.pad(x, [(0, 0)] + pads + [(0, 0)], constant_values=-jnp.inf)
  h, w = (pooled_size(n, window, stride, ceil_mode) for n in x.shape[1:3])
  return max_pool_tiles(x[:, :h * window, :w * window], window)


def _tile(x6, i, j):
  """Element (i, j) of every tile of ``x6`` [B,h,k,w,k,C]: [B,h,w,C]."""
  return x6[:, :, i, :, j, :]


@jax.custom_vjp
def _tiles_max(x6):
  k1, k2 = x6.shape[2], x6.shape[4]
  return functools.reduce(jnp.maximum, [_tile(x6, i, j) for i in range(k1) for j in range(k2)])


def _tiles_max_fwd(x6):
  y = _tiles_max(x6)
  return y, (x6, y)


def _tiles_max_bwd(residuals, dy):
  x6, y = residuals
  # The tile's elements in row-major order, as XLA's select-and-scatter visits them; the
  # gradient goes to the first maximum only (its `>=` keeps the earlier of two equal values).
  # One elementwise pass per element of the tile, in the map's own layout (no transposes).
  zero, taken, rows = jnp.zeros((), dy.dtype), None, []
  for i in range(x6.shape[2]):
    cols = []
    for j in range(x6.shape[4]):
      first = _tile(x6, i, j) == y
      if taken is not None:
        first = first & ~taken
      taken = first if taken is None else taken | first
      cols.append(jnp.where(first, dy, zero))
    rows.append(jnp.stack(cols, axis=3))                   # [B,h,w,k,C]
  return (jnp.stack(rows, axis=2).astype(x6.dtype),)      # [B,h,k,w,k,C]


_tiles_max.defvjp(_tiles_max_fwd, _tiles_max_bwd)


def max_pool_tiles(x, window):
  """Max over non-overlapping ``window``×``window`` tiles, the gradient without select-and-scatter.

  Args:
    x: [B,H,W,C] with H and W multiples of ``window``.
    window: the tile's side (the pool's window and stride).

  Returns:
    [B,H/window,W/window,C], equal to ``nn.max_pool(x, (window,)*2, (window,)*2)``; its
    gradient goes to the first maximum of each tile in row-major order, as XLA's does.
  """
  b, hh, ww, c = x.shape
  return _tiles_max(x.reshape(b, hh // window, window, ww // window, window, c))


def _adaptive_matrix(size_in, size_out):
  """[size_out, size_in] averaging matrix of torchvision's adaptive pool."""
  m = np.zeros((size_out, size_in), np.float32)
  for i in range(size_out):
    start = (i * size_in) // size_out
    end = -(-((i + 1) * size_in) // size_out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x, output_size):
  """torchvision's `AdaptiveAvgPool2d` for any input size.

  Output cell i averages input rows `floor(i*H/h) .. ceil((i+1)*H/h) - 1` (and
  the same for columns); the identity when the sizes already match; a smaller
  input is repeated (as in torchvision).

  Args:
    x: [B,H,W,C] feature map.
    output_size: (h, w).

  Returns:
    [B,h,w,C] pooled map, dtype of x.
  """
  (height, width), (oh, ow) = x.shape[1:3], tuple(output_size)
  if (height, width) == (oh, ow):
    return x
  mh = jnp.asarray(_adaptive_matrix(height, oh), x.dtype)
  mw = jnp.asarray(_adaptive_matrix(width, ow), x.dtype)
  return jnp.einsum("ih,bhwc,jw->bijc", mh, x, mw,
                    precision=jax.lax.Precision.HIGHEST)


def feature_size(specs, length):
  """Spatial length after each layer of `specs`, or None if it vanishes.

  Args:
    specs: sequence of ConvSpec.
    length: input height (or width) in pixels.

  Returns:
    the length after the last layer's pool, or None if any conv or pool gets
    an empty output.
  """
  for s in specs:
    length = (length + 2 * s.padding - s.kernel) // s.stride + 1
    if length < 1:
      return None
    if s.pool_window:
      length = pooled_size(length, s.pool_window, s.pool_stride, s.pool_ceil)
      if length < 1:
        return None
  return length


def min_input_size(specs, limit=4096):
  """Smallest square input side that every conv and pool of `specs` accepts."""
  for length in range(1, limit + 1):
    if feature_size(specs, length) is not None:
      return length
  raise ValueError(f"no input up to {limit} pixels fits these layers: {specs}")
