"""Weight network g: a ResNet on the performer's feature map (docs/method.md section 4).

The blocks follow flax's examples/imagenet. Because the input is a small feature
map (14x14x512, 7x7x256, ...) rather than an image, the paper (footnote 3)
removes ResNet's first max-pool and last average pool:

- stem ``"paper"`` (the default): the usual 7x7/2 conv (+ BN + ReLU), no max-pool;
  stages 2-4 start with stride 2, SAME padding, so a side of n becomes ceil(n/2)
  and never drops below 1: 14 -> 7 (stem and stage 1), 4, 2, 1;
- stem ``"small"`` (this project's earlier choice): a 3x3/1 conv instead, so the
  stages see 14, 14, 7, 4, 2 (about 4x the FLOPs of "paper" on a 14x14 map);
- there is no final average pool: the last stage's map is flattened (after an
  optional 1x1 conv `head_channels` that reduces its channels) into a Dense to
  `num_outputs`, so g keeps the spatial layout of the map;
- with `positive=True` the output goes through softplus (alpha > 0);
- with `coords=True` (an addition to the paper, CoordConv) two channels holding each cell's
  column and row in [-1, 1] are appended to the input map, so g, which otherwise sees the
  map's content through convolutions, can make alpha depend on where a concept fires.
"""

import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

ModuleDef = Any
# Stem conv (kernel, stride) by name: the paper's ResNet stem and the earlier small one.
STEMS = {"paper": (7, 2), "small": (3, 1)}


class ResNetBlock(nn.Module):
  """Basic block: two 3x3 convs with a projected shortcut when shapes change."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable
  strides: Sequence[int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = self.act(self.norm()(y))
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), self.strides,
                           name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)
    return self.act(residual + y)


class BottleneckResNetBlock(nn.Module):
  """Bottleneck block: 1x1, 3x3 (strided), 1x1 to 4x filters."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable
  strides: Sequence[int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.act(self.norm()(self.conv(self.filters, (1, 1))(x)))
    y = self.conv(self.filters, (3, 3), self.strides)(y)
    y = self.act(self.norm()(y))
    y = self.conv(self.filters * 4, (1, 1))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), self.strides,
                           name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)
    return self.act(residual + y)


class WeightNet(nn.Module):
  """ResNet g mapping a feature map to the explainer's weights alpha.

  Attributes:
    stage_sizes: blocks per stage.
    block_cls: ResNetBlock or BottleneckResNetBlock.
    num_outputs: n, the number of concepts.
    positive: apply softplus to the output (alpha > 0).
    width: filters of the stem and the first stage (doubled each stage).
    stem: "paper" (7x7 stride-2 conv, no max-pool) or "small" (3x3 stride-1 conv).
    head_channels: if set, a 1x1 conv (+ BN + ReLU) to this many channels before
      the flatten, to keep the final Dense small.
    dtype: computation dtype; parameters are float32, alpha is float32.
    bn_momentum, bn_epsilon: BatchNorm constants.
    coords: append two coordinate channels to the input (``coordinate_channels``).
  """
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_outputs: int
  positive: bool = False
  width: int = 64
  stem: str = "paper"
  head_channels: Optional[int] = None
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  coords: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    """Computes alpha.

    Args:
      x: [B,H,W,C] feature map of any size.
      train: BatchNorm uses batch statistics and updates 'batch_stats' (apply
        with mutable=['batch_stats']).

    Returns:
      alpha: [B, num_outputs] float32 (> 0 when positive).
      inter: {"features": [B, D] the flattened last map fed to the Dense}.
    """
    if x.ndim != 4:
      raise ValueError(f"WeightNet expects a feature map [B,H,W,C]; got shape "
                       f"{tuple(x.shape)}")
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             param_dtype=jnp.float32)
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=self.bn_momentum,
        epsilon=self.bn_epsilon, dtype=self.dtype, param_dtype=jnp.float32)
    if self.stem not in STEMS:
      raise ValueError(f"WeightNet stem={self.stem!r} is not known; use one of {list(STEMS)}.")
    kernel, stride = STEMS[self.stem]
    x = jnp.asarray(x, self.dtype)
    if self.coords:
      x = jnp.concatenate([x, coordinate_channels(x.shape, self.dtype)], axis=-1)
    x = nn.relu(norm(name="bn_init")(conv(self.width, (kernel, kernel), (stride, stride),
                                          name="conv_init")(x)))
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = self.block_cls(self.width * 2**i, strides=strides, conv=conv,
                           norm=norm, act=nn.relu)(x)
    if self.head_channels is not None:
      x = nn.relu(norm(name="bn_head")(conv(self.head_channels, (1, 1),
                                            name="conv_head")(x)))
    features = x.reshape(x.shape[0], -1)
    y = nn.Dense(self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32,
                 name="head")(features)
    y = jnp.asarray(y, jnp.float32)
    if self.positive:
      y = nn.softplus(y)
    return y, {"features": features}


def coordinate_channels(shape, dtype=jnp.float32):
  """[B,H,W,2]: each cell's column and row, linearly from -1 to 1 (0 for a side of 1).

  Example:
    >>> coordinate_channels((1, 1, 3, 8))[0, 0, :, 0].tolist()
    [-1.0, 0.0, 1.0]
  """
  b, h, w = shape[0], shape[1], shape[2]
  cols = jnp.linspace(-1.0, 1.0, w) if w > 1 else jnp.zeros((1,))
  rows = jnp.linspace(-1.0, 1.0, h) if h > 1 else jnp.zeros((1,))
  grid = jnp.stack(jnp.meshgrid(cols, rows, indexing="xy"), axis=-1)     # [H,W,2]
  return jnp.broadcast_to(grid, (b, h, w, 2)).astype(dtype)


# Stage sizes and block type per depth, as in flax's examples/imagenet; 10 is a
# tiny variant for tests and CPU runs.
_DEPTHS = {
    10: ((1, 1, 1, 1), ResNetBlock),
    18: ((2, 2, 2, 2), ResNetBlock),
    34: ((3, 4, 6, 3), ResNetBlock),
    50: ((3, 4, 6, 3), BottleneckResNetBlock),
    101: ((3, 4, 23, 3), BottleneckResNetBlock),
    152: ((3, 8, 36, 3), BottleneckResNetBlock),
}
WEIGHT_NET_DEPTHS = tuple(sorted(_DEPTHS))


def get_weight_net(depth, *, num_outputs, positive, width=64,
                   dtype=jnp.float32, **kwargs):
  """Builds the weight network g.

  Args:
    depth: one of WEIGHT_NET_DEPTHS (10, 18, 34, 50, 101, 152).
    num_outputs: n, the number of concepts.
    positive: softplus on the output (alpha > 0), for the cross-entropy prior.
    width: base filters (64 in the standard ResNets).
    dtype: computation dtype.
    **kwargs: other WeightNet fields (stem, head_channels, bn_momentum,
      bn_epsilon, coords).

  Returns:
    an unbound WeightNet; `apply(variables, x, train=False)` gives
    (alpha [B, num_outputs], inter).

  Raises:
    ValueError: unknown depth.
  """
  if depth not in _DEPTHS:
    raise ValueError(f"unknown weight-net depth {depth!r}; choose one of "
                     f"{', '.join(map(str, WEIGHT_NET_DEPTHS))}")
  stage_sizes, block_cls = _DEPTHS[depth]
  return WeightNet(stage_sizes=stage_sizes, block_cls=block_cls,
                   num_outputs=num_outputs, positive=positive, width=width,
                   dtype=dtype, **kwargs)
