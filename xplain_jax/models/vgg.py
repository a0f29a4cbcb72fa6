"""VGG performers: VGG-M and VGG-S (Chatfield et al. 2014), VGG-16, tiny VGG."""

import functools
from typing import Sequence

from xplain_jax.models import performers


class VGGM(performers.ConvPerformer):
  """VGG-M ("CNN-M") of Chatfield et al. 2014, "Return of the Devil in the Details".

  conv1 96 7x7/2 + LRN + max-pool 3/2; conv2 256 5x5/2 pad 1 + LRN + max-pool
  3/2; conv3-5 512 3x3/1 pad 1; max-pool 3/2; fc6 4096, fc7 4096. Pools round up
  as in the released Caffe model, so a 224x224 image gives conv5 13x13x512 and
  pool5 6x6x512. The adaptive average pool to `pooled` x `pooled` (an addition,
  the identity at 224) lets other sizes reach fc6. 102,908,520 parameters at
  1000 outputs; smallest accepted image 41x41.

  Attributes:
    widths: filters of conv1..conv5.
  """
  widths: Sequence[int] = (96, 256, 512, 512, 512)

  def conv_specs(self):
    w1, w2, w3, w4, w5 = self.widths
    pool = dict(pool_window=3, pool_stride=2, pool_ceil=True)
    return (
        performers.ConvSpec(w1, 7, stride=2, lrn=True, **pool),
        performers.ConvSpec(w2, 5, stride=2, padding=1, lrn=True, **pool),
        performers.ConvSpec(w3, 3, padding=1),
        performers.ConvSpec(w4, 3, padding=1),
        performers.ConvSpec(w5, 3, padding=1, **pool),
    )


class VGGS(performers.ConvPerformer):
  """VGG-S ("CNN-S") of Chatfield et al. 2014.

  conv1 96 7x7/2 + LRN + max-pool 3/3; conv2 256 5x5/1 + max-pool 2/2; conv3-5
  512 3x3/1 pad 1; max-pool 3/3; fc6 4096, fc7 4096. conv2 has no padding, as in
  the released Caffe model (the paper's table differs; both give pool5 6x6 at
  224). Pools round up (Caffe): at 224 conv5 is 17x17x512, pool5 6x6x512; the
  adaptive pool to `pooled` is the identity there. 102,908,520 parameters at
  1000 outputs; smallest accepted image 31x31.

  Attributes:
    widths: filters of conv1..conv5.
  """
  widths: Sequence[int] = (96, 256, 512, 512, 512)

  def conv_specs(self):
    w1, w2, w3, w4, w5 = self.widths
    return (
        performers.ConvSpec(w1, 7, stride=2, lrn=True, pool_window=3,
                            pool_stride=3, pool_ceil=True),
        performers.ConvSpec(w2, 5, pool_window=2, pool_stride=2,
                            pool_ceil=True),
        performers.ConvSpec(w3, 3, padding=1),
        performers.ConvSpec(w4, 3, padding=1),
        performers.ConvSpec(w5, 3, padding=1, pool_window=3, pool_stride=3,
                            pool_ceil=True),
    )


class VGG(performers.ConvPerformer):
  """VGG in torchvision's layout; the defaults give VGG-16 (configuration D).

  Blocks of 3x3 pad-1 convs, each block ending in a 2x2/2 max-pool; adaptive
  average pool to 7x7; fc 4096, 4096, num_outputs. The top conv is conv5_3 after
  its ReLU: 14x14x512 at 224. 138,357,544 parameters at 1000 outputs; smallest
  accepted image 32x32.

  Attributes:
    block_widths: filters of the convs in each block.
    block_depths: convs per block.
  """
  block_widths: Sequence[int] = (64, 128, 256, 512, 512)
  block_depths: Sequence[int] = (2, 2, 3, 3, 3)
  pooled: int = 7

  def conv_specs(self):
    if len(self.block_widths) != len(self.block_depths):
      raise ValueError(
          f"block_widths {tuple(self.block_widths)} and block_depths "
          f"{tuple(self.block_depths)} must have the same length")
    specs = []
    for width, depth in zip(self.block_widths, self.block_depths):
      specs += [performers.ConvSpec(width, 3, padding=1)] * depth
      specs[-1] = specs[-1]._replace(pool_window=2, pool_stride=2)
    return tuple(specs)


VGG16 = VGG

# Three one-conv blocks (8, 16, 32 filters), fc 64: top conv 16x16x32 at 64 px,
# 8x8 at 32 px; accepts images from 8x8. Set top_channels to change the number
# of top filters (concepts).
TinyVGG = functools.partial(
    VGG, block_widths=(8, 16, 32), block_depths=(1, 1, 1), fc_features=64,
    pooled=4)
