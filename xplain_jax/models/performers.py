"""The performers (the CNNs being explained): a conv stack, fc6, fc7, fc8.

A performer is a plain conv stack described by a tuple of `ConvSpec`s, followed by
an adaptive average pool and three fully connected layers (fc6, fc7, fc8). The
concrete architectures live in `alexnet.py` and `vgg.py`; the pure layer
functions (LRN, pools, size arithmetic) in `layers.py`.

Two layouts of the interpretable top layer (Zhang et al. 2018b; Chen et al. 2019):

- the paper's (``added_layer=True, mask_order="pre_relu"``): a new 3x3 conv of M
  filters (M = the original top conv's channels) above the original top conv,
  the mask between that conv and its ReLU (Chen et al.'s appendix), the last
  max-pool and fc6-fc8 above it;
- the earlier one (``added_layer=False, mask_order="post_relu"``): the original
  top conv itself, masked after its ReLU (Zhang et al.'s order).

Every performer returns `(outputs, inter)` where `inter` holds the named
intermediates the explainer works on:

- "top_conv_pre": [B,H,W,C] the top conv's output before its ReLU (the added
  conv's when `added_layer`);
- "top_conv_relu": [B,H,W,C] the same after its ReLU: the map the mask's
  template is chosen from and the filter loss is computed on;
- "top_conv": [B,H,W,C] the explainer's x: the mask layer's output when
  interpretable (signed under ``mask_order="pre_relu"``), else "top_conv_relu";
- "pool5": [B,h,w,C] the map flattened into fc6 (ReLU, the last max-pool, then
  the adaptive average pool);
- "fc6", "fc7": [B,F] the first and second FC layers after their ReLU.

`head` (everything above "top_conv", starting with the ReLU) and `from_fc6`
(everything above "fc6") are separate methods so priors can differentiate them,
e.g. `module.apply(variables, x, method=type(module).head)`.
"""

from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from xplain_jax.models.layers import (  # re-exported: part of this module's public names
    adaptive_avg_pool, feature_size, local_response_norm, max_pool_2d, min_input_size,
    pooled_size)


MASK_ORDERS = ("pre_relu", "post_relu")


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
    interpretable: insert the interpretable mask (Zhang et al. 2018) at the
      top conv layer (the added one when `added_layer`).
    added_layer: add a 3x3 pad-1 conv of M filters (M = the top conv's
      channels) with its ReLU above the original top conv, below the last
      max-pool (Zhang et al.'s interpretable layer, param name "added_conv").
    mask_order: "pre_relu" (the paper's appendix: conv -> mask -> ReLU, x signed)
      or "post_relu" (Zhang et al.'s order: conv -> ReLU -> mask, x >= 0).
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
    conv: the convolution the conv layers call (``lax.conv_general_dilated``'s signature;
      ``models.conv.conv_for`` gives one whose kernel gradient is fast on XLA:CPU).
  """
  num_outputs: int
  dropout_rate: float = 0.5
  interpretable: bool = False
  added_layer: bool = False
  mask_order: str = "pre_relu"
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
  conv: Callable = lax.conv_general_dilated

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
                param_dtype=jnp.float32, conv_general_dilated=self.conv)
        for s in self.layers()]
    if self.added_layer:
      m = self.layers()[-1].features
      self.added_conv = nn.Conv(m, (3, 3), padding=[(1, 1)] * 2, dtype=self.dtype,
                                param_dtype=jnp.float32, conv_general_dilated=self.conv)
    if self.mask_order not in MASK_ORDERS:
      raise ValueError(f"mask_order={self.mask_order!r} is not known; use one of {MASK_ORDERS}.")
    if self.interpretable:
      from xplain_jax.models import interpretable  # pylint: disable=g-import-not-at-top
      self.mask = interpretable.InterpretableMask(
          **{"signed": self.mask_order == "pre_relu", **dict(self.mask_kwargs or {})})
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
    """images [B,H,W,3] -> the top conv's output before its ReLU [B,H',W',C].

    Every layer below the top one is followed by its ReLU (LRN, pool); with
    `added_layer` the original top conv gets its ReLU (and LRN) and the added
    conv's raw output is returned.
    """
    specs = self.layers()
    x = jnp.asarray(images, self.dtype)
    for i, (spec, conv) in enumerate(zip(specs, self.convs)):
      top = i == len(specs) - 1
      x = conv(x)
      if top and not self.added_layer:
        return x
      x = nn.relu(x)
      if spec.lrn:
        x = self._lrn(x)
      if not top:
        x = self._pool(x, spec)
    return self.added_conv(x)

  def __call__(self, images, train: bool = False):
    """Classifies images.

    Args:
      images: [B,H,W,3] float, H and W >= `min_image_size()`.
      train: enables dropout (needs a 'dropout' rng).

    Returns:
      outputs: [B, num_outputs] float32 logits.
      inter: dict with "top_conv", "top_conv_relu", "top_conv_pre" [B,H',W',C],
        "pool5" [B,p,p,C], "fc6", "fc7" [B, fc_features] (computation dtype).
    """
    self._check_size(images.shape)
    pre = self.features(images)
    relu = nn.relu(pre)
    if self.layers()[-1].lrn and not self.added_layer:
      relu = self._lrn(relu)
    if not self.interpretable:
      top = relu
    else:
      top = self.mask(pre if self.mask_order == "pre_relu" else relu)
    outputs, inter = self.head(top, train)
    return outputs, {"top_conv": top, "top_conv_relu": relu, "top_conv_pre": pre, **inter}

  def head(self, x, train: bool = False):
    """Everything above "top_conv": ReLU, last max-pool, adaptive pool, fc6-fc8.

    The ReLU is the one that follows the mask in the paper's order; on the
    other layouts x is already >= 0 and it changes nothing.

    Args:
      x: [B,H',W',C] top conv map (the mask's output when interpretable).
      train: enables dropout.

    Returns:
      outputs [B, num_outputs] float32 and a dict with "pool5", "fc6", "fc7".
    """
    x = self._pool(nn.relu(jnp.asarray(x, self.dtype)), self.layers()[-1])
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
