"""Building blocks shared by the performers (the CNNs being explained).

A performer is a plain conv stack described by a tuple of `ConvSpec`s, followed by
an adaptive average pool and three fully connected layers (fc6, fc7, fc8). The
concrete architectures live in `alexnet.py` and `vgg.py`; this file holds the
pure layer functions (LRN, max-pool with Caffe's ceil rounding, torchvision's
adaptive average pool), the output-size arithmetic used to reject inputs that
are too small, and the `ConvPerformer` base module.

Every performer returns `(outputs, inter)` where `inter` holds the named
intermediates the explainer works on:

- "top_conv_relu": [B,H,W,C] the top conv layer after its ReLU;
- "top_conv": [B,H,W,C] the same after the interpretable mask (identical
  without the mask);
- "pool5": [B,h,w,C] the map flattened into fc6 (the last max-pool followed by
  the adaptive average pool);
- "fc6", "fc7": [B,F] the first and second FC layers after their ReLU.

`head` (everything above "top_conv") and `from_fc6` (everything above "fc6") are
separate methods so priors can differentiate them, e.g.
`module.apply(variables, x, method=type(module).head)`.
"""

from typing import Any, Mapping, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class ConvSpec(NamedTuple):
  """One conv layer, followed by ReLU, optional LRN and an optional max-pool.

  Attributes:
    features: output channels.
    kernel: square kernel size.
    stride: conv stride.
    padding: symmetric zero padding on each spatial side.
    lrn: apply local response normalisation after the ReLU.
    pool_window: max-pool window after the layer; 0 for no pool.
    pool_stride: max-pool stride.
    pool_ceil: round the pooled size up (Caffe/MatConvNet) rather than down
      (torchvision); the missing border is padded with -inf.
  """
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0
  lrn: bool = False
  pool_window: int = 0
  pool_stride: int = 0
  pool_ceil: bool = False


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
  return nn.max_pool(x, (window, window), (stride, stride), padding=pads)


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


class ConvPerformer(nn.Module):
  """A conv stack + adaptive average pool + fc6/fc7/fc8 classifier.

  Subclasses define `conv_specs()`. Dropout follows the ReLUs of fc6 and fc7
  (torchvision's VGG order; torchvision's AlexNet puts it before fc6 and fc7,
  which changes nothing in eval mode). Parameters are float32; computation
  runs in `dtype`; outputs are returned as float32.

  Attributes:
    num_outputs: size of the last layer (logits).
    dropout_rate: dropout after fc6 and fc7 when `train=True` (needs a
      'dropout' rng).
    interpretable: insert the interpretable mask (Zhang et al. 2018) after the
      top conv's ReLU.
    mask_kwargs: keyword arguments of `interpretable.InterpretableMask` (e.g.
      {"unit_peak": True}); None for its defaults.
    dtype: computation dtype.
    fc_features: width of fc6 and fc7.
    top_channels: if set, overrides the number of filters of the top conv.
    pooled: side of the adaptive average pool before fc6; 0 for none.
    global_max_pool: replace the adaptive average pool by a max over all positions
      ([B,1,1,C] into fc6). For "is this concept anywhere in the image" tasks such as the
      synthetic attributes, a small network learns far faster with it (measured: 89 % vs 69 %
      object-attribute accuracy after 600 steps).
    lrn_size, lrn_alpha, lrn_beta, lrn_k: LRN constants (AlexNet formula).
  """
  num_outputs: int
  dropout_rate: float = 0.5
  interpretable: bool = False
  mask_kwargs: Optional[Mapping[str, Any]] = None
  dtype: Any = jnp.float32
  fc_features: int = 4096
  top_channels: Optional[int] = None
  pooled: int = 6
  global_max_pool: bool = False
  lrn_size: int = 5
  lrn_alpha: float = 1e-4
  lrn_beta: float = 0.75
  lrn_k: float = 2.0

  def conv_specs(self) -> Sequence[ConvSpec]:
    """The conv layers, bottom to top (before `top_channels` is applied)."""
    raise NotImplementedError

  def layers(self) -> Sequence[ConvSpec]:
    """The conv layers with `top_channels` applied to the last one."""
    specs = list(self.conv_specs())
    if self.top_channels is not None:
      specs[-1] = specs[-1]._replace(features=self.top_channels)
    return tuple(specs)

  def min_image_size(self) -> int:
    """Smallest square image side (pixels) this performer accepts."""
    return min_input_size(self.layers())

  def setup(self):
    dense = lambda n: nn.Dense(n, dtype=self.dtype, param_dtype=jnp.float32)
    self.convs = [
        nn.Conv(s.features, (s.kernel, s.kernel), strides=(s.stride, s.stride),
                padding=[(s.padding, s.padding)] * 2, dtype=self.dtype,
                param_dtype=jnp.float32)
        for s in self.layers()]
    if self.interpretable:
      from xplain_jax.models import interpretable  # pylint: disable=g-import-not-at-top
      self.mask = interpretable.InterpretableMask(**dict(self.mask_kwargs or {}))
    self.fc6 = dense(self.fc_features)
    self.fc7 = dense(self.fc_features)
    self.fc8 = dense(self.num_outputs)
    self.drop6 = nn.Dropout(self.dropout_rate)
    self.drop7 = nn.Dropout(self.dropout_rate)

  def _check_size(self, shape):
    if len(shape) != 4:
      raise ValueError(f"{type(self).__name__} expects images [B,H,W,C]; got "
                       f"shape {tuple(shape)}")
    if any(feature_size(self.layers(), n) is None for n in shape[1:3]):
      m = self.min_image_size()
      raise ValueError(
          f"{type(self).__name__} needs images of at least {m}x{m} pixels; got "
          f"{shape[1]}x{shape[2]}: resize the images or pick a smaller "
          f"performer (e.g. 'tiny_vgg')")

  def _lrn(self, x):
    return local_response_norm(x, size=self.lrn_size, alpha=self.lrn_alpha,
                               beta=self.lrn_beta, k=self.lrn_k)

  def _pool(self, x, spec):
    if not spec.pool_window:
      return x
    return max_pool_2d(x, spec.pool_window, spec.pool_stride, spec.pool_ceil)

  def features(self, images):
    """images [B,H,W,3] -> top conv after ReLU (and LRN) [B,H',W',C]."""
    specs = self.layers()
    x = jnp.asarray(images, self.dtype)
    for i, (spec, conv) in enumerate(zip(specs, self.convs)):
      x = nn.relu(conv(x))
      if spec.lrn:
        x = self._lrn(x)
      if i < len(specs) - 1:
        x = self._pool(x, spec)
    return x

  def __call__(self, images, train: bool = False):
    """Classifies images.

    Args:
      images: [B,H,W,3] float, H and W >= `min_image_size()`.
      train: enables dropout (needs a 'dropout' rng).

    Returns:
      outputs: [B, num_outputs] float32 logits.
      inter: dict with "top_conv", "top_conv_relu" [B,H',W',C], "pool5"
        [B,p,p,C], "fc6", "fc7" [B, fc_features] (computation dtype).
    """
    self._check_size(images.shape)
    relu = self.features(images)
    top = self.mask(relu) if self.interpretable else relu
    outputs, inter = self.head(top, train)
    return outputs, {"top_conv": top, "top_conv_relu": relu, **inter}

  def head(self, x, train: bool = False):
    """Everything above "top_conv": last max-pool, adaptive pool, fc6-fc8.

    Args:
      x: [B,H',W',C] top conv map (after the mask when interpretable).
      train: enables dropout.

    Returns:
      outputs [B, num_outputs] float32 and a dict with "pool5", "fc6", "fc7".
    """
    x = self._pool(jnp.asarray(x, self.dtype), self.layers()[-1])
    if self.global_max_pool:
      x = jnp.max(x, axis=(1, 2), keepdims=True)
    elif self.pooled:
      x = adaptive_avg_pool(x, (self.pooled, self.pooled))
    fc6 = nn.relu(self.fc6(x.reshape(x.shape[0], -1)))
    outputs, fc7 = self._above_fc6(fc6, train)
    return outputs, {"pool5": x, "fc6": fc6, "fc7": fc7}

  def _above_fc6(self, fc6, train):
    h = self.drop6(jnp.asarray(fc6, self.dtype), deterministic=not train)
    fc7 = nn.relu(self.fc7(h))
    h = self.drop7(fc7, deterministic=not train)
    return jnp.asarray(self.fc8(h), jnp.float32), fc7

  def from_fc6(self, h, train: bool = False):
    """Everything above "fc6": dropout, fc7, ReLU, dropout, fc8.

    Args:
      h: [B, fc_features] fc6 activations (after ReLU).
      train: enables dropout.

    Returns:
      [B, num_outputs] float32 logits.
    """
    return self._above_fc6(h, train)[0]
